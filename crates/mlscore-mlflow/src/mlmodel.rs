//! The `MLmodel` file: flavors, signature and the rest of a logged model's metadata.
//!
//! Every key MLflow 3 writes is read; unknown keys are ignored, as MLflow itself keeps them
//! without interpreting them. The file is read leniently where MLflow is lenient (a version
//! written as a YAML number, `env` as a plain string before MLflow 2) and strictly where a
//! wrong value would change what is scored.
//!
//! ```
//! use mlscore_mlflow::MlModel;
//! let m = MlModel::from_yaml_str(r#"
//! flavors:
//!   onnx: {data: model.onnx, onnx_version: 1.23.2, providers: [CPUExecutionProvider]}
//!   python_function: {loader_module: mlflow.onnx, data: model.onnx}
//! signature:
//!   inputs: '[{"type": "double", "name": "x"}]'
//!   outputs: null
//!   params: null
//! some_future_key: ignored
//! "#)?;
//! assert_eq!(m.onnx_flavor()?.unwrap().data.as_deref(), Some("model.onnx"));
//! assert!(m.signature.as_ref().unwrap().inputs.is_some());
//! # Ok::<(), mlscore_mlflow::Error>(())
//! ```

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use serde_yaml::{Mapping, Value};

use crate::error::{Error, Result};
use crate::signature::{ParamSchema, Schema, Signature};

/// The parsed `MLmodel` file.
#[derive(Debug, Clone, Default)]
pub struct MlModel {
    /// `artifact_path`: in MLflow 3 logged models, the full artifact URI.
    pub artifact_path: Option<String>,
    /// Flavor name -> its configuration, as YAML.
    pub flavors: BTreeMap<String, Value>,
    /// `model_uuid`.
    pub model_uuid: Option<String>,
    /// `model_id` (`m-<32 hex>`) for MLflow 3 logged models.
    pub model_id: Option<String>,
    /// `run_id` of the run that logged the model.
    pub run_id: Option<String>,
    /// `utc_time_created`, as written (naive UTC).
    pub utc_time_created: Option<String>,
    /// `mlflow_version` that wrote the file.
    pub mlflow_version: Option<String>,
    /// The decoded signature.
    pub signature: Option<Signature>,
    /// `is_signature_from_type_hint`: if true MLflow does not enforce the signature on data.
    pub is_signature_from_type_hint: bool,
    /// `type_hint_from_example`.
    pub type_hint_from_example: bool,
    /// `saved_input_example_info`.
    pub saved_input_example_info: Option<InputExampleInfo>,
    /// `metadata`, free-form.
    pub metadata: Option<Value>,
    /// `model_size_bytes`.
    pub model_size_bytes: Option<u64>,
    /// `databricks_runtime`, when saved on Databricks.
    pub databricks_runtime: Option<String>,
    /// `env_vars`, `prompts`, `resources`, `auth_policy`: kept as YAML.
    pub extra: BTreeMap<String, Value>,
}

/// Where the input example was saved.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct InputExampleInfo {
    /// File of the example, relative to the model directory.
    pub artifact_path: Option<String>,
    /// `dataframe`, `ndarray` or `json_object`.
    pub kind: Option<String>,
    /// pandas orient, `split`.
    pub pandas_orient: Option<String>,
    /// File of the ready-made `/invocations` body.
    pub serving_input_path: Option<String>,
}

/// The `python_function` flavor.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct PyFuncFlavor {
    /// `loader_module`, e.g. `mlflow.onnx`.
    pub loader_module: String,
    /// `python_version`.
    pub python_version: Option<String>,
    /// `data`: path of the model data, relative to the model directory.
    pub data: Option<String>,
    /// `code`.
    pub code: Option<String>,
    /// `env`: environment files (a plain path before MLflow 2).
    pub env: BTreeMap<String, String>,
    /// `predict_fn` (sklearn): the estimator method pyfunc calls.
    pub predict_fn: Option<String>,
    /// `model_config`.
    pub model_config: Option<Value>,
    /// `streamable`.
    pub streamable: bool,
}

/// The `onnx` flavor.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct OnnxFlavor {
    /// `onnx_version`.
    pub onnx_version: Option<String>,
    /// `data`: the ONNX file, relative to the model directory.
    pub data: Option<String>,
    /// Execution providers, in preference order (options of `[name, {options}]` entries dropped).
    pub providers: Vec<String>,
    /// `onnx_session_options`.
    pub session_options: Option<OnnxSessionOptions>,
    /// `code`.
    pub code: Option<String>,
}

