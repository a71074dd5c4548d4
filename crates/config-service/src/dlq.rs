//! The JetStream side of a stream's status and of its dead letters.
//!
//! - Depths: how many messages wait in the type's backlog stream `AUDIT_BACKLOG_<TYPE>`
//!   (`audit.backlog.<type>.<stream>`) and in `AUDIT_DLQ` (`audit.dlq.<type>.<stream>`), read
//!   from stream info with a subject filter.
//!   `<stream>` is the stream's key (`Stream::key`, its immutable uid), never the reusable id.
//! - Purge: a stream deleted with `discard_pending` loses its backlog and dead letters.
//! - ListDeadLetters: the DLQ messages of one stream in sequence order, read from the stream
//!   leader (`STREAM.MSG.GET` next-by-subject), so a list right after a replay never shows a
//!   replayed message again.
//! - ReplayDeadLetters: each dead letter is republished to `audit.deliver.<type>.<stream>`
//!   (body and headers as dead-lettered, minus the error) with
//!   `Nats-Msg-Id = <event id>.<stream id>.replay.<DLQ sequence>`, and deleted from the DLQ
//!   only after JetStream's PubAck. The id differs from the router's `<event>.<stream>` so
//!   that a replay within JetStream's duplicate window is not dropped as a duplicate of the
//!   original delivery, yet is stable, so repeating an interrupted replay stores each message
//!   once.

use std::{collections::BTreeSet, time::Duration};

use async_nats::{
    HeaderMap,
    jetstream::{
        self,
        message::StreamMessage,
        stream::{
            DeleteMessageError, DeleteMessageErrorKind, RawMessageError, RawMessageErrorKind,
        },
    },
};
use auditstream_bus::{headers, publish_durable, subjects, topology};
use auditstream_model::SinkType;
use auditstream_proto::v1::{DeadLetter, ListDeadLettersResponse, Stream};
use futures_util::TryStreamExt as _;

use crate::error::{ServiceError, invalid};

/// `limit` when the request leaves it 0.
pub const DEFAULT_LIMIT: u32 = 100;
/// The largest page, and the most sequences one replay request may name.
pub const MAX_LIMIT: u32 = 1000;

fn subject(
    build: fn(SinkType, &str) -> Result<String, subjects::SubjectError>,
    sink: SinkType,
    stream_id: &str,
) -> Result<String, ServiceError> {
    build(sink, stream_id).map_err(|e| ServiceError::Internal(e.to_string()))
}

fn unavailable(what: &str, e: impl std::fmt::Display) -> ServiceError {
    ServiceError::Unavailable(format!("cannot {what}: {e}"))
}

/// The number of messages stored under `subject` in JetStream stream `stream`.
pub async fn count(js: &jetstream::Context, stream: &str, subject: &str) -> Result<u64, String> {
    let handle = js
        .get_stream_no_info(stream)
        .await
        .map_err(|e| e.to_string())?;
    let mut subjects = handle
        .info_with_subjects(subject)
        .await
        .map_err(|e| format!("{stream} info: {e}"))?;
    // The filter is one literal subject: at most one entry, absent when it holds nothing.
    while let Some((found, n)) = subjects
        .try_next()
        .await
        .map_err(|e| format!("{stream} info: {e}"))?
    {
        if found == subject {
            return Ok(n as u64);
        }
    }
    Ok(0)
}

/// Live `(backlog depth, DLQ depth)` of the stream with key `stream_key`.
pub async fn depths(
    js: &jetstream::Context,
    sink: SinkType,
    stream_key: &str,
) -> Result<(u64, u64), String> {
    let backlog = subjects::backlog(sink, stream_key).map_err(|e| e.to_string())?;
    let dlq = subjects::dlq(sink, stream_key).map_err(|e| e.to_string())?;
    let backlog_stream = topology::backlog(sink);
    let (backlog, dlq) = tokio::join!(
        count(js, &backlog_stream, &backlog),
        count(js, topology::DLQ, &dlq)
    );
    Ok((backlog?, dlq?))
}

