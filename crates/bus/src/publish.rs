//! Durable publishing: a publish returns only once JetStream has acknowledged the message
//! (PubAck), and failures are classified so callers can answer "retry later" correctly.

use std::time::Duration;

use async_nats::{
    HeaderMap,
    jetstream::{self, context::PublishErrorKind, message::PublishMessage},
};
use bytes::Bytes;

use crate::{NatsConfig, Service};

/// What JetStream said about a stored message.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Ack {
    pub sequence: u64,
    /// The `Nats-Msg-Id` was seen within the duplicate window: stored once, earlier.
    pub duplicate: bool,
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PublishError {
    /// NATS or JetStream cannot be reached, or did not answer in time. Retry later.
    #[error("jetstream unavailable: {0}")]
    Unavailable(String),
    /// The stream is at its limits (discard: new). Retry later.
    #[error("jetstream stream full: {0}")]
    StreamFull(String),
    /// The message itself is refused (e.g. larger than the server's max_payload).
    #[error("jetstream refused the message: {0}")]
    Refused(String),
}

impl PublishError {
    /// Short label for metrics.
    pub fn reason(&self) -> &'static str {
        match self {
            PublishError::Unavailable(_) => "unavailable",
            PublishError::StreamFull(_) => "stream_full",
            PublishError::Refused(_) => "refused",
        }
    }

    fn classify(e: jetstream::context::PublishError) -> Self {
        let text = e.to_string();
        match e.kind() {
            PublishErrorKind::MaxPayloadExceeded => PublishError::Refused(text),
            PublishErrorKind::TimedOut
            | PublishErrorKind::BrokenPipe
            | PublishErrorKind::StreamNotFound => PublishError::Unavailable(text),
            _ if is_full(&text) => PublishError::StreamFull(text),
            _ => PublishError::Unavailable(text),
        }
    }
}

/// JetStream's wording for a stream at its limits (API errors 10047, 10077, 10078, 10027).
fn is_full(text: &str) -> bool {
    [
        "maximum bytes",
        "maximum messages",
        "insufficient resources",
        "resource limits",
    ]
    .iter()
    .any(|m| text.contains(m))
}

/// Connects to NATS with the credentials and TLS settings of `config`. The client keeps
/// reconnecting forever in the background, so a service started before NATS, or living
/// through a NATS restart, recovers by itself. Only a configuration error (an unreadable
/// credentials file, a client certificate without a key) fails here.
///
/// `service` names the client and fixes its inbox prefix (`_INBOX.<kind>`), the only inbox
/// its NATS user may subscribe to ([`crate::permissions`]).
pub async fn connect(
    config: &NatsConfig,
    service: Service,
) -> Result<async_nats::Client, async_nats::ConnectError> {
    let mut options = connect_options(config, service)
        .await
        .map_err(|e| async_nats::ConnectError::with_source(async_nats::ConnectErrorKind::Io, e))?;
    // Credentials left in the URL become options, and the client gets the URL without them:
    // async-nats logs the server address, password included, at debug level (M13).
    let (url, userinfo) = split_userinfo(&config.url);
    let explicit = config.user.is_some() || config.token.is_some() || config.creds_file.is_some();
    match userinfo {
        Some((user, Some(password))) if !explicit => {
            options = options.user_and_password(user, password);
        }
        Some((token, None)) if !explicit => options = options.token(token),
        _ => {}
    }
    // A comma-separated list names several servers of a cluster: the client tries each
    // (a single &str would be parsed as one address and refused).
    let servers: Vec<&str> = url
        .split(',')
        .map(str::trim)
        .filter(|u| !u.is_empty())
        .collect();
    options.connect(servers).await
}

/// `url` (comma-separated) without userinfo, and the first userinfo found: `(user,
/// Some(password))` or `(token, None)`, as written (async-nats does not percent-decode
/// either).
fn split_userinfo(url: &str) -> (String, Option<(String, Option<String>)>) {
    let mut found = None;
    let urls: Vec<String> = url
        .split(',')
        .map(|one| {
            let start = one.find("://").map_or(0, |i| i + 3);
            let end = one[start..]
                .find(['/', '?', '#'])
                .map_or(one.len(), |i| start + i);
            match one[start..end].rfind('@') {
                Some(at) => {
                    let info = &one[start..start + at];
                    if found.is_none() {
                        found = Some(match info.split_once(':') {
                            Some((u, p)) => (u.to_owned(), Some(p.to_owned())),
                            None => (info.to_owned(), None),
                        });
                    }
                    format!("{}{}", &one[..start], &one[start + at + 1..])
                }
                None => one.to_owned(),
            }
        })
        .collect();
    (urls.join(","), found)
}

