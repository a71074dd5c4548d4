//! The destination side: an HTTP log intake (what sink-http's generic preset sends: a JSON
//! array or NDJSON, maybe gzip) that counts every event id it gets (`audit.event_id`, which
//! the router adds to every message) and the end-to-end latency from the event's
//! `loadgen_sent_ns` to its arrival. Answers 200 once counted.

use std::{
    collections::HashMap,
    io::Read as _,
    net::SocketAddr,
    sync::{Arc, Mutex},
    time::Duration,
};

use axum::{body::Bytes, extract::State, http::HeaderMap, http::StatusCode, routing::post};
use serde::Deserialize;

use crate::{send::now_ns, stats::Samples};

#[derive(Default)]
struct Counts {
    /// Deliveries per id (more than 1: a duplicate).
    seen: HashMap<String, u32>,
    latency: Samples,
    /// Arrivals without a readable `loadgen_sent_ns` (id and what the field held): events
    /// the load generator did not send (the config service's self-audit events reach the
    /// organizations' destinations too), or a message that lost its stamp.
    unstamped: Vec<(String, Option<String>)>,
    bytes: u64,
    /// While set, requests get no answer: they wait until it is cleared and are then
    /// refused with 503 (the sender has long given up; a hung destination, for chaos runs).
    hang: bool,
    /// Requests whose path starts with this are refused with this status (a broken
    /// destination, for the backlog benchmark).
    refuse: Option<(String, StatusCode)>,
}

#[derive(Clone)]
pub struct Receiver {
    addr: SocketAddr,
    counts: Arc<Mutex<Counts>>,
}

#[derive(Deserialize)]
struct Audit {
    event_id: String,
}

/// The fields of a rendered message the receiver reads; the rest is skipped.
#[derive(Deserialize)]
struct Message {
    audit: Audit,
    loadgen_sent_ns: Option<String>,
}

impl Receiver {
    /// Serves on the caller's runtime.
    pub async fn start(addr: SocketAddr) -> anyhow::Result<Receiver> {
        let listener = tokio::net::TcpListener::bind(addr).await?;
        let addr = listener.local_addr()?;
        let counts = Arc::new(Mutex::new(Counts::default()));
        let app = app(counts.clone());
        tokio::spawn(async move {
            let _ = axum::serve(listener, app).await;
        });
        Ok(Receiver { addr, counts })
    }

    /// Serves on a thread of its own (with its own single-threaded runtime, for the life of
    /// the process). For measurements: unpacking and parsing the sinks' batches is CPU work
    /// that would otherwise hold the sender's runtime threads and show up as gateway ack
    /// latency, although in production producer and destination are different machines.
    pub fn start_on_own_thread(addr: SocketAddr) -> anyhow::Result<Receiver> {
        let listener = std::net::TcpListener::bind(addr)?;
        listener.set_nonblocking(true)?;
        let addr = listener.local_addr()?;
        let counts = Arc::new(Mutex::new(Counts::default()));
        let app = app(counts.clone());
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()?;
        std::thread::Builder::new()
            .name("loadgen-receiver".into())
            .spawn(move || {
                runtime.block_on(async move {
                    if let Ok(listener) = tokio::net::TcpListener::from_std(listener) {
                        let _ = axum::serve(listener, app).await;
                    }
                })
            })?;
        Ok(Receiver { addr, counts })
    }

    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// How many of `ids` arrived, the duplicates among all arrivals, and the bytes received.
    pub fn tally(&self, ids: &[String]) -> Tally {
        let counts = self.counts.lock().unwrap();
        let delivered = ids
            .iter()
            .filter(|id| counts.seen.contains_key(*id))
            .count();
        let duplicates = counts.seen.values().map(|n| u64::from(n - 1)).sum();
        Tally {
            delivered,
            missing: ids.len() - delivered,
            duplicates,
            bytes: counts.bytes,
            events: counts.seen.values().map(|n| u64::from(*n)).sum(),
            unstamped: counts.unstamped.clone(),
        }
    }

    /// The ids of `ids` that never arrived.
    pub fn missing(&self, ids: &[String]) -> Vec<String> {
        let counts = self.counts.lock().unwrap();
        ids.iter()
            .filter(|id| !counts.seen.contains_key(*id))
            .cloned()
            .collect()
    }

