#!/usr/bin/env python3
"""A fixture control plane for Databricks, Unity Catalog and Azure ML, on 127.0.0.1.

    scripts/python-env tests/servers/control_plane.py --world <world.json>

No Databricks workspace or Azure ML workspace can run on a test machine; their data planes can:
this fixture answers the control-plane endpoints MLflow's client calls (the JSON shapes of
shared/databricks-azureml.md, taken from MLflow 3.17's protos) and hands out what the real
services hand out, pointing at real storage servers: Azure SAS URLs on Azurite (signed with
Azure's own SDK), Unity Catalog temporary credentials for Azurite (a container SAS) or for an S3
server (session credentials), and Files API bytes. Every byte of a model travels through the real
storage protocols; only the bookkeeping is the fixture's.

The world (which runs, logged models, registered versions exist, and where their files are) is a
JSON file; see tests/it/platforms.rs, which writes it. Prints one JSON line with the fixture's URL
once it listens, then serves until its standard input closes. Every request is appended to
<world dir>/requests.log as `METHOD path auth-kind`, for the tests to check what was called.
"""

from __future__ import annotations

import argparse
import base64
import datetime as dt
import json
import os
import secrets
import sys
import threading
import time
import urllib.parse
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

from azure.storage.blob import (
    BlobSasPermissions,
    BlobServiceClient,
    ContainerSasPermissions,
    generate_blob_sas,
    generate_container_sas,
)

AZUREML_WS = "/subscriptions/{sub}/resourceGroups/{rg}/providers/Microsoft.MachineLearningServices/workspaces/{ws}"


class World:
    def __init__(self, path: Path):
        self.dir = path.parent
        self.w = json.loads(path.read_text())
        az = self.w["azurite"]
        self.account, self.key, self.container = az["account"], az["key"], az["container"]
        self.blob_url = az["url"].rstrip("/")
        conn = (
            f"DefaultEndpointsProtocol=http;AccountName={self.account};AccountKey={self.key};"
            f"BlobEndpoint={self.blob_url}/{self.account};"
        )
        self.blobs = BlobServiceClient.from_connection_string(conn).get_container_client(self.container)
        self.tokens = {self.w["token"]}
        self.signed_once = set()
        self.lock = threading.Lock()
        self.log = open(self.dir / "requests.log", "a", buffering=1)

    # -- storage ---------------------------------------------------------------------------
    def expiry(self):
        return dt.datetime.now(dt.timezone.utc) + dt.timedelta(minutes=15)

    def sas_url(self, blob: str, expired: bool = False) -> str:
        expiry = dt.datetime.now(dt.timezone.utc) - dt.timedelta(minutes=5) if expired else self.expiry()
        sas = generate_blob_sas(
            self.account, self.container, blob, account_key=self.key,
            permission=BlobSasPermissions(read=True), expiry=expiry,
        )
        return f"{self.blob_url}/{self.account}/{self.container}/{urllib.parse.quote(blob)}?{sas}"

    def container_sas(self) -> str:
        return generate_container_sas(
            self.account, self.container, account_key=self.key,
            permission=ContainerSasPermissions(read=True, list=True), expiry=self.expiry(),
        )

    def level(self, prefix: str):
        """One directory level under a blob prefix: [(name relative to prefix, is_dir, size)]."""
        prefix = prefix.strip("/") + "/"
        out = []
        for item in self.blobs.walk_blobs(name_starts_with=prefix, delimiter="/"):
            rel = item.name[len(prefix):].rstrip("/")
            is_dir = not hasattr(item, "size")
            out.append((rel, is_dir, None if is_dir else item.size))
        return out

    def tree(self, prefix: str):
        prefix = prefix.strip("/") + "/"
        return [(b.name[len(prefix):], b.size) for b in self.blobs.list_blobs(name_starts_with=prefix)]

    def exists(self, blob: str) -> bool:
        return self.blobs.get_blob_client(blob).exists()

    # -- the MLflow objects ------------------------------------------------------------------
    def run_prefix(self, run_id: str):
        return self.w["runs"].get(run_id)

    def run_info(self, run_id: str, artifact_root: str):
        return {
            "run_id": run_id, "run_uuid": run_id, "experiment_id": self.w["experiment_id"],
            "status": "FINISHED", "lifecycle_stage": "active", "artifact_uri": artifact_root,
        }


