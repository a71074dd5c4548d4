//! One HTTP destination: encodes a batch per its preset, sends it, and says what the answer
//! means (sink-core's [`Class`], with a detail for admins and a hint saying what to fix).

use std::{io::Write as _, sync::Arc, time::Duration};

use auditstream_sink_core::{
    classify::{Class, classify_http},
    deliver::{Answer, Destination, RequestCaps},
    event::Event,
};
use bytes::Bytes;
use http::{HeaderValue, Method, Request, StatusCode, header};
use http_body_util::{BodyExt as _, Full};
use hyper_util::client::legacy::Client;

use crate::{
    connect::{ConnectError, Connector, rustls_error},
    preset::Preset,
    target::{AuthKind, Target},
};

pub(crate) type HttpClient = Client<Connector, Full<Bytes>>;

/// How much of a response body is read (enough for an error message or Splunk's JSON answer).
const MAX_RESPONSE_BYTES: usize = 16 * 1024;
/// How much of a response body goes into an answer's detail, in characters.
const DETAIL_CHARS: usize = 200;
/// Bodies above this are compressed on the blocking pool rather than on the runtime's threads.
const COMPRESS_INLINE_MAX: usize = 64 * 1024;

/// Splunk HEC's answer codes that mean the token or the HEC input is set up wrongly rather
/// than the data being bad: incorrect index (7), data channel missing or invalid (10, 11:
/// indexer acknowledgment is on), ACK disabled (14), query-string authorization disabled (16).
const SPLUNK_CONFIGURATION_CODES: [i64; 5] = [7, 10, 11, 14, 16];
/// Splunk HEC's "No data": the token was accepted but the body was empty.
const SPLUNK_NO_DATA: i64 = 5;

pub struct HttpDestination {
    pub(crate) client: HttpClient,
    pub(crate) target: Arc<Target>,
    pub(crate) caps: RequestCaps,
    /// The service's limit on a request body (before compression).
    pub(crate) max_body: usize,
    pub(crate) request_timeout: Duration,
    pub(crate) user_agent: HeaderValue,
}

impl std::fmt::Debug for HttpDestination {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // Never the URL's path or the headers: a Sumo Logic URL and auth headers are secrets.
        f.debug_struct("HttpDestination")
            .field("host", &self.target.host)
            .field("preset", &self.target.preset.name())
            .field("caps", &self.caps)
            .finish()
    }
}

/// What the destination answered.
struct Reply {
    status: StatusCode,
    retry_after: Option<String>,
    location: Option<String>,
    body: Vec<u8>,
}

impl Destination<Event> for HttpDestination {
    fn caps(&self) -> RequestCaps {
        self.caps
    }

    async fn send(&self, items: &[Event]) -> Answer {
        if items.is_empty() {
            return Answer::delivered("nothing to send");
        }
        let body = self.target.preset.encode(items);
        if body.len() > self.max_body {
            // Within the caps this cannot happen; kept so no request ever exceeds the limit.
            return Answer::new(
                Class::TooLarge,
                format!(
                    "a request of {} events would be {} bytes, more than the {} bytes {} accepts",
                    items.len(),
                    body.len(),
                    self.max_body,
                    self.service()
                ),
                "",
            );
        }
        match self.request(body).await {
            Ok(reply) => self.answer(&reply),
            Err(answer) => answer,
        }
    }

    async fn probe(&self) -> Answer {
        let body = self.target.preset.probe_body().to_vec();
        match self.request(body).await {
            Ok(reply) if self.splunk_no_data(&reply) => Answer::delivered(format!(
                "{}: the HEC token was accepted (no data sent)",
                status_text(reply.status)
            )),
            Ok(reply) => self.answer(&reply),
            Err(answer) => answer,
        }
    }
}