/// `onnx_session_options` of the onnx flavor.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct OnnxSessionOptions {
    /// `intra_op_num_threads`: threads inside one operator.
    pub intra_op_num_threads: Option<u32>,
    /// `inter_op_num_threads`.
    pub inter_op_num_threads: Option<u32>,
    /// `execution_mode`: `sequential` or `parallel`, lower-cased.
    pub execution_mode: Option<String>,
    /// `graph_optimization_level` (0, 1, 2 or 99).
    pub graph_optimization_level: Option<i64>,
    /// `extra_session_config`.
    pub extra_session_config: BTreeMap<String, String>,
}

/// The `sklearn` flavor.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct SklearnFlavor {
    /// `pickled_model`: the serialized estimator's file name.
    pub pickled_model: Option<String>,
    /// `sklearn_version`.
    pub sklearn_version: Option<String>,
    /// `serialization_format`: `skops`, `pickle` or `cloudpickle` (missing means pickle).
    pub serialization_format: String,
    /// `code`.
    pub code: Option<String>,
}

/// The `xgboost` flavor (`mlflow.xgboost`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct XgboostFlavor {
    /// `data`: the model file, relative to the model directory (`model.xgb` before MLflow 2.6).
    pub data: String,
    /// `model_class`: `xgboost.core.Booster` (also what a missing key means) or a sklearn-API
    /// class such as `xgboost.sklearn.XGBClassifier`, which decides what pyfunc's predict returns.
    pub model_class: String,
    /// `model_format`: `ubj`, `json` or `xgb` (the file's bytes decide what it really is).
    pub model_format: Option<String>,
    /// `xgb_version`.
    pub xgb_version: Option<String>,
}

/// The `lightgbm` flavor (`mlflow.lightgbm`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LightgbmFlavor {
    /// `data`: the model file, relative to the model directory.
    pub data: String,
    /// `model_class`: `lightgbm.basic.Booster` (a text model in `data`) or a sklearn-API class
    /// (`lightgbm.sklearn.LGBMClassifier`, ...), serialized as `serialization_format` says.
    pub model_class: String,
    /// `serialization_format` (`skops`, `pickle`, `cloudpickle`; written even for Boosters,
    /// whose file is text whatever it says).
    pub serialization_format: Option<String>,
    /// `lgb_version`.
    pub lgb_version: Option<String>,
}

impl MlModel {
    /// Reads and parses an `MLmodel` file.
    pub fn from_path(path: &Path) -> Result<Self> {
        let text = std::fs::read_to_string(path).map_err(|e| Error::io("cannot read MLmodel file", path, e))?;
        Self::parse(&text).map_err(|reason| Error::InvalidMlModel { path: path.to_path_buf(), reason })
    }

    /// Parses the text of an `MLmodel` file.
    pub fn from_yaml_str(text: &str) -> Result<Self> {
        Self::parse(text).map_err(|reason| Error::InvalidMlModel { path: PathBuf::from("MLmodel"), reason })
    }

    fn parse(text: &str) -> std::result::Result<Self, String> {
        let doc: Value = serde_yaml::from_str(text).map_err(|e| format!("not valid YAML: {e}"))?;
        let Value::Mapping(map) = doc else {
            return Err("expected a YAML mapping at the top level".into());
        };
        let flavors = match map.get("flavors") {
            Some(Value::Mapping(f)) if !f.is_empty() => f
                .iter()
                .map(|(k, v)| Ok((scalar(k).ok_or("a flavor name is not a string")?, v.clone())))
                .collect::<std::result::Result<BTreeMap<_, _>, String>>()?,
            Some(Value::Mapping(_)) => return Err("'flavors' is empty".into()),
            Some(_) => {
                return Err("'flavors' must be a mapping of flavor name to configuration".into());
            }
            None => return Err("no 'flavors' key: this is not an MLflow model".into()),
        };
        let signature = match map.get("signature") {
            None | Some(Value::Null) => None,
            Some(Value::Mapping(s)) => Some(parse_signature(s)?),
            Some(_) => {
                return Err("'signature' must be a mapping with inputs, outputs and params".into());
            }
        };
        let saved_input_example_info = match map.get("saved_input_example_info") {
            Some(Value::Mapping(m)) => Some(InputExampleInfo {
                artifact_path: get_str(m, "artifact_path"),
                kind: get_str(m, "type"),
                pandas_orient: get_str(m, "pandas_orient"),
                serving_input_path: get_str(m, "serving_input_path"),
            }),
            _ => None,
        };
        let mut extra = BTreeMap::new();
        for key in ["env_vars", "prompts", "resources", "auth_policy"] {
            if let Some(v) = map.get(key).filter(|v| !v.is_null()) {
                extra.insert(key.to_string(), v.clone());
            }
        }
        Ok(Self {
            artifact_path: get_str(&map, "artifact_path"),
            flavors,
            model_uuid: get_str(&map, "model_uuid"),
            model_id: get_str(&map, "model_id"),
            run_id: get_str(&map, "run_id"),
            utc_time_created: get_str(&map, "utc_time_created"),
            mlflow_version: get_str(&map, "mlflow_version"),
            signature,
            is_signature_from_type_hint: get_bool(&map, "is_signature_from_type_hint"),
            type_hint_from_example: get_bool(&map, "type_hint_from_example"),
            saved_input_example_info,
            metadata: map.get("metadata").filter(|v| !v.is_null()).cloned(),
            model_size_bytes: map.get("model_size_bytes").and_then(Value::as_u64),
            databricks_runtime: get_str(&map, "databricks_runtime"),
            extra,
        })
    }

