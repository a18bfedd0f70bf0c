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

/// The panics the hook of [`defer_panic_reports`] kept, as `'message' in thread T at file:line`,
/// each with how many times it happened.
static DEFERRED: std::sync::Mutex<Vec<(String, usize)>> = std::sync::Mutex::new(Vec::new());
/// At most this many different panics are kept (a reader may panic on every batch of a long
/// job, and the same panic is counted, not kept again); later ones are counted.
const DEFERRED_KEPT: usize = 16;
static DEFERRED_DROPPED: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);

/// Keeps panics quiet when they happen, for a program that reports them itself.
///
/// A third-party reader's panic that mlscore catches becomes the job's error, which the program
/// prints; Rust's default hook would first print "thread '…' panicked at …" for it, a developer's
/// report of the same failure, above the user's error. With this hook the message and location
/// are kept instead, and [`deferred_panics`] hands them over for the program to say where they
/// belong (after the error, or as the report of a crash it caught). With `RUST_BACKTRACE` set the
/// default hook stays, backtraces included. Not for long-running servers, which would keep their
/// reports to the end.
///
/// ```
/// mlscore_core::defer_panic_reports();
/// let got = mlscore_core::catch_panic(|| -> u32 { panic!("page header missing") });
/// assert_eq!(got, Err("page header missing".to_string()));
/// let kept = mlscore_core::deferred_panics();
/// if std::env::var_os("RUST_BACKTRACE").is_none() {
///     assert!(kept[0].starts_with("'page header missing' in thread"), "{kept:?}");
/// }
/// ```
pub fn defer_panic_reports() {
    if std::env::var_os("RUST_BACKTRACE").is_some() {
        return;
    }
    std::panic::set_hook(Box::new(|info| {
        let message = info.payload_as_str().unwrap_or("a panic without a message");
        let current = std::thread::current();
        let thread = current.name().unwrap_or("<unnamed>");
        let location = info.location().map(|l| format!(" at {}:{}", l.file(), l.line())).unwrap_or_default();
        let said = format!("'{message}' in thread {thread}{location}");
        // The hook may run while another thread holds the lock and panicked: a poisoned lock
        // still holds the list.
        let mut kept = DEFERRED.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        if let Some((_, n)) = kept.iter_mut().find(|(s, _)| *s == said) {
            *n += 1;
        } else if kept.len() < DEFERRED_KEPT {
            kept.push((said, 1));
        } else {
            DEFERRED_DROPPED.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        }
    }));
}

/// The panics kept since [`defer_panic_reports`] (or the last call), oldest first, the same
/// panic said once with how many times it happened, and a line counting those past the first 16
/// different ones.
pub fn deferred_panics() -> Vec<String> {
    let kept = std::mem::take(&mut *DEFERRED.lock().unwrap_or_else(std::sync::PoisonError::into_inner));
    let mut lines: Vec<String> =
        kept.into_iter().map(|(p, n)| if n == 1 { p } else { format!("{p} ({n} times)") }).collect();
    let dropped = DEFERRED_DROPPED.swap(0, std::sync::atomic::Ordering::Relaxed);
    if dropped > 0 {
        lines.push(format!("and {dropped} more"));
    }
    lines
}
