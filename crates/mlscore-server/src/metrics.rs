//! `GET /metrics`: requests by route and status, rows scored, and request latency, in the
//! Prometheus (OpenMetrics) text format.

use std::time::Duration;

use prometheus_client::encoding::text::encode;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
use prometheus_client::registry::Registry;

type Labels = Vec<(&'static str, String)>;

/// The server's metrics, shared by every request.
#[derive(Debug)]
pub(crate) struct Metrics {
    registry: Registry,
    requests: Family<Labels, Counter>,
    rows: Counter,
    latency: Family<Labels, Histogram, fn() -> Histogram>,
}

fn latency_histogram() -> Histogram {
    // 50 µs to about 26 s, doubling.
    Histogram::new(exponential_buckets(0.000_05, 2.0, 20))
}

impl Metrics {
    pub(crate) fn new() -> Self {
        let mut registry = Registry::with_prefix("mlscore");
        let requests = Family::<Labels, Counter>::default();
        let rows = Counter::default();
        let latency = Family::<Labels, Histogram, fn() -> Histogram>::new_with_constructor(latency_histogram);
        registry.register("requests", "Scoring requests answered, by route and status", requests.clone());
        registry.register("rows", "Rows scored", rows.clone());
        registry.register("request_duration_seconds", "Scoring request latency, by route", latency.clone());
        Self { registry, requests, rows, latency }
    }

    /// Records one answered scoring request.
    pub(crate) fn observe(&self, route: &'static str, status: u16, elapsed: Duration, rows: usize) {
        self.requests.get_or_create(&vec![("route", route.to_string()), ("status", status.to_string())]).inc();
        self.latency.get_or_create(&vec![("route", route.to_string())]).observe(elapsed.as_secs_f64());
        self.rows.inc_by(rows as u64);
    }

    /// The text exposition.
    pub(crate) fn render(&self) -> String {
        let mut out = String::new();
        // Writing to a String cannot fail.
        let _ = encode(&mut out, &self.registry);
        out
    }
}
