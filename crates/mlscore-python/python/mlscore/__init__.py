"""mlscore: score MLflow models over Arrow data, natively.

    >>> import mlscore
    >>> model = mlscore.load_model("models:/churn@champion")     # any MLflow model URI
    >>> model.predict(pyarrow_table)                              # a pyarrow array of predictions

For Spark, ``mlscore.spark.spark_udf`` is a drop-in for ``mlflow.pyfunc.spark_udf`` and
``mlscore.spark.score`` scores a whole DataFrame; both score in Rust inside each Spark task.
"""

from mlscore._native import MlscoreError
from mlscore._native import version as _engine_version
from mlscore.model import Model, load_model

__version__ = _engine_version()
__all__ = ["Model", "MlscoreError", "load_model", "__version__"]
