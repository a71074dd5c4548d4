//! Access tokens from Microsoft Entra ID by the OAuth 2.0 client-credentials grant
//! (`POST {authority}/{tenant}/oauth2/v2.0/token`, scope `https://monitor.azure.com//.default`).
//!
//! A token is cached and shared by every stream using the same app registration. It is renewed
//! in the background once it enters its refresh window (`token_refresh_before`, at most half its
//! lifetime), while deliveries go on with the current one; only when there is no usable token
//! does a delivery wait, and then concurrent callers wait for one fetch, not one each. A token
//! the ingestion endpoint refuses (revoked, expired early, clock skew) is dropped with
//! [`TokenSource::invalidate`] and the next call fetches a fresh one.
//!
//! Why not `azure_identity::ClientSecretCredential`: its HTTP client would bypass the
//! connect-time SSRF check every admin-given address goes through (the authority host is one),
//! and its errors come as text, where the hints below need Entra's error code.

use std::{
    sync::{
        Arc, Mutex,
        atomic::{AtomicBool, Ordering},
    },
    time::Duration,
};

use auditstream_azure_auth::entra::TokenReply;
use auditstream_egress::{Egress, Reply};
use auditstream_sink_core::{Answer, classify::Class};
use bytes::Bytes;
use http::{HeaderValue, Method, Request, StatusCode, Uri, header};
use http_body_util::Full;
use percent_encoding::{AsciiSet, NON_ALPHANUMERIC, utf8_percent_encode};
use tokio::time::Instant;

/// A URL path segment: everything but RFC 3986's unreserved characters is escaped
/// (config-service already limits the IDs that go into paths, so this is a second guard).
pub(crate) const SEGMENT: &AsciiSet = &NON_ALPHANUMERIC
    .remove(b'-')
    .remove(b'_')
    .remove(b'.')
    .remove(b'~');

/// Public Azure's authority, used when a connection names none.
pub const DEFAULT_AUTHORITY: &str = "https://login.microsoftonline.com";
/// A token is not used in its last moments: it could expire on the way.
const EXPIRY_SLACK: Duration = Duration::from_secs(30);
/// After a failed background renewal, the next attempt waits this long.
const RENEW_RETRY: Duration = Duration::from_secs(10);

/// The scope of the Logs Ingestion API in the cloud of `authority` (sovereign clouds have
/// their own resource: Azure Government `monitor.azure.us`, Azure China `monitor.azure.cn`).
pub fn scope_for(authority: &str) -> &'static str {
    let host = authority
        .split_once("://")
        .map_or(authority, |(_, rest)| rest)
        .split(['/', ':'])
        .next()
        .unwrap_or_default()
        .to_ascii_lowercase();
    if host.ends_with(".us") {
        "https://monitor.azure.us//.default"
    } else if host.ends_with(".cn") {
        "https://monitor.azure.cn//.default"
    } else {
        "https://monitor.azure.com//.default"
    }
}

/// Who asks for tokens: one app registration in one tenant, at one authority.
#[derive(Clone, PartialEq, Eq, Hash)]
pub struct Identity {
    pub authority: String,
    pub tenant_id: String,
    pub client_id: String,
    pub client_secret: String,
}

impl std::fmt::Debug for Identity {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Identity")
            .field("authority", &self.authority)
            .field("tenant_id", &self.tenant_id)
            .field("client_id", &self.client_id)
            .finish_non_exhaustive()
    }
}

#[derive(Clone)]
struct Token {
    header: HeaderValue,
    /// Renew in the background from here on.
    renew_at: Instant,
    /// Not used from here on.
    usable_until: Instant,
}

pub struct TokenSource {
    egress: Egress,
    identity: Identity,
    url: Uri,
    form: Bytes,
    refresh_before: Duration,
    current: Mutex<Option<Token>>,
    /// One fetch at a time; callers that find no usable token wait here for it.
    fetching: tokio::sync::Mutex<()>,
    renewing: AtomicBool,
}

impl std::fmt::Debug for TokenSource {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TokenSource")
            .field("identity", &self.identity)
            .finish_non_exhaustive()
    }
}

