//! Which fields of a connection are secrets. This list is the single place that knows; the
//! service uses it to seal, blank, fingerprint and carry over secrets on update.

use auditstream_model::SinkType;

use crate::error::{ServiceError, invalid};
use auditstream_proto::v1::{
    AzureClientCredentials, Connection, S3StaticKeys, azure_blob_credentials,
    azure_monitor_credentials, connection::Credentials, http_credentials, s3_credentials,
};

/// Mutable references to every secret string of the connection's credential method, with
/// the field path shown in `secret_fingerprints` (`http.headers.<name>` for each sealed
/// header, so an update can keep or replace them one by one).
pub fn secret_slots(conn: &mut Connection) -> Vec<(String, &mut String)> {
    let mut slots: Vec<(&'static str, &mut String)> = Vec::new();
    let mut headers: Vec<(String, &mut String)> = Vec::new();
    match conn.credentials.as_mut() {
        Some(Credentials::S3(s3)) => match s3.method.as_mut() {
            Some(s3_credentials::Method::StaticKeys(k)) => {
                static_keys(k, "s3.static_keys", &mut slots)
            }
            Some(s3_credentials::Method::AssumeRole(r)) => {
                if let Some(k) = r.source_keys.as_mut() {
                    static_keys(k, "s3.assume_role.source_keys", &mut slots);
                }
            }
            Some(s3_credentials::Method::DefaultChain(_)) | None => {}
        },
        Some(Credentials::AzureBlob(b)) => match b.method.as_mut() {
            Some(azure_blob_credentials::Method::SharedKey(k)) => {
                slots.push(("azure_blob.shared_key.account_key", &mut k.account_key))
            }
            Some(azure_blob_credentials::Method::Sas(s)) => {
                slots.push(("azure_blob.sas.sas_token", &mut s.sas_token))
            }
            Some(azure_blob_credentials::Method::ClientCredentials(c)) => {
                client_secret(c, "azure_blob.client_credentials.client_secret", &mut slots)
            }
            None => {}
        },
        Some(Credentials::AzureMonitor(m)) => match m.method.as_mut() {
            Some(azure_monitor_credentials::Method::ClientCredentials(c)) => client_secret(
                c,
                "azure_monitor.client_credentials.client_secret",
                &mut slots,
            ),
            Some(azure_monitor_credentials::Method::LegacyDataCollector(l)) => slots.push((
                "azure_monitor.legacy_data_collector.shared_key",
                &mut l.shared_key,
            )),
            None => {}
        },
        Some(Credentials::Http(h)) => {
            headers = h
                .headers
                .iter_mut()
                .map(|(name, value)| (format!("http.headers.{name}"), value))
                .collect();
            match h.auth.as_mut() {
                Some(http_credentials::Auth::Basic(b)) => {
                    slots.push(("http.basic.password", &mut b.password))
                }
                Some(http_credentials::Auth::Bearer(b)) => {
                    slots.push(("http.bearer.token", &mut b.token))
                }
                Some(http_credentials::Auth::Header(h)) => {
                    slots.push(("http.header.value", &mut h.value))
                }
                Some(http_credentials::Auth::Url(u)) => slots.push(("http.url.url", &mut u.url)),
                Some(http_credentials::Auth::None(_)) | None => {}
            }
        }
        None => {}
    }
    slots
        .into_iter()
        .map(|(path, value)| (path.to_owned(), value))
        .chain(headers)
        .collect()
}

fn static_keys<'a>(
    k: &'a mut S3StaticKeys,
    path: &'static str,
    slots: &mut Vec<(&'static str, &'a mut String)>,
) {
    let (secret, token) = match path {
        "s3.static_keys" => (
            "s3.static_keys.secret_access_key",
            "s3.static_keys.session_token",
        ),
        _ => (
            "s3.assume_role.source_keys.secret_access_key",
            "s3.assume_role.source_keys.session_token",
        ),
    };
    slots.push((secret, &mut k.secret_access_key));
    slots.push((token, &mut k.session_token));
}

fn client_secret<'a>(
    c: &'a mut AzureClientCredentials,
    path: &'static str,
    slots: &mut Vec<(&'static str, &'a mut String)>,
) {
    slots.push((path, &mut c.client_secret));
}