/// Purges the backlog and the DLQ of the stream with key `stream_key`: `(backlog, dlq)`
/// events removed.
pub async fn purge(
    js: &jetstream::Context,
    sink: SinkType,
    stream_key: &str,
) -> Result<(u64, u64), ServiceError> {
    let mut purged = [0u64; 2];
    for (i, (stream, build)) in [
        (topology::backlog(sink), subjects::backlog as fn(_, &_) -> _),
        (topology::DLQ.to_owned(), subjects::dlq),
    ]
    .into_iter()
    .enumerate()
    {
        let filter = subject(build, sink, stream_key)?;
        let handle = js
            .get_stream_no_info(&stream)
            .await
            .map_err(|e| unavailable(&format!("open {stream}"), e))?;
        let response = handle
            .purge()
            .filter(filter)
            .await
            .map_err(|e| unavailable(&format!("purge {stream}"), e))?;
        purged[i] = response.purged;
    }
    Ok((purged[0], purged[1]))
}

fn is_missing(e: &RawMessageError) -> bool {
    matches!(e.kind(), RawMessageErrorKind::NoMessageFound)
}

fn header(m: &StreamMessage, name: &str) -> String {
    m.headers
        .get(name)
        .map(|v| v.as_str().to_owned())
        .unwrap_or_default()
}

fn dead_letter(m: &StreamMessage) -> DeadLetter {
    DeadLetter {
        sequence: m.sequence,
        event_id: header(m, headers::EVENT_ID),
        reason: header(m, headers::ERROR),
        dead_lettered_at: m
            .time
            .format(&time::format_description::well_known::Rfc3339)
            .unwrap_or_default(),
        size_bytes: m.payload.len() as u64,
        event_type: header(m, headers::EVENT_TYPE),
        workspace_id: header(m, headers::WORKSPACE_ID),
    }
}

/// The first dead letter of `subject` at or after `from`, if any.
async fn next_from(
    dlq: &jetstream::stream::Stream<()>,
    subject: &str,
    from: u64,
) -> Result<Option<StreamMessage>, ServiceError> {
    match dlq.get_first_raw_message_by_subject(subject, from).await {
        Ok(m) => Ok(Some(m)),
        Err(e) if is_missing(&e) => Ok(None),
        Err(e) => Err(unavailable("read the dead-letter queue (AUDIT_DLQ)", e)),
    }
}

async fn dlq_stream(
    js: &jetstream::Context,
) -> Result<jetstream::stream::Stream<()>, ServiceError> {
    js.get_stream_no_info(topology::DLQ)
        .await
        .map_err(|e| unavailable("open the dead-letter queue (AUDIT_DLQ)", e))
}

/// ListDeadLetters: up to `limit` (0 → [`DEFAULT_LIMIT`], at most [`MAX_LIMIT`]) dead letters
/// of the stream after sequence `after`, and how many it has in all.
pub async fn list(
    js: &jetstream::Context,
    sink: SinkType,
    stream_key: &str,
    after: u64,
    limit: u32,
) -> Result<ListDeadLettersResponse, ServiceError> {
    let subject = subject(subjects::dlq, sink, stream_key)?;
    let dlq = dlq_stream(js).await?;
    let limit = match limit {
        0 => DEFAULT_LIMIT,
        n => n.min(MAX_LIMIT),
    } as usize;
    let mut dead_letters = Vec::new();
    let mut from = after.saturating_add(1);
    while dead_letters.len() < limit {
        let Some(m) = next_from(&dlq, &subject, from).await? else {
            break;
        };
        from = m.sequence.saturating_add(1);
        dead_letters.push(dead_letter(&m));
    }
    let total = count(js, topology::DLQ, &subject)
        .await
        .map_err(|e| unavailable("count the dead letters", e))?;
    Ok(ListDeadLettersResponse {
        dead_letters,
        total,
    })
}

