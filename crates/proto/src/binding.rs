//! A connection's endpoint binding, read from the wire types: where a destination's requests
//! may go given its connection ([`http_url`], [`monitor_endpoint`]), and which connection
//! fields name where its secrets go ([`identity`]), so that changing one needs the secret
//! again. The config service checks destinations with these functions when they are saved
//! or tested; the HTTP and Azure Monitor sinks call the same functions to pick the URL they
//! send to, so nothing on the bus or in a stored row can redirect a secret.
//!
//! S3 and Azure Blob targets name only a bucket or container: their endpoint, account and
//! role live in the connection, so they are bound by construction.

use auditstream_model::{
    binding::{check_under, parse_origin},
    destination::{FieldError, HttpUrl, parse_http_url},
};

use crate::v1::{
    AzureMonitorCredentials, AzureMonitorTarget, Connection, HttpCredentials, HttpTarget,
    azure_blob_credentials, azure_monitor_credentials, connection::Credentials, http_credentials,
    s3_credentials,
};

/// The field named in an error about a URL-borne credential (whose text never repeats it).
pub const URL_CREDENTIAL_FIELD: &str = "connection http.url.url";

fn error(field: &str, message: impl Into<String>) -> FieldError {
    FieldError {
        field: field.to_owned(),
        message: message.into(),
    }
}

// Scheme policy (https only unless an operator allows http) is each caller's own check;
// the binding compares schemes, so parsing here accepts both.
fn parse(field: &str, url: &str) -> Result<HttpUrl, FieldError> {
    parse_http_url(field, url, true)
}

/// Whether an HTTP connection holds anything secret (then it must name its origin).
pub fn http_has_secret(creds: &HttpCredentials) -> bool {
    use http_credentials::Auth;
    !creds.headers.is_empty()
        || matches!(
            creds.auth,
            Some(Auth::Basic(_) | Auth::Bearer(_) | Auth::Header(_))
        )
}

/// [`http_url`] without needing the connection's secrets: with URL-borne credentials only
/// the target's URL is checked (it must be empty). What the config service checks against a
/// connection's public fields.
pub fn check_http(
    field: &str,
    creds: &HttpCredentials,
    target: &HttpTarget,
) -> Result<(), FieldError> {
    if matches!(creds.auth, Some(http_credentials::Auth::Url(_))) {
        if !target.url.is_empty() {
            return Err(url_target_not_empty(field));
        }
        return Ok(());
    }
    http_url(field, creds, target).map(drop)
}

fn url_target_not_empty(field: &str) -> FieldError {
    error(
        field,
        "must be empty: the connection's URL is its credential and the only place its \
         requests go",
    )
}

/// The URL an HTTP destination sends to. With URL-borne credentials it is the connection's
/// URL (the target's must be empty); otherwise the target's URL, which must lie under the
/// connection's origin whenever the connection holds a secret. `field` is the target URL's
/// path in the request, e.g. `stream.destination.http.url`.
pub fn http_url(
    field: &str,
    creds: &HttpCredentials,
    target: &HttpTarget,
) -> Result<HttpUrl, FieldError> {
    if let Some(http_credentials::Auth::Url(u)) = &creds.auth {
        if !target.url.is_empty() {
            return Err(url_target_not_empty(field));
        }
        return parse(URL_CREDENTIAL_FIELD, &u.url);
    }
    let url = parse(field, &target.url)?;
    if !creds.origin.is_empty() {
        let origin = parse_origin("connection http.origin", &creds.origin, true)?;
        check_under(field, &url, &origin, "connection's origin")?;
    } else if http_has_secret(creds) {
        return Err(error(
            field,
            "the connection has credentials but no origin (http.origin), so there is no host \
             they may be sent to; set the connection's origin and enter its secret again",
        ));
    }
    Ok(url)
}

/// The data collection endpoint an Azure Monitor destination sends to: the connection's
/// `ingestion_endpoint`, or the target's when it has the same origin.
pub fn monitor_endpoint(
    field: &str,
    creds: &AzureMonitorCredentials,
    target: &AzureMonitorTarget,
) -> Result<HttpUrl, FieldError> {
    if creds.ingestion_endpoint.is_empty() {
        return Err(error(
            field,
            "the connection names no ingestion endpoint (azure_monitor.ingestion_endpoint), so \
             there is no host its Entra token may be sent to; set it on the connection and \
             enter the client secret again",
        ));
    }
    let bound = parse_origin(
        "connection azure_monitor.ingestion_endpoint",
        &creds.ingestion_endpoint,
        true,
    )?;
    if target.ingestion_endpoint.is_empty() {
        return Ok(bound);
    }
    let url = parse(field, &target.ingestion_endpoint)?;
    check_under(field, &url, &bound, "connection's ingestion endpoint")?;
    Ok(url)
}