/// The credential method, e.g. "s3.static_keys": an update keeps stored secrets only when
/// the method is unchanged.
pub fn method(conn: &Connection) -> Option<&'static str> {
    Some(match conn.credentials.as_ref()? {
        Credentials::S3(s3) => match s3.method.as_ref()? {
            s3_credentials::Method::StaticKeys(_) => "s3.static_keys",
            s3_credentials::Method::AssumeRole(_) => "s3.assume_role",
            s3_credentials::Method::DefaultChain(_) => "s3.default_chain",
        },
        Credentials::AzureBlob(b) => match b.method.as_ref()? {
            azure_blob_credentials::Method::SharedKey(_) => "azure_blob.shared_key",
            azure_blob_credentials::Method::Sas(_) => "azure_blob.sas",
            azure_blob_credentials::Method::ClientCredentials(_) => "azure_blob.client_credentials",
        },
        Credentials::AzureMonitor(m) => match m.method.as_ref()? {
            azure_monitor_credentials::Method::ClientCredentials(_) => {
                "azure_monitor.client_credentials"
            }
            azure_monitor_credentials::Method::LegacyDataCollector(_) => {
                "azure_monitor.legacy_data_collector"
            }
        },
        Credentials::Http(h) => match h.auth.as_ref()? {
            http_credentials::Auth::None(_) => "http.none",
            http_credentials::Auth::Basic(_) => "http.basic",
            http_credentials::Auth::Bearer(_) => "http.bearer",
            http_credentials::Auth::Header(_) => "http.header",
            http_credentials::Auth::Url(_) => "http.url",
        },
    })
}

/// The assume-role settings of an S3 connection, if it has them.
fn assume_role(conn: &mut Connection) -> Option<&mut auditstream_proto::v1::S3AssumeRole> {
    match conn.credentials.as_mut()? {
        Credentials::S3(s3) => match s3.method.as_mut()? {
            s3_credentials::Method::AssumeRole(r) => Some(r),
            _ => None,
        },
        _ => None,
    }
}

/// Sets an assume-role connection's `external_id`: the service's, never the tenant's (H6).
/// AWS's advice for a third party that assumes customers' roles ("How to use an external
/// ID"): the external ID is a random string the third party generates per customer, so a
/// tenant cannot name another's. It is not a secret; the customer puts it in the role's
/// trust policy (`sts:ExternalId`).
///
/// On create (`stored` is `None`) a fresh one is generated. On update the stored connection's
/// is kept (also a tenant-chosen one stored before this rule existed), and a fresh one is
/// generated only when there is none (the connection becomes assume-role, or had none).
/// A value sent by the client is refused unless it is the stored one (as sent back by a
/// client that read the connection and changed something else).
pub fn assign_external_id(
    conn: &mut Connection,
    stored: Option<&Connection>,
) -> Result<(), crate::error::ServiceError> {
    let kept = stored
        .cloned()
        .as_mut()
        .and_then(assume_role)
        .map(|r| std::mem::take(&mut r.external_id))
        .filter(|id| !id.is_empty());
    let Some(role) = assume_role(conn) else {
        return Ok(());
    };
    if !role.external_id.is_empty() && Some(&role.external_id) != kept.as_ref() {
        return Err(crate::error::invalid(
            "connection.s3.assume_role.external_id",
            "external_id is generated by the service; leave it empty",
        ));
    }
    role.external_id = kept.unwrap_or_else(new_external_id);
    Ok(())
}

/// `auditstream-` and 32 hex digits (128 random bits): within STS's 2–1224 characters of
/// `[\w+=,.@:/-]`.
fn new_external_id() -> String {
    let bytes: [u8; 16] = rand::random();
    let hex: String = bytes.iter().map(|b| format!("{b:02x}")).collect();
    format!("auditstream-{hex}")
}

pub fn sink_type(conn: &Connection) -> Option<SinkType> {
    Some(match conn.credentials.as_ref()? {
        Credentials::S3(_) => SinkType::S3,
        Credentials::AzureBlob(_) => SinkType::AzureBlob,
        Credentials::AzureMonitor(_) => SinkType::AzureMonitor,
        Credentials::Http(_) => SinkType::Http,
    })
}

/// The destination type of a stream's target.
pub fn target_type(target: &auditstream_proto::v1::destination::Target) -> SinkType {
    use auditstream_proto::v1::destination::Target;
    match target {
        Target::S3(_) => SinkType::S3,
        Target::AzureBlob(_) => SinkType::AzureBlob,
        Target::AzureMonitor(_) => SinkType::AzureMonitor,
        Target::Http(_) => SinkType::Http,
    }
}