impl HttpDestination {
    fn service(&self) -> &'static str {
        match self.target.preset {
            Preset::Generic(_) => "the endpoint",
            Preset::SumoLogic => "Sumo Logic",
            Preset::Datadog => "Datadog",
            Preset::SplunkHec(_) => "Splunk HEC",
        }
    }

    /// Sends one POST and reads (the start of) the answer; an error is the answer to give when
    /// no HTTP answer came.
    async fn request(&self, body: Vec<u8>) -> Result<Reply, Answer> {
        let target = &self.target;
        let body = if target.gzip { gzip(body).await } else { body };
        let mut request = Request::builder()
            .method(Method::POST)
            .uri(target.uri.clone())
            .body(Full::new(Bytes::from(body)))
            .expect("a request from a checked URI");
        let headers = request.headers_mut();
        headers.insert(
            header::CONTENT_TYPE,
            HeaderValue::from_static(target.preset.content_type()),
        );
        if target.gzip {
            headers.insert(header::CONTENT_ENCODING, HeaderValue::from_static("gzip"));
        }
        headers.insert(header::USER_AGENT, self.user_agent.clone());
        for (name, value) in &target.headers {
            headers.insert(name.clone(), value.clone());
        }

        let exchange = async {
            let response = self.client.request(request).await?;
            let (parts, mut body) = response.into_parts();
            let header = |name| {
                parts
                    .headers
                    .get(name)
                    .and_then(|v: &HeaderValue| v.to_str().ok())
                    .map(str::to_owned)
            };
            let mut reply = Reply {
                status: parts.status,
                retry_after: header(header::RETRY_AFTER),
                location: header(header::LOCATION),
                body: Vec::new(),
            };
            // An error while reading the body leaves what was read: the status is the answer.
            while reply.body.len() < MAX_RESPONSE_BYTES {
                match body.frame().await {
                    Some(Ok(frame)) => {
                        if let Some(data) = frame.data_ref() {
                            reply.body.extend_from_slice(data);
                        }
                    }
                    Some(Err(_)) | None => break,
                }
            }
            Ok::<_, hyper_util::client::legacy::Error>(reply)
        };
        match tokio::time::timeout(self.request_timeout, exchange).await {
            Ok(Ok(reply)) => Ok(reply),
            Ok(Err(error)) => Err(self.failure(&error)),
            Err(_) => Err(Answer::new(
                Class::Transient { retry_after: None },
                format!(
                    "no answer from {} within {:?}",
                    target.host, self.request_timeout
                ),
                "",
            )),
        }
    }

    /// The answer when the request failed without an HTTP answer.
    fn failure(&self, error: &hyper_util::client::legacy::Error) -> Answer {
        let host = &self.target.host;
        let mut source: Option<&(dyn std::error::Error + 'static)> = Some(error);
        while let Some(e) = source {
            if let Some(connect) = e.downcast_ref::<ConnectError>() {
                return self.connect_failure(connect);
            }
            source = e.source();
        }
        Answer::new(
            Class::Transient { retry_after: None },
            format!("request to {host} failed: {}", chain(error)),
            "",
        )
    }

    fn connect_failure(&self, error: &ConnectError) -> Answer {
        let (host, port) = (&self.target.host, self.target.port);
        let transient = |hint: String| {
            Answer::new(
                Class::Transient { retry_after: None },
                error.to_string(),
                hint,
            )
        };
        match error {
            ConnectError::Refused(message) => Answer::new(
                Class::Configuration,
                message.clone(),
                format!(
                    "{host} is not a public address: use the service's public endpoint, or, if \
                     this internal destination is intended, ask the operator to allow-list it \
                     (the HTTP sink's setting sink.allowed_networks)"
                ),
            ),
            ConnectError::Resolve { .. } => transient(format!(
                "if this persists, check that the host name {host} in the destination's URL \
                 exists"
            )),
            ConnectError::Connect { .. } | ConnectError::Timeout { .. } => transient(format!(
                "if this persists, check that {host} accepts connections on port {port} from \
                 this network"
            )),
            ConnectError::Tls { error: io, .. } => match rustls_error(io) {
                Some(
                    rustls::Error::InvalidCertificate(_)
                    | rustls::Error::NoCertificatesPresented
                    | rustls::Error::UnsupportedNameType
                    | rustls::Error::InvalidCertRevocationList(_),
                ) => Answer::new(
                    Class::Configuration,
                    error.to_string(),
                    format!(
                        "the TLS certificate of {host} is not valid or not trusted (expired, \
                         issued for another name, or by an unknown CA): fix the endpoint's \
                         certificate, or, for a private CA, ask the operator to trust it (the \
                         HTTP sink's setting sink.extra_ca_file)"
                    ),
                ),
                Some(_) => Answer::new(
                    Class::Configuration,
                    error.to_string(),
                    format!(
                        "check that {host}:{port} speaks HTTPS with TLS 1.2 or 1.3 (the URL's \
                         scheme and port)"
                    ),
                ),
                None => transient(String::new()),
            },
            ConnectError::Unsupported(_) => Answer::new(
                Class::Configuration,
                error.to_string(),
                "correct the destination's URL",
            ),
        }
    }

    fn splunk_no_data(&self, reply: &Reply) -> bool {
        matches!(self.target.preset, Preset::SplunkHec(_))
            && reply.status == StatusCode::BAD_REQUEST
            && splunk_code(&reply.body) == Some(SPLUNK_NO_DATA)
    }

    fn answer(&self, reply: &Reply) -> Answer {
        let status = reply.status.as_u16();
        let mut class = classify_http(
            status,
            reply.retry_after.as_deref(),
            time::OffsetDateTime::now_utc(),
        );
        let snippet = snippet(&reply.body);
        let detail = if snippet.is_empty() {
            status_text(reply.status)
        } else {
            format!("{}: {snippet}", status_text(reply.status))
        };
        if class == Class::Delivered {
            return Answer::delivered(detail);
        }
        if class == Class::Rejected
            && matches!(self.target.preset, Preset::SplunkHec(_))
            && splunk_code(&reply.body).is_some_and(|c| SPLUNK_CONFIGURATION_CODES.contains(&c))
        {
            class = Class::Configuration;
        }
        let hint = self.hint(&class, reply, &detail);
        Answer::new(class, detail, hint)
    }

    fn hint(&self, class: &Class, reply: &Reply, detail: &str) -> String {
        let host = &self.target.host;
        let status = reply.status.as_u16();
        match class {
            Class::Delivered | Class::Transient { .. } => String::new(),
            Class::TooLarge => format!(
                "{} refused the request as too large; it is split and retried, and an event \
                 too large on its own goes to the dead-letter queue",
                self.service()
            ),
            Class::Rejected => format!("the endpoint rejected this event: {detail}"),
            Class::Configuration => match status {
                401 | 403 | 407 => self.credentials_hint(status),
                404 => self.path_hint(),
                405 => format!(
                    "{host} does not accept POST at this URL (HTTP 405): check that the URL is \
                     {}",
                    self.intake_url()
                ),
                410 => format!(
                    "the endpoint no longer exists (HTTP 410): check that the URL is {}",
                    self.intake_url()
                ),
                300..=399 => {
                    let to = reply
                        .location
                        .as_deref()
                        .and_then(|l| l.parse::<http::Uri>().ok())
                        .and_then(|u| u.host().map(|h| format!(" to {h}")))
                        .unwrap_or_default();
                    format!(
                        "{host} redirects{to} (HTTP {status}); redirects are not followed, so \
                         set the destination's URL to the final address"
                    )
                }
                400..=499 if matches!(self.target.preset, Preset::SplunkHec(_)) => {
                    splunk_configuration_hint(splunk_code(&reply.body), host)
                }
                _ => format!(
                    "{host} does not answer like {} (HTTP {status}): check that the URL is {}",
                    match self.target.preset {
                        Preset::Generic(_) => "a log intake",
                        _ => self.service(),
                    },
                    self.intake_url()
                ),
            },
        }
    }

    fn credentials_hint(&self, status: u16) -> String {
        let host = &self.target.host;
        if self.target.preset == Preset::SumoLogic && self.target.auth == AuthKind::None {
            return format!(
                "Sumo Logic refused the request (HTTP {status}): the HTTP source's URL carries \
                 its credentials; it may have been regenerated or the source deleted, so copy \
                 the source's URL again"
            );
        }
        let what = match (&self.target.auth, &self.target.preset) {
            (AuthKind::None, preset) => {
                let suggestion = match preset {
                    Preset::Datadog => "an API key: header DD-API-KEY or a bearer token",
                    Preset::SplunkHec(_) => "a HEC token (bearer)",
                    _ => "the credentials the endpoint expects",
                };
                return format!(
                    "the endpoint requires credentials (HTTP {status}) and the connection has \
                     none: add {suggestion} to the connection"
                );
            }
            (AuthKind::Basic, _) => "user name and password".to_owned(),
            (AuthKind::Bearer, Preset::Datadog) => "API key (sent as DD-API-KEY)".to_owned(),
            (AuthKind::Bearer, Preset::SplunkHec(_)) => "HEC token".to_owned(),
            (AuthKind::Bearer, _) => "bearer token".to_owned(),
            (AuthKind::Header(name), Preset::Datadog) if name == "dd-api-key" => {
                "API key (DD-API-KEY)".to_owned()
            }
            (AuthKind::Header(name), _) => format!("{name} header value"),
        };
        format!(
            "the endpoint refused the credentials (HTTP {status}): check the connection's \
             {what} and that it may write to {host}"
        )
    }

    fn path_hint(&self) -> String {
        let host = &self.target.host;
        match self.target.preset {
            Preset::SumoLogic => "Sumo Logic has no HTTP source at this URL (HTTP 404): the \
                source may have been deleted or its URL regenerated; copy the source's URL \
                again"
                .to_owned(),
            _ => format!(
                "{host} has no such path (HTTP 404): check the destination URL's path; it \
                 should be {}",
                self.intake_url()
            ),
        }
    }

    /// The documented intake URL of the preset, for hints.
    fn intake_url(&self) -> &'static str {
        match self.target.preset {
            Preset::Generic(_) => "the receiver's intake URL",
            Preset::SumoLogic => {
                "the HTTP source's URL (https://endpoint<N>.collection.<deployment>.sumologic.com\
                 /receiver/v1/http/<code>)"
            }
            Preset::Datadog => {
                "https://http-intake.logs.<site>/api/v2/logs (e.g. \
                 https://http-intake.logs.datadoghq.com/api/v2/logs, \
                 https://http-intake.logs.datadoghq.eu/api/v2/logs)"
            }
            Preset::SplunkHec(_) => {
                "https://<host>:8088/services/collector/event (Splunk Cloud: \
                 https://http-inputs-<stack>.splunkcloud.com/services/collector/event)"
            }
        }
    }
}

