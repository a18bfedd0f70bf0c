#!/usr/bin/env python3
"""A real MLflow tracking server on 127.0.0.1 for the integration tests (tests/it/rest.rs).

    scripts/python-env tests/servers/mlflow_server.py --dir <scratch directory>

Starts `mlflow server` (the pinned MLflow, a fresh sqlite store and a proxied artifact store in
--dir, a free port), logs the bundled churn ONNX model with MLflow's own client (with its
signature, registered as `churn_remote`, alias `champion`), prints one JSON line with the server
URL and ids, then runs until the process that started it exits (or closes this script's
standard input), and stops the server.
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import socket
import subprocess
import sys
import threading
import time
import urllib.request
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("--dir", required=True)
    args = p.parse_args()
    d = Path(args.dir)
    d.mkdir(parents=True, exist_ok=True)
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    log = open(d / "server.log", "w")
    server = subprocess.Popen(
        [sys.executable, "-m", "mlflow", "server", "--host", "127.0.0.1", "--port", str(port),
         "--backend-store-uri", f"sqlite:///{d / 'mlflow.db'}", "--artifacts-destination", str(d / "artifacts"),
         "--workers", "1"],
        stdout=log, stderr=subprocess.STDOUT, start_new_session=True,
        # Registry entries may point at storage the server does not proxy (as on Databricks and
        # Azure ML): the tests register a version whose files are on Azurite.
        env={**os.environ, "MLFLOW_ALLOWED_HOST_ADDRESSED_ARTIFACT_SCHEMES": "abfss,s3,gs"},
    )

    def stop(*_):
        try:
            os.killpg(server.pid, signal.SIGTERM)
            server.wait(timeout=10)
        except Exception:
            try:
                os.killpg(server.pid, signal.SIGKILL)
            except ProcessLookupError:
                pass

    # Whatever happens to the test process (a panic, a kill), the server goes with it.
    parent = os.getppid()

    def watchdog():
        while os.getppid() == parent:
            time.sleep(0.5)
        stop()
        os._exit(1)

    threading.Thread(target=watchdog, daemon=True).start()

    try:
        deadline = time.time() + 240
        while True:
            try:
                if urllib.request.urlopen(f"{url}/health", timeout=2).read().strip() == b"OK":
                    break
            except OSError:
                pass
            if server.poll() is not None or time.time() > deadline:
                raise SystemExit(f"mlflow server did not start; see {d / 'server.log'}")
            time.sleep(0.3)

        import mlflow
        import onnx
        from mlflow import MlflowClient
        from mlflow.models import Model

        mlflow.set_tracking_uri(url)
        signature = Model.load(str(ROOT / "models/churn")).signature
        onx = onnx.load(str(ROOT / "models/churn/model.onnx"))
        mlflow.set_experiment("remote")
        with mlflow.start_run() as run:
            info = mlflow.onnx.log_model(onx, name="model", signature=signature, registered_model_name="churn_remote")
        MlflowClient().set_registered_model_alias("churn_remote", "champion", 1)
        print(json.dumps({"url": url, "run_id": run.info.run_id, "model_id": info.model_id}), flush=True)
        try:
            sys.stdin.read()
        except OSError:
            pass
    finally:
        stop()


if __name__ == "__main__":
    main()
