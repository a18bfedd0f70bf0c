//! CPU time and peak memory, for the engine's per-phase timings, the CLI's summary line and the
//! benchmarks' per-thread counts.

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

/// This process's peak resident memory in MiB, where the OS tells it (`VmHWM` in Linux's
/// `/proc/self/status`), else `None`.
///
/// Read from `/proc` rather than `getrusage`, whose maximum also covers what the parent held when
/// it forked this process (a Python benchmark driver, say) and so overstates it.
///
/// ```
/// let before = mlscore_core::peak_memory_mib();
/// let block = vec![1u8; 64 << 20];
/// let after = mlscore_core::peak_memory_mib();
/// if let (Some(a), Some(b)) = (before, after) {
///     assert!(b >= a, "a peak never falls");
/// }
/// # assert_eq!(block.iter().map(|&b| usize::from(b)).sum::<usize>(), 64 << 20);
/// ```
pub fn peak_memory_mib() -> Option<f64> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    let kib = status.lines().find_map(|l| l.strip_prefix("VmHWM:"))?;
    let kib: f64 = kib.trim().trim_end_matches("kB").trim().parse().ok()?;
    Some(kib / 1024.0)
}
