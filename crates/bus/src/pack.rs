//! Packs: several events in one NATS message.
//!
//! JetStream's cost is per message, not per byte, so the router puts the deliveries of one
//! stream that it routes together into one message on `audit.deliver.<sink>.<stream>` and
//! the sink unpacks it; likewise the gateway puts the events of one request and
//! organization whose ids it assigned into one message on `audit.ingest.<org>.pack` and
//! the router unpacks it. Every event keeps its own headers inside the pack (event id,
//! `Nats-Msg-Id = <event>.<stream>`, traceparent…), so a sink moves, dead-letters and
//! replays events one by one exactly as if each had come alone, and acks the pack only when
//! every event in it is settled.
//!
//! A pack is marked by the [`PACK`] header (the format version) and its body is, per event:
//! a big-endian `u32` length and the headers as `Name: value\r\n` lines, then a `u32`
//! length and the message bytes (never re-encoded). Its `Nats-Msg-Id` is a digest of the
//! per-event ids it holds ([`pack_msg_id`]): the same pack published twice is stored once,
//! and two different packs never share an id.

use async_nats::{HeaderMap, HeaderName, HeaderValue};
use bytes::{Bytes, BytesMut};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use crate::headers;

/// The header that marks a pack; its value is the format version.
pub const PACK: &str = "Auditstream-Pack";
/// The only format this code writes and reads.
pub const VERSION: &str = "1";

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum PackError {
    #[error("pack format {0:?} is not one this build reads (it reads {VERSION})")]
    Version(String),
    #[error("pack is cut off at byte {0}")]
    Truncated(usize),
    #[error("pack entry {0} has a malformed header line")]
    Header(usize),
}

/// The bytes one entry adds to a pack: the two lengths, its header lines exactly as
/// [`Packer::push`] writes them, and its message bytes. Both packers reckon with it against
/// [`PackConfig::max_bytes`]; a fixed estimate was wrong for long header values (a
/// producer's `traceparent`, long ids), and packs then grew past the server's `max_payload`.
pub fn entry_bytes(headers: &HeaderMap, body_len: usize) -> usize {
    let lines: usize = headers
        .iter()
        .map(|(name, values)| {
            // As `push` writes it: `Name: value\r\n` per value.
            let name: &[u8] = name.as_ref();
            values
                .iter()
                .map(|value| name.len() + 2 + value.as_str().len() + 2)
                .sum::<usize>()
        })
        .sum();
    8 + lines + body_len
}

/// How big a pack may grow: the router's `pack` (deliveries of one stream) and the
/// gateway's `pack` (events of one request and organization) settings.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct PackConfig {
    /// Events per pack; 1 publishes every event as a message of its own.
    pub max_events: usize,
    /// Bytes per pack; keep it under the server's `max_payload` (1 MiB by default). An
    /// event bigger than this goes alone.
    pub max_bytes: usize,
}

impl Default for PackConfig {
    fn default() -> Self {
        PackConfig {
            max_events: 100,
            max_bytes: 512 * 1024,
        }
    }
}

/// Builds one pack. Bytes are appended as events come, so a pack is written once.
#[derive(Default)]
pub struct Packer {
    body: BytesMut,
    ids: Sha256,
    events: usize,
}

impl Packer {
    pub fn new() -> Self {
        Self::default()
    }

    /// Adds one event: its headers (with `Nats-Msg-Id`, which names it in the digest) and
    /// its message bytes.
    pub fn push(&mut self, headers: &HeaderMap, body: &[u8]) {
        let mut block = Vec::with_capacity(256);
        for (name, values) in headers.iter() {
            for value in values {
                block.extend_from_slice(name.as_ref());
                block.extend_from_slice(b": ");
                block.extend_from_slice(value.as_str().as_bytes());
                block.extend_from_slice(b"\r\n");
            }
        }
        let id = headers.get(headers::MSG_ID).map_or("", |v| v.as_str());
        self.ids.update(id.as_bytes());
        self.ids.update(b"\n");
        self.body.reserve(8 + block.len() + body.len());
        self.body
            .extend_from_slice(&(block.len() as u32).to_be_bytes());
        self.body.extend_from_slice(&block);
        self.body
            .extend_from_slice(&(body.len() as u32).to_be_bytes());
        self.body.extend_from_slice(body);
        self.events += 1;
    }

    pub fn len(&self) -> usize {
        self.events
    }

    pub fn is_empty(&self) -> bool {
        self.events == 0
    }

    /// Bytes so far (what the NATS message's payload will be).
    pub fn bytes(&self) -> usize {
        self.body.len()
    }

    /// The pack's `Nats-Msg-Id` and payload.
    pub fn finish(self) -> (String, Bytes) {
        (pack_msg_id(self.ids), self.body.freeze())
    }
}

fn pack_msg_id(ids: Sha256) -> String {
    let digest = ids.finalize();
    let mut id = String::with_capacity(5 + 32);
    id.push_str("pack-");
    for b in &digest[..16] {
        id.push_str(&format!("{b:02x}"));
    }
    id
}

/// Whether a message is a pack, and of a format this build reads.
pub fn is_pack(headers: Option<&HeaderMap>) -> Result<bool, PackError> {
    match headers.and_then(|h| h.get(PACK)) {
        None => Ok(false),
        Some(v) if v.as_str() == VERSION => Ok(true),
        Some(v) => Err(PackError::Version(v.as_str().to_owned())),
    }
}

