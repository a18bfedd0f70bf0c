#!/usr/bin/env python3
"""Serving benchmark: `mlscore serve` against `mlflow models serve`, same model, same requests,
same invocation, one after the other on this machine (loopback).

    scripts/python-env benches/serve.py [--case gradient_boosting_binary] [--requests 3000]
                                        [--tool hey,wrk] [--seconds 5]
                                        [--model DIR --input PARQUET]

Needs `hey` and `wrk` (Debian: `apt-get install hey wrk`). The model is a models/sklearn case
(logged with mlflow.sklearn), or `--model` with a Parquet table of its inputs (`--input`);
mlscore runs the release example `serve` of mlscore-server (the server without the CLI's
engine), MLflow runs `mlflow models serve --env-manager local` (one uvicorn worker, its default).
For each server: time from launch to the first 200 on /ping, then with each load generator of
`--tool`: 1-row `dataframe_split` requests at concurrency 1, 8 and 64, 1,000-row requests at
concurrency 4; requests/s, p50 and p99 latency, the server's CPU time per request (user + system,
read from /proc around each run) and its peak RSS. hey runs `--requests` requests a run; wrk (one
thread, lighter on the shared cores: what it takes is not the server's) runs `--seconds` a run.
Prints ratios mlscore / MLflow and appends JSON lines to bench-data/results-serve.jsonl.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

import pyarrow.parquet as pq

ROOT = Path(__file__).resolve().parent.parent


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_ready(url: str, proc: subprocess.Popen, limit: float = 120.0) -> float:
    start = time.perf_counter()
    while time.perf_counter() - start < limit:
        if proc.poll() is not None:
            raise SystemExit(f"the server exited with {proc.returncode} before answering {url}")
        try:
            with urllib.request.urlopen(url, timeout=1) as r:
                if r.status == 200:
                    return time.perf_counter() - start
        except OSError:
            time.sleep(0.02)
    raise SystemExit(f"{url} did not answer in {limit} s")


def process_tree(pid: int) -> list[int]:
    """A process and its children (uvicorn runs under mlflow's launcher)."""
    pids = [pid]
    try:
        out = subprocess.run(["ps", "-o", "pid=", "--ppid", str(pid)], capture_output=True, text=True).stdout
        pids += [int(p) for p in out.split()]
    except OSError:
        pass
    return pids


def peak_rss_mb(pid: int) -> float:
    """The peak RSS of a process and its children."""
    total = 0.0
    for p in process_tree(pid):
        try:
            for line in Path(f"/proc/{p}/status").read_text().splitlines():
                if line.startswith("VmHWM:"):
                    total += int(line.split()[1]) / 1024
        except OSError:
            pass
    return total


def cpu_seconds(pid: int) -> float:
    """User + system CPU seconds of a process and its children."""
    total = 0.0
    for p in process_tree(pid):
        try:
            fields = Path(f"/proc/{p}/stat").read_text().rsplit(")", 1)[1].split()
            total += (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")
        except (OSError, IndexError, ValueError):
            pass
    return total


def hey(url: str, body: Path, n: int, c: int, pid: int | None = None) -> dict:
    cpu_before = cpu_seconds(pid) if pid else 0.0
    out = subprocess.run(
        ["hey", "-n", str(n), "-c", str(c), "-m", "POST", "-T", "application/json", "-D", str(body), url],
        capture_output=True, text=True, check=True,
    ).stdout
    cpu = cpu_seconds(pid) - cpu_before if pid else float("nan")
    rps = float(re.search(r"Requests/sec:\s+([\d.]+)", out).group(1))
    lat = {int(m.group(1)): float(m.group(2)) * 1000 for m in re.finditer(r"(\d+)%+ in ([\d.]+) secs", out)}
    codes = dict(re.findall(r"\[(\d+)\]\s+(\d+) responses", out))
    if set(codes) != {"200"}:
        raise SystemExit(f"non-200 answers from {url}: {codes}\n{out}")
    # The server's CPU time per request: what batching requests together could at best cut into.
    return {"rps": rps, "p50_ms": lat.get(50, float("nan")), "p99_ms": lat.get(99, float("nan")),
            "server_cpu_us": cpu / n * 1e6}


def wrk(url: str, body: Path, seconds: float, c: int, pid: int | None = None) -> dict:
    script = body.with_suffix(".lua")
    script.write_text('wrk.method = "POST"\nwrk.headers["Content-Type"] = "application/json"\n'
                      f'local f = io.open("{body}", "r")\nwrk.body = f:read("*a")\nf:close()\n')
    cpu_before = cpu_seconds(pid) if pid else 0.0
    out = subprocess.run(
        ["wrk", "-t1", f"-c{c}", f"-d{seconds:g}s", "--latency", "-s", str(script), url],
        capture_output=True, text=True, check=True,
    ).stdout
    cpu = cpu_seconds(pid) - cpu_before if pid else float("nan")
    if "Non-2xx" in out or "Socket errors" in out:
        raise SystemExit(f"failed requests to {url}:\n{out}")
    n = int(re.search(r"(\d+) requests in", out).group(1))
    rps = float(re.search(r"Requests/sec:\s+([\d.]+)", out).group(1))
    scale = {"us": 1e-3, "ms": 1.0, "s": 1e3}
    lat = {int(m.group(1)): float(m.group(2)) * scale[m.group(3)]
           for m in re.finditer(r"^\s+(\d+)%\s+([\d.]+)(us|ms|s)$", out, re.M)}
    return {"rps": rps, "p50_ms": lat.get(50, float("nan")), "p99_ms": lat.get(99, float("nan")),
            "server_cpu_us": cpu / max(n, 1) * 1e6}


def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("--case", default="gradient_boosting_binary")
    p.add_argument("--model", type=Path, help="a model directory instead of a models/sklearn case")
    p.add_argument("--input", type=Path, help="with --model: a Parquet table of the model's inputs")
    p.add_argument("--tool", default="hey,wrk", help="load generators, in order: hey, wrk")
    p.add_argument("--seconds", type=float, default=5.0, help="wrk's duration a run")
    p.add_argument("--requests", type=int, default=3000)
    p.add_argument("--mlscore", type=Path, help="an mlscore binary to run as `mlscore serve` (the container's "
                   "static build, say) instead of building the example")
    args = p.parse_args()
    tools = args.tool.split(",")
    for tool in tools:
        if tool not in ("hey", "wrk") or not shutil.which(tool):
            raise SystemExit(f"benches/serve.py: no load generator {tool!r} (Debian: apt-get install hey wrk)")
    if args.model:
        if not args.input:
            raise SystemExit("--model needs --input, a Parquet table of the model's inputs")
        model, table_path, case = args.model, args.input, str(args.model)
    else:
        case = args.case
        model = ROOT / "models" / "sklearn" / case / "model"
        table_path = ROOT / "models" / "sklearn" / case / "input.parquet"
    table = pq.read_table(table_path).to_pandas()
    cols = list(table.columns)
    one = {"dataframe_split": {"columns": cols, "data": [table.iloc[0].tolist()]}}
    rows = table.sample(1000, replace=True, random_state=0)
    many = {"dataframe_split": {"columns": cols, "data": rows.values.tolist()}}
    target = Path(os.environ.get("CARGO_TARGET_DIR", Path.home() / ".cache/mlscore/target"))
    env = {**os.environ, "CARGO_TARGET_DIR": str(target)}
    if args.mlscore is None:
        subprocess.run(["cargo", "build", "--release", "-q", "--example", "serve", "-p", "mlscore-server"],
                       cwd=ROOT, check=True, env=env)
    binary = target / "release" / "examples" / "serve"
    venv_bin = Path(sys.executable).parent
    results = {}
    with tempfile.TemporaryDirectory() as d:
        b1, b1000 = Path(d) / "one.json", Path(d) / "many.json"
        b1.write_text(json.dumps(one).replace("NaN", "null"))
        b1000.write_text(json.dumps(many).replace("NaN", "null"))
        for name in ["mlscore", "mlflow"]:
            port = free_port()
            if name == "mlscore" and args.mlscore:
                cmd = [str(args.mlscore), "serve", "--model", str(model), "--port", str(port)]
            elif name == "mlscore":
                cmd = [str(binary), str(model), str(port)]
            else:
                cmd = [str(venv_bin / "mlflow"), "models", "serve", "-m", str(model), "-p", str(port), "--env-manager", "local"]
            proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                                    env={**os.environ, "MLFLOW_ALLOW_PICKLE_DESERIALIZATION": "true",
                                         "PATH": f"{venv_bin}{os.pathsep}{os.environ.get('PATH', '')}"})
            try:
                base = f"http://127.0.0.1:{port}"
                start_s = wait_ready(f"{base}/ping", proc)
                inv = f"{base}/invocations"
                hey(inv, b1, 200, 2)  # warm-up
                r = {"start_s": start_s}
                for tool in tools:
                    if tool == "hey":
                        run = lambda body, c, many=False: hey(inv, body, max(50, args.requests // 20) if many else args.requests, c, proc.pid)
                    else:
                        run = lambda body, c, many=False: wrk(inv, body, args.seconds, c, proc.pid)
                    r[tool] = {"one_c1": run(b1, 1), "one_c8": run(b1, 8), "one_c64": run(b1, 64),
                               "rows1000_c4": run(b1000, 4, True)}
                r["rss_mb"] = peak_rss_mb(proc.pid)
                results[name] = r
            finally:
                proc.terminate()
                proc.wait(timeout=30)
    m, f = results["mlscore"], results["mlflow"]
    print(f"case {case}; load generators on the same machine: hey {args.requests} requests a run, "
          f"wrk {args.seconds:g} s a run")
    print(f"{'':34} {'mlscore':>22} {'mlflow models serve':>22} {'ratio':>8}")
    print(f"{'start to first /ping':34} {m['start_s']:>21.3f}s {f['start_s']:>21.2f}s {f['start_s'] / m['start_s']:>7.1f}x")
    for tool, key, label in [(t, k, f"{t}: {l}") for t in tools for k, l in
                             [("one_c1", "1 row, c=1"), ("one_c8", "1 row, c=8"), ("one_c64", "1 row, c=64"),
                              ("rows1000_c4", "1,000 rows, c=4")]]:
        a, b = m[tool][key], f[tool][key]
        print(f"{label + ' req/s':34} {a['rps']:>22.0f} {b['rps']:>22.0f} {a['rps'] / b['rps']:>7.1f}x")
        print(f"{label + ' p50/p99 ms':34} {a['p50_ms']:>10.3f} / {a['p99_ms']:<9.3f} {b['p50_ms']:>10.2f} / {b['p99_ms']:<9.2f}")
        print(f"{label + ' CPU us/req':34} {a['server_cpu_us']:>22.0f} {b['server_cpu_us']:>22.0f} "
              f"{b['server_cpu_us'] / max(a['server_cpu_us'], 1e-9):>7.1f}x")
    print(f"{'peak RSS MB':34} {m['rss_mb']:>22.0f} {f['rss_mb']:>22.0f} {f['rss_mb'] / max(m['rss_mb'], 1):>7.1f}x")
    out = ROOT / "bench-data" / "results-serve.jsonl"
    out.parent.mkdir(exist_ok=True)
    with out.open("a") as fh:
        fh.write(json.dumps({"time": time.time(), "case": case, "mlscore": m, "mlflow": f}) + "\n")


if __name__ == "__main__":
    sys.exit(main())