    /// The flavor names, sorted.
    pub fn flavor_names(&self) -> Vec<&str> {
        self.flavors.keys().map(String::as_str).collect()
    }

    /// The `python_function` flavor, if the model has one.
    pub fn pyfunc_flavor(&self) -> Result<Option<PyFuncFlavor>> {
        let Some(conf) = self.flavors.get("python_function") else {
            return Ok(None);
        };
        let m = flavor_map("python_function", conf)?;
        let loader_module = get_str(m, "loader_module").ok_or_else(|| Error::InvalidMlModel {
            path: PathBuf::from("MLmodel"),
            reason: "flavor python_function has no loader_module".into(),
        })?;
        let env = match m.get("env") {
            Some(Value::Mapping(e)) => e.iter().filter_map(|(k, v)| Some((scalar(k)?, scalar(v)?))).collect(),
            Some(v) => scalar(v).map(|p| BTreeMap::from([("conda".to_string(), p)])).unwrap_or_default(),
            None => BTreeMap::new(),
        };
        Ok(Some(PyFuncFlavor {
            loader_module,
            python_version: get_str(m, "python_version"),
            data: get_str(m, "data"),
            code: get_str(m, "code"),
            env,
            predict_fn: get_str(m, "predict_fn"),
            model_config: m.get("model_config").filter(|v| !v.is_null()).cloned(),
            streamable: get_bool(m, "streamable"),
        }))
    }

    /// The `onnx` flavor, if the model has one.
    pub fn onnx_flavor(&self) -> Result<Option<OnnxFlavor>> {
        let Some(conf) = self.flavors.get("onnx") else {
            return Ok(None);
        };
        let m = flavor_map("onnx", conf)?;
        // A providers string becomes a 1-list; `[name, {options}]` entries keep their name.
        let providers = match m.get("providers") {
            Some(Value::Sequence(seq)) => seq
                .iter()
                .filter_map(|p| match p {
                    Value::Sequence(pair) => pair.first().and_then(scalar),
                    other => scalar(other),
                })
                .collect(),
            Some(v) => scalar(v).into_iter().collect(),
            None => Vec::new(),
        };
        let session_options = match m.get("onnx_session_options") {
            Some(Value::Mapping(o)) => Some(OnnxSessionOptions {
                intra_op_num_threads: o.get("intra_op_num_threads").and_then(Value::as_u64).map(|v| v as u32),
                inter_op_num_threads: o.get("inter_op_num_threads").and_then(Value::as_u64).map(|v| v as u32),
                execution_mode: get_str(o, "execution_mode").map(|s| s.to_lowercase()),
                graph_optimization_level: o.get("graph_optimization_level").and_then(Value::as_i64),
                extra_session_config: match o.get("extra_session_config") {
                    Some(Value::Mapping(e)) => e.iter().filter_map(|(k, v)| Some((scalar(k)?, scalar(v)?))).collect(),
                    _ => BTreeMap::new(),
                },
            }),
            _ => None,
        };
        Ok(Some(OnnxFlavor {
            onnx_version: get_str(m, "onnx_version"),
            data: get_str(m, "data"),
            providers,
            session_options,
            code: get_str(m, "code"),
        }))
    }