fn splunk_configuration_hint(code: Option<i64>, host: &str) -> String {
    match code {
        Some(7) => "the HEC token may not write to this index: allow the index in the token's \
                    settings, or change the destination's splunk-index"
            .to_owned(),
        Some(10 | 11 | 14) => "the HEC token has indexer acknowledgment enabled, which this sink \
                               does not use: turn it off in the token's settings"
            .to_owned(),
        Some(16) => "the HEC input does not accept this form of authentication: give the token \
                     as the connection's bearer token"
            .to_owned(),
        _ => format!("check the destination's Splunk HEC settings on {host}"),
    }
}

/// `"HTTP 403 Forbidden"`.
fn status_text(status: StatusCode) -> String {
    match status.canonical_reason() {
        Some(reason) => format!("HTTP {} {reason}", status.as_u16()),
        None => format!("HTTP {}", status.as_u16()),
    }
}

/// The start of a response body, on one line, for an answer's detail.
fn snippet(body: &[u8]) -> String {
    let text = String::from_utf8_lossy(body);
    let out: String = text
        .split_whitespace()
        .collect::<Vec<_>>()
        .join(" ")
        .chars()
        .filter(|c| !c.is_control())
        .collect();
    match out.char_indices().nth(DETAIL_CHARS) {
        Some((i, _)) => format!("{}…", &out[..i]),
        None => out,
    }
}

