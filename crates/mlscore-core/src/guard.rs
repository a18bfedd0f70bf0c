//! Panics of third-party decoders, turned into errors.

/// Runs `f`, turning a panic inside it into `Err` with the panic's message.
///
/// For the third-party decoders mlscore calls on a user's files (tract on ONNX graphs, the
/// parquet crate on pages): some assert on damaged input instead of returning an error. A
/// damaged file must end in an error that names it, never bring down the process (in the Python
/// wheel, a panic kills the Spark task). mlscore's own code returns errors and is not wrapped.
///
/// ```
/// let got = mlscore_core::catch_panic(|| -> u32 { panic!("page header missing") });
/// assert_eq!(got, Err("page header missing".to_string()));
/// assert_eq!(mlscore_core::catch_panic(|| 7), Ok(7));
/// ```
pub fn catch_panic<T>(f: impl FnOnce() -> T) -> Result<T, String> {
    std::panic::catch_unwind(std::panic::AssertUnwindSafe(f)).map_err(|panic| panic_message(panic.as_ref()))
}

/// The message a panic was raised with (a caught panic's payload, or a panicked task's).
pub fn panic_message(payload: &(dyn std::any::Any + Send)) -> String {
    payload
        .downcast_ref::<&str>()
        .map(|s| s.to_string())
        .or_else(|| payload.downcast_ref::<String>().cloned())
        .unwrap_or_else(|| "a panic without a message".into())
}