def version_json(name, number, v):
    out = {
        "name": name, "version": str(number), "status": "READY", "current_stage": v.get("stage", "None"),
        "creation_timestamp": 0, "source": v.get("source", ""), "run_id": v.get("run_id", ""),
    }
    if "storage_location" in v:
        out["storage_location"] = v["storage_location"]
    return out


class Handler(BaseHTTPRequestHandler):
    world: World
    base: str
    protocol_version = "HTTP/1.1"

    def log_message(self, *args):
        pass

    # -- plumbing ----------------------------------------------------------------------------
    def reply(self, status, body=None, raw: bytes | None = None, ctype="application/json"):
        data = raw if raw is not None else json.dumps(body if body is not None else {}).encode()
        self.send_response(status)
        self.send_header("Content-Type", ctype)
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(data)

    def error(self, status, code, message):
        self.reply(status, {"error_code": code, "message": message})

    def body(self):
        n = int(self.headers.get("Content-Length") or 0)
        return self.rfile.read(n) if n else b""

    def json_body(self):
        raw = self.body()
        return json.loads(raw) if raw else {}

    def auth_kind(self):
        auth = self.headers.get("Authorization", "")
        if auth.startswith("Bearer "):
            token = auth[7:]
            if token == self.world.w["token"]:
                return "pat"
            if token in self.world.tokens:
                return "oauth"
            return "bad-bearer"
        if auth.startswith("Basic "):
            return "basic"
        return "none"

    def record(self, kind):
        with self.world.lock:
            self.world.log.write(f"{self.command} {urllib.parse.urlsplit(self.path).path} {kind}\n")

    def do_GET(self):
        self.dispatch()

    def do_POST(self):
        self.dispatch()

    def do_HEAD(self):
        self.dispatch()

    def dispatch(self):
        parts = urllib.parse.urlsplit(self.path)
        path = urllib.parse.unquote(parts.path)
        query = {k: v[0] for k, v in urllib.parse.parse_qs(parts.query, keep_blank_values=True).items()}
        kind = self.auth_kind()
        self.record(kind)
        try:
            if path.startswith("/oidc/") or "/oauth2/" in path:
                return self.oauth(path)
            if path == "/metadata-service":
                return self.metadata_service()
            if path == "/msi/token":
                return self.managed_identity(query)
            if path.startswith("/.well-known/"):
                return self.error(404, "ENDPOINT_NOT_FOUND", f"No API found for '{self.command} {path}'")
            if kind not in ("pat", "oauth"):
                return self.error(401, "UNAUTHENTICATED", "Credential was not sent or was of an unsupported type")
            body = self.json_body() if self.command == "POST" else {}
            args = {**query, **body}
            azureml = self.world.w.get("azureml")
            if azureml:
                ws = AZUREML_WS.format(**azureml)
                for root in (f"/mlflow/v2.0{ws}", f"/mlflow/v1.0{ws}"):
                    if path.startswith(root + "/api/2.0/mlflow/"):
                        return self.mlflow(path[len(root) + len("/api/2.0/mlflow/"):], args, azureml=True)
                if path.startswith(f"/history/v1.0{ws}/experiments/"):
                    return self.azureml_history(path[len(f"/history/v1.0{ws}/experiments/"):], args)
            if path.startswith("/api/2.0/mlflow/"):
                return self.mlflow(path[len("/api/2.0/mlflow/"):], args, azureml=False)
            if path.startswith("/api/2.0/fs/"):
                return self.files_api(path[len("/api/2.0/fs/"):], args)
            self.error(404, "ENDPOINT_NOT_FOUND", f"No API found for '{self.command} {path}'")
        except KeyError as e:
            self.error(404, "RESOURCE_DOES_NOT_EXIST", f"{e} does not exist")

    # -- OAuth: Databricks OIDC (client credentials, HTTP basic) and Microsoft Entra ----------
    def oauth(self, path):
        base = self.base
        if path == "/oidc/.well-known/oauth-authorization-server":
            return self.reply(200, {"issuer": f"{base}/oidc", "token_endpoint": f"{base}/oidc/v1/token",
                                    "authorization_endpoint": f"{base}/oidc/v1/authorize"})
        form = {k: v[0] for k, v in urllib.parse.parse_qs(self.body().decode()).items()}
        w = self.world.w
        if path == "/oidc/v1/token":
            auth = self.headers.get("Authorization", "")
            ok = auth == "Basic " + base64.b64encode(f"{w['client_id']}:{w['client_secret']}".encode()).decode()
            if not ok or form.get("grant_type") != "client_credentials" or form.get("scope") != "all-apis":
                return self.reply(401, {"error": "invalid_client", "error_description": "Client authentication failed"})
        elif path.endswith("/oauth2/v2.0/token"):
            ok = form.get("client_id") == w["client_id"] and form.get("client_secret") == w["client_secret"]
            if not ok or form.get("scope") != "https://management.azure.com/.default":
                return self.reply(401, {"error": "invalid_client", "error_description": "AADSTS7000215: Invalid client secret"})
        else:
            return self.error(404, "ENDPOINT_NOT_FOUND", path)
        token = "tok-" + secrets.token_hex(8)
        with self.world.lock:
            self.world.tokens.add(token)
        self.reply(200, {"access_token": token, "token_type": "Bearer", "expires_in": 3600})

    def managed_identity(self, query):
        """A host's managed identity endpoint (IDENTITY_ENDPOINT, api-version 2019-08-01)."""
        if self.headers.get("X-IDENTITY-HEADER") != self.world.w["identity_header"] or \
                query.get("resource") != "https://management.azure.com/" or query.get("api-version") != "2019-08-01":
            return self.reply(400, {"error": "invalid_request"})
        token = "msi-" + secrets.token_hex(8)
        with self.world.lock:
            self.world.tokens.add(token)
        self.reply(200, {"access_token": token, "expires_on": str(int(time.time()) + 3600),
                         "resource": query["resource"], "token_type": "Bearer"})

    def metadata_service(self):
        """The Databricks SDK's metadata-service credentials (a token for the host it names)."""
        if self.headers.get("X-Databricks-Metadata-Version") != "1" or self.headers.get("X-Databricks-Host") != self.base:
            return self.reply(401, {"error": "unknown host"})
        self.reply(200, {"access_token": self.world.w["token"], "token_type": "Bearer", "expires_on": int(time.time()) + 3600})

    # -- MLflow REST, Databricks and Azure ML flavours ------------------------------------------
    def artifact_root(self, run_id, azureml):
        exp = self.world.w["experiment_id"]
        if azureml:
            a = self.world.w["azureml"]
            host = urllib.parse.urlsplit(self.base).netloc
            return f"azureml://{host}/mlflow/v2.0{AZUREML_WS.format(**a)}/experiments/{exp}/runs/{run_id}/artifacts"
        return f"dbfs:/databricks/mlflow-tracking/{exp}/{run_id}/artifacts"

    def mlflow(self, endpoint, a, azureml):
        w, world = self.world.w, self.world
        if endpoint == "runs/get":
            if a["run_id"] not in w["runs"]:
                raise KeyError(f"Run '{a['run_id']}'")
            # Experiments whose artifact location is a Unity Catalog volume keep runs there.
            volume = w.get("volume_runs", {}).get(a["run_id"])
            root = f"dbfs:{volume}" if volume else self.artifact_root(a["run_id"], azureml)
            return self.reply(200, {"run": {"info": world.run_info(a["run_id"], root), "data": {}}})
        if endpoint == "artifacts/list":
            prefix = w["runs"][a["run_id"]]
            path = a.get("path", "").strip("/")
            full = f"{prefix}/{path}".rstrip("/")
            if path and world.exists(full):
                return self.reply(200, {"root_uri": self.artifact_root(a["run_id"], azureml),
                                        "files": [{"path": path, "is_dir": False}]})
            files = [{"path": f"{path}/{n}".lstrip("/"), "is_dir": d, **({} if d else {"file_size": s})}
                     for n, d, s in world.level(full)]
            return self.reply(200, {"root_uri": self.artifact_root(a["run_id"], azureml), "files": files})
        if endpoint == "artifacts/credentials-for-read":
            prefix = w["runs"][a["run_id"]]
            paths = a["path"] if isinstance(a["path"], list) else [a["path"]]
            # Runs listed in expire_first get an already expired URL the first time a path is asked for.
            def signed(p):
                key = (a["run_id"], p)
                expired = a["run_id"] in w.get("expire_first", []) and key not in world.signed_once
                world.signed_once.add(key)
                return world.sas_url(f"{prefix}/{p}", expired=expired)
            infos = [{"run_id": a["run_id"], "path": p, "signed_uri": signed(p),
                      "headers": [{"name": "x-ms-blob-type", "value": "BlockBlob"}], "type": "AZURE_SAS_URI"}
                     for p in paths]
            return self.reply(200, {"credential_infos": infos})
        if endpoint.startswith("logged-models/"):
            return self.logged_model(endpoint[len("logged-models/"):], a)
        uc = endpoint.startswith("unity-catalog/")
        if uc:
            endpoint = endpoint[len("unity-catalog/"):]
        models = w["uc_models" if uc else "workspace_models"]
        if endpoint == "registered-models/get":
            m = models[a["name"]]
            aliases = [{"alias": k, "version": str(v)} for k, v in m.get("aliases", {}).items()]
            return self.reply(200, {"registered_model": {"name": a["name"], "aliases": aliases}})
        if endpoint == "registered-models/search":
            return self.reply(200, {"registered_models": [{"name": n} for n in models]})
        if endpoint == "model-versions/search":
            name = a.get("filter", "").split("'")[1]
            vs = [version_json(name, n, self.version_files(name, n, uc, azureml)) for n in models.get(name, {}).get("versions", {})]
            return self.reply(200, {"model_versions": vs})
        if endpoint == "model-versions/get":
            name, number = a["name"], a["version"]
            return self.reply(200, {"model_version": version_json(name, number, self.version_files(name, number, uc, azureml))})
        if endpoint == "registered-models/alias":
            name = a["name"]
            number = str(models[name]["aliases"][a["alias"]])
            return self.reply(200, {"model_version": version_json(name, number, self.version_files(name, number, uc, azureml))})
        if endpoint == "model-versions/list-artifacts" and not uc:
            v = self.version_files(a["name"], a["version"], uc, azureml)
            path = a.get("path", "").strip("/")
            files = [{"path": f"{path}/{n}".lstrip("/"), "is_dir": d, **({} if d else {"file_size": s})}
                     for n, d, s in world.level(f"{v['prefix']}/{path}".rstrip("/"))]
            return self.reply(200, {"files": files})
        if endpoint == "model-versions/get-signed-download-uri" and not uc:
            v = self.version_files(a["name"], a["version"], uc, azureml)
            return self.reply(200, {"signed_uri": world.sas_url(f"{v['prefix']}/{a['path']}"), "headers": []})
        if endpoint == "model-versions/get-download-uri":
            v = self.version_files(a["name"], a["version"], uc, azureml)
            if uc:
                return self.reply(200, {"artifact_uri": v["storage_location"]})
            return self.reply(200, {"artifact_uri": v["source"]})
        if uc and endpoint == "registered-models:is-databricks-sdk-models-artifact-repository-enabled":
            modes = {v["mode"] for v in models[a["name"]]["versions"].values()}
            return self.reply(200, {"is_databricks_sdk_models_artifact_repository_enabled": modes == {"files"}})
        if uc and endpoint == "model-versions/generate-temporary-credentials":
            v = models[a["name"]]["versions"][str(a["version"])]
            expiry = int((time.time() + 900) * 1000)
            if v["mode"] == "default":
                return self.reply(200, {"credentials": {"storage_mode": "DEFAULT_STORAGE", "expiration_time": expiry}})
            if v["mode"] == "s3":
                s3 = w["s3"]
                creds = {"aws_temp_credentials": {"access_key_id": s3["key_id"], "secret_access_key": s3["secret"],
                                                  "session_token": "session-" + secrets.token_hex(4)}}
            else:
                creds = {"azure_user_delegation_sas": {"sas_token": world.container_sas()}}
            return self.reply(200, {"credentials": {**creds, "storage_mode": "CUSTOMER_HOSTED", "expiration_time": expiry}})
        self.error(404, "ENDPOINT_NOT_FOUND", f"No API found for '{self.command} /api/2.0/mlflow/{endpoint}'")

    def version_files(self, name, number, uc, azureml):
        """A registered version with its source (and, in Unity Catalog, storage location) and blob prefix."""
        w = self.world.w
        v = dict(w["uc_models" if uc else "workspace_models"][name]["versions"][str(number)])
        if uc:
            prefix = v["prefix"]
            if v["mode"] == "s3":
                v["storage_location"] = f"s3://{w['s3']['bucket']}/{prefix}"
            else:
                v["storage_location"] = f"abfss://{self.world.container}@{self.world.account}.dfs.core.windows.net/{prefix}"
            v["source"] = v["storage_location"]
        else:
            v["prefix"] = f"{w['runs'][v['run_id']]}/{v['path']}"
            v["source"] = f"{self.artifact_root(v['run_id'], azureml)}/{v['path']}"
        return v

    def logged_model(self, rest, a):
        w, world = self.world.w, self.world
        if rest == "search":
            models = [{"info": self.logged_model_info(mid)} for mid in w.get("logged_models", {})]
            return self.reply(200, {"models": models})
        model_id, _, tail = rest.partition("/")
        lm = w["logged_models"][model_id]
        if tail == "":
            return self.reply(200, {"model": {"info": self.logged_model_info(model_id)}})
        if tail == "artifacts/directories":
            path = a.get("artifact_directory_path", "").strip("/")
            files = [{"path": f"{path}/{n}".lstrip("/"), "is_dir": d, **({} if d else {"file_size": s})}
                     for n, d, s in world.level(f"{lm['prefix']}/{path}".rstrip("/"))]
            return self.reply(200, {"files": files})
        if tail == "artifacts/credentials-for-download":
            creds = [{"model_id": model_id, "credential_info": {"path": p, "signed_uri": world.sas_url(f"{lm['prefix']}/{p}"),
                                                               "headers": [], "type": "AZURE_SAS_URI"}}
                     for p in a["paths"]]
            return self.reply(200, {"credentials": creds})
        raise KeyError(rest)

    def logged_model_info(self, model_id):
        w = self.world.w
        lm = w["logged_models"][model_id]
        exp = w["experiment_id"]
        return {"model_id": model_id, "experiment_id": exp, "name": lm["name"], "source_run_id": lm["run_id"],
                "artifact_uri": f"dbfs:/databricks/mlflow-tracking/{exp}/logged_models/{model_id}/artifacts"}

    # -- the Files API over /Models/<catalog>/<schema>/<model>/<version> -------------------------
    def files_prefix(self, path):
        for run_id, volume in self.world.w.get("volume_runs", {}).items():
            if path == volume or path.startswith(volume + "/"):
                rest = path[len(volume):].strip("/")
                return f"{self.world.w['runs'][run_id]}/{rest}".rstrip("/"), volume
        parts = path.strip("/").split("/")
        if parts[:3] == ["WorkspaceInternal", "Mlflow", "Artifacts"] and len(parts) >= 7 and parts[6] == "artifacts":
            # /WorkspaceInternal/Mlflow/Artifacts/<exp>/Runs/<run>/artifacts/… and …/LoggedModels/<id>/artifacts/…
            w = self.world.w
            kind, key, rest = parts[4], parts[5], "/".join(parts[7:])
            if kind == "Runs" and key in w["runs"]:
                return f"{w['runs'][key]}/{rest}".rstrip("/"), "/".join(parts[:7])
            if kind == "LoggedModels" and key in w.get("logged_models", {}):
                return f"{w['logged_models'][key]['prefix']}/{rest}".rstrip("/"), "/".join(parts[:7])
            raise KeyError(path)
        if parts[0] != "Models" or len(parts) < 5:
            raise KeyError(path)
        name, number, rest = ".".join(parts[1:4]), parts[4], "/".join(parts[5:])
        v = self.world.w["uc_models"][name]["versions"][number]
        return f"{v['prefix']}/{rest}".rstrip("/"), f"/Models/{'/'.join(parts[1:5])}"

    def files_api(self, rest, a):
        world = self.world
        if rest.startswith("directories/"):
            path = "/" + rest[len("directories/"):]
            try:
                prefix, _ = self.files_prefix(path)
            except KeyError:
                return self.error(404, "NOT_FOUND", f"The directory {path} does not exist")
            entries = world.level(prefix)
            if not entries:
                return self.error(404, "NOT_FOUND", f"The directory {path} does not exist")
            if self.command == "HEAD":
                return self.reply(200, {})
            contents = [{"path": f"{path.rstrip('/')}/{n}", "name": n, "is_directory": d,
                         **({} if d else {"file_size": s})} for n, d, s in entries]
            return self.reply(200, {"contents": contents})
        if rest.startswith("files/"):
            prefix, _ = self.files_prefix("/" + rest[len("files/"):])
            if not world.exists(prefix):
                return self.error(404, "NOT_FOUND", f"The file {rest[len('files'):]} does not exist")
            data = world.blobs.download_blob(prefix).readall()
            return self.reply(200, raw=data, ctype="application/octet-stream")
        if rest == "create-download-url":
            prefix, _ = self.files_prefix(a["path"])
            return self.reply(200, {"url": world.sas_url(prefix), "headers": []})
        raise KeyError(rest)

    # -- Azure ML run history: listing and content URLs ---------------------------------------------
    def azureml_history(self, rest, a):
        world = self.world
        exp, _, rest = rest.partition("/runs/")
        run_id, _, tail = rest.partition("/")
        prefix = world.w["runs"][run_id]
        if tail == "artifacts":
            value = [{"artifactId": f"dcid.{run_id}/{n}", "origin": "ExperimentRun", "container": f"dcid.{run_id}",
                      "path": n} for n, _ in world.tree(prefix)]
            return self.reply(200, {"value": value, "continuationToken": None, "nextLink": None})
        if tail == "artifacts/contentinfo":
            return self.reply(200, {"contentUri": world.sas_url(f"{prefix}/{a['path']}"), "origin": "ExperimentRun",
                                    "container": f"dcid.{run_id}", "path": a["path"]})
        raise KeyError(tail)


def main():
    p = argparse.ArgumentParser()
    p.add_argument("--world", required=True)
    args = p.parse_args()
    world = World(Path(args.world))
    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    base = f"http://127.0.0.1:{server.server_address[1]}"
    Handler.world, Handler.base = world, base
    threading.Thread(target=server.serve_forever, daemon=True).start()
    print(json.dumps({"url": base}), flush=True)
    # Serve until the test process closes our standard input (or goes away).
    sys.stdin.read()
    server.shutdown()
    os._exit(0)


if __name__ == "__main__":
    main()