    /// The `sklearn` flavor, if the model has one.
    pub fn sklearn_flavor(&self) -> Result<Option<SklearnFlavor>> {
        let Some(conf) = self.flavors.get("sklearn") else {
            return Ok(None);
        };
        let m = flavor_map("sklearn", conf)?;
        Ok(Some(SklearnFlavor {
            pickled_model: get_str(m, "pickled_model"),
            sklearn_version: get_str(m, "sklearn_version"),
            serialization_format: get_str(m, "serialization_format").unwrap_or_else(|| "pickle".into()),
            code: get_str(m, "code"),
        }))
    }

    /// The `xgboost` flavor, if the model has one.
    pub fn xgboost_flavor(&self) -> Result<Option<XgboostFlavor>> {
        let Some(conf) = self.flavors.get("xgboost") else {
            return Ok(None);
        };
        let m = flavor_map("xgboost", conf)?;
        Ok(Some(XgboostFlavor {
            data: get_str(m, "data").unwrap_or_else(|| "model.xgb".into()),
            model_class: get_str(m, "model_class").unwrap_or_else(|| "xgboost.core.Booster".into()),
            model_format: get_str(m, "model_format"),
            xgb_version: get_str(m, "xgb_version"),
        }))
    }

    /// The `lightgbm` flavor, if the model has one.
    pub fn lightgbm_flavor(&self) -> Result<Option<LightgbmFlavor>> {
        let Some(conf) = self.flavors.get("lightgbm") else {
            return Ok(None);
        };
        let m = flavor_map("lightgbm", conf)?;
        Ok(Some(LightgbmFlavor {
            data: get_str(m, "data").unwrap_or_else(|| "model.lgb".into()),
            model_class: get_str(m, "model_class").unwrap_or_else(|| "lightgbm.basic.Booster".into()),
            serialization_format: get_str(m, "serialization_format"),
            lgb_version: get_str(m, "lgb_version"),
        }))
    }

    /// Whether `metadata` marks the model as external (`mlflow.model.is_external: true`):
    /// MLflow refuses to load such models, and so does mlscore.
    pub fn is_external(&self) -> bool {
        let Some(Value::Mapping(m)) = &self.metadata else {
            return false;
        };
        matches!(m.get("mlflow.model.is_external"), Some(Value::Bool(true)))
            || matches!(m.get("mlflow.model.is_external").and_then(scalar).as_deref(), Some("true" | "True"))
    }
}

fn parse_signature(s: &Mapping) -> std::result::Result<Signature, String> {
    let doc = |key: &str| -> std::result::Result<Option<String>, String> {
        match s.get(key) {
            None | Some(Value::Null) => Ok(None),
            Some(Value::String(j)) => Ok(Some(j.clone())),
            Some(_) => Err(format!("signature.{key} must be a JSON string")),
        }
    };
    let decode = |part: &'static str| -> std::result::Result<Option<Schema>, String> {
        doc(part)?.map(|j| Schema::from_json(part, &j).map_err(|e| e.to_string())).transpose()
    };
    Ok(Signature {
        inputs: decode("inputs")?,
        outputs: decode("outputs")?,
        params: doc("params")?.map(|j| ParamSchema::from_json(&j).map_err(|e| e.to_string())).transpose()?,
    })
}

fn flavor_map<'a>(name: &str, conf: &'a Value) -> Result<&'a Mapping> {
    conf.as_mapping().ok_or_else(|| Error::InvalidMlModel {
        path: PathBuf::from("MLmodel"),
        reason: format!("flavor {name} must be a mapping"),
    })
}

/// A YAML scalar as a string (numbers and booleans too: `mlflow_version: 2.10` is a float in YAML).
fn scalar(v: &Value) -> Option<String> {
    match v {
        Value::String(s) => Some(s.clone()),
        Value::Number(n) => Some(n.to_string()),
        Value::Bool(b) => Some(b.to_string()),
        _ => None,
    }
}

fn get_str(m: &Mapping, key: &str) -> Option<String> {
    m.get(key).and_then(scalar)
}

fn get_bool(m: &Mapping, key: &str) -> bool {
    matches!(m.get(key), Some(Value::Bool(true)))
}

#[cfg(test)]
mod tests {
    use super::*;

