//! A real HTTP server on loopback for sink tests: records every request (headers, body
//! decompressed, the status it got, the event ids it carried) and answers as the test says
//! ([`Behavior`]): accept, fail with a status (for a while), refuse some events, require a
//! header, or hold requests until released.
//!
//! Event ids are counted from the body whatever the framing: a JSON array of objects, NDJSON,
//! or concatenated objects (Splunk HEC). An object's id is its `"audit"."event_id"` (what the
//! router adds to every message), else its top-level string `"id"`, in the object or in its
//! `"event"` (Splunk's wrapper). Probes (`[]`, empty body) carry no ids but are recorded.

use std::{
    collections::HashSet,
    io::Read as _,
    net::SocketAddr,
    sync::{
        Arc, Mutex,
        atomic::{AtomicUsize, Ordering},
    },
    time::{Duration, Instant},
};

use axum::{
    body::Body,
    extract::{Request, State},
    http::{HeaderValue, StatusCode, header},
    response::Response,
};
use serde_json::Value;
use tokio::{sync::watch, task::JoinHandle};

/// How the receiver answers; applies to requests that arrive after it is set.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Behavior {
    /// 200, or 204 for an empty body.
    Accept,
    /// `status` (with `Retry-After` and `body` if given) to every request.
    Status {
        status: u16,
        retry_after: Option<String>,
        body: String,
    },
    /// `status` until `until`, then as [`Behavior::Accept`].
    StatusUntil {
        status: u16,
        retry_after: Option<String>,
        until: Instant,
    },
    /// `status` to requests whose (decompressed) body contains `needle`; others accepted.
    RejectContaining { needle: String, status: u16 },
    /// The answer waits until [`HttpReceiver::release`], then as [`Behavior::Accept`].
    Hold,
    /// Accepted when header `name` (case-insensitive) equals `value`, else `otherwise`.
    RequireHeader {
        name: String,
        value: String,
        otherwise: u16,
    },
    /// Every check in turn: the first that does not accept answers.
    All(Vec<Behavior>),
}

/// One request as it arrived.
#[derive(Debug, Clone)]
pub struct Recorded {
    pub at: Instant,
    pub method: String,
    pub path_and_query: String,
    /// Lowercase names, in the order received.
    pub headers: Vec<(String, String)>,
    /// Decompressed when `Content-Encoding: gzip`.
    pub body: Vec<u8>,
    /// Bytes on the wire (compressed size when gzipped).
    pub raw_len: usize,
    /// The status it was (or, while held, will be) answered with.
    pub status: u16,
    pub event_ids: Vec<String>,
}

impl Recorded {
    /// The first value of header `name` (case-insensitive).
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }

    pub fn body_text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }
}

struct Entry {
    recorded: Recorded,
    /// False while held: its ids do not count as accepted yet.
    answered: bool,
}

struct Shared {
    behavior: Mutex<Behavior>,
    entries: Mutex<Vec<Entry>>,
    held: AtomicUsize,
    /// Bumped by `release`; held requests wait for it to change.
    releases: watch::Sender<u64>,
}

pub struct HttpReceiver {
    addr: SocketAddr,
    shared: Arc<Shared>,
    server: JoinHandle<()>,
}

impl Drop for HttpReceiver {
    fn drop(&mut self) {
        self.server.abort();
    }
}

impl HttpReceiver {
    /// Starts a receiver on 127.0.0.1 (a free port) that accepts everything.
    pub async fn start() -> HttpReceiver {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind a loopback port for the HTTP receiver");
        let addr = listener.local_addr().expect("the receiver's address");
        let shared = Arc::new(Shared {
            behavior: Mutex::new(Behavior::Accept),
            entries: Mutex::new(Vec::new()),
            held: AtomicUsize::new(0),
            releases: watch::channel(0).0,
        });
        let app = axum::Router::new()
            .fallback(handle)
            .with_state(shared.clone());
        let server = tokio::spawn(async move {
            axum::serve(listener, app)
                .await
                .expect("the HTTP receiver stopped");
        });
        HttpReceiver {
            addr,
            shared,
            server,
        }
    }

    /// `http://127.0.0.1:<port><path>`
    pub fn url(&self, path: &str) -> String {
        format!("http://{}{path}", self.addr)
    }

    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    pub fn set_behavior(&self, behavior: Behavior) {
        *self.shared.behavior.lock().unwrap() = behavior;
    }

