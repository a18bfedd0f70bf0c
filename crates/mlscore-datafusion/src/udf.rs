//! `predict(...)` as a DataFusion scalar UDF, with `mlflow.pyfunc.spark_udf`'s call styles.
//!
//! | call | the model receives |
//! |---|---|
//! | `churn()` | the signature's input columns, by name (rewritten at plan time) |
//! | `churn(age, income, region)` | the arguments by position, named as the signature's inputs |
//! | `churn(named_struct('income', x, 'age', y, ...))` / `churn(s)` | the struct's fields, by name |
//!
//! Types are checked when the query is planned, with MLflow's conversion matrix, so a query
//! that can never succeed fails before any data is read, naming the column.
//!
//! The UDF is `Immutable`: the same inputs give the same prediction, so DataFusion may share
//! it between identical expressions, but never evaluates it without its column arguments.

use std::collections::BTreeSet;
use std::fmt;
use std::hash::{Hash, Hasher};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use datafusion::arrow::array::{Array, ArrayRef, AsArray};
use datafusion::arrow::datatypes::{DataType, Field, FieldRef, Schema};
use datafusion::common::tree_node::Transformed;
use datafusion::common::{DFSchema, DataFusionError, Result as DfResult};
use datafusion::config::ConfigOptions;
use datafusion::logical_expr::expr::ScalarFunction;
use datafusion::logical_expr::expr_rewriter::FunctionRewrite;
use datafusion::logical_expr::{
    ColumnarValue, Expr, ReturnFieldArgs, ScalarFunctionArgs, ScalarUDF, ScalarUDFImpl, Signature, TypeSignature,
    Volatility,
};
use mlscore_core::{NullPolicy, ResultType, Scorer, positional_frame};

/// Options of one model's UDF.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct PredictOptions {
    /// The Spark type of the result; `None` infers it from the model's outputs.
    pub result_type: Option<ResultType>,
    /// What nulls in the inputs mean.
    pub null_policy: NullPolicy,
}

/// Counters a UDF keeps while a query runs.
#[derive(Debug, Default)]
pub struct PredictStats {
    /// Rows scored.
    pub rows: AtomicU64,
    /// Rows that had a null input (null predictions, or NaN inputs).
    pub null_rows: AtomicU64,
    /// Batches scored.
    pub batches: AtomicU64,
    warnings: Mutex<BTreeSet<String>>,
}

impl PredictStats {
    /// Plan-time warnings (e.g. positional arguments whose names differ from the signature).
    pub fn warnings(&self) -> Vec<String> {
        self.warnings.lock().map(|w| w.iter().cloned().collect()).unwrap_or_default()
    }

    fn warn(&self, w: impl IntoIterator<Item = String>) {
        if let Ok(mut set) = self.warnings.lock() {
            set.extend(w);
        }
    }
}

/// The scalar UDF of one loaded model.
pub struct PredictUdf {
    name: String,
    model: Arc<dyn Scorer>,
    options: PredictOptions,
    signature: Signature,
    stats: Arc<PredictStats>,
}

impl fmt::Debug for PredictUdf {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("PredictUdf")
            .field("name", &self.name)
            .field("model", &self.model.uri())
            .field("options", &self.options)
            .finish()
    }
}

impl PartialEq for PredictUdf {
    fn eq(&self, other: &Self) -> bool {
        self.name == other.name
            && std::ptr::addr_eq(Arc::as_ptr(&self.model), Arc::as_ptr(&other.model))
            && self.options == other.options
    }
}
impl Eq for PredictUdf {}

impl Hash for PredictUdf {
    fn hash<H: Hasher>(&self, state: &mut H) {
        self.name.hash(state);
        self.model.artifact_sha256().hash(state);
    }
}

impl PredictUdf {
    /// A UDF named `name` that scores with `model`.
    pub fn new(name: impl Into<String>, model: Arc<dyn Scorer>, options: PredictOptions) -> Self {
        Self {
            name: name.into(),
            model,
            options,
            signature: Signature::one_of(
                vec![TypeSignature::Nullary, TypeSignature::VariadicAny],
                Volatility::Immutable,
            ),
            stats: Arc::new(PredictStats::default()),
        }
    }

    /// The model.
    pub fn model(&self) -> &Arc<dyn Scorer> {
        &self.model
    }

    /// The counters, shared with every copy of this UDF.
    pub fn stats(&self) -> Arc<PredictStats> {
        self.stats.clone()
    }

    /// The options.
    pub fn options(&self) -> &PredictOptions {
        &self.options
    }

    /// The result type this UDF returns.
    pub fn result_type(&self) -> DfResult<ResultType> {
        match &self.options.result_type {
            Some(t) => Ok(t.clone()),
            None => self.model.default_result_type().map_err(external),
        }
    }

    /// The frame the model sees for these argument fields, and where each frame column comes from.
    fn frame(&self, args: &[FieldRef]) -> DfResult<(Schema, Vec<Source>, Vec<String>)> {
        if let [only] = args
            && let DataType::Struct(fields) = only.data_type()
        {
            let sources = (0..fields.len()).map(Source::StructField).collect();
            return Ok((Schema::new(fields.clone()), sources, Vec::new()));
        }
        let schema = Schema::new(args.iter().map(|f| f.as_ref().clone()).collect::<Vec<Field>>());
        let names: Vec<String> = args.iter().map(|f| f.name().clone()).collect();
        let (frame, indices, warnings) = positional_frame(self.model.as_ref(), &schema, &names).map_err(external)?;
        Ok((frame, indices.into_iter().map(Source::Arg).collect(), warnings))
    }
}

