//! `mlscore inspect`: what a model URI resolves to and what the model takes and returns.

use clap::Args;
use mlscore_mlflow::{MlflowModel, Schema, resolve};
use std::sync::Arc;

use mlscore_core::{ResultType, Scorer};
use serde_json::json;

/// Arguments of `mlscore inspect`.
#[derive(Debug, Args)]
pub(crate) struct InspectArgs {
    /// The model: a path or an MLflow model URI.
    #[arg(value_name = "MODEL_URI")]
    model: String,
    /// Print JSON instead of text.
    #[arg(long)]
    json: bool,
}

pub(crate) fn run(args: &InspectArgs) -> anyhow::Result<()> {
    let resolution = resolve(&args.model, crate::stores())?;
    let mlflow = MlflowModel::open(resolution)?;
    // Load it with its format's front end too: inspect says whether the model can be scored, and why not.
    let compiled = mlscore_formats::from_mlflow(mlflow.clone());
    let report = describe(&mlflow, compiled.as_ref().ok());
    if args.json {
        let mut value = report;
        if let Err(e) = &compiled {
            value["error"] = json!(e.to_string());
        }
        println!("{}", serde_json::to_string_pretty(&value)?);
    } else {
        print_text(&report);
    }
    compiled.map(|_| ()).map_err(Into::into)
}

fn schema_json(s: Option<&Schema>) -> serde_json::Value {
    match s {
        None => serde_json::Value::Null,
        Some(Schema::Columns(cols)) => cols
            .iter()
            .enumerate()
            .map(|(i, c)| json!({"name": c.name.clone().unwrap_or_else(|| format!("[{i}]")), "type": c.ty.to_string(), "required": c.required}))
            .collect(),
        Some(Schema::Tensors(ts)) => ts
            .iter()
            .enumerate()
            .map(|(i, t)| json!({"name": t.name.clone().unwrap_or_else(|| format!("[{i}]")), "type": format!("tensor<{}>", t.dtype), "shape": t.shape}))
            .collect(),
    }
}

fn describe(m: &MlflowModel, compiled: Option<&Arc<dyn Scorer>>) -> serde_json::Value {
    let r = &m.resolution;
    let mut v = json!({
        "uri": r.uri,
        "resolved": {
            "store": r.store,
            "registered_model": r.registered.as_ref().map(|(n, v)| json!({"name": n, "version": v})),
            "run_id": r.run_id,
            "model_id": r.model_id,
            "artifact_location": r.artifact_location,
            "local_path": r.local_path.display().to_string(),
            "steps": r.steps,
        },
        "format": m.format.name(),
        "model_file": m.format.path().map(|p| p.display().to_string()),
    });
    if let Some(mm) = &m.mlmodel {
        let flavors: serde_json::Map<String, serde_json::Value> = mm
            .flavors
            .iter()
            .map(|(k, conf)| (k.clone(), serde_json::to_value(conf).unwrap_or(serde_json::Value::Null)))
            .collect();
        v["mlmodel"] = json!({
            "flavors": flavors,
            "mlflow_version": mm.mlflow_version,
            "utc_time_created": mm.utc_time_created,
            "run_id": mm.run_id,
            "model_id": mm.model_id,
            "model_uuid": mm.model_uuid,
            "signature_from_type_hint": mm.is_signature_from_type_hint,
        });
        let sig = mm.signature.as_ref();
        v["signature"] = json!({
            "inputs": schema_json(sig.and_then(|s| s.inputs.as_ref())),
            "outputs": schema_json(sig.and_then(|s| s.outputs.as_ref())),
            "params": sig.and_then(|s| s.params.as_ref()).map(|p| p.params.iter().map(|p| json!({"name": p.name, "type": p.ty.to_string(), "default": p.default, "shape": p.shape})).collect::<Vec<_>>()),
        });
        v["spark_udf_result_type"] = match ResultType::infer_from_signature(sig.and_then(|s| s.outputs.as_ref())) {
            Ok(t) => json!(t.to_string()),
            Err(e) => json!(format!("cannot be inferred: {e}")),
        };
    }
    if let Some(model) = compiled {
        v["artifact_sha256"] = json!(model.artifact_sha256());
        if let Some(onnx) = model.as_any().downcast_ref::<mlscore_onnx::Model>() {
            let g = onnx.graph();
            let io = |specs: &[mlscore_onnx::IoSpec]| {
                specs.iter().map(|s| json!({"name": s.name, "type": s.type_text})).collect::<Vec<_>>()
            };
            v["onnx"] = json!({
                "producer": g.producer,
                "opset": g.opset,
                "ml_opset": g.ml_opset,
                "inputs": io(&g.inputs),
                "outputs": io(&g.outputs),
                "scored_by": if g.scores_columns_directly() { "tree kernel on float64 columns" } else { "tract" },
            });
        }
        if let Some(gbdt) = model.as_any().downcast_ref::<mlscore_gbdt::Model>() {
            v["trees"] = json!(gbdt.n_trees());
            if let Some((class, serialization)) = gbdt.estimator() {
                v["sklearn"] = json!({"serialization": serialization, "estimators": [class]});
            }
        }
        if let Some(sk) = model.as_any().downcast_ref::<mlscore_sklearn::Model>() {
            v["sklearn"] = json!({
                "serialization": sk.serialization(),
                "estimators": sk.estimators(),
                "string_nulls": sk.string_nulls(),
            });
        }
        // Every output, the ones MLflow's pyfunc returns first; the others by name in a struct.
        let pyfunc = model.pyfunc_outputs();
        v["outputs"] = model
            .output_types()
            .iter()
            .enumerate()
            .map(|(i, (name, ty))| {
                json!({"name": name, "type": ResultType::from_arrow(ty).map_or_else(|| ty.to_string(), |t| t.to_string()), "pyfunc": i < pyfunc})
            })
            .collect();
        v["default_result_type"] = match model.default_result_type() {
            Ok(t) => json!(t.to_string()),
            Err(e) => json!(format!("cannot be inferred: {e}")),
        };
    }
    v
}