impl TokenSource {
    /// `identity.authority` must already be a checked URL (no trailing slash needed).
    pub fn new(
        egress: Egress,
        identity: Identity,
        refresh_before: Duration,
    ) -> Result<TokenSource, Answer> {
        let url = format!(
            "{}/{}/oauth2/v2.0/token",
            identity.authority.trim_end_matches('/'),
            utf8_percent_encode(&identity.tenant_id, SEGMENT)
        );
        let url: Uri = url.parse().map_err(|e| {
            Answer::configuration(
                format!("the token URL {url} cannot be used: {e}"),
                "correct the connection's authority host and tenant ID",
            )
        })?;
        let form = [
            ("grant_type", "client_credentials"),
            ("client_id", identity.client_id.as_str()),
            ("client_secret", identity.client_secret.as_str()),
            ("scope", scope_for(&identity.authority)),
        ]
        .iter()
        .map(|(k, v)| format!("{k}={}", utf8_percent_encode(v, NON_ALPHANUMERIC)))
        .collect::<Vec<_>>()
        .join("&");
        Ok(TokenSource {
            egress,
            identity,
            url,
            form: Bytes::from(form),
            refresh_before,
            current: Mutex::new(None),
            fetching: tokio::sync::Mutex::new(()),
            renewing: AtomicBool::new(false),
        })
    }

    pub fn identity(&self) -> &Identity {
        &self.identity
    }

    /// An `Authorization` value: the cached token, or a fresh one when there is none usable.
    /// A token in its refresh window is still returned, and renewed in the background.
    pub async fn authorization(self: &Arc<Self>) -> Result<HeaderValue, Answer> {
        let now = Instant::now();
        if let Some(token) = self.cached(now) {
            if now >= token.renew_at {
                self.renew_in_background();
            }
            return Ok(token.header);
        }
        let _one_fetch = self.fetching.lock().await;
        // Another caller may have fetched while this one waited.
        if let Some(token) = self.cached(Instant::now()) {
            return Ok(token.header);
        }
        let token = self.fetch().await?;
        *self.current.lock().unwrap() = Some(token.clone());
        Ok(token.header)
    }

    /// Drops `refused` if it is still the cached token, so the next call fetches another.
    pub fn invalidate(&self, refused: &HeaderValue) {
        let mut current = self.current.lock().unwrap();
        if current.as_ref().is_some_and(|t| t.header == *refused) {
            *current = None;
        }
    }

    fn cached(&self, now: Instant) -> Option<Token> {
        self.current
            .lock()
            .unwrap()
            .clone()
            .filter(|t| now < t.usable_until)
    }

    fn renew_in_background(self: &Arc<Self>) {
        if self.renewing.swap(true, Ordering::AcqRel) {
            return;
        }
        let this = self.clone();
        tokio::spawn(async move {
            let fetched = {
                let _one_fetch = this.fetching.lock().await;
                this.fetch().await
            };
            match fetched {
                Ok(token) => *this.current.lock().unwrap() = Some(token),
                Err(answer) => {
                    // The current token is still valid: keep using it, try again soon. If
                    // renewal keeps failing, the token runs out and deliveries get the answer.
                    tracing::warn!(
                        client_id = %this.identity.client_id,
                        detail = %answer.detail,
                        "renewing the Entra ID token failed; retrying in {RENEW_RETRY:?}"
                    );
                    if let Some(t) = this.current.lock().unwrap().as_mut() {
                        t.renew_at = Instant::now() + RENEW_RETRY;
                    }
                }
            }
            this.renewing.store(false, Ordering::Release);
        });
    }

