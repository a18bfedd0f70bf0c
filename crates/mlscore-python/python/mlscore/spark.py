"""mlscore inside Spark: ``spark_udf`` (a drop-in for ``mlflow.pyfunc.spark_udf``) and ``score``.

The model is resolved and downloaded once, on the driver; its files travel to the executors
packed in one broadcast (in the function itself over Spark Connect, which has no broadcasts) and
each Python worker process unpacks and compiles it once, then scores every Arrow batch of every
task it runs in Rust. Data moves as Arrow end to end: no pandas, no pickled rows.
"""

from __future__ import annotations

import hashlib
import io
import os
import tarfile
import tempfile
import threading
import warnings
from typing import Any, Optional, Sequence

import pyarrow as pa

from mlscore import _native
from mlscore._native import MlscoreError
from mlscore.model import mlflow_environment

# One compiled model per Python worker process, by the SHA-256 of its packed files.
_MODELS: dict = {}
_LOCK = threading.Lock()


def _pack(path: str) -> bytes:
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w") as tar:
        tar.add(path, arcname=os.path.basename(path.rstrip("/")) or "model")
    return buf.getvalue()


def _unpack(data: bytes) -> str:
    target = tempfile.mkdtemp(prefix="mlscore-model-")
    with tarfile.open(fileobj=io.BytesIO(data), mode="r") as tar:
        names = tar.getnames()
        if any(n.startswith("/") or ".." in n.split("/") for n in names):
            raise MlscoreError("the shipped model archive names a path outside its directory; refused")
        if hasattr(tarfile, "data_filter"):
            tar.extractall(target, filter="data")
        else:  # Python < 3.9.17 / 3.10.12 / 3.11.4: names were checked above.
            tar.extractall(target)
        root = names[0].split("/")[0]
    return os.path.join(target, root)


class _Shipped:
    """A model's files on their way to the executors, and the model compiled once per worker."""

    def __init__(self, spark: Any, model: "_native.Model"):
        data = _pack(model.local_path)
        self.key = hashlib.sha256(data).hexdigest()
        self._broadcast = None
        self._data = None
        try:
            self._broadcast = spark.sparkContext.broadcast(data)
        except Exception:  # Spark Connect: no SparkContext, the bytes go with the function.
            self._data = data
        with _LOCK:
            _MODELS.setdefault(self.key, model)

    def model(self) -> "_native.Model":
        model = _MODELS.get(self.key)
        if model is None:
            with _LOCK:
                model = _MODELS.get(self.key)
                if model is None:
                    data = self._broadcast.value if self._broadcast is not None else self._data
                    model = _native.Model(_unpack(data))
                    _MODELS[self.key] = model
                    _log_load(self.key)
        return model


def _log_load(key: str) -> None:
    """With MLSCORE_SPARK_LOAD_LOG set (to a file every worker can write), each Python worker
    appends one line per model it unpacks and compiles: its pid and the model's SHA-256."""
    path = os.environ.get("MLSCORE_SPARK_LOAD_LOG")
    if path:
        with open(path, "a") as f:
            f.write(f"{os.getpid()} {key}\n")


def _nan_to_null(array: pa.Array) -> pa.Array:
    """NaN predictions as nulls, as spark_udf returns them (pandas' NaN becomes a Spark null)."""
    import pyarrow.compute as pc

    if pa.types.is_floating(array.type):
        return pc.if_else(pc.is_nan(array), pa.scalar(None, array.type), array)
    if pa.types.is_struct(array.type):
        fields = [_nan_to_null(array.field(i)) for i in range(array.type.num_fields)]
        return pa.StructArray.from_arrays(fields, fields=list(array.type), mask=array.is_null())
    return array


def _requested_type(result_type: Any) -> Optional[str]:
    if result_type is None or isinstance(result_type, str):
        return result_type
    simple = getattr(result_type, "simpleString", None)
    if simple is None:
        raise MlscoreError(f"result_type must be a Spark DataType or a DDL string, not {result_type!r}")
    return simple()


def _check_unused(env_manager: Any, params: Any, extra_env: Any, prebuilt_env_uri: Any, model_config: Any) -> None:
    if env_manager not in (None, "local"):
        warnings.warn(f"env_manager={env_manager!r} is not needed: mlscore scores in Rust, with no Python environment")
    if params:
        warnings.warn("params are ignored: ONNX models take no inference parameters")
    if prebuilt_env_uri is not None or model_config is not None:
        warnings.warn("prebuilt_env_uri and model_config do not apply to mlscore and are ignored")
    if extra_env:
        os.environ.update(extra_env)


