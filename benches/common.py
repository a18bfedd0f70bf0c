"""What the benchmark scripts share: where the repository and the benchmark data are, and the
release build of mlscore they run."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
DATA = ROOT / "bench-data"


def mlscore_binary() -> Path:
    """Builds (or finds up to date) the release `mlscore` in the shared target directory."""
    target = Path(os.environ.get("CARGO_TARGET_DIR", Path.home() / ".cache/mlscore/target"))
    env = {**os.environ, "CARGO_TARGET_DIR": str(target)}
    subprocess.run(["cargo", "build", "--release", "-q", "-p", "mlscore-cli"], cwd=ROOT, check=True, env=env)
    return target / "release" / "mlscore"