/// The events of a pack: each one's headers and message bytes (sharing `payload`'s memory).
pub fn unpack(payload: &Bytes) -> Result<Vec<(HeaderMap, Bytes)>, PackError> {
    let mut out = Vec::new();
    let mut at = 0;
    let take = |at: &mut usize| -> Result<Bytes, PackError> {
        let len_end = *at + 4;
        let len = payload.get(*at..len_end).ok_or(PackError::Truncated(*at))?;
        let len = u32::from_be_bytes(len.try_into().expect("4 bytes")) as usize;
        let end = len_end
            .checked_add(len)
            .filter(|end| *end <= payload.len())
            .ok_or(PackError::Truncated(len_end))?;
        *at = end;
        Ok(payload.slice(len_end..end))
    };
    while at < payload.len() {
        let entry = out.len();
        let block = take(&mut at)?;
        let body = take(&mut at)?;
        let text = std::str::from_utf8(&block).map_err(|_| PackError::Header(entry))?;
        let mut headers = HeaderMap::new();
        for line in text.split_terminator("\r\n") {
            let (name, value) = line.split_once(": ").ok_or(PackError::Header(entry))?;
            let name: HeaderName = name.parse().map_err(|_| PackError::Header(entry))?;
            let value: HeaderValue = value.parse().map_err(|_| PackError::Header(entry))?;
            headers.append(name, value);
        }
        out.push((headers, body));
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn event(id: &str, body: &str) -> (HeaderMap, Vec<u8>) {
        let mut h = HeaderMap::new();
        h.insert(headers::MSG_ID, format!("{id}.s-1").as_str());
        h.insert(headers::EVENT_ID, id);
        h.insert(
            headers::TRACEPARENT,
            "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01",
        );
        (h, body.as_bytes().to_vec())
    }

    #[test]
    fn events_come_out_as_they_went_in() {
        let events = [
            event("e-1", r#"{"a":1}"#),
            event("e-2", ""),
            event("e-3", &"x".repeat(70_000)),
        ];
        let mut p = Packer::new();
        for (h, b) in &events {
            p.push(h, b);
        }
        assert_eq!(p.len(), 3);
        let (id, payload) = p.finish();
        assert!(id.starts_with("pack-") && id.len() == 37, "{id}");
        let back = unpack(&payload).unwrap();
        assert_eq!(back.len(), 3);
        for ((h, b), (h2, b2)) in events.iter().zip(&back) {
            assert_eq!(&b[..], &b2[..]);
            for name in [headers::MSG_ID, headers::EVENT_ID, headers::TRACEPARENT] {
                assert_eq!(h.get(name), h2.get(name), "{name}");
            }
        }
    }

    #[test]
    fn the_id_names_exactly_the_events_inside() {
        let id_of = |ids: &[&str]| {
            let mut p = Packer::new();
            for id in ids {
                let (h, b) = event(id, "{}");
                p.push(&h, &b);
            }
            p.finish().0
        };
        assert_eq!(id_of(&["a", "b"]), id_of(&["a", "b"]));
        assert_ne!(id_of(&["a", "b"]), id_of(&["a"]));
        assert_ne!(id_of(&["a", "b"]), id_of(&["b", "a"]));
        // The separator keeps ids from running together.
        assert_ne!(id_of(&["ab", "c"]), id_of(&["a", "bc"]));
    }

    #[test]
    fn damaged_packs_are_an_error_not_a_panic() {
        let (h, b) = event("e-1", r#"{"a":1}"#);
        let mut p = Packer::new();
        p.push(&h, &b);
        let (_, payload) = p.finish();
        for cut in 1..payload.len() {
            assert!(unpack(&payload.slice(..cut)).is_err(), "cut at {cut}");
        }
        let mut bad = payload.to_vec();
        bad[5] = b'\n'; // inside the header block
        assert!(unpack(&Bytes::from(bad)).is_err());
        assert_eq!(unpack(&Bytes::new()).unwrap().len(), 0);
    }

    #[test]
    fn entry_bytes_is_what_push_writes() {
        let mut p = Packer::new();
        let mut expected = 0;
        for (id, body) in [("e-1", "{}".to_owned()), ("e-2", "y".repeat(5000))] {
            let (mut h, b) = event(id, &body);
            // A repeated header is written once per value.
            h.append("X-Extra", "one");
            h.append("X-Extra", "two and more");
            expected += entry_bytes(&h, b.len());
            p.push(&h, &b);
            assert_eq!(p.bytes(), expected, "{id}");
        }
        // Empty headers and body: only the two lengths.
        assert_eq!(entry_bytes(&HeaderMap::new(), 0), 8);
        let mut empty = Packer::new();
        empty.push(&HeaderMap::new(), b"");
        assert_eq!(empty.bytes(), 8);
    }

    #[test]
    fn only_known_versions_are_packs() {
        let mut h = HeaderMap::new();
        assert_eq!(is_pack(Some(&h)), Ok(false));
        assert_eq!(is_pack(None), Ok(false));
        h.insert(PACK, VERSION);
        assert_eq!(is_pack(Some(&h)), Ok(true));
        h.insert(PACK, "2");
        assert!(matches!(is_pack(Some(&h)), Err(PackError::Version(v)) if v == "2"));
    }
}
