//! What a storage error means for delivery, with a hint naming what to fix. Pure: a
//! [`Failure`] (the facts of an SDK error) and its context in, an [`Answer`] out.

use std::time::Duration;

use auditstream_azure_auth::sas::redact;
use auditstream_sink_core::{Answer, classify::Class, classify::classify_object_store};
use azure_core::error::ErrorKind;
use time::OffsetDateTime;

/// The longest detail shown to admins (error bodies can be long).
const MAX_DETAIL: usize = 400;

/// How the connection authenticates (hints differ).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Method {
    SharedKey,
    Sas,
    ClientCredentials,
}

/// What was attempted (permissions differ).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Op {
    /// Uploading blobs, and the probe (a container check and a test blob).
    Write,
    /// Listing the account's containers.
    List,
}

/// Where the failure happened, for the hints.
#[derive(Debug, Clone, Copy)]
pub struct Ctx<'a> {
    pub account: &'a str,
    pub container: &'a str,
    pub method: Method,
    pub op: Op,
}

/// The facts of a failed storage call.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Failure {
    /// The storage service answered with an error status.
    Http {
        status: u16,
        /// `x-ms-error-code` (e.g. `AuthorizationPermissionMismatch`).
        code: Option<String>,
        message: String,
        retry_after: Option<String>,
    },
    /// Getting an Entra ID token failed; `status` is the token endpoint's, if it answered.
    Token {
        status: Option<u16>,
        message: String,
    },
    /// No answer within the request timeout.
    Timeout(Duration),
    /// Connecting, sending or reading failed.
    Network(String),
    /// Anything else the SDK reports (unparseable answers...).
    Other(String),
    /// The endpoint's (or authority's) name resolved to an address the rules refuse (M5).
    Refused(String),
}

impl Failure {
    /// The facts of an SDK error. Secrets are removed from messages (reqwest errors quote the
    /// URL, which carries the SAS).
    pub fn from_error(e: &azure_core::Error) -> Failure {
        let text = chain(e);
        if let Some((_, reason)) = text.split_once(crate::resolve::REFUSED) {
            return Failure::Refused(redact(reason.trim_start_matches(": ").trim()));
        }
        match e.kind() {
            ErrorKind::HttpResponse {
                status,
                error_code,
                raw_response,
            } => {
                let body_message = raw_response.as_ref().and_then(|r| {
                    let body = std::str::from_utf8(r.body()).ok()?;
                    xml_element(body, "Message")
                });
                let retry_after = raw_response.as_ref().and_then(|r| {
                    r.headers()
                        .get_optional_str(&azure_core::http::headers::RETRY_AFTER)
                        .map(str::to_owned)
                });
                Failure::Http {
                    status: u16::from(*status),
                    code: error_code.clone(),
                    message: redact(&body_message.unwrap_or_else(|| e.to_string())),
                    retry_after,
                }
            }
            ErrorKind::Credential => Failure::Token {
                status: token_status(e),
                message: redact(&chain(e)),
            },
            ErrorKind::Io | ErrorKind::Connection => Failure::Network(redact(&chain(e))),
            _ => Failure::Other(redact(&chain(e))),
        }
    }

    /// A 403: refused credentials or a missing permission. A container SAS gets one for
    /// container properties whatever its permissions (`AuthorizationFailure`): reading them
    /// is not a container-level SAS operation.
    pub fn is_forbidden(&self) -> bool {
        matches!(self, Failure::Http { status: 403, .. })
    }
}

/// Codes of a request whose credentials were not accepted at all.
const CREDENTIAL_CODES: &[&str] = &[
    "AuthenticationFailed",
    "InvalidAuthenticationInfo",
    "AuthorizationFailure",
    "NoAuthenticationInformation",
];
/// Codes of valid credentials that do not allow the operation.
const PERMISSION_CODES: &[&str] = &[
    "AuthorizationPermissionMismatch",
    "AuthorizationResourceTypeMismatch",
    "AuthorizationServiceMismatch",
    "InsufficientAccountPermissions",
];
/// 400s caused by the request's construction (a malformed SAS token, an endpoint that is not
/// Blob Storage), never by an event: retrying or dead-lettering events would not help.
const REQUEST_CODES: &[&str] = &[
    "InvalidQueryParameterValue",
    "MissingRequiredQueryParameter",
    "UnsupportedQueryParameter",
    "InvalidHeaderValue",
    "MissingRequiredHeader",
    "UnsupportedHeader",
    "InvalidUri",
];