/// ReplayDeadLetters: republishes the given dead letters (all of the stream's when
/// `sequences` is empty) to the stream's delivery subject and deletes each from the DLQ after
/// its PubAck. Every named sequence is checked before anything is replayed. Returns how many
/// were replayed.
pub async fn replay(
    js: &jetstream::Context,
    sink: SinkType,
    stream: &Stream,
    sequences: &[u64],
    publish_timeout: Duration,
) -> Result<u64, ServiceError> {
    if sequences.len() > MAX_LIMIT as usize {
        return Err(invalid(
            "sequences",
            format!(
                "at most {MAX_LIMIT} per request ({} given); leave it empty to replay every dead letter of the stream",
                sequences.len()
            ),
        ));
    }
    let stream_id = stream.id.as_str();
    let dlq_subject = subject(subjects::dlq, sink, stream.key())?;
    let replay = Replay {
        js,
        dlq: dlq_stream(js).await?,
        deliver_subject: subject(subjects::deliver, sink, stream.key())?,
        stream_id,
        stream_key: stream.key(),
        publish_timeout,
    };
    let mut replayed = 0;
    if sequences.is_empty() {
        // Only what is there now: a replayed event refused again comes back with a new
        // sequence and must not be replayed in a loop.
        let last = replay
            .dlq
            .get_info()
            .await
            .map_err(|e| unavailable("read the dead-letter queue (AUDIT_DLQ)", e))?
            .state
            .last_sequence;
        let mut from = 1;
        while let Some(m) = next_from(&replay.dlq, &dlq_subject, from).await? {
            if m.sequence > last {
                break;
            }
            from = m.sequence.saturating_add(1);
            replay.one(&m, replayed).await?;
            replayed += 1;
        }
        return Ok(replayed);
    }
    let mut seen = BTreeSet::new();
    let mut letters = Vec::new();
    for (i, &sequence) in sequences.iter().enumerate() {
        if !seen.insert(sequence) {
            continue;
        }
        let not_ours = || {
            invalid(
                &format!("sequences[{i}]"),
                format!("{sequence} is not a dead letter of stream {stream_id}"),
            )
        };
        if sequence == 0 {
            return Err(not_ours());
        }
        match replay.dlq.get_raw_message(sequence).await {
            Ok(m) if m.subject.as_str() == dlq_subject => letters.push(m),
            Ok(_) => return Err(not_ours()),
            Err(e) if is_missing(&e) => return Err(not_ours()),
            Err(e) => return Err(unavailable("read the dead-letter queue (AUDIT_DLQ)", e)),
        }
    }
    for m in &letters {
        replay.one(m, replayed).await?;
        replayed += 1;
    }
    Ok(replayed)
}

struct Replay<'a> {
    js: &'a jetstream::Context,
    dlq: jetstream::stream::Stream<()>,
    deliver_subject: String,
    stream_id: &'a str,
    stream_key: &'a str,
    publish_timeout: Duration,
}

impl Replay<'_> {
    /// Republishes one dead letter, then deletes it. `done` (replayed so far) goes into the
    /// error, so the caller knows how far it got.
    async fn one(&self, m: &StreamMessage, done: u64) -> Result<(), ServiceError> {
        let event_id = m
            .headers
            .get(headers::EVENT_ID)
            .map(|v| v.as_str())
            .filter(|id| !id.is_empty())
            .unwrap_or("unknown");
        let msg_id = format!("{event_id}.{}.replay.{}", self.stream_key, m.sequence);
        publish_durable(
            self.js,
            self.deliver_subject.clone(),
            &msg_id,
            replay_headers(&m.headers, self.stream_id),
            m.payload.clone(),
            self.publish_timeout,
        )
        .await
        .map_err(|e| {
            ServiceError::Unavailable(format!(
                "replayed {done} dead letter(s); dead letter {} could not be republished to {} (it stays in the DLQ): {e}",
                m.sequence, self.deliver_subject
            ))
        })?;
        match self.dlq.delete_message(m.sequence).await {
            Ok(_) => Ok(()),
            // A concurrent replay of the same dead letter deleted it first; its republish
            // had the same Nats-Msg-Id, so JetStream stored the event once.
            Err(e) if already_deleted(&e) => Ok(()),
            Err(e) => Err(ServiceError::Unavailable(format!(
                "replayed {} dead letter(s), but dead letter {} could not be deleted from the DLQ after it was republished \
                 (replaying it again delivers it twice): {e}",
                done + 1,
                m.sequence
            ))),
        }
    }
}

fn already_deleted(e: &DeleteMessageError) -> bool {
    matches!(e.kind(), DeleteMessageErrorKind::JetStream(js) if js.error_code() == jetstream::ErrorCode::NO_MESSAGE_FOUND)
}

/// The dead letter's headers without the error and JetStream's own (`Nats-*`), with the
/// stream id.
pub fn replay_headers(original: &HeaderMap, stream_id: &str) -> HeaderMap {
    let mut out = HeaderMap::new();
    for (name, values) in original.iter() {
        let n: &str = name.as_ref();
        let jetstream_own = n.get(..5).is_some_and(|p| p.eq_ignore_ascii_case("nats-"));
        if jetstream_own || n.eq_ignore_ascii_case(headers::ERROR) {
            continue;
        }
        for v in values {
            out.append(name.clone(), v.clone());
        }
    }
    out.insert(headers::STREAM_ID, stream_id);
    out
}