/// Splunk HEC's `code` in a JSON answer.
fn splunk_code(body: &[u8]) -> Option<i64> {
    serde_json::from_slice::<serde_json::Value>(body)
        .ok()?
        .get("code")?
        .as_i64()
}

/// An error and its causes, `a: b: c`.
fn chain(error: &dyn std::error::Error) -> String {
    let mut text = error.to_string();
    let mut source = error.source();
    while let Some(e) = source {
        let next = e.to_string();
        if !text.ends_with(&next) {
            text.push_str(": ");
            text.push_str(&next);
        }
        source = e.source();
    }
    text
}

async fn gzip(body: Vec<u8>) -> Vec<u8> {
    fn compress(body: &[u8]) -> Vec<u8> {
        let mut encoder = flate2::write::GzEncoder::new(
            Vec::with_capacity(body.len() / 4 + 64),
            flate2::Compression::default(),
        );
        encoder
            .write_all(body)
            .and_then(|()| encoder.finish())
            .expect("writing to memory")
    }
    if body.len() <= COMPRESS_INLINE_MAX {
        return compress(&body);
    }
    match tokio::task::spawn_blocking(move || compress(&body)).await {
        Ok(compressed) => compressed,
        Err(e) => std::panic::resume_unwind(e.into_panic()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn snippets_are_one_short_line() {
        assert_eq!(snippet(b""), "");
        assert_eq!(
            snippet(b"{\n  \"error\": \"bad\"\r\n}\x07"),
            "{ \"error\": \"bad\" }"
        );
        let long = "x".repeat(500);
        assert_eq!(snippet(long.as_bytes()).chars().count(), DETAIL_CHARS + 1);
    }

    #[test]
    fn splunk_codes() {
        assert_eq!(splunk_code(br#"{"text":"No data","code":5}"#), Some(5));
        assert_eq!(splunk_code(b"<html>"), None);
    }

    #[tokio::test]
    async fn gzip_round_trips() {
        use std::io::Read as _;
        for size in [10, COMPRESS_INLINE_MAX + 10] {
            let body: Vec<u8> = (0..size).map(|i| (i % 251) as u8).collect();
            let compressed = gzip(body.clone()).await;
            let mut back = Vec::new();
            flate2::read::GzDecoder::new(&compressed[..])
                .read_to_end(&mut back)
                .unwrap();
            assert_eq!(back, body);
        }
    }
}