pub fn classify(failure: &Failure, ctx: &Ctx<'_>, now: OffsetDateTime) -> Answer {
    match failure {
        Failure::Http {
            status,
            code,
            message,
            retry_after,
        } => classify_status(
            *status,
            code.as_deref(),
            message,
            retry_after.as_deref(),
            ctx,
            now,
        ),
        Failure::Token {
            status: Some(400 | 401 | 403),
            message,
        } => Answer::configuration(
            truncate(format!(
                "Entra ID refused the client credentials: {message}"
            )),
            "check the connection's tenant_id, client_id and client_secret (the secret may have \
             expired) and, outside the public cloud, its authority_host",
        ),
        Failure::Token { message, .. } => Answer::new(
            Class::Transient { retry_after: None },
            truncate(format!("cannot get an Entra ID token: {message}")),
            "",
        ),
        Failure::Timeout(d) => Answer::new(
            Class::Transient { retry_after: None },
            format!("no answer from the storage account within {d:?}"),
            "",
        ),
        Failure::Network(m) => Answer::new(
            Class::Transient { retry_after: None },
            truncate(format!("cannot reach the storage account: {m}")),
            "",
        ),
        Failure::Other(m) => Answer::new(
            Class::Transient { retry_after: None },
            truncate(m.clone()),
            "",
        ),
        Failure::Refused(m) => Answer::configuration(
            truncate(format!("Azure endpoint {}: {m}", crate::resolve::REFUSED)),
            "point the connection's endpoint (or authority host) at a public address, or have \
             the operator allow the network in the Azure Blob sink's sink.allowed_networks",
        ),
    }
}

fn classify_status(
    status: u16,
    code: Option<&str>,
    message: &str,
    retry_after: Option<&str>,
    ctx: &Ctx<'_>,
    now: OffsetDateTime,
) -> Answer {
    let detail = truncate(match code {
        Some(c) => format!("{status} {c}: {}", first_line(message)),
        None => format!("{status}: {}", first_line(message)),
    });
    let Ctx {
        account, container, ..
    } = *ctx;
    let code = code.unwrap_or("");
    let config = |hint: &str| Answer::configuration(detail.clone(), hint);
    if CREDENTIAL_CODES.contains(&code) || status == 401 {
        return config(&credentials_hint(ctx));
    }
    if PERMISSION_CODES.contains(&code) {
        return config(&permission_hint(ctx));
    }
    match (status, code) {
        (_, "AuthorizationProtocolMismatch") => config(
            "the SAS token does not allow https (its spr field): create one that allows https",
        ),
        (_, "AuthorizationSourceIPMismatch") => config(
            "the SAS token's IP range (its sip field) excludes the sink's address: widen it or \
             create one without an IP range",
        ),
        (_, "ContainerNotFound") => config(&container_missing_hint(account, container)),
        (_, "ContainerBeingDeleted") => config(&format!(
            "container {container} is being deleted: wait until it is gone and create it again, \
             or point the destination at another container"
        )),
        (_, "ContainerDisabled" | "AccountIsDisabled") => config(&format!(
            "the storage account {account} or its container {container} is disabled: enable it in \
             the Azure portal"
        )),
        (_, "ResourceNotFound") if ctx.op == Op::List => config(&account_missing_hint(account)),
        (403, _) => config(&permission_hint(ctx)),
        (404, _) if ctx.op == Op::List => config(&account_missing_hint(account)),
        (404, _) => config(&container_missing_hint(account, container)),
        (413, _) | (_, "RequestBodyTooLarge") => Answer::new(Class::TooLarge, detail, ""),
        (400, c) if REQUEST_CODES.contains(&c) => config(
            "the storage account refused the request itself: check the connection's endpoint and, \
             if it uses one, that the SAS token is complete and unmodified",
        ),
        _ => {
            let class = classify_object_store(
                status,
                Some(code).filter(|c| !c.is_empty()),
                retry_after,
                now,
            );
            let hint = match (&class, status) {
                (Class::Configuration, 400..=499) => format!(
                    "storage account {account} refused to write to container {container} because of \
                     how the account, the container or the connection is set up, not because of the \
                     events: fix what it said (e.g. an immutability policy or legal hold that forbids \
                     new blobs, a disabled feature, the connection's endpoint)"
                ),
                (Class::Configuration, _) => format!(
                    "the endpoint of account {account} does not answer like Azure Blob Storage: \
                     check the connection's endpoint"
                ),
                _ => String::new(),
            };
            Answer::new(class, detail, hint)
        }
    }
}

