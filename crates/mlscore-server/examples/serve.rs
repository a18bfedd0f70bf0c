//! The serving benchmark's mlscore side (driven by `benches/serve.py`): `mlscore serve` without
//! the CLI, so that a release build needs no DataFusion and no tract (the scikit-learn front end
//! only).
//!
//!     cargo run --release --example serve -p mlscore-server -- MODEL_URI PORT
#![allow(clippy::print_stderr)]

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let [uri, port] = args.as_slice() else { return Err("usage: serve MODEL_URI PORT".into()) };
    let model = mlscore_formats::load(uri, &mlscore_mlflow::StoreConfig::from_env())?;
    let config = mlscore_server::Config { port: port.parse()?, ..Default::default() };
    let rt = mlscore_server::runtime()?;
    rt.block_on(async move {
        let listener = tokio::net::TcpListener::bind((config.host.as_str(), config.port)).await?;
        eprintln!("serve: listening on http://{}", listener.local_addr()?);
        mlscore_server::serve(listener, model, config).await
    })?;
    Ok(())
}
