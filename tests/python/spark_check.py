#!/usr/bin/env python3
"""The mlscore Python package against MLflow and onnxruntime on the bundled models, on local
PySpark: load_model().predict(), spark_udf's call styles and result types next to
mlflow.pyfunc.spark_udf's, nulls, a multi-partition DataFrame, and score() over mapInArrow, on a
classic session and over Spark Connect.

Run by tests/it/python.rs with PYTHONPATH set to the freshly built mlscore wheel, installed:
    scripts/python-env tests/python/spark_check.py <repo root> <scratch directory>
Prints one line per check and exits non-zero on the first failure.
"""

import math
import os
import shutil
import sys
import warnings

import numpy as np
import onnxruntime as ort
import pyarrow as pa
import pyarrow.parquet as pq

ROOT = sys.argv[1]
os.chdir(ROOT)
SCRATCH = sys.argv[2]
os.environ["MLFLOW_TRACKING_URI"] = f"sqlite:///{SCRATCH}/mlflow.db"
# Spark's Python workers run this interpreter (the pinned virtualenv), with the same PYTHONPATH.
os.environ["PYSPARK_PYTHON"] = sys.executable
# MLflow's own loader needs it for the mlflow.sklearn comparisons below (mlscore never runs a pickle).
os.environ["MLFLOW_ALLOW_PICKLE_DESERIALIZATION"] = "true"
# Every Python worker logs each model it compiles (mlscore.spark._log_load).
LOAD_LOG = os.path.join(SCRATCH, "loads.log")
os.environ["MLSCORE_SPARK_LOAD_LOG"] = LOAD_LOG
warnings.filterwarnings("ignore")

import mlscore  # noqa: E402
import mlscore.spark  # noqa: E402

SAMPLE = f"{ROOT}/models/data/customers"
FEATURES = ["age", "income", "tenure", "balance", "products", "active"]


def check(name, ok, detail=""):
    print(f"{'ok  ' if ok else 'FAIL'} {name}{': ' + str(detail) if detail and not ok else ''}", flush=True)
    if not ok:
        sys.exit(1)


def onnx_outputs(model_dir, table):
    sess = ort.InferenceSession(f"{model_dir}/model.onnx", providers=["CPUExecutionProvider"])
    x = np.column_stack([table.column(c).to_numpy(zero_copy_only=False).astype(np.float32) for c in FEATURES])
    return sess.run(None, {sess.get_inputs()[0].name: x})


def close(a, b, rel=1e-5):
    def one(x, y):
        if x is None or y is None:
            return x is None and y is None
        if isinstance(x, str) or isinstance(y, str):
            return x == y
        if math.isnan(x) or math.isnan(y):
            return math.isnan(x) and math.isnan(y)
        return math.isclose(x, y, rel_tol=rel, abs_tol=1e-6)

    return len(a) == len(b) and all(one(x, y) for x, y in zip(a, b))


# --- without Spark ---------------------------------------------------------------------------
table = pq.read_table(SAMPLE)
churn = mlscore.load_model("models/churn")
labels, probs = onnx_outputs("models/churn", table)
got = churn.predict(table, result_type="struct<label:bigint,probabilities:array<float>>")
got_labels = got.combine_chunks().field("label").to_pylist()
check("load_model().predict labels equal onnxruntime's", got_labels == labels.tolist())
got_probs = [p for row in got.combine_chunks().field("probabilities").to_pylist() for p in row]
check("load_model().predict probabilities within 1e-5 of onnxruntime's", close(got_probs, probs.ravel().tolist()))
# A table of 140k rows: three slices of at most 65,536 rows, scored on threads, in row order.
big = pa.concat_tables([table] * 140)
par = churn.predict(big, result_type="bigint", threads=4).to_pylist()
check("predict on a 140k-row table in 4 threads equals onnxruntime's labels in row order",
      par == labels.tolist() * 140)
check("... and one thread's", churn.predict(big, result_type="bigint", threads=1).to_pylist() == par)
try:
    churn.predict(big, threads=0)
    check("threads=0 is refused", False)
except ValueError as e:
    check("threads=0 is refused", "threads" in str(e), e)
try:
    churn.predict(table.drop(["income"]))
    check("a missing column is an MlscoreError", False)
except mlscore.MlscoreError as e:
    check("a missing column is an MlscoreError naming it", "income" in str(e), e)

# --- a model mlflow's ONNX spark_udf can score: the bundled ones mix boolean and numeric
# columns, which MLflow's ONNX flavor stacks into a string tensor and onnxruntime refuses. -------
import mlflow  # noqa: E402
import mlflow.onnx  # noqa: E402
from skl2onnx import to_onnx  # noqa: E402
from sklearn.linear_model import LinearRegression  # noqa: E402