const FIREWALL: &str =
    "; if the credentials are right, check that the account's firewall admits the sink's network";

fn credentials_hint(ctx: &Ctx<'_>) -> String {
    let account = ctx.account;
    let what = match ctx.method {
        Method::SharedKey => format!(
            "storage account {account} refused the signature made with the connection's shared \
             key: update the connection's account key (it may have been rotated)"
        ),
        Method::Sas => format!(
            "storage account {account} refused the connection's SAS token: update it (it may have \
             expired or been revoked)"
        ),
        Method::ClientCredentials => format!(
            "storage account {account} refused the Entra ID token: check that the connection's \
             tenant_id is the account's tenant"
        ),
    };
    format!("{what}{FIREWALL}")
}

fn permission_hint(ctx: &Ctx<'_>) -> String {
    let Ctx {
        account, container, ..
    } = *ctx;
    match ctx.op {
        Op::Write => format!(
            "the credentials lack permission to write blobs in container {container} of account \
             {account}: grant the app 'Storage Blob Data Contributor' on the container, or use a \
             SAS with create and write permissions (account SAS: ss=b, srt=co, sp=cw or more)"
        ),
        Op::List => format!(
            "the credentials lack permission to list the containers of account {account}: grant \
             the app 'Storage Blob Data Reader' (or Contributor) on the account, or use an account \
             SAS with list permission on the service (srt=s, sp=l); a container SAS cannot list"
        ),
    }
}

fn container_missing_hint(account: &str, container: &str) -> String {
    format!(
        "container {container} does not exist in storage account {account}: create it, or fix the \
         stream's destination"
    )
}

fn account_missing_hint(account: &str) -> String {
    format!(
        "storage account {account} was not found at the connection's endpoint: check the account \
         name and endpoint"
    )
}

