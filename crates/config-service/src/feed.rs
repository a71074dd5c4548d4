//! The change-feed publisher: drains the `changes` outbox in revision order to AUDIT_CONTROL
//! (`audit.ctl.config`), and the self-audit events stored with each change to AUDIT_INGEST.
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

pub async fn run_publisher(
    store: Arc<Store>,
    js: jetstream::Context,
    signer: Arc<FeedSigner>,
    committed: Arc<Notify>,
    timeout: Duration,
    metrics: Arc<crate::metrics::Metrics>,
    shutdown: CancellationToken,
) {
    let mut backoff = Duration::from_millis(100);
    loop {
        match publish_pending(&store, &js, &signer, timeout, &metrics).await {
            Ok(()) => backoff = Duration::from_millis(100),
            Err(e) => {
                tracing::warn!(error = %e, "change feed not published yet; will retry");
                backoff = (backoff * 2).min(Duration::from_secs(5));
            }
        }
        tokio::select! {
            _ = shutdown.cancelled() => return,
            _ = committed.notified() => {}
            // Also poll: another replica may have committed, or a retry is due.
            _ = tokio::time::sleep(backoff.max(Duration::from_secs(1))) => {}
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
            for event in &change.audit {
                publish_audit(js, event, change.revision, timeout).await?;
            }
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
