//! One task per sink: drain the outbox, a few batches per datasource per round so tenants take
//! turns, woken after each applied page; after a failure, back off (the changes stay queued).

use std::sync::Arc;
use std::time::Duration;

use super::Service;
use crate::deliver::{Deliverer, SinkConfig, Target};

/// How long a replica may deliver one datasource's batches before another may take over (a
/// round is a few batches; a replica that died mid-round loses the right after this).
const DELIVERY_LEASE: Duration = Duration::from_secs(60);

pub async fn run(svc: Arc<Service>, config: SinkConfig) {
    let sink = config.name();
    let mut deliverer = Some(Deliverer::new(config));
    let mut failures = 0u32;
    // What was last reported per datasource: a refusal that needs an operator (an unknown
    // connector, a refused token) is logged once, not every round, until it changes or clears.
    let mut reported: std::collections::HashMap<String, String> = Default::default();
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
            // Replicas sharing the state deliver a datasource's changes from one place at a
            // time, so they reach the sink in order; another replica has this one.
            let holder = &svc.host.lease_holder;
            match svc.host.store.acquire_delivery(&sink, &id, holder, DELIVERY_LEASE) {
                Ok(true) => {}
                Ok(false) => continue,
                Err(e) => {
                    tracing::warn!(%sink, "taking the delivery lease failed: {e}");
                    failed = true;
                    continue;
                }
            }
            // A removed datasource still has deletes to deliver; it needs no name for them.
            let (name, connector, removed) = match svc.host.store.datasource_view(&id) {
                Ok(d) => (d.name, d.connector_id, false),
                Err(crate::state::StoreError::NoDatasource(_)) => (String::new(), String::new(), true),
                Err(e) => {
                    tracing::warn!(%sink, "reading datasource {id} failed: {e}");
                    let _ = svc.host.store.release_delivery(&sink, &id, &svc.host.lease_holder);
                    failed = true;
                    continue;
                }
            };
            let Some(mut d) = deliverer.take() else { return };
            let svc2 = svc.clone();
            let target_id = id.clone();
            let joined = tokio::task::spawn_blocking(move || {
                let target = Target { id: &id, name: &name, connector_id: &connector, removed };
                let r = d.drain_some(&svc2.host.store, &target, 4);
                (d, r)
            })
            .await;
            let Ok((back, result)) = joined else { return };
            deliverer = Some(back);
            if let Err(e) = svc.host.store.release_delivery(&sink, &target_id, &svc.host.lease_holder) {
                tracing::warn!(%sink, "giving the delivery lease back failed: {e}");
            }
            let m = &svc.metrics;
            match result {
                Ok((drained, left)) => {
                    if reported.remove(&target_id).is_some() {
                        tracing::info!(%sink, datasource = %target_id, "delivering again");
                    }
                    m.sink_delivered.with_label_values(&[sink.as_str()]).inc_by(drained.upserts + drained.deletes);
                    m.sink_rejected.with_label_values(&[sink.as_str()]).inc_by(drained.rejected.len() as u64);
                    more |= left;
                }
                Err(e) => {
                    m.sink_errors.with_label_values(&[sink.as_str()]).inc();
                    let message = e.to_string();
                    if reported.get(&target_id) != Some(&message) {
                        tracing::warn!(%sink, datasource = %target_id, "delivery failed (the changes stay queued): {message}");
                        reported.insert(target_id.clone(), message);
                    }
                    failed = true;
                }
            }
        }
        let wait = if failed {
            failures += 1;
            crate::policy::Backoff::SINK_TASK.delay(failures - 1, rand::random::<f64>())
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