/// The status of the token endpoint's answer inside a credential error, if it answered.
fn token_status(e: &azure_core::Error) -> Option<u16> {
    let mut source: Option<&(dyn std::error::Error + 'static)> = e
        .get_ref()
        .map(|inner| inner as &(dyn std::error::Error + 'static));
    while let Some(err) = source {
        if let Some(inner) = err.downcast_ref::<azure_core::Error>()
            && let Some(status) = inner.http_status()
        {
            return Some(u16::from(status));
        }
        source = err.source();
    }
    None
}

/// The error and its causes: `a: b: c`.
fn chain(e: &(dyn std::error::Error + 'static)) -> String {
    let mut out = e.to_string();
    let mut source = e.source();
    while let Some(s) = source {
        let text = s.to_string();
        if !out.contains(&text) {
            out.push_str(": ");
            out.push_str(&text);
        }
        source = s.source();
    }
    out
}

/// The text of the first `<name>` element of an XML error body.
fn xml_element(body: &str, name: &str) -> Option<String> {
    let start = body.find(&format!("<{name}>"))? + name.len() + 2;
    let end = start + body[start..].find(&format!("</{name}>"))?;
    Some(body[start..end].trim().to_owned())
}

fn first_line(s: &str) -> &str {
    s.lines().next().unwrap_or("").trim()
}

fn truncate(mut s: String) -> String {
    if s.len() > MAX_DETAIL {
        let mut cut = MAX_DETAIL;
        while !s.is_char_boundary(cut) {
            cut -= 1;
        }
        s.truncate(cut);
        s.push('…');
    }
    s
}

#[cfg(test)]
mod tests {
    use azure_core::http::{RawResponse, StatusCode, headers::Headers};

    use super::*;

    const WRITE: Ctx<'static> = Ctx {
        account: "acmeaudit",
        container: "audit",
        method: Method::SharedKey,
        op: Op::Write,
    };

    fn now() -> OffsetDateTime {
        OffsetDateTime::from_unix_timestamp(1_800_000_000).unwrap()
    }

    fn http(status: u16, code: Option<&str>) -> Failure {
        Failure::Http {
            status,
            code: code.map(str::to_owned),
            message: "the service said no\nRequestId:1".into(),
            retry_after: None,
        }
    }

    fn class(status: u16, code: Option<&str>) -> Class {
        classify(&http(status, code), &WRITE, now()).class
    }

    #[test]
    fn credentials_permissions_and_missing_containers_are_configuration_with_hints() {
        let a = classify(&http(403, Some("AuthorizationFailure")), &WRITE, now());
        assert_eq!(a.class, Class::Configuration);
        assert_eq!(a.detail, "403 AuthorizationFailure: the service said no");
        assert!(a.hint.contains("shared key"), "{}", a.hint);
        let sas = Ctx {
            method: Method::Sas,
            ..WRITE
        };
        let a = classify(&http(403, Some("AuthenticationFailed")), &sas, now());
        assert!(
            a.hint.contains("SAS token") && a.hint.contains("expired"),
            "{}",
            a.hint
        );

        let a = classify(
            &http(403, Some("AuthorizationPermissionMismatch")),
            &WRITE,
            now(),
        );
        assert_eq!(a.class, Class::Configuration);
        assert!(
            a.hint.contains("Storage Blob Data Contributor"),
            "{}",
            a.hint
        );
        assert!(a.hint.contains("container audit"), "{}", a.hint);
        let list = Ctx {
            op: Op::List,
            ..WRITE
        };
        let a = classify(
            &http(403, Some("AuthorizationResourceTypeMismatch")),
            &list,
            now(),
        );
        assert!(a.hint.contains("list"), "{}", a.hint);

        let a = classify(&http(404, Some("ContainerNotFound")), &WRITE, now());
        assert_eq!(a.class, Class::Configuration);
        assert!(
            a.hint
                .contains("container audit does not exist in storage account acmeaudit"),
            "{}",
            a.hint
        );
        for (status, code) in [
            (401, None),
            (403, None),
            (404, None),
            (409, Some("ContainerBeingDeleted")),
            (403, Some("AccountIsDisabled")),
            (403, Some("AuthorizationProtocolMismatch")),
            (403, Some("AuthorizationSourceIPMismatch")),
            (400, Some("InvalidQueryParameterValue")),
            (405, None),
            (501, None),
        ] {
            let a = classify(&http(status, code), &WRITE, now());
            assert_eq!(a.class, Class::Configuration, "{status} {code:?}");
            assert!(!a.hint.is_empty(), "{status} {code:?}");
        }
        let a = classify(&http(404, Some("ResourceNotFound")), &list, now());
        assert!(
            a.hint.contains("account acmeaudit was not found"),
            "{}",
            a.hint
        );
    }

    #[test]
    fn busy_failing_and_unreachable_are_transient() {
        for (status, code) in [
            (503, Some("ServerBusy")),
            (500, Some("InternalError")),
            (500, Some("OperationTimedOut")),
            (408, None),
            (429, None),
            (502, None),
        ] {
            assert_eq!(
                class(status, code),
                Class::Transient { retry_after: None },
                "{status}"
            );
        }
        let busy = Failure::Http {
            status: 503,
            code: Some("ServerBusy".into()),
            message: "busy".into(),
            retry_after: Some("12".into()),
        };
        assert_eq!(
            classify(&busy, &WRITE, now()).class,
            Class::Transient {
                retry_after: Some(Duration::from_secs(12))
            }
        );
        for f in [
            Failure::Timeout(Duration::from_secs(30)),
            Failure::Network("connection refused".into()),
            Failure::Other("unexpected answer".into()),
            Failure::Token {
                status: Some(503),
                message: "down".into(),
            },
            Failure::Token {
                status: None,
                message: "dns".into(),
            },
        ] {
            assert!(
                matches!(classify(&f, &WRITE, now()).class, Class::Transient { .. }),
                "{f:?}"
            );
        }
        let refused = Failure::Token {
            status: Some(401),
            message: "AADSTS7000215: Invalid client secret provided.".into(),
        };
        let a = classify(&refused, &WRITE, now());
        assert_eq!(a.class, Class::Configuration);
        assert!(a.hint.contains("client_secret"), "{}", a.hint);
    }

    #[test]
    fn too_large_stored_already_and_no_refused_data() {
        assert_eq!(class(413, Some("RequestBodyTooLarge")), Class::TooLarge);
        assert_eq!(class(201, None), Class::Delivered);
        // The conditional create found the blob: stored before, delivered.
        assert_eq!(class(409, Some("BlobAlreadyExists")), Class::Delivered);
        // A blob store refuses no data but by size: any other 4xx is configuration.
        for (status, code) in [
            (400, Some("InvalidBlobOrBlock")),
            (409, Some("LeaseIdMissing")),
            (409, Some("BlobImmutableDueToPolicy")),
        ] {
            let a = classify(&http(status, code), &WRITE, now());
            assert_eq!(a.class, Class::Configuration, "{code:?}");
            assert!(
                a.hint.contains("immutability policy"),
                "{code:?}: {}",
                a.hint
            );
        }
    }

    #[test]
    fn facts_are_taken_from_sdk_errors() {
        let mut headers = Headers::new();
        headers.insert("x-ms-error-code", "ServerBusy");
        headers.insert("retry-after", "3");
        let body = "<?xml version=\"1.0\"?><Error><Code>ServerBusy</Code><Message>Ingress is over \
                    the account limit.\nRequestId:abc</Message></Error>";
        let e = azure_core::Error::with_message(
            ErrorKind::HttpResponse {
                status: StatusCode::ServiceUnavailable,
                error_code: Some("ServerBusy".into()),
                raw_response: Some(Box::new(RawResponse::from_bytes(
                    StatusCode::ServiceUnavailable,
                    headers,
                    body,
                ))),
            },
            "503",
        );
        let f = Failure::from_error(&e);
        assert_eq!(
            f,
            Failure::Http {
                status: 503,
                code: Some("ServerBusy".into()),
                message: "Ingress is over the account limit.\nRequestId:abc".into(),
                retry_after: Some("3".into()),
            }
        );
        let a = classify(&f, &WRITE, now());
        assert_eq!(
            a.detail,
            "503 ServerBusy: Ingress is over the account limit."
        );

        let io = azure_core::Error::with_error(
            ErrorKind::Io,
            std::io::Error::other(
                "error sending request for url (https://a/c/b?sv=1&sig=SECRET%3D&se=2)",
            ),
            "failed to execute `reqwest` request",
        );
        let Failure::Network(m) = Failure::from_error(&io) else {
            panic!("not a network failure")
        };
        assert!(
            !m.contains("SECRET") && m.contains("sig=REDACTED&se=2"),
            "{m}"
        );

        let token = azure_core::Error::with_error(
            ErrorKind::Credential,
            azure_core::Error::with_message(
                ErrorKind::HttpResponse {
                    status: StatusCode::Unauthorized,
                    error_code: Some("7000215".into()),
                    raw_response: None,
                },
                "Invalid client secret provided.",
            ),
            "ClientSecretCredential authentication failed.",
        );
        assert!(matches!(
            Failure::from_error(&token),
            Failure::Token {
                status: Some(401),
                ..
            }
        ));
    }

    #[test]
    fn redaction_and_truncation() {
        assert_eq!(
            redact("a?sv=1&sig=abc%2B&x=1 sig=def"),
            "a?sv=1&sig=REDACTED&x=1 sig=REDACTED"
        );
        assert_eq!(redact("no secrets"), "no secrets");
        let long = truncate("é".repeat(500));
        assert!(long.len() <= MAX_DETAIL + 3 && long.ends_with('…'));
    }
}