/// The connection fields that say where its secrets go, with their values. An update that
/// changes any of them must carry the secrets again: "empty = keep" only holds while the
/// secret keeps going where it was given for.
pub fn identity(conn: &Connection) -> Vec<(&'static str, String)> {
    fn client(
        fields: &mut Vec<(&'static str, String)>,
        paths: [&'static str; 3],
        c: &crate::v1::AzureClientCredentials,
    ) {
        fields.push((paths[0], c.tenant_id.clone()));
        fields.push((paths[1], c.client_id.clone()));
        fields.push((paths[2], c.authority_host.clone()));
    }
    let mut fields = Vec::new();
    match conn.credentials.as_ref() {
        Some(Credentials::Http(h)) => fields.push(("http.origin", h.origin.clone())),
        Some(Credentials::AzureMonitor(m)) => {
            fields.push((
                "azure_monitor.ingestion_endpoint",
                m.ingestion_endpoint.clone(),
            ));
            if let Some(azure_monitor_credentials::Method::ClientCredentials(c)) = &m.method {
                client(
                    &mut fields,
                    [
                        "azure_monitor.client_credentials.tenant_id",
                        "azure_monitor.client_credentials.client_id",
                        "azure_monitor.client_credentials.authority_host",
                    ],
                    c,
                );
            }
        }
        Some(Credentials::AzureBlob(b)) => {
            fields.push(("azure_blob.account", b.account.clone()));
            fields.push(("azure_blob.endpoint", b.endpoint.clone()));
            if let Some(azure_blob_credentials::Method::ClientCredentials(c)) = &b.method {
                client(
                    &mut fields,
                    [
                        "azure_blob.client_credentials.tenant_id",
                        "azure_blob.client_credentials.client_id",
                        "azure_blob.client_credentials.authority_host",
                    ],
                    c,
                );
            }
        }
        Some(Credentials::S3(s)) => {
            fields.push(("s3.endpoint", s.endpoint.clone()));
            if let Some(s3_credentials::Method::AssumeRole(r)) = &s.method {
                fields.push(("s3.assume_role.role_arn", r.role_arn.clone()));
            }
        }
        None => {}
    }
    fields
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::v1::{HttpBearerAuth, HttpUrlAuth};

    fn bearer(origin: &str) -> HttpCredentials {
        HttpCredentials {
            auth: Some(http_credentials::Auth::Bearer(HttpBearerAuth {
                token: "t".into(),
            })),
            origin: origin.into(),
            ..Default::default()
        }
    }

    fn target(url: &str) -> HttpTarget {
        HttpTarget {
            url: url.into(),
            ..Default::default()
        }
    }

    #[test]
    fn an_http_secret_goes_only_under_its_origin() {
        let c = bearer("https://logs.example.com");
        let ok = http_url("u", &c, &target("https://logs.example.com/in")).unwrap();
        assert_eq!(ok.url, "https://logs.example.com/in");
        let err = http_url("u", &c, &target("https://attacker.example/in")).unwrap_err();
        assert_eq!(err.field, "u");
        // Without an origin a secret has nowhere to go.
        let err = http_url("u", &bearer(""), &target("https://logs.example.com/")).unwrap_err();
        assert!(err.message.contains("no origin"), "{err:?}");
        // No secret, no binding needed.
        let none = HttpCredentials::default();
        assert!(http_url("u", &none, &target("https://anywhere.example/")).is_ok());
        // Secret headers alone need an origin too.
        let mut headers = HttpCredentials::default();
        headers.headers.insert("DD-API-KEY".into(), "k".into());
        assert!(http_url("u", &headers, &target("https://anywhere.example/")).is_err());
    }

    #[test]
    fn a_url_credential_is_the_destination() {
        let c = HttpCredentials {
            auth: Some(http_credentials::Auth::Url(HttpUrlAuth {
                url: "https://collectors.example.com/receiver/v1/http/SECRET".into(),
            })),
            ..Default::default()
        };
        let url = http_url("u", &c, &target("")).unwrap();
        assert!(url.url.ends_with("/SECRET"));
        let err = http_url("u", &c, &target("https://attacker.example/")).unwrap_err();
        assert!(err.message.contains("must be empty"), "{err:?}");
    }

    #[test]
    fn a_monitor_token_goes_only_to_the_connections_endpoint() {
        let c = AzureMonitorCredentials {
            ingestion_endpoint: "https://dce-1.westeurope-1.ingest.monitor.azure.com".into(),
            method: None,
        };
        let t = |e: &str| AzureMonitorTarget {
            ingestion_endpoint: e.into(),
            ..Default::default()
        };
        assert_eq!(
            monitor_endpoint("e", &c, &t("")).unwrap().url,
            "https://dce-1.westeurope-1.ingest.monitor.azure.com/"
        );
        assert!(
            monitor_endpoint(
                "e",
                &c,
                &t("https://dce-1.westeurope-1.ingest.monitor.azure.com/")
            )
            .is_ok()
        );
        assert!(monitor_endpoint("e", &c, &t("https://attacker.example/")).is_err());
        let unbound = AzureMonitorCredentials::default();
        assert!(monitor_endpoint("e", &unbound, &t("https://attacker.example/")).is_err());
    }

    #[test]
    fn identity_lists_where_secrets_go() {
        let mut c = Connection {
            credentials: Some(Credentials::Http(bearer("https://a.example"))),
            ..Default::default()
        };
        let before = identity(&c);
        if let Some(Credentials::Http(h)) = c.credentials.as_mut() {
            h.origin = "https://b.example".into();
        }
        assert_ne!(before, identity(&c));
        assert_eq!(before[0].0, "http.origin");
    }
}