NUMERIC = ["income", "balance"]
X = table.select(NUMERIC).to_pandas()
y = table.column("age").to_numpy().astype(np.float64)
onx = to_onnx(LinearRegression().fit(X.to_numpy(), y), X.to_numpy()[:1].astype(np.float32))
# Artifacts in the scratch directory too (a sqlite store's default is ./mlruns in the checkout).
mlflow.set_experiment(experiment_id=mlflow.create_experiment("spark-check", artifact_location=f"{SCRATCH}/artifacts"))
with mlflow.start_run():
    pred = ort.InferenceSession(onx.SerializeToString()).run(None, {"X": X.to_numpy().astype(np.float32)})[0]
    signature = mlflow.models.infer_signature(X, pred.ravel())
    mlflow.onnx.log_model(onx, name="model", signature=signature, registered_model_name="age_lr")
print("note logged age_lr (LinearRegression, skl2onnx) with MLflow", mlflow.__version__)

# --- on Spark --------------------------------------------------------------------------------
from pyspark.sql import SparkSession  # noqa: E402
from pyspark.sql import functions as F  # noqa: E402

import mlflow.pyfunc  # noqa: E402

spark = (
    SparkSession.builder.master("local[2]")
    .config("spark.ui.enabled", "false")
    .config("spark.sql.shuffle.partitions", "4")
    .config("spark.sql.execution.arrow.maxRecordsPerBatch", "128")
    .getOrCreate()
)
spark.sparkContext.setLogLevel("ERROR")
df = spark.read.parquet(SAMPLE).repartition(4)
check("the DataFrame has several partitions", df.rdd.getNumPartitions() == 4)

theirs = mlflow.pyfunc.spark_udf(spark, "models:/age_lr/1")
ours = mlscore.spark.spark_udf(spark, "models:/age_lr/1")
check("result_type=None infers spark_udf's type", str(ours.returnType) == str(theirs.returnType),
      (ours.returnType, theirs.returnType))


def by_id(frame, col="p"):
    return {r["customer_id"]: r[col] for r in frame.select("customer_id", col).collect()}


def same(a, b):
    if set(a) != set(b):
        return False
    flat = lambda v: v if isinstance(v, list) else [v]  # noqa: E731
    bad = [k for k in a if not close(flat(a[k]), flat(b[k]))]
    if bad:
        print(f"     e.g. row {bad[0]}: {a[bad[0]]} vs {b[bad[0]]} ({len(bad)} rows differ)")
    return not bad


want = by_id(df.withColumn("p", theirs()))
for style, args in [("udf()", ()), ("udf('a', 'b')", tuple(NUMERIC)), ("udf(struct(...))", (F.struct(*NUMERIC[::-1]),))]:
    got = by_id(df.withColumn("p", ours(*args)))
    check(f"spark_udf {style} equals mlflow's on 4 partitions", same(got, want))

theirs_d = mlflow.pyfunc.spark_udf(spark, "models:/age_lr/1", result_type="double")
ours_d = mlscore.spark.spark_udf(spark, "models:/age_lr/1", result_type="double")
check("result_type='double' equals mlflow's",
      same(by_id(df.withColumn("p", ours_d())), by_id(df.withColumn("p", theirs_d()))))

# Nulls: Spark null doubles reach MLflow's model as NaN; on_null='nan' (the default) matches it.
nulls = df.withColumn("income", F.when(F.col("customer_id") % 7 == 0, F.lit(None)).otherwise(F.col("income")))
check("null inputs score as mlflow's (NaN)",
      same(by_id(nulls.withColumn("p", ours_d())), by_id(nulls.withColumn("p", theirs_d()))))
ours_null = mlscore.spark.spark_udf(spark, "models:/age_lr/1", result_type="double", on_null="null")
got = by_id(nulls.withColumn("p", ours_null()))
check("on_null='null' gives null predictions exactly for rows with a null input",
      all((got[k] is None) == (k % 7 == 0) for k in got))

# Spark before 4.1 has no arrow_udf: spark_udf falls back to a pandas UDF, as mlflow's is.
import pyspark.sql.pandas.functions as spark_pandas_functions  # noqa: E402

arrow_udf = spark_pandas_functions.arrow_udf
del spark_pandas_functions.arrow_udf
try:
    old_d = mlscore.spark.spark_udf(spark, "models:/age_lr/1", result_type="double")
    old_struct = mlscore.spark.spark_udf(spark, "models/churn", result_type="struct<label:bigint,probabilities:array<float>>")
finally:
    spark_pandas_functions.arrow_udf = arrow_udf
