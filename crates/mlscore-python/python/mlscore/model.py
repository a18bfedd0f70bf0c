"""``load_model(uri).predict(data)`` over pyarrow data, without Spark."""

from __future__ import annotations

import contextlib
import os
import sys
from concurrent.futures import ThreadPoolExecutor
from typing import Any, Iterator, Optional

import pyarrow as pa

from mlscore import _native


# A table's batches are cut into slices of at most this many rows, so that one large batch (a
# whole Parquet row group) still spreads over the threads.
_SLICE_ROWS = 65536


class Model:
    """An MLflow model compiled by mlscore. Build it with :func:`load_model`."""

    def __init__(self, native: "_native.Model"):
        self._native = native

    @property
    def uri(self) -> str:
        """The URI the model was loaded from."""
        return self._native.uri

    @property
    def input_names(self) -> list:
        """The signature's input column names, in order."""
        return list(self._native.input_names)

    @property
    def local_path(self) -> str:
        """Where the model's files were read from (the cache, for remote models)."""
        return self._native.local_path

    def result_type(self, requested: Optional[str] = None) -> str:
        """The Spark DDL type predictions have: inferred from the model's outputs as
        ``spark_udf`` infers it, or ``requested`` once checked."""
        return self._native.result_type(requested)

    def predict(self, data: Any, result_type: Optional[str] = None, on_null: str = "nan",
                positional: bool = False, threads: Optional[int] = None):
        """Scores ``data``: a ``pyarrow.RecordBatch`` or ``Table``, or anything exposing the Arrow
        PyCapsule interface (polars, DuckDB, nanoarrow results). Columns are matched to the
        signature by name (``positional=True``: by position). Returns a ``pyarrow.Array`` for a
        batch and a ``pyarrow.ChunkedArray`` for a table.

        ``on_null``: ``"nan"`` (MLflow's: nulls reach the model as NaN), ``"null"`` (a null
        prediction for rows with a null input) or ``"error"``.

        A table is scored in slices of at most 65,536 rows on ``threads`` threads (default: one
        per core; the GIL is released while Rust scores), results in the table's row order.
        A batch is scored on the calling thread.
        """
        if isinstance(data, pa.RecordBatch):
            return self._native.predict(data, result_type, on_null, positional)
        if not isinstance(data, pa.Table):
            if hasattr(data, "__arrow_c_stream__"):
                data = pa.table(data)
            elif hasattr(data, "__arrow_c_array__"):
                return self._native.predict(pa.record_batch(data), result_type, on_null, positional)
            else:
                raise TypeError(
                    f"predict() takes a pyarrow RecordBatch or Table (or an Arrow PyCapsule object), "
                    f"not {type(data).__name__}; for pandas use pyarrow.Table.from_pandas(df)"
                )
        ddl = self.result_type(result_type)
        if threads is not None and threads < 1:
            raise ValueError(f"threads must be 1 or more, not {threads}")
        slices = [b.slice(s, _SLICE_ROWS) for b in data.to_batches() for s in range(0, b.num_rows, _SLICE_ROWS)]
        workers = min(threads or os.cpu_count() or 1, len(slices))

        def score(batch: pa.RecordBatch) -> pa.Array:
            return self._native.predict(batch, ddl, on_null, positional)

        if workers > 1:
            with ThreadPoolExecutor(max_workers=workers, thread_name_prefix="mlscore") as pool:
                chunks = list(pool.map(score, slices))
        else:
            chunks = [score(b) for b in slices]
        if not chunks:
            batch = pa.RecordBatch.from_pylist([], schema=data.schema)
            return pa.chunked_array([self._native.predict(batch, ddl, on_null, positional)])
        return pa.chunked_array(chunks)

    def __repr__(self) -> str:
        return f"mlscore.Model({self.uri!r})"


@contextlib.contextmanager
def mlflow_environment() -> Iterator[None]:
    """While a model URI is resolved: the tracking and registry URIs MLflow's client would use in
    this process, and on Databricks the workspace credentials it would use, as the environment
    variables mlscore's resolver reads.

    - When the ``mlflow`` module is loaded, its ``get_tracking_uri()`` and ``get_registry_uri()``
      decide (so ``mlflow.set_tracking_uri(ws.get_mlflow_tracking_uri())`` is honoured, as it is by
      ``mlflow.pyfunc.spark_udf``); mlflow is never imported here for this.
    - For a ``databricks`` URI without ``DATABRICKS_HOST`` and a token in the environment (a
      notebook, a job, model serving), the host and a token come from MLflow's own
      ``get_databricks_host_creds`` (the notebook's context), else from the Databricks SDK's
      default authentication (metadata service, runtime OAuth, Azure CLI…), when installed.

    The variables are restored afterwards; nothing is printed or kept."""
    changes: dict = {}
    mlflow = sys.modules.get("mlflow")
    if mlflow is not None:
        with contextlib.suppress(Exception):
            changes["MLFLOW_TRACKING_URI"] = mlflow.get_tracking_uri()
            changes["MLFLOW_REGISTRY_URI"] = mlflow.get_registry_uri()
    tracking = changes.get("MLFLOW_TRACKING_URI") or os.environ.get("MLFLOW_TRACKING_URI") or ""
    has_creds = os.environ.get("DATABRICKS_HOST") and (
        os.environ.get("DATABRICKS_TOKEN") or os.environ.get("DATABRICKS_CLIENT_ID")
    )
    if tracking.startswith("databricks") and not has_creds and not os.environ.get("DATABRICKS_CONFIG_PROFILE"):
        host, token = _databricks_credentials(tracking)
        if host and token:
            changes["DATABRICKS_HOST"] = host
            changes["DATABRICKS_TOKEN"] = token
    saved = {k: os.environ.get(k) for k in changes}
    os.environ.update({k: str(v) for k, v in changes.items() if v})
    try:
        yield
    finally:
        for k, v in saved.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v


def _databricks_credentials(tracking_uri: str) -> tuple:
    """The workspace host and a bearer token for a ``databricks[://profile]`` URI, from MLflow's
    provider chain, else the Databricks SDK's; ``(None, None)`` when neither gives one."""
    with contextlib.suppress(Exception):
        from mlflow.utils.databricks_utils import get_databricks_host_creds

        creds = get_databricks_host_creds(tracking_uri)
        if creds.host and creds.token:
            return creds.host, creds.token
    with contextlib.suppress(Exception):
        from databricks.sdk.core import Config

        profile = tracking_uri.split("://", 1)[1].strip("/") if "://" in tracking_uri else None
        config = Config(profile=profile) if profile else Config()
        authorization = config.authenticate().get("Authorization", "")
        if authorization.startswith("Bearer ") and config.host:
            return config.host, authorization[len("Bearer ") :]
    return None, None


def load_model(model_uri: str, cache_dir: Optional[str] = None) -> Model:
    """Loads an MLflow model: a path, ``runs:/<run>/<path>``, ``models:/<name>/<version>``,
    ``models:/<name>@<alias>``, ``models:/m-<id>`` or an object store URL (``abfss://``,
    ``s3://``, ``gs://``), resolved as MLflow's client would in this process: its environment
    variables (``MLFLOW_TRACKING_URI``…), or ``mlflow.set_tracking_uri`` when mlflow is loaded, on
    local stores, tracking servers, Databricks (Unity Catalog too) and Azure ML. Remote models are
    downloaded into the cache once."""
    with mlflow_environment():
        return Model(_native.Model(model_uri, cache_dir))
