//! `/metrics` in Prometheus' text format: counters the driver bumps as steps end, histograms of
//! sync duration and change-to-index latency, and per-datasource gauges read at scrape time.

use prometheus::{
    Encoder, Histogram, HistogramOpts, HistogramVec, IntCounter, IntCounterVec, IntGauge, IntGaugeVec, Opts, Registry,
    TextEncoder,
};

pub struct Metrics {
    registry: Registry,
    pub pages: IntCounter,
    pub dropbox_requests: IntCounter,
    pub token_refreshes: IntCounter,
    pub errors: IntCounterVec,
    pub rate_limit_waits: IntCounter,
    pub rate_limit_wait_seconds: prometheus::Counter,
    pub upserted: IntCounter,
    pub deleted: IntCounter,
    pub syncs: IntCounterVec,
    pub sync_duration: Histogram,
    pub change_to_index: Histogram,
    pub notice_to_index: HistogramVec,
    pub webhooks: IntCounterVec,
    pub longpolls: IntCounterVec,
    pub longpolls_active: IntGauge,
    pub pages_in_flight: IntGauge,
    /// Turns given up because another replica had the datasource (`leased`) or had just synced
    /// it (`synced`).
    pub skipped_turns: IntCounterVec,
    pub datasources: IntGaugeVec,
    pub lag: prometheus::GaugeVec,
    pub sink_delivered: IntCounterVec,
    pub sink_rejected: IntCounterVec,
    pub sink_errors: IntCounterVec,
    pub sink_backlog: IntGaugeVec,
}

fn must<T>(r: prometheus::Result<T>) -> T {
    // Only fails for a malformed name or a duplicate registration: a bug in this file.
    r.expect("metric definitions are valid")
}

impl Metrics {
    pub fn new() -> Self {
        let registry = Registry::new();
        let counter = |name: &str, help: &str| {
            let c = must(IntCounter::new(name, help));
            must(registry.register(Box::new(c.clone())));
            c
        };
        let counter_vec = |name: &str, help: &str, labels: &[&str]| {
            let c = must(IntCounterVec::new(Opts::new(name, help), labels));
            must(registry.register(Box::new(c.clone())));
            c
        };
        let gauge = |name: &str, help: &str| {
            let g = must(IntGauge::new(name, help));
            must(registry.register(Box::new(g.clone())));
            g
        };
        // Seconds: a delta against real Dropbox takes about one round trip; a full listing of
        // a large account takes minutes.
        let latency_buckets = vec![0.05, 0.1, 0.25, 0.5, 1.0, 2.0, 5.0, 10.0, 30.0, 60.0, 120.0, 300.0, 900.0, 3600.0];
        let histogram = |name: &str, help: &str| {
            let h = must(Histogram::with_opts(HistogramOpts::new(name, help).buckets(latency_buckets.clone())));
            must(registry.register(Box::new(h.clone())));
            h
        };
        let sync_duration =
            histogram("coco_sync_duration_seconds", "Duration of completed sync runs (first page to has_more=false).");
        let change_to_index = histogram(
            "coco_change_to_index_seconds",
            "From a file's server_modified in Dropbox to its delta committed in the index (incremental pages).",
        );
        let notice_to_index = must(HistogramVec::new(
            HistogramOpts::new(
                "coco_notice_to_index_seconds",
                "From a change notice (webhook, longpoll) or admin request to the end of the sync it caused.",
            )
            .buckets(latency_buckets),
            &["trigger"],
        ));
        must(registry.register(Box::new(notice_to_index.clone())));
        let datasources =
            must(IntGaugeVec::new(Opts::new("coco_datasources", "Datasources by scheduling state."), &["state"]));
        must(registry.register(Box::new(datasources.clone())));
        let lag = must(prometheus::GaugeVec::new(
            Opts::new(
                "coco_datasource_lag_seconds",
                "Seconds since the datasource was last fully in sync with Dropbox.",
            ),
            &["datasource"],
        ));
        must(registry.register(Box::new(lag.clone())));
        let rate_limit_wait_seconds = must(prometheus::Counter::new(
            "coco_rate_limit_wait_seconds_total",
            "Seconds of waiting asked for by Dropbox rate limits.",
        ));
        must(registry.register(Box::new(rate_limit_wait_seconds.clone())));
        Metrics {
            pages: counter("coco_pages_total", "list_folder pages applied to the index."),
            dropbox_requests: counter("coco_dropbox_requests_total", "HTTP requests the component made to Dropbox."),
            token_refreshes: counter("coco_token_refreshes_total", "Access-token refreshes."),
            errors: counter_vec("coco_errors_total", "Failed steps by error class.", &["class"]),
            rate_limit_waits: counter("coco_rate_limit_waits_total", "Rate-limit answers waited out."),
            rate_limit_wait_seconds,
            upserted: counter("coco_documents_upserted_total", "Documents written to the index."),
            deleted: counter("coco_documents_deleted_total", "Documents removed from the index (deletes and sweeps)."),
            syncs: counter_vec("coco_syncs_total", "Sync runs ended, by result.", &["result"]),
            sync_duration,
            change_to_index,
            notice_to_index,
            webhooks: counter_vec("coco_webhooks_total", "Webhook notifications received, by result.", &["result"]),
            longpolls: counter_vec("coco_longpolls_total", "Longpolls ended, by result.", &["result"]),
            longpolls_active: gauge("coco_longpolls_active", "Longpolls waiting on Dropbox now."),
            pages_in_flight: gauge("coco_pages_in_flight", "Component calls for pages in flight now."),
            skipped_turns: counter_vec(
                "coco_skipped_turns_total",
                "Turns given up because another replica held the datasource or had just synced it.",
                &["reason"],
            ),
            datasources,
            lag,
            sink_delivered: counter_vec("coco_sink_delivered_total", "Changes a sink accepted.", &["sink"]),
            sink_rejected: counter_vec("coco_sink_rejected_total", "Documents a sink refused for good.", &["sink"]),
            sink_errors: counter_vec("coco_sink_errors_total", "Failed delivery rounds.", &["sink"]),
            sink_backlog: {
                let g = must(IntGaugeVec::new(Opts::new("coco_sink_backlog", "Changes queued for a sink."), &["sink"]));
                must(registry.register(Box::new(g.clone())));
                g
            },
            registry,
        }
    }

    /// The text exposition.
    pub fn render(&self) -> String {
        let mut out = Vec::new();
        // Encoding into a Vec cannot fail for well-formed families.
        let _ = TextEncoder::new().encode(&self.registry.gather(), &mut out);
        String::from_utf8(out).unwrap_or_default()
    }
}

impl Default for Metrics {
    fn default() -> Self {
        Metrics::new()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn renders_prometheus_text_with_help_type_and_labels() {
        let m = Metrics::new();
        m.pages.inc_by(3);
        m.errors.with_label_values(&["transient"]).inc();
        m.sync_duration.observe(1.5);
        m.lag.with_label_values(&["ds1"]).set(12.0);
        let text = m.render();
        assert!(text.contains("# TYPE coco_pages_total counter\ncoco_pages_total 3\n"), "{text}");
        assert!(text.contains("coco_errors_total{class=\"transient\"} 1"));
        assert!(text.contains("# TYPE coco_sync_duration_seconds histogram"));
        assert!(text.contains("coco_sync_duration_seconds_bucket{le=\"2\"} 1"));
        assert!(text.contains("coco_datasource_lag_seconds{datasource=\"ds1\"} 12"));
    }
}