    /// Every request so far, in arrival order, refused and held ones included.
    pub fn requests(&self) -> Vec<Recorded> {
        let entries = self.shared.entries.lock().unwrap();
        entries.iter().map(|e| e.recorded.clone()).collect()
    }

    /// The event ids of the requests answered 2xx, in order (duplicates kept).
    pub fn accepted_ids(&self) -> Vec<String> {
        let entries = self.shared.entries.lock().unwrap();
        entries
            .iter()
            .filter(|e| e.answered && (200..300).contains(&e.recorded.status))
            .flat_map(|e| e.recorded.event_ids.iter().cloned())
            .collect()
    }

    /// Waits until every id in `ids` was accepted; panics after `timeout` saying how many are
    /// missing.
    pub async fn wait_for_ids(&self, ids: &HashSet<String>, timeout: Duration) {
        let deadline = Instant::now() + timeout;
        loop {
            let accepted: HashSet<String> = self.accepted_ids().into_iter().collect();
            let mut missing: Vec<&String> = ids.difference(&accepted).collect();
            if missing.is_empty() {
                return;
            }
            if Instant::now() >= deadline {
                missing.sort();
                let requests = self.requests();
                let statuses: Vec<u16> = requests.iter().map(|r| r.status).collect();
                panic!(
                    "{} of {} event ids not accepted by the receiver within {timeout:?} (e.g. \
                     {:?}); {} requests so far, statuses {statuses:?}, {} held",
                    missing.len(),
                    ids.len(),
                    &missing[..missing.len().min(5)],
                    requests.len(),
                    self.held()
                );
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    /// Lets the requests held so far be answered (as [`Behavior::Accept`]).
    pub fn release(&self) {
        self.shared.releases.send_modify(|n| *n += 1);
    }

    /// Requests currently held.
    pub fn held(&self) -> usize {
        self.shared.held.load(Ordering::SeqCst)
    }
}

/// What to answer, decided when the request arrives.
enum Decision {
    Answer {
        status: u16,
        retry_after: Option<String>,
        body: String,
    },
    Hold,
}

fn accept(body: &[u8]) -> Decision {
    Decision::Answer {
        status: if body.is_empty() { 204 } else { 200 },
        retry_after: None,
        body: String::new(),
    }
}

fn refuse(status: u16, retry_after: Option<String>) -> Decision {
    Decision::Answer {
        status,
        retry_after,
        body: format!("{{\"error\":\"refused by the test receiver\",\"status\":{status}}}"),
    }
}

fn decide(behavior: &Behavior, headers: &[(String, String)], body: &[u8]) -> Decision {
    match behavior {
        Behavior::Accept => accept(body),
        Behavior::Status {
            status,
            retry_after,
            body,
        } => Decision::Answer {
            status: *status,
            retry_after: retry_after.clone(),
            body: body.clone(),
        },
        Behavior::StatusUntil {
            status,
            retry_after,
            until,
        } => {
            if Instant::now() < *until {
                refuse(*status, retry_after.clone())
            } else {
                accept(body)
            }
        }
        Behavior::RejectContaining { needle, status } => {
            let needle = needle.as_bytes();
            if !needle.is_empty() && body.windows(needle.len()).any(|w| w == needle) {
                refuse(*status, None)
            } else {
                accept(body)
            }
        }
        Behavior::Hold => Decision::Hold,
        Behavior::All(checks) => checks
            .iter()
            .map(|b| decide(b, headers, body))
            .find(|d| !matches!(d, Decision::Answer { status, .. } if (200..300).contains(status)))
            .unwrap_or_else(|| accept(body)),
        Behavior::RequireHeader {
            name,
            value,
            otherwise,
        } => {
            let ok = headers
                .iter()
                .any(|(n, v)| n.eq_ignore_ascii_case(name) && v == value);
            if ok {
                accept(body)
            } else {
                refuse(*otherwise, None)
            }
        }
    }
}

async fn handle(State(shared): State<Arc<Shared>>, request: Request) -> Response {
    let at = Instant::now();
    let (parts, body) = request.into_parts();
    let raw = axum::body::to_bytes(body, 256 * 1024 * 1024)
        .await
        .unwrap_or_default();
    let headers: Vec<(String, String)> = parts
        .headers
        .iter()
        .map(|(n, v)| {
            (
                n.as_str().to_owned(),
                String::from_utf8_lossy(v.as_bytes()).into_owned(),
            )
        })
        .collect();
    let gzipped = parts
        .headers
        .get(header::CONTENT_ENCODING)
        .is_some_and(|v| v.as_bytes().eq_ignore_ascii_case(b"gzip"));
    let body = if gzipped {
        let mut out = Vec::new();
        match flate2::read::GzDecoder::new(&raw[..]).read_to_end(&mut out) {
            Ok(_) => out,
            Err(_) => raw.to_vec(),
        }
    } else {
        raw.to_vec()
    };
    let decision = {
        let behavior = shared.behavior.lock().unwrap();
        decide(&behavior, &headers, &body)
    };
    let (status, retry_after, answer, held) = match decision {
        Decision::Answer {
            status,
            retry_after,
            body,
        } => (status, retry_after, body, false),
        Decision::Hold => (200, None, String::new(), true),
    };
    let index = {
        let mut entries = shared.entries.lock().unwrap();
        entries.push(Entry {
            recorded: Recorded {
                at,
                method: parts.method.to_string(),
                path_and_query: parts
                    .uri
                    .path_and_query()
                    .map(|p| p.to_string())
                    .unwrap_or_default(),
                headers,
                event_ids: event_ids(&body),
                body,
                raw_len: raw.len(),
                status,
            },
            answered: !held,
        });
        entries.len() - 1
    };
    if held {
        let mut releases = shared.releases.subscribe();
        releases.mark_unchanged();
        shared.held.fetch_add(1, Ordering::SeqCst);
        let _ = releases.changed().await;
        shared.held.fetch_sub(1, Ordering::SeqCst);
        shared.entries.lock().unwrap()[index].answered = true;
    }
    let mut response = Response::new(Body::from(answer));
    *response.status_mut() = StatusCode::from_u16(status).unwrap_or(StatusCode::OK);
    if let Some(value) = retry_after.and_then(|v| HeaderValue::from_str(&v).ok()) {
        response.headers_mut().insert(header::RETRY_AFTER, value);
    }
    response
}

/// The event ids in a body: a JSON array of objects, NDJSON, or concatenated objects.
pub(crate) fn event_ids(body: &[u8]) -> Vec<String> {
    // The router's messages carry `audit.event_id`; a template may put it elsewhere, and
    // Splunk wraps the message in `event`.
    fn own_id(value: &Value) -> Option<&str> {
        value
            .get("audit")
            .and_then(|a| a.get("event_id"))
            .and_then(Value::as_str)
            .or_else(|| value.get("id")?.as_str())
    }
    fn id_of(value: &Value) -> Option<String> {
        own_id(value)
            .or_else(|| own_id(value.get("event")?))
            .map(str::to_owned)
    }
    let mut ids = Vec::new();
    for value in serde_json::Deserializer::from_slice(body).into_iter::<Value>() {
        let Ok(value) = value else { break };
        match &value {
            Value::Array(items) => ids.extend(items.iter().filter_map(id_of)),
            other => ids.extend(id_of(other)),
        }
    }
    ids
}

#[cfg(test)]
mod tests {
    use std::io::Write as _;

    use super::*;

    #[test]
    fn ids_from_every_framing() {
        assert_eq!(event_ids(br#"[{"id":"a"},{"id":"b"}]"#), ["a", "b"]);
        assert_eq!(
            event_ids(
                br#"{"id":"job-1","audit":{"event_id":"e1"}}{"event":{"audit":{"event_id":"e2"}}}"#
            ),
            ["e1", "e2"]
        );
        assert_eq!(event_ids(b"{\"id\":\"a\"}\n{\"id\":\"b\"}\n"), ["a", "b"]);
        assert_eq!(
            event_ids(br#"{"time":1.5,"event":{"id":"a"}}{"event":{"id":"b"},"sourcetype":"x"}"#),
            ["a", "b"]
        );
        assert!(event_ids(b"[]").is_empty());
        assert!(event_ids(b"").is_empty());
        assert_eq!(event_ids(b"{\"id\":\"a\"}\nnot json"), ["a"]);
    }

    async fn post(url: &str, body: &[u8], headers: &[(&str, &str)]) -> reqwest::Response {
        let mut request = reqwest::Client::new().post(url).body(body.to_vec());
        for (n, v) in headers {
            request = request.header(*n, *v);
        }
        request.send().await.unwrap()
    }

    #[tokio::test]
    async fn records_requests_and_follows_behaviors() {
        let receiver = HttpReceiver::start().await;
        let url = receiver.url("/in?x=1");
        assert!(url.starts_with("http://127.0.0.1:"));

        let r = post(&url, br#"[{"id":"a"}]"#, &[("X-Test", "yes")]).await;
        assert_eq!(r.status(), 200);
        assert_eq!(post(&url, b"[]", &[]).await.status(), 200);
        assert_eq!(post(&url, b"", &[]).await.status(), 204);

        let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
        gz.write_all(b"{\"id\":\"b\"}\n").unwrap();
        let gz = gz.finish().unwrap();
        post(&url, &gz, &[("Content-Encoding", "gzip")]).await;

        receiver.set_behavior(Behavior::Status {
            status: 503,
            retry_after: Some("5".into()),
            body: "down".into(),
        });
        let r = post(&url, br#"[{"id":"c"}]"#, &[]).await;
        assert_eq!(r.status(), 503);
        assert_eq!(r.headers()["retry-after"], "5");
        assert_eq!(r.text().await.unwrap(), "down");

        receiver.set_behavior(Behavior::RejectContaining {
            needle: "poison".into(),
            status: 400,
        });
        assert_eq!(
            post(&url, br#"[{"id":"p","x":"poison"}]"#, &[])
                .await
                .status(),
            400
        );
        assert_eq!(post(&url, br#"[{"id":"d"}]"#, &[]).await.status(), 200);

        receiver.set_behavior(Behavior::RequireHeader {
            name: "Authorization".into(),
            value: "Bearer good".into(),
            otherwise: 403,
        });
        assert_eq!(post(&url, br#"[{"id":"e"}]"#, &[]).await.status(), 403);
        let ok = post(
            &url,
            br#"[{"id":"f"}]"#,
            &[("authorization", "Bearer good")],
        )
        .await;
        assert_eq!(ok.status(), 200);

        receiver.set_behavior(Behavior::StatusUntil {
            status: 429,
            retry_after: None,
            until: Instant::now() + Duration::from_millis(300),
        });
        assert_eq!(post(&url, br#"[{"id":"g"}]"#, &[]).await.status(), 429);
        tokio::time::sleep(Duration::from_millis(350)).await;
        assert_eq!(post(&url, br#"[{"id":"g"}]"#, &[]).await.status(), 200);

        let requests = receiver.requests();
        assert_eq!(requests.len(), 11);
        let first = &requests[0];
        assert_eq!(
            (first.method.as_str(), first.path_and_query.as_str()),
            ("POST", "/in?x=1")
        );
        assert_eq!(first.header("x-test"), Some("yes"));
        assert_eq!(first.event_ids, ["a"]);
        let zipped = &requests[3];
        assert_eq!(zipped.body, b"{\"id\":\"b\"}\n");
        assert_eq!(zipped.raw_len, gz.len());
        assert_eq!(
            requests.iter().map(|r| r.status).collect::<Vec<_>>(),
            [200, 200, 204, 200, 503, 400, 200, 403, 200, 429, 200]
        );
        assert_eq!(receiver.accepted_ids(), ["a", "b", "d", "f", "g"]);
        let want: HashSet<String> = ["a", "f"].map(String::from).into();
        receiver.wait_for_ids(&want, Duration::from_secs(1)).await;
    }

    #[tokio::test]
    async fn held_requests_wait_for_release() {
        let receiver = HttpReceiver::start().await;
        receiver.set_behavior(Behavior::Hold);
        let url = receiver.url("/");
        let pending =
            tokio::spawn(async move { post(&url, br#"[{"id":"h"}]"#, &[]).await.status() });
        while receiver.held() == 0 {
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        assert_eq!(receiver.requests().len(), 1);
        assert!(receiver.accepted_ids().is_empty(), "not answered yet");
        receiver.set_behavior(Behavior::Accept);
        receiver.release();
        assert_eq!(pending.await.unwrap(), 200);
        assert_eq!(receiver.held(), 0);
        assert_eq!(receiver.accepted_ids(), ["h"]);
    }

    #[tokio::test]
    #[should_panic(expected = "1 of 2 event ids not accepted")]
    async fn waiting_for_missing_ids_says_how_many() {
        let receiver = HttpReceiver::start().await;
        post(&receiver.url("/"), br#"[{"id":"a"}]"#, &[]).await;
        let want: HashSet<String> = ["a", "zz"].map(String::from).into();
        receiver
            .wait_for_ids(&want, Duration::from_millis(100))
            .await;
    }
}