async fn connect_options(
    config: &NatsConfig,
    service: Service,
) -> Result<async_nats::ConnectOptions, String> {
    // async-nats builds its TLS configuration with rustls' default provider.
    auditstream_telemetry::install_crypto_provider();
    let mut options = match &config.creds_file {
        Some(path) => async_nats::ConnectOptions::with_credentials_file(path)
            .await
            .map_err(|e| format!("nats.creds_file {}: {e}", path.display()))?,
        None => async_nats::ConnectOptions::new(),
    };
    options = options
        .name(service.client_name())
        .custom_inbox_prefix(service.inbox_prefix())
        .retry_on_initial_connect()
        .max_reconnects(None);
    match (&config.user, &config.password) {
        (Some(user), Some(password)) => {
            options = options.user_and_password(user.clone(), password.expose().to_owned());
        }
        (None, None) => {}
        _ => return Err("nats.user and nats.password go together".into()),
    }
    if let Some(token) = &config.token {
        options = options.token(token.expose().to_owned());
    }
    let tls = &config.tls;
    if tls.required {
        options = options.require_tls(true);
    }
    if let Some(ca) = &tls.ca_file {
        // Read here so a wrong path is a clear error at start, not a TLS failure later.
        std::fs::metadata(ca).map_err(|e| format!("nats.tls.ca_file {}: {e}", ca.display()))?;
        options = options.add_root_certificates(ca.clone());
    }
    match (&tls.cert_file, &tls.key_file) {
        (Some(cert), Some(key)) => {
            for (what, path) in [("cert_file", cert), ("key_file", key)] {
                std::fs::metadata(path)
                    .map_err(|e| format!("nats.tls.{what} {}: {e}", path.display()))?;
            }
            options = options.add_client_certificate(cert.clone(), key.clone());
        }
        (None, None) => {}
        _ => return Err("nats.tls.cert_file and nats.tls.key_file go together".into()),
    }
    Ok(options)
}

/// A JetStream context whose API calls and publish acks give up after `timeout`.
pub fn jetstream_context(client: async_nats::Client, timeout: Duration) -> jetstream::Context {
    jetstream::context::ContextBuilder::new()
        .timeout(timeout)
        .build(client)
}

/// Publishes with `Nats-Msg-Id = msg_id` and waits for the PubAck.
pub async fn publish_durable(
    js: &jetstream::Context,
    subject: String,
    msg_id: &str,
    headers: HeaderMap,
    payload: Bytes,
    timeout: Duration,
) -> Result<Ack, PublishError> {
    let publish = PublishMessage::build()
        .headers(headers)
        .message_id(msg_id)
        .payload(payload);
    let acked = async {
        let ack = js
            .send_publish(subject, publish)
            .await
            .map_err(PublishError::classify)?;
        ack.await.map_err(PublishError::classify)
    };
    // The context has its own ack timeout; this bound also covers a client whose outgoing
    // buffer is full while disconnected.
    let ack = tokio::time::timeout(timeout, acked).await.map_err(|_| {
        PublishError::Unavailable(format!("no acknowledgement within {timeout:?}"))
    })??;
    Ok(Ack {
        sequence: ack.sequence,
        duplicate: ack.duplicate,
    })
}

#[cfg(test)]
mod userinfo_tests {
    use super::*;

    #[test]
    fn url_credentials_are_taken_out_of_the_url() {
        assert_eq!(
            split_userinfo("nats://u:p@h:4222, nats://h2"),
            (
                "nats://h:4222, nats://h2".to_owned(),
                Some(("u".to_owned(), Some("p".to_owned())))
            )
        );
        assert_eq!(
            split_userinfo("tls://tok@h"),
            ("tls://h".to_owned(), Some(("tok".to_owned(), None)))
        );
        assert_eq!(split_userinfo("nats://h"), ("nats://h".to_owned(), None));
    }
}