    const LOGGED: &str = r#"
artifact_path: /tmp/exp/mlruns/0/models/m-be2c9a05a72648d9b7b0c17e80b73f3c/artifacts
flavors:
  onnx:
    code: null
    data: model.onnx
    onnx_session_options: {intra_op_num_threads: 1, execution_mode: SEQUENTIAL, extra_session_config: {a: b}}
    onnx_version: 1.23.2
    providers:
    - CUDAExecutionProvider
    - [CPUExecutionProvider, {arena_extend_strategy: kSameAsRequested}]
  python_function:
    data: model.onnx
    env:
      conda: conda.yaml
      virtualenv: python_env.yaml
    loader_module: mlflow.onnx
    python_version: 3.11.7
is_signature_from_type_hint: false
mlflow_version: 3.17.2
model_id: m-be2c9a05a72648d9b7b0c17e80b73f3c
model_size_bytes: 944
model_uuid: m-be2c9a05a72648d9b7b0c17e80b73f3c
prompts: null
run_id: 2e85721fe3f3431da3081f67bea4eb01
saved_input_example_info:
  artifact_path: input_example.json
  pandas_orient: split
  serving_input_path: serving_input_example.json
  type: dataframe
signature:
  inputs: '[{"type": "long", "name": "age", "required": true}, {"type": "double",
    "name": "income", "required": true}]'
  outputs: '[{"type": "tensor", "tensor-spec": {"dtype": "int64", "shape": [-1]}}]'
  params: null
type_hint_from_example: false
utc_time_created: '2026-11-22 14:17:23.048664'
a_key_from_the_future: {x: 1}
"#;

    #[test]
    fn a_logged_onnx_model_is_read_whole() {
        let m = MlModel::from_yaml_str(LOGGED).unwrap();
        assert_eq!(m.flavor_names(), ["onnx", "python_function"]);
        assert_eq!(m.model_id.as_deref(), Some("m-be2c9a05a72648d9b7b0c17e80b73f3c"));
        assert_eq!(m.run_id.as_deref(), Some("2e85721fe3f3431da3081f67bea4eb01"));
        assert_eq!(m.mlflow_version.as_deref(), Some("3.17.2"));
        assert_eq!(m.model_size_bytes, Some(944));
        assert_eq!(m.utc_time_created.as_deref(), Some("2026-11-22 14:17:23.048664"));
        let onnx = m.onnx_flavor().unwrap().unwrap();
        assert_eq!(onnx.providers, ["CUDAExecutionProvider", "CPUExecutionProvider"]);
        let so = onnx.session_options.unwrap();
        assert_eq!(so.intra_op_num_threads, Some(1));
        assert_eq!(so.execution_mode.as_deref(), Some("sequential"));
        assert_eq!(so.extra_session_config.get("a").map(String::as_str), Some("b"));
        let pyfunc = m.pyfunc_flavor().unwrap().unwrap();
        assert_eq!(pyfunc.loader_module, "mlflow.onnx");
        assert_eq!(pyfunc.env.get("virtualenv").map(String::as_str), Some("python_env.yaml"));
        let sig = m.signature.clone().unwrap();
        assert_eq!(sig.inputs.unwrap().names(), ["age", "income"]);
        assert!(sig.outputs.unwrap().tensors().is_some());
        assert!(sig.params.is_none());
        assert_eq!(m.saved_input_example_info.as_ref().unwrap().kind.as_deref(), Some("dataframe"));
        assert!(!m.is_external());
    }

    #[test]
    fn old_and_odd_forms_are_accepted() {
        let m = MlModel::from_yaml_str(
            "flavors: {python_function: {loader_module: mlflow.sklearn, env: conda.yaml}, onnx: {providers: CPUExecutionProvider}}\nmlflow_version: 2.10\nmetadata: {mlflow.model.is_external: true}\n",
        )
        .unwrap();
        assert_eq!(m.pyfunc_flavor().unwrap().unwrap().env.get("conda").map(String::as_str), Some("conda.yaml"));
        assert_eq!(m.onnx_flavor().unwrap().unwrap().providers, ["CPUExecutionProvider"]);
        assert_eq!(m.mlflow_version.as_deref(), Some("2.1"));
        assert!(m.is_external());
    }

    #[test]
    fn broken_files_say_what_is_wrong() {
        for (text, expected) in [
            ("flavors: [", "not valid YAML"),
            ("- a\n- b\n", "mapping at the top level"),
            ("run_id: x\n", "no 'flavors' key"),
            ("flavors: {}\n", "'flavors' is empty"),
            (
                "flavors: {onnx: {}}\nsignature: {inputs: '[{\"type\": \"nope\", \"name\": \"a\"}]'}\n",
                "unknown type 'nope'",
            ),
            ("flavors: {onnx: {}}\nsignature: {inputs: 3}\n", "must be a JSON string"),
        ] {
            let err = MlModel::from_yaml_str(text).unwrap_err().to_string();
            assert!(err.contains(expected), "{text}: {err}");
        }
    }
}