    async fn fetch(&self) -> Result<Token, Answer> {
        let request = Request::builder()
            .method(Method::POST)
            .uri(self.url.clone())
            .header(header::CONTENT_TYPE, "application/x-www-form-urlencoded")
            .header(header::ACCEPT, "application/json")
            .body(Full::new(self.form.clone()))
            .expect("a request from a checked URI");
        let started = Instant::now();
        let reply = self.egress.send(request).await.map_err(|mut answer| {
            answer.detail = format!(
                "requesting a token from Microsoft Entra ID: {}",
                answer.detail
            );
            answer
        })?;
        let parsed = TokenReply::parse(&reply.body);
        if reply.status != StatusCode::OK {
            return Err(self.refusal(&reply, &parsed));
        }
        let lifetime = parsed.lifetime();
        let (Some(access_token), Some(lifetime)) = (parsed.access_token, lifetime) else {
            return Err(Answer::configuration(
                format!(
                    "the token endpoint {} answered 200 without an access_token and expires_in",
                    self.url
                ),
                "check the connection's authority host: it should be Microsoft Entra ID's \
                 (https://login.microsoftonline.com, or your sovereign cloud's)",
            ));
        };
        let header = HeaderValue::try_from(format!("Bearer {access_token}")).map_err(|_| {
            Answer::configuration(
                "the token endpoint returned a token that is not a valid header value",
                "check the connection's authority host",
            )
        })?;
        let lifetime = Duration::from_secs(lifetime);
        let refresh_before = self.refresh_before.min(lifetime / 2);
        Ok(Token {
            header,
            renew_at: started + lifetime.saturating_sub(refresh_before),
            usable_until: started + lifetime.saturating_sub(EXPIRY_SLACK.min(lifetime / 10)),
        })
    }

    /// What a refusal from Entra ID means, with a hint naming what to change.
    fn refusal(&self, reply: &Reply, parsed: &TokenReply) -> Answer {
        let Identity {
            tenant_id,
            client_id,
            authority,
            ..
        } = &self.identity;
        let status = reply.status.as_u16();
        let description = parsed
            .error_description
            .as_deref()
            .map(|d| d.lines().next().unwrap_or_default().trim().to_owned());
        let detail = match (&parsed.error, description) {
            (Some(error), Some(description)) => {
                format!(
                    "Microsoft Entra ID refused the token request (HTTP {status} {error}): {description}"
                )
            }
            _ => format!(
                "Microsoft Entra ID refused the token request: {}",
                reply.detail()
            ),
        };
        let aadsts = |code: &str| {
            parsed
                .error_description
                .as_deref()
                .is_some_and(|d| d.contains(code))
        };
        if status == 429 || status >= 500 || status == 408 {
            return Answer::new(
                auditstream_sink_core::classify::classify_http(
                    status,
                    reply.header(header::RETRY_AFTER),
                    time::OffsetDateTime::now_utc(),
                ),
                detail,
                "",
            );
        }
        let hint = match parsed.error.as_deref() {
            Some("invalid_client") => format!(
                "the client secret of app {client_id} was refused: it is wrong or has expired. \
                 Create a new client secret in the app registration (Certificates & secrets) and \
                 put its Value (not its Secret ID) in the connection"
            ),
            Some("unauthorized_client") if aadsts("AADSTS700016") => format!(
                "there is no application with client ID {client_id} in tenant {tenant_id}: check \
                 the connection's client ID (the app registration's Application (client) ID) and \
                 tenant ID"
            ),
            Some("invalid_request") if aadsts("AADSTS90002") || aadsts("AADSTS900023") => {
                format!(
                    "tenant {tenant_id} was not found at {authority}: check the connection's \
                     tenant ID (Directory (tenant) ID) and, for a sovereign cloud, its authority \
                     host"
                )
            }
            Some("invalid_scope") => format!(
                "{authority} does not know the Azure Monitor scope {}: check that the \
                 connection's authority host is of the same cloud as the ingestion endpoint",
                scope_for(authority)
            ),
            _ => format!(
                "check the connection's tenant ID ({tenant_id}), client ID ({client_id}), client \
                 secret and authority host ({authority})"
            ),
        };
        Answer::new(Class::Configuration, detail, hint)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sovereign_clouds_get_their_scope() {
        assert_eq!(
            scope_for(DEFAULT_AUTHORITY),
            "https://monitor.azure.com//.default"
        );
        assert_eq!(
            scope_for("https://login.microsoftonline.us/"),
            "https://monitor.azure.us//.default"
        );
        assert_eq!(
            scope_for("https://login.chinacloudapi.cn"),
            "https://monitor.azure.cn//.default"
        );
        assert_eq!(
            scope_for("http://127.0.0.1:4000"),
            "https://monitor.azure.com//.default"
        );
    }

    #[test]
    fn the_secret_is_not_in_debug_output() {
        let identity = Identity {
            authority: DEFAULT_AUTHORITY.into(),
            tenant_id: "t".into(),
            client_id: "c".into(),
            client_secret: "very-secret".into(),
        };
        assert!(!format!("{identity:?}").contains("very-secret"));
    }
}
