//! What the router publishes for a group of ingest messages before it acks them: the
//! deliveries (packed per stream; a pack the server refuses as too large is split, and a
//! delivery that can never be stored is dead-lettered with its event), the copy of each
//! message in AUDIT_HISTORY, and whole messages that end in the router's dead letters. Each
//! returns the group indices of messages to nak.

use std::time::Duration;

use async_nats::jetstream;
use auditstream_bus::{
    PublishError, headers,
    pack::{self, Packer},
    publish_durable, subjects,
};
use futures_util::future::join_all;

use crate::{
    dead_letter::{DeadLetter, Reason, dead_letter},
    metrics::{Metrics, SinkLabel},
};

/// The consumer settings publishing needs (from `RouterConfig`).
pub(crate) struct Settings {
    pub timeout: Duration,
    pub retry_delay: Duration,
    pub pack_events: usize,
    pub pack_bytes: usize,
    pub max_deliver: u64,
}

/// One delivery of one ingest message (`from`, its index in the group).
pub(crate) struct Out<'t> {
    pub from: usize,
    pub subject: &'t str,
    pub sink: &'static str,
    pub msg_id: String,
    pub headers: async_nats::HeaderMap,
    pub body: Vec<u8>,
    /// The event as ingested: what a delivery too large to publish is dead-lettered with.
    pub event: bytes::Bytes,
    pub org_id: &'t str,
}

/// Stores each ingest message that is about to be acked (all but those left for another
/// replica) in AUDIT_HISTORY under its history subject, with its headers and body (its
/// `Nats-Msg-Id` de-duplicates a redelivered one). AUDIT_INGEST drops a message once acked,
/// so this copy is what backfill and replay read. Returns the group indices of messages
/// whose copy was not stored: they are nak'ed with the failed deliveries.
pub(crate) async fn keep_history<'m>(
    js: &jetstream::Context,
    messages: impl Iterator<Item = (usize, &'m jetstream::Message)>,
    metrics: &Metrics,
    settings: &Settings,
) -> Vec<usize> {
    let stores = messages.map(|(i, message)| async move {
            let Some(subject) = subjects::history_of(&message.subject) else {
                return Some(i);
            };
            let headers = message.headers.clone().unwrap_or_default();
            let msg_id = match headers.get(headers::MSG_ID) {
                Some(id) => id.as_str().to_owned(),
                None => match message.info() {
                    Ok(info) => format!("ingest-{}", info.stream_sequence),
                    Err(_) => String::new(),
                },
            };
            match publish_durable(
                js,
                subject,
                &msg_id,
                headers,
                message.payload.clone(),
                settings.timeout,
            )
            .await
            {
                Ok(_) => {
                    metrics.history_messages.inc();
                    None
                }
                Err(e) => {
                    tracing::warn!(subject = %message.subject, error = %e, "not kept in AUDIT_HISTORY; the message will be redelivered");
                    Some(i)
                }
            }
        });
    join_all(stores).await.into_iter().flatten().collect()
}
/// Publishes `outs`: those of one subject in packs of up to `pack_events` events and
/// `pack_bytes` bytes, a lone one (or one bigger than a pack) as a plain message. A pack the
/// server refuses as too large is sent again one delivery at a time, and a lone delivery it
/// refuses can never be stored: it goes to the router's dead letters with its event (the
/// event's other deliveries go on). Returns the group indices of ingest messages with a
/// delivery that was neither stored nor dead-lettered.
pub(crate) async fn publish(
    js: &jetstream::Context,
    outs: Vec<Out<'_>>,
    metrics: &Metrics,
    settings: &Settings,
) -> std::collections::HashSet<usize> {
    // Subjects in first-seen order, each with its deliveries in order.
    let mut subjects: Vec<(&str, Vec<Out<'_>>)> = Vec::new();
    for out in outs {
        match subjects.iter_mut().find(|(s, _)| *s == out.subject) {
            Some((_, list)) => list.push(out),
            None => subjects.push((out.subject, vec![out])),
        }
    }
    let mut sends = Vec::new();
    for (_, list) in subjects {
        let mut run: Vec<Out<'_>> = Vec::new();
        let mut run_bytes = 0;
        for out in list {
            let size = pack::entry_bytes(&out.headers, out.body.len());
            if !run.is_empty()
                && (run.len() >= settings.pack_events || run_bytes + size > settings.pack_bytes)
            {
                sends.push(std::mem::take(&mut run));
                run_bytes = 0;
            }
            run_bytes += size;
            run.push(out);
        }
        if !run.is_empty() {
            sends.push(run);
        }
    }
    let mut failed = std::collections::HashSet::new();
    // Deliveries the server refused as too large: pack members are sent again alone.
    let mut alone = Vec::new();
    let mut too_large = Vec::new();
    for (run, r) in join_all(sends.into_iter().map(|run| send(js, run, settings))).await {
        match r {
            Ok(bytes) => stored(metrics, &run, bytes),
            Err(PublishError::Refused(e)) if run.len() > 1 => {
                tracing::warn!(subject = %run[0].subject, events = run.len(), error = %e, "pack refused; sending its deliveries one by one");
                alone.extend(run.into_iter().map(|out| vec![out]));
            }
            Err(PublishError::Refused(e)) => {
                too_large.extend(run.into_iter().map(|o| (o, e.clone())))
            }
            Err(e) => {
                tracing::warn!(subject = %run[0].subject, events = run.len(), error = %e, "delivery not stored; its events will be redelivered");
                failed.extend(run.iter().map(|o| o.from));
            }
        }
    }
    for (run, r) in join_all(alone.into_iter().map(|run| send(js, run, settings))).await {
        match r {
            Ok(bytes) => stored(metrics, &run, bytes),
            Err(PublishError::Refused(e)) => {
                too_large.extend(run.into_iter().map(|o| (o, e.clone())))
            }
            Err(e) => {
                tracing::warn!(subject = %run[0].subject, error = %e, "delivery not stored; its event will be redelivered");
                failed.extend(run.iter().map(|o| o.from));
            }
        }
    }
    let letters = too_large.into_iter().map(|(out, e)| async move {
        let letter = DeadLetter {
            org_id: out.org_id,
            msg_id: format!("dl.{}", out.msg_id),
            headers: out.headers.clone(),
            body: out.event.clone(),
            reason: Reason::DeliveryTooLarge,
            detail: format!(
                "the delivery for stream {} has {} bytes: {e}",
                out.headers
                    .get(headers::STREAM_ID)
                    .map(|v| v.as_str())
                    .unwrap_or_default(),
                out.body.len()
            ),
        };
        (
            out.from,
            dead_letter(js, letter, metrics, settings.timeout).await,
        )
    });
    for (from, r) in join_all(letters).await {
        if let Err(e) = r {
            tracing::warn!(error = %e, "delivery neither stored nor dead-lettered; its event will be redelivered");
            failed.insert(from);
        }
    }
    failed
}

/// Publishes one run of deliveries to one subject: a lone delivery as itself, more as a
/// pack. Returns the run (for its accounting) and the bytes stored.
async fn send<'t>(
    js: &jetstream::Context,
    run: Vec<Out<'t>>,
    settings: &Settings,
) -> (Vec<Out<'t>>, Result<usize, PublishError>) {
    let subject = run[0].subject;
    let r = if let [out] = run.as_slice() {
        let bytes = subject.len() + header_bytes(&out.headers) + out.body.len();
        publish_durable(
            js,
            subject.to_owned(),
            &out.msg_id,
            out.headers.clone(),
            out.body.clone().into(),
            settings.timeout,
        )
        .await
        .map(|_| bytes)
    } else {
        let mut packer = Packer::new();
        for out in &run {
            packer.push(&out.headers, &out.body);
        }
        let mut h = async_nats::HeaderMap::new();
        h.insert(pack::PACK, pack::VERSION);
        if let Some(stream) = run[0].headers.get(headers::STREAM_ID) {
            h.insert(headers::STREAM_ID, stream.as_str());
        }
        let (msg_id, payload) = packer.finish();
        h.insert(headers::MSG_ID, msg_id.as_str());
        let bytes = subject.len() + header_bytes(&h) + payload.len();
        publish_durable(
            js,
            subject.to_owned(),
            &msg_id,
            h,
            payload,
            settings.timeout,
        )
        .await
        .map(|_| bytes)
    };
    (run, r)
}

