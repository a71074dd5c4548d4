//! Outbound HTTP for the sinks that speak HTTP to an address an admin typed in (sink-http's
//! endpoints, sink-azure-monitor's Entra ID authority and ingestion endpoint). One mechanism,
//! written once:
//!
//! - [`connect`]: every connection goes through an SSRF check on the very addresses it
//!   connects to (DESIGN §7: loopback, private, link-local and metadata addresses are refused
//!   unless an operator allow-lists them, checked at connect time because DNS answers change
//!   after a destination is saved). No proxy, and redirects are never followed.
//! - TLS is always verified: the system's roots plus an operator's extra CA file. rustls with
//!   the ring provider passed explicitly, so no process-wide state (reqwest's
//!   `rustls-no-provider` would make every other reqwest client in the binary panic).
//! - [`Egress::send`]: one request with a deadline, the start of the answer read (bounded), and,
//!   when no HTTP answer came, what that means as sink-core's [`Answer`] (a refused address or
//!   bad certificate is a configuration error with a hint; a timeout or reset is transient).
//!
//! What an HTTP *answer* means stays with each sink: only it knows its service's codes.

mod address;
mod connect;

pub use address::{AddressCheck, AddressError, REFUSED, RefusedAddress, Resolve};

use std::{io::Write as _, path::Path, sync::Arc, time::Duration};

use anyhow::Context as _;
use auditstream_model::destination::NetworkAllowList;
use auditstream_sink_core::{classify::Class, deliver::Answer};
use bytes::Bytes;
use http::{HeaderMap, HeaderValue, Request, StatusCode, header};
use http_body_util::{BodyExt as _, Full};
use hyper_util::{
    client::legacy::Client,
    rt::{TokioExecutor, TokioTimer},
};
use rustls_pki_types::{CertificateDer, pem::PemObject as _};

use crate::connect::{ConnectError, Connector, rustls_error};

/// How long an idle pooled connection is kept.
const POOL_IDLE_TIMEOUT: Duration = Duration::from_secs(60);
/// How much of a response body is read (enough for an error message or a token answer).
const MAX_RESPONSE_BYTES: usize = 64 * 1024;
/// How much of a response body goes into an answer's detail, in characters.
const DETAIL_CHARS: usize = 200;
/// Bodies above this are compressed on the blocking pool rather than on the runtime's threads.
const COMPRESS_INLINE_MAX: usize = 64 * 1024;

/// What an [`Egress`] is built from: the sink's own settings.
#[derive(Debug, Clone, Copy)]
pub struct EgressSettings<'a> {
    pub connect_timeout: Duration,
    /// Connecting, sending and reading the answer, all together.
    pub request_timeout: Duration,
    /// Networks, addresses or host names that may be reached although not public.
    pub allowed_networks: &'a [String],
    /// Extra trusted CA certificates (PEM), besides the system's.
    pub extra_ca_file: Option<&'a Path>,
    pub user_agent: &'a str,
    /// The sink's name in hints, e.g. `HTTP` ("the HTTP sink's setting sink.allowed_networks").
    pub sink: &'static str,
}

/// An HTTP client that only reaches permitted addresses. Cheap to clone; clones share the
/// connection pool (keyed by scheme, host and port, so streams sending to one service share
/// connections and TLS sessions; credentials are per request, nothing of a tenant is bound to a
/// connection).
#[derive(Clone)]
pub struct Egress {
    client: Client<Connector, Full<Bytes>>,
    request_timeout: Duration,
    user_agent: HeaderValue,
    sink: &'static str,
}

impl std::fmt::Debug for Egress {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Egress")
            .field("sink", &self.sink)
            .field("request_timeout", &self.request_timeout)
            .finish_non_exhaustive()
    }
}

/// An HTTP answer: status, headers and the start of the body.
#[derive(Debug, Clone)]
pub struct Reply {
    pub status: StatusCode,
    pub headers: HeaderMap,
    /// At most 64 KiB; an error while reading leaves what was read (the status is the answer).
    pub body: Vec<u8>,
}

impl Reply {
    pub fn header(&self, name: header::HeaderName) -> Option<&str> {
        self.headers.get(name).and_then(|v| v.to_str().ok())
    }

    /// `HTTP 403 Forbidden: <start of the body>`, for an answer's detail.
    pub fn detail(&self) -> String {
        let snippet = snippet(&self.body);
        if snippet.is_empty() {
            status_text(self.status)
        } else {
            format!("{}: {snippet}", status_text(self.status))
        }
    }
}