/// Write-only secrets on update: an empty secret keeps the stored one of the same path,
/// while the method and every identity field (where the secret goes,
/// [`auditstream_proto::binding::identity`]) are unchanged. When the identity changes, a
/// stored secret is never carried over: the caller must enter it again, so whoever may
/// change a connection's endpoint must also know its secret.
pub fn keep_stored_secrets(full: &mut Connection, old: &Connection) -> Result<(), ServiceError> {
    if method(full) != method(old) {
        return Ok(());
    }
    let mut previous = old.clone();
    let previous: std::collections::HashMap<String, String> = secret_slots(&mut previous)
        .into_iter()
        .map(|(path, v)| (path, v.clone()))
        .collect();
    let (was, now) = (
        auditstream_proto::binding::identity(old),
        auditstream_proto::binding::identity(full),
    );
    let mut changed: Vec<&str> = was
        .iter()
        .zip(&now)
        .filter(|(a, b)| a.1 != b.1)
        .map(|(a, _)| a.0)
        .collect();
    // A URL-borne credential is its own endpoint: a new URL takes no stored header with it.
    if let (Some(http_credentials::Auth::Url(new)), Some(Credentials::Http(h))) =
        (http_auth(full), old.credentials.as_ref())
        && let Some(http_credentials::Auth::Url(stored)) = &h.auth
        && !new.url.is_empty()
        && new.url != stored.url
    {
        changed.push("http.url.url");
    }
    for (path, value) in secret_slots(full) {
        let Some(stored) = previous.get(&path).filter(|v| !v.is_empty()) else {
            continue;
        };
        if !value.is_empty() {
            continue;
        }
        if let Some(field) = changed.first() {
            return Err(invalid(
                &format!("connection.{path}"),
                format!(
                    "connection.{field} changed, so enter this secret again in the same update: \
                     a stored secret is only ever sent where it was given for"
                ),
            ));
        }
        value.clone_from(stored);
    }
    Ok(())
}

fn http_auth(conn: &Connection) -> Option<&http_credentials::Auth> {
    match conn.credentials.as_ref()? {
        Credentials::Http(h) => h.auth.as_ref(),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use auditstream_proto::v1::{S3AssumeRole, S3Credentials, S3StaticKeys};

    use super::*;

    fn role(external_id: &str) -> Connection {
        Connection {
            credentials: Some(Credentials::S3(S3Credentials {
                method: Some(s3_credentials::Method::AssumeRole(S3AssumeRole {
                    role_arn: "arn:aws:iam::123456789012:role/w".into(),
                    external_id: external_id.into(),
                    ..Default::default()
                })),
                ..Default::default()
            })),
            ..Default::default()
        }
    }

    fn external_id(mut c: Connection) -> String {
        assume_role(&mut c).unwrap().external_id.clone()
    }

    #[test]
    fn external_ids_are_generated_kept_and_never_chosen() {
        let mut a = role("");
        assign_external_id(&mut a, None).unwrap();
        let id = external_id(a.clone());
        assert!(id.starts_with("auditstream-") && id.len() == 44, "{id}");
        let mut b = role("");
        assign_external_id(&mut b, None).unwrap();
        assert_ne!(external_id(b), id);
        // Chosen by the client: refused on create, and on update unless it is the stored one.
        assert!(assign_external_id(&mut role("mine"), None).is_err());
        assert!(assign_external_id(&mut role("mine"), Some(&a)).is_err());
        let mut same = role(&id);
        assign_external_id(&mut same, Some(&a)).unwrap();
        let mut empty = role("");
        assign_external_id(&mut empty, Some(&a)).unwrap();
        assert_eq!(external_id(empty), id);
        // A tenant-chosen id stored before the rule is kept.
        let mut legacy = role("");
        assign_external_id(&mut legacy, Some(&role("acme-7f3c"))).unwrap();
        assert_eq!(external_id(legacy), "acme-7f3c");
        // Other methods are left alone.
        let mut keys = Connection {
            credentials: Some(Credentials::S3(S3Credentials {
                method: Some(s3_credentials::Method::StaticKeys(S3StaticKeys::default())),
                ..Default::default()
            })),
            ..Default::default()
        };
        let before = keys.clone();
        assign_external_id(&mut keys, Some(&a)).unwrap();
        assert_eq!(keys, before);
    }
}
