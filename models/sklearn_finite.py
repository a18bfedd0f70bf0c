#!/usr/bin/env python3
"""Record where scikit-learn refuses NaN and infinities: models/<family>/finite.json.

    scripts/python-env models/sklearn_finite.py                 # sklearn, sklearn-1.1, sklearn-1.3
    scripts/python-env models/sklearn_finite.py sklearn-1.3     # one family

scikit-learn validates what each step receives: most estimators refuse NaN and infinities
("Input X contains NaN", "... infinity or a value too large"), the scalers, imputers and encoders
let NaN through but not infinities, trees take NaN only from certain releases on (and refuse any
value float32 cannot hold), HistGradientBoosting takes anything. For every case of a family this
puts, in turn, NaN, +inf, -inf and 1e300 into row 3 of the first float64 column of the case's
input.parquet, scores the table with MLflow's pyfunc in the family's own virtualenv (the legacy
ones of models/sklearn_legacy.py) and records whether it raised. The test suite puts the same
values in the same place and checks that mlscore refuses exactly those tables.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import warnings
from pathlib import Path

HERE = Path(__file__).resolve().parent
FAMILIES = {"sklearn": None, "sklearn-1.1": "1.1", "sklearn-1.3": "1.3"}
VALUES = {"nan": float("nan"), "inf": float("inf"), "-inf": float("-inf"), "1e300": 1e300}
ROW = 3
INSIDE = "MLSCORE_SKLEARN_FINITE_FAMILY"


def record(family: str) -> None:
    import logging

    import mlflow.pyfunc
    import pyarrow as pa
    import pyarrow.parquet as pq

    warnings.filterwarnings("ignore")
    logging.getLogger("mlflow").setLevel(logging.CRITICAL)
    os.environ["MLFLOW_ALLOW_PICKLE_DESERIALIZATION"] = "true"
    out = []
    cases = json.loads((HERE / family / "cases.json").read_text())
    for case in cases:
        name = case["case"]
        table = pq.read_table(HERE / family / name / "input.parquet")
        floats = [n for n in table.column_names if table.schema.field(n).type == pa.float64()]
        if not floats or table.num_rows <= ROW:
            continue
        column = floats[0]
        model = mlflow.pyfunc.load_model(str(HERE / family / name / "model"))
        for label, value in VALUES.items():
            df = table.to_pandas()
            df.loc[ROW, column] = value
            try:
                model.predict(df)
                raised = None
            except Exception as e:  # what pyfunc raises is the point
                raised = str(e).strip().splitlines()[0][:200]
            out.append({"case": name, "column": column, "row": ROW, "value": label, "raises": raised})
        print(f"{name:44s} {' '.join('E' if e['raises'] else '.' for e in out[-4:])}", flush=True)
    (HERE / family / "finite.json").write_text(json.dumps(out, indent=1) + "\n")


def main() -> None:
    inside = os.environ.get(INSIDE)
    if inside:
        record(inside)
        return
    for family in sys.argv[1:] or list(FAMILIES):
        release = FAMILIES[family]
        if release is None:
            python = sys.executable
        else:
            from sklearn_legacy import legacy_python

            python = str(legacy_python(release))
        subprocess.run([python, __file__], env={**os.environ, INSIDE: family}, check=True)


if __name__ == "__main__":
    sys.path.insert(0, str(HERE))
    main()