impl Egress {
    pub fn new(settings: EgressSettings<'_>) -> anyhow::Result<Egress> {
        anyhow::ensure!(
            !settings.request_timeout.is_zero() && !settings.connect_timeout.is_zero(),
            "request_timeout and connect_timeout must be longer than 0s"
        );
        let allow = NetworkAllowList::parse(settings.allowed_networks)
            .map_err(|e| anyhow::anyhow!("allowed_networks: {e}"))?;
        let user_agent = HeaderValue::from_str(settings.user_agent)
            .context("user_agent is not a valid header value")?;
        let tls = tls_config(settings.extra_ca_file)?;
        let connector = Connector::new(Arc::new(tls), allow, settings.connect_timeout);
        let client = Client::builder(TokioExecutor::new())
            .pool_idle_timeout(POOL_IDLE_TIMEOUT)
            .pool_timer(TokioTimer::new())
            .build(connector);
        Ok(Egress {
            client,
            request_timeout: settings.request_timeout,
            user_agent,
            sink: settings.sink,
        })
    }

    /// Sends `request` (adding `User-Agent`) and reads the start of the answer. `Err` is the
    /// answer to give when no HTTP answer came within the request timeout.
    pub async fn send(&self, mut request: Request<Full<Bytes>>) -> Result<Reply, Answer> {
        request
            .headers_mut()
            .insert(header::USER_AGENT, self.user_agent.clone());
        let uri = request.uri().clone();
        let exchange = async {
            let response = self.client.request(request).await?;
            let (parts, mut body) = response.into_parts();
            let mut reply = Reply {
                status: parts.status,
                headers: parts.headers,
                body: Vec::new(),
            };
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
        let host = uri.host().unwrap_or_default();
        match tokio::time::timeout(self.request_timeout, exchange).await {
            Ok(Ok(reply)) => Ok(reply),
            Ok(Err(error)) => Err(self.failure(&uri, &error)),
            Err(_) => Err(Answer::new(
                Class::Transient { retry_after: None },
                format!("no answer from {host} within {:?}", self.request_timeout),
                "",
            )),
        }
    }

    /// The answer when the request failed without an HTTP answer.
    fn failure(&self, uri: &http::Uri, error: &hyper_util::client::legacy::Error) -> Answer {
        let mut source: Option<&(dyn std::error::Error + 'static)> = Some(error);
        while let Some(e) = source {
            if let Some(connect) = e.downcast_ref::<ConnectError>() {
                return self.connect_failure(uri, connect);
            }
            source = e.source();
        }
        Answer::new(
            Class::Transient { retry_after: None },
            format!(
                "request to {} failed: {}",
                uri.host().unwrap_or_default(),
                chain(error)
            ),
            "",
        )
    }

    fn connect_failure(&self, uri: &http::Uri, error: &ConnectError) -> Answer {
        let host = uri.host().unwrap_or_default();
        let port = uri
            .port_u16()
            .unwrap_or(if uri.scheme_str() == Some("https") {
                443
            } else {
                80
            });
        let sink = self.sink;
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
                     (the {sink} sink's setting sink.allowed_networks)"
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
                         {sink} sink's setting sink.extra_ca_file)"
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
}

/// Verification is always on: the system's roots plus the operator's extra CA file.
fn tls_config(extra_ca_file: Option<&Path>) -> anyhow::Result<rustls::ClientConfig> {
    let mut roots = rustls::RootCertStore::empty();
    let native = rustls_native_certs::load_native_certs();
    for error in &native.errors {
        tracing::warn!(%error, "could not load some of the system's CA certificates");
    }
    roots.add_parsable_certificates(native.certs);
    if let Some(path) = extra_ca_file {
        let certs = CertificateDer::pem_file_iter(path)
            .and_then(|certs| certs.collect::<Result<Vec<_>, _>>())
            .with_context(|| format!("extra_ca_file {}: cannot read PEM", path.display()))?;
        anyhow::ensure!(
            !certs.is_empty(),
            "extra_ca_file {}: no certificate in the file",
            path.display()
        );
        for cert in certs {
            roots.add(cert).with_context(|| {
                format!("extra_ca_file {}: invalid certificate", path.display())
            })?;
        }
    }
    if roots.is_empty() {
        tracing::warn!(
            "no trusted CA certificates (none in the system store and no extra_ca_file): \
             every https destination will fail its certificate check"
        );
    }
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut tls = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .context("TLS protocol versions")?
        .with_root_certificates(roots)
        .with_no_client_auth();
    tls.alpn_protocols = vec![b"http/1.1".to_vec()];
    Ok(tls)
}

/// `"HTTP 403 Forbidden"`.
pub fn status_text(status: StatusCode) -> String {
    match status.canonical_reason() {
        Some(reason) => format!("HTTP {} {reason}", status.as_u16()),
        None => format!("HTTP {}", status.as_u16()),
    }
}

/// The start of a response body, on one line, for an answer's detail.
pub fn snippet(body: &[u8]) -> String {
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

/// Gzips a request body; large bodies on the blocking pool so the runtime's threads keep
/// serving other streams.
pub async fn gzip(body: Vec<u8>) -> Vec<u8> {
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

    fn settings(allowed: &[String]) -> EgressSettings<'_> {
        EgressSettings {
            connect_timeout: Duration::from_secs(2),
            request_timeout: Duration::from_secs(2),
            allowed_networks: allowed,
            extra_ca_file: None,
            user_agent: "egress-test",
            sink: "test",
        }
    }

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

    #[tokio::test]
    async fn bad_settings_are_refused() {
        let bad = ["10.0.0.0/33".to_owned()];
        let err = Egress::new(settings(&bad)).unwrap_err().to_string();
        assert!(err.starts_with("allowed_networks:"), "{err}");
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("ca.pem");
        std::fs::write(&path, "not a certificate").unwrap();
        let err = Egress::new(EgressSettings {
            extra_ca_file: Some(&path),
            ..settings(&[])
        })
        .unwrap_err()
        .to_string();
        assert!(err.contains("no certificate"), "{err}");
    }

    #[tokio::test]
    async fn a_refused_address_is_a_configuration_answer_naming_the_setting() {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("http://{}/x", listener.local_addr().unwrap());
        let request = || {
            Request::post(url.as_str())
                .body(Full::new(Bytes::from_static(b"[]")))
                .unwrap()
        };
        let refused = Egress::new(settings(&[])).unwrap();
        let answer = refused.send(request()).await.unwrap_err();
        assert_eq!(answer.class, Class::Configuration);
        assert!(
            answer.detail.starts_with("127.0.0.1 is a loopback address"),
            "{answer:?}"
        );
        assert!(
            answer
                .hint
                .contains("the test sink's setting sink.allowed_networks"),
            "{answer:?}"
        );

        // Allowed: the request reaches the listener, which answers; the User-Agent is set.
        let allowed = ["127.0.0.1".to_owned()];
        let egress = Egress::new(settings(&allowed)).unwrap();
        let server = tokio::spawn(async move {
            use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
            let (mut socket, _) = listener.accept().await.unwrap();
            let mut head = vec![0; 4096];
            let n = socket.read(&mut head).await.unwrap();
            socket
                .write_all(b"HTTP/1.1 429 Too Many Requests\r\nRetry-After: 7\r\ncontent-length: 4\r\n\r\nslow")
                .await
                .unwrap();
            String::from_utf8_lossy(&head[..n]).into_owned()
        });
        let reply = egress.send(request()).await.unwrap();
        assert_eq!(reply.status, StatusCode::TOO_MANY_REQUESTS);
        assert_eq!(reply.header(header::RETRY_AFTER), Some("7"));
        assert_eq!(reply.detail(), "HTTP 429 Too Many Requests: slow");
        let head = server.await.unwrap().to_ascii_lowercase();
        assert!(head.contains("user-agent: egress-test"), "{head}");
    }

    #[tokio::test]
    async fn no_answer_in_time_is_transient() {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("http://{}/x", listener.local_addr().unwrap());
        let allowed = ["127.0.0.0/8".to_owned()];
        let egress = Egress::new(EgressSettings {
            request_timeout: Duration::from_millis(300),
            ..settings(&allowed)
        })
        .unwrap();
        // Accepts the connection and never answers.
        let _server = tokio::spawn(async move {
            let held = listener.accept().await;
            tokio::time::sleep(Duration::from_secs(30)).await;
            drop(held);
        });
        let answer = egress
            .send(Request::post(url).body(Full::default()).unwrap())
            .await
            .unwrap_err();
        assert_eq!(answer.class, Class::Transient { retry_after: None });
        assert!(
            answer.detail.starts_with("no answer from 127.0.0.1"),
            "{answer:?}"
        );
    }
}