    /// Waits until every id in `ids` arrived or `timeout` passed.
    pub async fn wait_for(&self, ids: &[String], timeout: Duration) -> Tally {
        let deadline = tokio::time::Instant::now() + timeout;
        loop {
            let tally = self.tally(ids);
            if tally.missing == 0 || tokio::time::Instant::now() >= deadline {
                return tally;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// Refuses (`Some((path prefix, status))`, e.g. `("/lg-org-9", 403)`) or stops refusing.
    pub fn refuse(&self, rule: Option<(&str, u16)>) {
        self.counts.lock().unwrap().refuse = rule.map(|(prefix, status)| {
            (
                prefix.to_owned(),
                StatusCode::from_u16(status).expect("an HTTP status"),
            )
        });
    }

    /// Stops answering (`true`) or answers again (`false`).
    pub fn hang(&self, on: bool) {
        self.counts.lock().unwrap().hang = on;
    }

    /// End-to-end latencies so far (taken: the next call starts empty).
    pub fn take_latency(&self) -> Samples {
        std::mem::take(&mut self.counts.lock().unwrap().latency)
    }
}

fn app(counts: Arc<Mutex<Counts>>) -> axum::Router {
    axum::Router::new()
        .route("/{*path}", post(receive))
        .with_state(counts)
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Tally {
    pub delivered: usize,
    pub missing: usize,
    pub duplicates: u64,
    pub bytes: u64,
    /// Arrivals, duplicates included.
    pub events: u64,
    /// Arrivals without a latency sample (no readable `loadgen_sent_ns`): id and the
    /// field's value, if any.
    pub unstamped: Vec<(String, Option<String>)>,
}

async fn receive(
    State(counts): State<Arc<Mutex<Counts>>>,
    uri: axum::http::Uri,
    headers: HeaderMap,
    body: Bytes,
) -> StatusCode {
    if counts.lock().unwrap().hang {
        while counts.lock().unwrap().hang {
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        return StatusCode::SERVICE_UNAVAILABLE;
    }
    let arrived = now_ns();
    if let Some((prefix, status)) = &counts.lock().unwrap().refuse
        && uri.path().starts_with(prefix.as_str())
    {
        return *status;
    }
    let raw_len = body.len() as u64;
    let body = if headers
        .get("content-encoding")
        .is_some_and(|v| v.as_bytes().eq_ignore_ascii_case(b"gzip"))
    {
        let mut out = Vec::new();
        if flate2::read::GzDecoder::new(&body[..])
            .read_to_end(&mut out)
            .is_err()
        {
            return StatusCode::BAD_REQUEST;
        }
        Bytes::from(out)
    } else {
        body
    };
    let messages: Vec<Message> = match serde_json::from_slice::<Vec<Message>>(&body) {
        Ok(m) => m,
        // NDJSON
        Err(_) => match serde_json::Deserializer::from_slice(&body)
            .into_iter::<Message>()
            .collect::<Result<Vec<_>, _>>()
        {
            Ok(m) => m,
            Err(_) => return StatusCode::BAD_REQUEST,
        },
    };
    let mut counts = counts.lock().unwrap();
    counts.bytes += raw_len;
    for m in messages {
        match m.loadgen_sent_ns.as_deref().map(str::parse::<u128>) {
            Some(Ok(sent)) => {
                let micros = arrived.saturating_sub(sent) / 1000;
                counts.latency.push_micros(micros as u64);
            }
            _ => counts
                .unstamped
                .push((m.audit.event_id.clone(), m.loadgen_sent_ns.clone())),
        }
        *counts.seen.entry(m.audit.event_id).or_insert(0) += 1;
    }
    StatusCode::OK
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn counts_ids_duplicates_and_latency() {
        let r = Receiver::start("127.0.0.1:0".parse().unwrap())
            .await
            .unwrap();
        let sent = now_ns() - 5_000_000; // 5 ms ago
        let body = format!(
            r#"[{{"x":1,"loadgen_sent_ns":"{sent}","audit":{{"event_id":"a"}}}},{{"audit":{{"event_id":"b"}}}}]"#
        );
        let client = reqwest::Client::new();
        let url = format!("http://{}/s-1", r.addr());
        for _ in 0..2 {
            let status = client
                .post(&url)
                .body(body.clone())
                .send()
                .await
                .unwrap()
                .status();
            assert_eq!(status, 200);
        }
        let ndjson = r#"{"audit":{"event_id":"c"}}
{"audit":{"event_id":"d"}}"#;
        assert_eq!(
            client
                .post(&url)
                .body(ndjson)
                .send()
                .await
                .unwrap()
                .status(),
            200
        );
        assert_eq!(
            client
                .post(&url)
                .body("nope")
                .send()
                .await
                .unwrap()
                .status(),
            400
        );
        let ids: Vec<String> = ["a", "b", "c", "d", "e"]
            .iter()
            .map(|s| s.to_string())
            .collect();
        let t = r.tally(&ids);
        assert_eq!(
            (
                t.delivered,
                t.missing,
                t.duplicates,
                t.events,
                t.unstamped.len()
            ),
            (4, 1, 2, 6, 4)
        );
        assert_eq!(t.unstamped[0], ("b".to_string(), None));

        // A broken destination: one path refused, the others still counted.
        r.refuse(Some(("/s-1", 403)));
        let status = |url: String| {
            let client = client.clone();
            async move { client.post(url).body(ndjson).send().await.unwrap().status() }
        };
        assert_eq!(status(url.clone()).await, 403);
        assert_eq!(status(format!("http://{}/s-2", r.addr())).await, 200);
        r.refuse(None);
        assert_eq!(status(url.clone()).await, 200);
        assert_eq!(r.tally(&ids).events, 10, "refused requests are not counted");
        let mut latency = r.take_latency();
        assert_eq!(latency.len(), 2);
        assert!(latency.percentile_ms(50.0) >= 5.0);
    }
}
