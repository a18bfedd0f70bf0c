//! CPU time, for the engine's per-phase timings and the benchmarks' per-thread counts.

/// The CPU time the calling thread has run, in nanoseconds, where the OS tells it (Linux's
/// `/proc/thread-self/schedstat`; a few microseconds to read), else `None`.
///
/// Time spent waiting for a core does not count, so two readings around a piece of work give
/// its cost even on a busy machine, where its wall time would not:
///
/// ```
/// let before = mlscore_core::thread_cpu_ns();
/// let sum: u64 = (0..100_000u64).map(|i| i * i).sum();
/// let after = mlscore_core::thread_cpu_ns();
/// if let (Some(a), Some(b)) = (before, after) {
///     assert!(b >= a, "the thread's CPU time only grows");
/// }
/// # assert!(sum > 0);
/// ```
pub fn thread_cpu_ns() -> Option<u64> {
    std::fs::read_to_string("/proc/thread-self/schedstat").ok()?.split_whitespace().next()?.parse().ok()
}