#[derive(Debug, Clone, Copy)]
enum Source {
    Arg(usize),
    StructField(usize),
}

fn external(e: mlscore_core::Error) -> DataFusionError {
    DataFusionError::External(Box::new(e))
}

impl ScalarUDFImpl for PredictUdf {
    fn name(&self) -> &str {
        &self.name
    }

    fn signature(&self) -> &Signature {
        &self.signature
    }

    fn return_type(&self, _arg_types: &[DataType]) -> DfResult<DataType> {
        Ok(self.result_type()?.arrow_type())
    }

    fn return_field_from_args(&self, args: ReturnFieldArgs<'_>) -> DfResult<FieldRef> {
        let ty = self.result_type()?;
        if !args.arg_fields.is_empty() {
            // Plan-time binding: missing columns and refused types fail here, before any data is read.
            let (frame, _, warnings) = self.frame(args.arg_fields)?;
            self.model.bind(&frame).map_err(external)?;
            self.stats.warn(warnings.into_iter().map(|w| format!("{}: {w}", self.name)));
        }
        Ok(Arc::new(Field::new(self.name.clone(), ty.arrow_type(), true)))
    }

    fn invoke_with_args(&self, args: ScalarFunctionArgs) -> DfResult<ColumnarValue> {
        let rows = args.number_rows;
        if args.args.is_empty() {
            return Err(DataFusionError::Plan(format!(
                "{}() was not given columns: call it with the model's input columns, e.g. {}({})",
                self.name,
                self.name,
                self.model.input_names().join(", ")
            )));
        }
        let arrays: Vec<ArrayRef> = args.args.iter().map(|a| a.to_array(rows)).collect::<DfResult<_>>()?;
        let (frame, sources, _) = self.frame(&args.arg_fields)?;
        let columns: Vec<ArrayRef> = sources
            .iter()
            .map(|s| match s {
                Source::Arg(i) => arrays[*i].clone(),
                Source::StructField(i) => arrays[0].as_struct().column(*i).clone(),
            })
            .collect();
        let binding = self.model.bind(&frame).map_err(external)?;
        let prediction = self.model.predict(&binding, &columns, self.options.null_policy).map_err(external)?;
        let ty = self.result_type()?;
        let result = self.model.convert(&ty, &prediction.outputs).map_err(external)?;
        self.stats.rows.fetch_add(rows as u64, Ordering::Relaxed);
        self.stats.null_rows.fetch_add(prediction.null_rows as u64, Ordering::Relaxed);
        self.stats.batches.fetch_add(1, Ordering::Relaxed);
        debug_assert_eq!(result.len(), rows);
        Ok(ColumnarValue::Array(result))
    }
}

/// Builds the UDF of a model: register it with `ctx.register_udf(...)`.
pub fn predict_udf(name: &str, model: Arc<dyn Scorer>, options: PredictOptions) -> ScalarUDF {
    ScalarUDF::new_from_impl(PredictUdf::new(name, model, options))
}

/// Rewrites `model()` (no arguments) to `model(<signature input columns>)`, resolving the
/// columns in the schema of the plan the call sits in.
#[derive(Debug, Default)]
pub struct NoArgumentCalls;

impl FunctionRewrite for NoArgumentCalls {
    fn name(&self) -> &str {
        "mlscore_no_argument_predict"
    }

    fn rewrite(&self, expr: Expr, schema: &DFSchema, _config: &ConfigOptions) -> DfResult<Transformed<Expr>> {
        let Expr::ScalarFunction(ScalarFunction { func, args }) = &expr else {
            return Ok(Transformed::no(expr));
        };
        let Some(udf) = func.inner().downcast_ref::<PredictUdf>() else {
            return Ok(Transformed::no(expr));
        };
        if !args.is_empty() {
            return Ok(Transformed::no(expr));
        }
        let sig_inputs = udf.model.signature().and_then(|s| s.inputs.as_ref());
        let names = udf.model.input_names();
        let optional = sig_inputs.and_then(|s| s.columns()).is_some_and(|c| c.iter().any(|c| !c.required));
        if names.is_empty() || optional {
            return Err(DataFusionError::Plan(format!(
                "Attempting to apply {}() on zero columns: the model has {}; pass its input columns explicitly",
                udf.name,
                if optional { "optional inputs" } else { "no named input signature" }
            )));
        }
        let mut new_args = Vec::with_capacity(names.len());
        let mut missing = Vec::new();
        for n in &names {
            match schema.qualified_field_with_unqualified_name(n) {
                Ok((qualifier, field)) => {
                    new_args.push(Expr::Column(datafusion::common::Column::new(qualifier.cloned(), field.name())))
                }
                Err(_) => missing.push(n.to_string()),
            }
        }
        if !missing.is_empty() {
            let have: Vec<String> = schema.fields().iter().map(|f| f.name().clone()).collect();
            return Err(external(mlscore_core::Error::MissingColumns {
                missing,
                extra: have.into_iter().filter(|h| !names.contains(h)).collect(),
                hint: format!(
                    "{}() reads the signature's input columns by name; pass columns explicitly instead",
                    udf.name
                ),
            }));
        }
        Ok(Transformed::yes(Expr::ScalarFunction(ScalarFunction { func: func.clone(), args: new_args })))
    }
}