fn print_text(v: &serde_json::Value) {
    let s = |x: &serde_json::Value| x.as_str().map(str::to_string).unwrap_or_else(|| x.to_string());
    println!("model          {}", s(&v["uri"]));
    let r = &v["resolved"];
    if !r["store"].is_null() {
        println!("store          {}", s(&r["store"]));
    }
    if let Some(reg) = r["registered_model"].as_object() {
        println!("registered     {} version {}", s(&reg["name"]), reg["version"]);
    }
    for (k, label) in [("run_id", "run"), ("model_id", "logged model")] {
        if !r[k].is_null() {
            println!("{label:<14} {}", s(&r[k]));
        }
    }
    println!("files          {}", s(&r["local_path"]));
    for step in r["steps"].as_array().into_iter().flatten() {
        println!("  - {}", s(step));
    }
    if let Some(mm) = v["mlmodel"].as_object() {
        let flavors: Vec<String> = mm["flavors"].as_object().map(|f| f.keys().cloned().collect()).unwrap_or_default();
        println!("flavors        {}", flavors.join(", "));
        if !mm["mlflow_version"].is_null() {
            println!("mlflow         {} (created {})", s(&mm["mlflow_version"]), s(&mm["utc_time_created"]));
        }
        let sig = &v["signature"];
        let cols = |x: &serde_json::Value| -> String {
            match x.as_array() {
                None => "none".into(),
                Some(a) => a
                    .iter()
                    .map(|c| {
                        let opt = if c["required"] == json!(false) { " (optional)" } else { "" };
                        let shape = c.get("shape").map(|sh| sh.to_string()).unwrap_or_default();
                        format!("{}: {}{shape}{opt}", s(&c["name"]), s(&c["type"]))
                    })
                    .collect::<Vec<_>>()
                    .join(", "),
            }
        };
        println!("signature");
        println!("  inputs       {}", cols(&sig["inputs"]));
        println!("  outputs      {}", cols(&sig["outputs"]));
        let params = sig["params"].as_array().map(|p| {
            p.iter()
                .map(|p| format!("{}: {} = {}", s(&p["name"]), s(&p["type"]), p["default"]))
                .collect::<Vec<_>>()
                .join(", ")
        });
        println!("  params       {}", params.unwrap_or_else(|| "none".into()));
        if mm["signature_from_type_hint"] == json!(true) {
            println!("  (inferred from type hints: not enforced on data, as in MLflow)");
        }
    }
    println!("format         {} ({})", s(&v["format"]), s(&v["model_file"]));
    if !v["artifact_sha256"].is_null() {
        println!("  sha256       {}", s(&v["artifact_sha256"]));
    }
    if let Some(o) = v["onnx"].as_object() {
        println!("  producer     {} (opset {}, ai.onnx.ml {})", s(&o["producer"]), o["opset"], o["ml_opset"]);
        let io = |x: &serde_json::Value| {
            x.as_array()
                .map(|a| {
                    a.iter().map(|c| format!("{} {}", s(&c["name"]), s(&c["type"]))).collect::<Vec<_>>().join(", ")
                })
                .unwrap_or_default()
        };
        println!("  inputs       {}", io(&o["inputs"]));
        println!("  outputs      {}", io(&o["outputs"]));
        println!("  scored by    {}", s(&o["scored_by"]));
    }
    if let Some(sk) = v["sklearn"].as_object() {
        let chain: Vec<&str> = sk["estimators"].as_array().into_iter().flatten().filter_map(|e| e.as_str()).collect();
        println!(
            "  estimator    {} ({}, read as data)",
            chain.join(" -> "),
            sk["serialization"].as_str().unwrap_or("?")
        );
        if let Some(nulls) = sk.get("string_nulls").and_then(|n| n.as_str()) {
            println!("  string nulls {nulls}");
        }
    }
    if let Some(n) = v["trees"].as_u64() {
        println!("  trees        {n} (scored)");
    }
    if let Some(outputs) = v["outputs"].as_array() {
        let list: Vec<String> = outputs
            .iter()
            .map(|o| {
                let by_name = if o["pyfunc"] == json!(true) { "" } else { " (by name)" };
                format!("{}: {}{by_name}", s(&o["name"]), s(&o["type"]))
            })
            .collect();
        println!("outputs        {}", list.join(", "));
    }
    if !v["default_result_type"].is_null() {
        println!("result type    {} (mlscore default)", s(&v["default_result_type"]));
    }
    if !v["spark_udf_result_type"].is_null() {
        println!("               {} (what spark_udf infers from the signature)", s(&v["spark_udf_result_type"]));
    }
}