/// Counts a stored run of deliveries.
fn stored(metrics: &Metrics, run: &[Out<'_>], bytes: usize) {
    metrics.deliver_messages.inc();
    metrics.deliver_bytes.inc_by(bytes as u64);
    for out in run {
        metrics
            .routed
            .get_or_create(&SinkLabel {
                sink_type: out.sink,
            })
            .inc();
    }
}
/// Moves each ingest message marked `dead` to the router's dead letters, whole (headers and
/// body as ingested). Returns the group indices of those that could not be stored there:
/// they are nak'ed, and dead-lettered on a later try.
pub(crate) async fn dead_letter_messages<'m>(
    js: &jetstream::Context,
    dead: impl Iterator<Item = (usize, &'m jetstream::Message, Reason, String)>,
    metrics: &Metrics,
    settings: &Settings,
) -> Vec<usize> {
    let letters = dead.map(|(i, message, reason, detail)| {
        async move {
            // `audit.ingest.<org>.…`: the organization the gateway accepted it for.
            let org_id = message.subject.split('.').nth(2).unwrap_or_default();
            let sequence = message.info().map_or(0, |info| info.stream_sequence);
            let letter = DeadLetter {
                org_id,
                msg_id: format!("dl.ingest.{sequence}"),
                headers: message.headers.clone().unwrap_or_default(),
                body: message.payload.clone(),
                reason,
                detail,
            };
            dead_letter(js, letter, metrics, settings.timeout)
                .await
                .err()
                .map(|e| {
                    tracing::warn!(subject = %message.subject, error = %e, "not dead-lettered; it will be redelivered");
                    i
                })
        }
    });
    join_all(letters).await.into_iter().flatten().collect()
}
/// A message's header bytes as sent (`Name: value\r\n`).
fn header_bytes(h: &async_nats::HeaderMap) -> usize {
    h.iter()
        .flat_map(|(name, values)| {
            let name: &str = name.as_ref();
            values
                .iter()
                .map(move |v| name.len() + v.as_str().len() + 4)
        })
        .sum()
}
