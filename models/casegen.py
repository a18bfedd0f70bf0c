"""The regeneration loop shared by the case generators (models/gbdt.py, models/sklearn_zoo.py).

Each generator lists its cases as (name, seed, make) where make(rng) writes models/<family>/<name>/
and returns the case's entry for cases.json. With no arguments every case is regenerated (the
family's directory is cleared first); with names, only those, keeping the others' entries.
"""

from __future__ import annotations

import json
import shutil
import sys
import warnings
from pathlib import Path
from typing import Callable


def regenerate(out: Path, all_cases: Callable[[], list], describe: Callable[[dict], str]) -> None:
    import logging

    import numpy as np

    warnings.filterwarnings("ignore")
    logging.getLogger("mlflow").setLevel(logging.CRITICAL)
    only = set(sys.argv[1:])
    entries = {}
    if only and (out / "cases.json").exists():
        entries = {e["case"]: e for e in json.loads((out / "cases.json").read_text())}
    else:
        shutil.rmtree(out, ignore_errors=True)
    out.mkdir(exist_ok=True)
    cases = all_cases()
    unknown = only - {name for name, _, _ in cases}
    if unknown:
        raise SystemExit(f"no such case: {', '.join(sorted(unknown))}")
    for name, seed, make in cases:
        if only and name not in only:
            continue
        shutil.rmtree(out / name, ignore_errors=True)
        entries[name] = make(np.random.default_rng(seed))
        print(f"{name:40s} {describe(entries[name])}", flush=True)
    ordered = [entries[n] for n, _, _ in cases if n in entries]
    (out / "cases.json").write_text(json.dumps(ordered, indent=1) + "\n")
