//! The progress bar on stderr and the end-of-job summary.

use std::io::IsTerminal;
use std::sync::Arc;
use std::time::Duration;

use datafusion::common::stats::Precision;
use datafusion::dataframe::DataFrame;
use datafusion::physical_plan::{StatisticsArgs, StatisticsContext};
use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};
use mlscore_datafusion::{JobReport, Progress};

/// The number of rows a query will read, when Parquet footers tell it.
pub(crate) async fn estimated_rows(df: &DataFrame) -> Option<u64> {
    let plan = df.clone().create_physical_plan().await.ok()?;
    let stats = StatisticsContext::new().compute(plan.as_ref(), &StatisticsArgs::new()).ok()?;
    match stats.num_rows {
        Precision::Exact(n) | Precision::Inexact(n) => Some(n as u64),
        Precision::Absent => None,
    }
}

/// A progress bar that only draws on a terminal, after a moment, unless quiet.
#[derive(Debug, Clone)]
pub(crate) struct Bar(Option<ProgressBar>);

impl Bar {
    pub(crate) fn new(total: Option<u64>, quiet: bool) -> Arc<Self> {
        if quiet || !std::io::stderr().is_terminal() {
            return Arc::new(Self(None));
        }
        let bar = match total {
            Some(n) => ProgressBar::with_draw_target(Some(n), ProgressDrawTarget::stderr()).with_style(
                ProgressStyle::with_template(
                    "{spinner} [{elapsed_precise}] {bar:30} {human_pos}/{human_len} rows  {per_sec}  ETA {eta}",
                )
                .unwrap_or_else(|_| ProgressStyle::default_bar()),
            ),
            None => ProgressBar::with_draw_target(None, ProgressDrawTarget::stderr()).with_style(
                ProgressStyle::with_template("{spinner} [{elapsed_precise}] {human_pos} rows  {per_sec}")
                    .unwrap_or_else(|_| ProgressStyle::default_spinner()),
            ),
        };
        bar.enable_steady_tick(Duration::from_millis(200));
        Arc::new(Self(Some(bar)))
    }

    pub(crate) fn finish(&self) {
        if let Some(b) = &self.0 {
            b.finish_and_clear();
        }
    }
}

impl Progress for Bar {
    fn rows_written(&self, rows: u64) {
        if let Some(b) = &self.0 {
            b.inc(rows);
        }
    }
}

/// One line on stderr: what was written, how fast, and rows that had null inputs.
pub(crate) fn summary(report: &JobReport, output: &str) {
    if !report.swept.is_empty() {
        let bytes: u64 = report.swept.iter().map(|s| s.bytes).sum();
        eprintln!(
            "removed {} temporary output{} of interrupted runs ({:.1} MiB): {}",
            report.swept.len(),
            if report.swept.len() == 1 { "" } else { "s" },
            bytes as f64 / (1024.0 * 1024.0),
            report.swept.iter().map(|s| s.path.display().to_string()).collect::<Vec<_>>().join(", ")
        );
    }
    let secs = report.elapsed.as_secs_f64();
    let rate = if secs > 0.0 { report.rows as f64 / secs } else { 0.0 };
    let peak = mlscore_core::peak_memory_mib().map(|m| format!(", peak memory {m:.0} MiB")).unwrap_or_default();
    eprintln!(
        "wrote {} rows to {output} ({} file{}, {:.1} MiB) in {secs:.2}s, {:.0} rows/s on {} partition{}{peak}",
        report.rows,
        report.files,
        if report.files == 1 { "" } else { "s" },
        report.bytes as f64 / (1024.0 * 1024.0),
        rate,
        report.partitions,
        if report.partitions == 1 { "" } else { "s" },
    );
    if report.copied_columns > 0 {
        eprintln!(
            "{} input column{} copied as stored (not decoded or re-encoded); --reencode turns this off",
            report.copied_columns,
            if report.copied_columns == 1 { "" } else { "s" }
        );
    }
    if !report.phases.is_empty() {
        let phases: Vec<String> =
            report.phases.iter().map(|(name, t)| format!("{name} {:.2}s", t.as_secs_f64())).collect();
        eprintln!("CPU time: {}", phases.join(", "));
    }
    for (model, n) in &report.null_rows {
        if *n > 0 {
            eprintln!("{model}: {n} rows had null inputs");
        }
    }
}