for style, args in [("udf()", ()), ("udf(struct(...))", (F.struct(*NUMERIC[::-1]),))]:
    check(f"without arrow_udf (Spark < 4.1): spark_udf {style} with nulls equals mlflow's",
          same(by_id(nulls.withColumn("p", old_d(*args))), by_id(nulls.withColumn("p", theirs_d()))))
old_rows = {r["customer_id"]: (r["label"], r["probabilities"])
            for r in df.withColumn("p", old_struct()).select("customer_id", "p.label", "p.probabilities").collect()}

# A classifier: mlflow's ONNX spark_udf cannot return it (label and [N, 2] probabilities), so
# mlscore's struct result is checked against onnxruntime.
struct_type = "struct<label:bigint,probabilities:array<float>>"
try:
    df.withColumn("p", mlflow.pyfunc.spark_udf(spark, "models/churn", result_type=struct_type)()).collect()
    mlflow_fails = False
except Exception:
    mlflow_fails = True
print(f"note mlflow's spark_udf on the skl2onnx classifier {'fails' if mlflow_fails else 'works'}")
want_label = dict(zip(table.column("customer_id").to_pylist(), labels.tolist()))
want_prob = dict(zip(table.column("customer_id").to_pylist(), probs.tolist()))


def shipped_copy(name):
    """A copy of models/churn that is deleted once the UDF exists: the workers can only score
    with the files that were shipped to them."""
    path = os.path.join(SCRATCH, name)
    shutil.copytree("models/churn", path)
    return path


def check_classifier(spark, df, mode):
    path = shipped_copy(f"churn-{mode}")
    churn_udf = mlscore.spark.spark_udf(spark, path, result_type=struct_type)
    shutil.rmtree(path)
    rows = df.withColumn("p", churn_udf()).select("customer_id", "p.label", "p.probabilities").collect()
    check(f"{mode}: spark_udf struct results equal onnxruntime's labels",
          all(r["label"] == want_label[r["customer_id"]] for r in rows) and len(rows) == table.num_rows)
    check(f"{mode}: spark_udf struct results equal onnxruntime's probabilities",
          all(close(r["probabilities"], want_prob[r["customer_id"]]) for r in rows))
    if mode == "classic":
        check("without arrow_udf (Spark < 4.1): spark_udf struct results equal the Arrow UDF's",
              old_rows == {r["customer_id"]: (r["label"], r["probabilities"]) for r in rows})

    path = shipped_copy(f"churn-score-{mode}")
    scored = mlscore.spark.score(df, path, result_type="bigint")
    shutil.rmtree(path)
    check(f"{mode}: score() keeps every column and adds the prediction",
          scored.columns == df.columns + ["prediction"])
    check(f"{mode}: score() over mapInArrow equals onnxruntime's labels", by_id(scored, "prediction") == want_label)


check_classifier(spark, df, "classic")

# --- XGBoost and LightGBM models (mlflow.xgboost / mlflow.lightgbm, read natively by mlscore):
# mlscore's spark_udf against mlflow's, each with the result type inferred from the signature,
# on the cases' rows (NaNs included) over 3 partitions.
for case in ["xgb_classifier_binary", "xgb_multi_softprob", "lgb_binary"]:
    d = f"models/gbdt/{case}"
    rows = spark.read.parquet(f"{d}/input.parquet").withColumn("customer_id", F.monotonically_increasing_id())
    rows = rows.repartition(3).cache()
    theirs_g = mlflow.pyfunc.spark_udf(spark, f"{d}/model")
    ours_g = mlscore.spark.spark_udf(spark, f"{d}/model")
    check(f"{case}: spark_udf infers mlflow's result type", str(ours_g.returnType) == str(theirs_g.returnType),
          f"{ours_g.returnType} vs {theirs_g.returnType}")
    # Columns named: MLflow's spark_udf refuses a no-argument call when the signature has
    # optional columns (those with NaNs in training); mlscore's takes it.
    cols = [f"f{i}" for i in range(6)]
    got = by_id(rows.withColumn("p", ours_g(*cols)))
    try:
        want_g = by_id(rows.withColumn("p", theirs_g(*cols)))
    except Exception as e:  # noqa: BLE001
        # MLflow's spark_udf fails on some of these (a Booster's [N, k] float32 probabilities:
        # "'numpy.float32' object is not iterable"); compare with the library's own output then.
        print(f"note mlflow's spark_udf on {case} fails: {str(e).strip().splitlines()[-1][:120]}")
        golden = pq.read_table(f"{d}/golden.parquet").column("prediction").to_pylist()
        want_g = dict(enumerate(golden))
        # The inferred type is array<array<float>> (the signature's (-1, 4) tensor): mlscore
        # gives one inner array per output, so [[p0, .., p3]]; array<float> gives them flat.
        got = {k: v[0] if isinstance(v, list) and len(v) == 1 and isinstance(v[0], list) else v for k, v in got.items()}
        flat = mlscore.spark.spark_udf(spark, f"{d}/model", result_type="array<float>")
        check(f"{case}: result_type='array<float>' gives the probabilities flat",
              same(by_id(rows.withColumn("p", flat(*cols))), want_g))
    check(f"{case}: spark_udf equals mlflow's spark_udf (or the library's predict where that fails)", same(got, want_g))
    check(f"{case}: spark_udf() without columns equals it called with them",
          by_id(rows.withColumn("p", ours_g())) == by_id(rows.withColumn("p", ours_g(*cols))))
    rows.unpersist()