def _pandas_udf(predict: Any, ddl: str) -> Any:
    """``predict`` (Arrow arrays in, an Arrow array out) as a pandas UDF, for Spark before 4.1:
    Spark hands pandas Series (or a DataFrame for a struct argument), whose nulls are already NaN
    as mlflow's spark_udf sees them; they go to Arrow and back around the Rust call."""
    from pyspark.sql.functions import pandas_udf

    def predict_pandas(*columns):
        if len(columns) == 1 and hasattr(columns[0], "columns"):  # a struct argument: a DataFrame
            frame = pa.RecordBatch.from_pandas(columns[0], preserve_index=False)
            result = predict(pa.StructArray.from_arrays(frame.columns, names=frame.schema.names))
        else:
            result = predict(*[pa.Array.from_pandas(c) for c in columns])
        if pa.types.is_struct(result.type):
            return pa.RecordBatch.from_struct_array(result).to_pandas()
        return result.to_pandas()

    return pandas_udf(predict_pandas, ddl)


def spark_udf(
    spark: Any,
    model_uri: str,
    result_type: Any = None,
    env_manager: Optional[str] = None,
    params: Optional[dict] = None,
    extra_env: Optional[dict] = None,
    prebuilt_env_uri: Optional[str] = None,
    model_config: Any = None,
    *,
    on_null: str = "nan",
):
    """A Spark UDF that scores ``model_uri`` in Rust, with ``mlflow.pyfunc.spark_udf``'s arguments
    and call styles: ``udf()`` (the signature's input columns), ``udf("a", "b")`` (by position,
    under the signature's names) and ``udf(struct(...))`` (by field name). ``result_type``
    defaults to what spark_udf infers from the signature's outputs, and NaN predictions are
    returned as nulls, as spark_udf returns them.

    ``on_null`` is mlscore's: ``"nan"`` (spark_udf's behaviour: nulls reach the model as NaN),
    ``"null"`` (null predictions for rows with a null input) or ``"error"``.

    On PySpark 4.1 and later this is an Arrow UDF: no pandas in the data path. On older Spark it
    is a pandas UDF, as mlflow's is (there, NaN inputs count as nulls for ``on_null``).
    """
    _check_unused(env_manager, params, extra_env, prebuilt_env_uri, model_config)
    # Resolved here, on the driver, as MLflow's client would resolve it (the notebook's workspace
    # and credentials on Databricks); executors get the model's bytes, not the URI.
    with mlflow_environment():
        model = _native.Model(model_uri)
    requested = _requested_type(result_type)
    ddl = model.result_type(requested) if requested is not None else model.spark_result_type()
    shipped = _Shipped(spark, model)
    input_names = list(model.input_names)

    def predict(*columns: pa.Array) -> pa.Array:
        m = shipped.model()
        if len(columns) == 1 and pa.types.is_struct(columns[0].type):
            batch = pa.RecordBatch.from_struct_array(columns[0])
            return _nan_to_null(m.predict(batch, ddl, on_null, False))
        batch = pa.RecordBatch.from_arrays(list(columns), names=[f"_{i}" for i in range(len(columns))])
        return _nan_to_null(m.predict(batch, ddl, on_null, True))

    try:
        from pyspark.sql.pandas.functions import ArrowUDFType, arrow_udf

        udf = arrow_udf(predict, ddl, ArrowUDFType.SCALAR)
    except ImportError:  # Spark < 4.1 has no Arrow UDFs: a pandas UDF, as mlflow's spark_udf.
        udf = _pandas_udf(predict, ddl)

    def udf_with_default_cols(*args):
        if not args:
            if not input_names:
                raise MlscoreError(
                    f"{model_uri} has no named input signature: call the UDF with its input columns"
                )
            args = tuple(input_names)
        return udf(*args)

    udf_with_default_cols.returnType = udf.returnType
    udf_with_default_cols.model_uri = model_uri
    return udf_with_default_cols


def score(
    df: Any,
    model_uri: str,
    result_type: Any = None,
    output_col: str = "prediction",
    columns: Optional[Sequence[str]] = None,
    on_null: str = "nan",
):
    """Every column of ``df`` plus ``output_col``, the model's prediction, through ``mapInArrow``
    (Spark 3.3 or later, Spark Connect included). Features are the signature's input columns by
    name, or ``columns`` by position. ``result_type`` defaults to mlscore's natural type."""
    if output_col in df.columns:
        raise MlscoreError(f"the DataFrame already has a column named {output_col!r}; choose another output_col")
    with mlflow_environment():
        model = _native.Model(model_uri)
    ddl = model.result_type(_requested_type(result_type))
    features = list(columns) if columns is not None else (list(model.input_names) or list(df.columns))
    missing = [c for c in features if c not in df.columns]
    if missing:
        raise MlscoreError(
            f"{model_uri}: the DataFrame has no column {missing[0]!r} (its columns: {', '.join(df.columns)})"
        )
    positional = columns is not None
    shipped = _Shipped(df.sparkSession, model)
    fields = [f"`{f.name}` {f.dataType.simpleString()}" for f in df.schema.fields]
    schema = ", ".join(fields + [f"`{output_col}` {ddl}"])

    def score_batches(batches):
        m = shipped.model()
        for batch in batches:
            feats = pa.RecordBatch.from_arrays([batch.column(c) for c in features], names=features)
            prediction = m.predict(feats, ddl, on_null, positional)
            yield pa.RecordBatch.from_arrays(batch.columns + [prediction], names=batch.schema.names + [output_col])

    return df.mapInArrow(score_batches, schema)
