//! One task per sink: drain the outbox, a few batches per datasource per round so tenants take
//! turns, woken after each applied page; after a failure, back off (the changes stay queued).

use std::sync::Arc;
use std::time::Duration;

use super::Service;
use crate::deliver::{Deliverer, SinkConfig, Target};

pub async fn run(svc: Arc<Service>, config: SinkConfig) {
    let sink = config.name();
    let mut deliverer = Some(Deliverer::new(config));
    let mut failures = 0u32;
    let mut shutdown = svc.shutdown.subscribe();
    loop {
        if svc.is_shutting_down() {
            return;
        }
        let ids = match svc.host.store.outbox_datasources(&sink) {
            Ok(ids) => ids,
            Err(e) => {
                tracing::warn!(%sink, "reading the outbox failed: {e}");
                Vec::new()
            }
        };
        let (mut more, mut failed) = (false, false);
        for id in ids {
            if svc.is_shutting_down() {
                return;
            }
            // A removed datasource still has deletes to deliver; it needs no name for them.
            let (name, connector) =
                svc.host.store.datasource(&id).map(|d| (d.name, d.connector_id)).unwrap_or_default();
            let Some(mut d) = deliverer.take() else { return };
            let svc2 = svc.clone();
            let joined = tokio::task::spawn_blocking(move || {
                let target = Target { id: &id, name: &name, connector_id: &connector };
                let r = d.drain_some(&svc2.host.store, &target, 4);
                (d, r)
            })
            .await;
            let Ok((back, result)) = joined else { return };
            deliverer = Some(back);
            let m = &svc.metrics;
            match result {
                Ok((drained, left)) => {
                    m.sink_delivered.with_label_values(&[sink.as_str()]).inc_by(drained.upserts + drained.deletes);
                    m.sink_rejected.with_label_values(&[sink.as_str()]).inc_by(drained.rejected.len() as u64);
                    more |= left;
                }
                Err(e) => {
                    m.sink_errors.with_label_values(&[sink.as_str()]).inc();
                    tracing::warn!(%sink, "delivery failed: {e}");
                    failed = true;
                }
            }
        }
        let wait = if failed {
            failures += 1;
            Duration::from_secs(1u64 << failures.min(6))
        } else {
            failures = 0;
            if more {
                Duration::ZERO
            } else {
                Duration::from_secs(1)
            }
        };
        if failed {
            tokio::select! {
                _ = tokio::time::sleep(wait) => {}
                _ = shutdown.changed() => {}
            }
        } else {
            tokio::select! {
                _ = svc.deliver_wake.notified() => {}
                _ = tokio::time::sleep(wait) => {}
                _ = shutdown.changed() => {}
            }
        }
    }
}