# --- scikit-learn models (mlflow.sklearn in cloudpickle, pickle and skops, read as data by
# mlscore; executed by MLflow's spark_udf): string labels from a pipeline over mixed columns,
# integer labels from a forest over NaNs, a regressor's values; pipelines ending with an
# XGBClassifier (skops) and an LGBMClassifier (pickle, string labels); and LightGBM's
# scikit-learn API classifiers (mlflow.lightgbm, skops and pickle): string and integer labels.
for d in ["models/sklearn/pipeline_onehot_logreg_cloudpickle", "models/sklearn/random_forest_skops",
          "models/sklearn/hist_gradient_boosting_regressor", "models/sklearn/pipeline_onehot_xgboost_skops",
          "models/sklearn/pipeline_lightgbm_strings_pickle", "models/gbdt/lgb_classifier_binary_skops",
          "models/gbdt/lgb_classifier_multiclass_pickle"]:
    case = d.rsplit("/", 1)[1]
    rows = spark.read.parquet(f"{d}/input.parquet")
    cols = rows.columns
    rows = rows.withColumn("customer_id", F.monotonically_increasing_id()).repartition(3).cache()
    try:
        theirs_s = mlflow.pyfunc.spark_udf(spark, f"{d}/model")
        ours_s = mlscore.spark.spark_udf(spark, f"{d}/model")
        check(f"{case}: spark_udf infers mlflow's result type", str(ours_s.returnType) == str(theirs_s.returnType),
              f"{ours_s.returnType} vs {theirs_s.returnType}")
    except Exception as e:  # noqa: BLE001
        # String labels: MLflow's signature says tensor<object>, which its spark_udf cannot
        # infer a type from ("Model output tensor spec type object is not supported"); both
        # are given result_type="string" then.
        print(f"note mlflow's spark_udf on {case} needs a result type: {str(e).strip().splitlines()[-1][:100]}")
        theirs_s = mlflow.pyfunc.spark_udf(spark, f"{d}/model", result_type="string")
        ours_s = mlscore.spark.spark_udf(spark, f"{d}/model")
        check(f"{case}: where mlflow's spark_udf refuses the signature, mlscore's returns the labels' own type",
              str(ours_s.returnType) == "StringType()", ours_s.returnType)
    got = by_id(rows.withColumn("p", ours_s(*cols)))
    want_s = by_id(rows.withColumn("p", theirs_s(*cols)))
    check(f"{case}: spark_udf equals mlflow's spark_udf", same(got, want_s))
    rows.unpersist()
spark.stop()

# --- over Spark Connect (what Databricks serverless and standard clusters run): no SparkContext,
# no broadcasts; the model's files travel inside the function. --------------------------------
spark = (
    SparkSession.builder.remote("local[2]")
    .config("spark.sql.shuffle.partitions", "4")
    .config("spark.sql.execution.arrow.maxRecordsPerBatch", "128")
    .getOrCreate()
)
check("connect: the session is a Spark Connect client", type(spark).__module__.startswith("pyspark.sql.connect"),
      type(spark))
df = spark.read.parquet(SAMPLE).repartition(4)
ours = mlscore.spark.spark_udf(spark, "models:/age_lr/1")
for style, args in [("udf()", ()), ("udf('a', 'b')", tuple(NUMERIC)), ("udf(struct(...))", (F.struct(*NUMERIC[::-1]),))]:
    got = by_id(df.withColumn("p", ours(*args)))
    check(f"connect: spark_udf {style} equals mlflow's (classic) spark_udf", same(got, want))
check_classifier(spark, df, "connect")
spark.stop()

with open(LOAD_LOG) as f:
    loads = [tuple(line.split()) for line in f]
pids = {pid for pid, _ in loads}
check(f"no Python worker compiled a model twice ({len(loads)} compilations in {len(pids)} workers, classic and Connect)",
      len(loads) == len(set(loads)) and len(loads) > 0, loads)
print("all checks passed")
