//! The change-feed publisher: drains the `changes` outbox in revision order to AUDIT_CONTROL
//! (`audit.ctl.config`), and, in a loop of its own with its own cursor (`audit_cursor`), the
//! self-audit events stored with each change to AUDIT_INGEST: a full AUDIT_INGEST delays
//! only the self-audit events, never the configuration of the data plane (M14).
//!
//! Each change is signed ([`crate::signing`]) so followers can tell it from a forgery.
//!
//! A change is marked published only after JetStream acknowledged it, so a crash or NATS
//! outage delays the feed but never leaves a gap; `Nats-Msg-Id = config-rev-<n>` makes a
//! re-publish after a crash (or by a second replica) harmless.

use std::{sync::Arc, time::Duration};

use async_nats::{HeaderMap, jetstream};
use auditstream_bus::{headers, headers::EventMeta, publish_durable, subjects};
use auditstream_model::{Limits, validate_envelope};
use tokio::sync::Notify;
use tokio_util::sync::CancellationToken;

use crate::{error::ServiceError, signing::FeedSigner, store::Store};

/// Runs both outbox publishers until `shutdown`: the change feed (AUDIT_CONTROL) and the
/// self-audit events (AUDIT_INGEST), each with its own cursor, retry and backoff. They are
/// independent on purpose (M14): a full AUDIT_INGEST (the router down for longer than the
/// lag budget) must not stop a fix or a disable from reaching the data plane; it only
/// delays the self-audit events, which go out once AUDIT_INGEST has room again.
pub async fn run_publisher(
    store: Arc<Store>,
    js: jetstream::Context,
    signer: Arc<FeedSigner>,
    committed: Arc<Notify>,
    timeout: Duration,
    metrics: Arc<crate::metrics::Metrics>,
    shutdown: CancellationToken,
) {
    // One commit wakes both loops (a `Notify` permit wakes only one waiter).
    let (changes_due, audit_due) = (Arc::new(Notify::new()), Arc::new(Notify::new()));
    let fan_out = {
        let (changes_due, audit_due, shutdown) =
            (changes_due.clone(), audit_due.clone(), shutdown.clone());
        async move {
            loop {
                tokio::select! {
                    _ = shutdown.cancelled() => return,
                    _ = committed.notified() => {
                        changes_due.notify_one();
                        audit_due.notify_one();
                    }
                }
            }
        }
    };
    let changes = retry_loop("change feed", &changes_due, &shutdown, || {
        publish_pending(&store, &js, &signer, timeout, &metrics)
    });
    let audit = retry_loop("self-audit events", &audit_due, &shutdown, || {
        publish_pending_audit(&store, &js, timeout)
    });
    tokio::join!(fan_out, changes, audit);
}

/// Calls `publish` whenever `due` is notified, at least every second (another replica may
/// have committed) and, after a failure, again on a backoff of up to 5 s.
async fn retry_loop<F, Fut>(what: &str, due: &Notify, shutdown: &CancellationToken, publish: F)
where
    F: Fn() -> Fut,
    Fut: std::future::Future<Output = Result<(), ServiceError>>,
{
    let mut backoff = Duration::from_millis(100);
    loop {
        match publish().await {
            Ok(()) => {
                backoff = Duration::from_millis(100);
                tokio::select! {
                    _ = shutdown.cancelled() => return,
                    _ = due.notified() => {}
                    _ = tokio::time::sleep(Duration::from_secs(1)) => {}
                }
            }
            Err(e) => {
                tracing::warn!(error = %e, "{what} not published yet; will retry");
                // New commits do not cut the backoff short: a full AUDIT_INGEST is not asked
                // again on every write.
                tokio::select! {
                    _ = shutdown.cancelled() => return,
                    _ = tokio::time::sleep(backoff) => {}
                }
                backoff = (backoff * 2).min(Duration::from_secs(5));
            }
        }
    }
}

async fn publish_pending(
    store: &Store,
    js: &jetstream::Context,
    signer: &FeedSigner,
    timeout: Duration,
    metrics: &crate::metrics::Metrics,
) -> Result<(), ServiceError> {
    loop {
        let pending = store.pending_changes(100).await?;
        if pending.is_empty() {
            return Ok(());
        }
        for change in pending {
            let (payload, signature) = signer.sign(&change.change);
            let mut h = HeaderMap::new();
            h.insert(headers::REVISION, change.revision.to_string().as_str());
            h.insert(headers::SIGNATURE, signature.as_str());
            publish_durable(
                js,
                subjects::CONFIG_CHANGES.to_owned(),
                &format!("config-rev-{}", change.revision),
                h,
                payload.into(),
                timeout,
            )
            .await
            .map_err(|e| ServiceError::Unavailable(e.to_string()))?;
            store.mark_published(change.revision).await?;
            metrics.changes_published.inc();
        }
    }
}

/// Publishes the self-audit events from the cursor on, in order, advancing the cursor after
/// each PubAck: a failure (AUDIT_INGEST full, NATS away) stops here and the next attempt
/// starts at the same event, so none is lost and none is published twice.
async fn publish_pending_audit(
    store: &Store,
    js: &jetstream::Context,
    timeout: Duration,
) -> Result<(), ServiceError> {
    loop {
        let pending = store.pending_audit(100).await?;
        if pending.is_empty() {
            return Ok(());
        }
        for change in pending {
            for (i, event) in change.events.iter().enumerate() {
                publish_audit(js, event, change.revision, timeout).await?;
                store
                    .advance_audit_cursor(change.revision, change.first_index + i as u32 + 1)
                    .await?;
            }
            // Every event of this change is out: the cursor moves to the next revision.
            store.advance_audit_cursor(change.revision + 1, 0).await?;
        }
    }
}

async fn publish_audit(
    js: &jetstream::Context,
    event: &[u8],
    revision: u64,
    timeout: Duration,
) -> Result<(), ServiceError> {
    // Built by `audit`, so always valid; checked anyway so a catalog change cannot make the
    // config service publish events the gateway would refuse.
    let valid = match validate_envelope(event, &Limits::default()) {
        Ok(v) => v,
        Err(e) => {
            tracing::error!(revision, error = ?e, "self-audit event is invalid; dropped");
            return Ok(());
        }
    };
    let subject = subjects::ingest(&valid.org_id, &valid.workspace_id, valid.event_type)
        .map_err(|e| ServiceError::Internal(e.to_string()))?;
    let received_at = crate::audit::now_rfc3339();
    let h = EventMeta {
        event_id: &valid.id,
        org_id: &valid.org_id,
        workspace_id: &valid.workspace_id,
        event_type: valid.event_type.as_str(),
        occurred_at: &valid.occurred_at,
        received_at: &received_at,
        traceparent: None,
    }
    .to_headers();
    let msg_id = headers::ingest_msg_id(&valid.org_id, &valid.id);
    publish_durable(js, subject, &msg_id, h, valid.body.into(), timeout)
        .await
        .map_err(|e| ServiceError::Unavailable(e.to_string()))?;
    Ok(())
}
