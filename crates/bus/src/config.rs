//! How a service reaches NATS and the JetStream topology it expects; the `nats` section of
//! every service's configuration.

use std::{path::PathBuf, time::Duration};

use auditstream_telemetry::Secret;
use serde::{Deserialize, Serialize};

use crate::TopologyConfig;

#[derive(Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct NatsConfig {
    /// Server URL(s), comma-separated. Credentials belong in `user`/`password`, `token` or
    /// `creds_file`; ones left in the URL still work but are redacted wherever it is logged
    /// ([`redact_url`]).
    pub url: String,
    /// Read by the config service only, the topology's one owner: it creates or updates the
    /// JetStream streams at start and after every reconnect. Turn off where an operator owns
    /// the streams (`auditctl topology apply`, NACK); the config service then only verifies
    /// them, as every other service always does. Other services accept the setting, so one
    /// shared `nats` section loads everywhere, and ignore it.
    pub ensure_topology: bool,
    /// What this service needs of the streams. The owner applies it; the others refuse
    /// streams weaker than it (fewer replicas, shorter `max_age`, smaller limits).
    pub topology: TopologyConfig,
    /// Longest wait for JetStream's acknowledgement of one publish (and for JetStream API
    /// calls) before the work counts as not done.
    #[serde(with = "humantime_serde")]
    pub publish_timeout: Duration,
    /// User name and password, when the server's `authorization` asks for them: each
    /// service kind has its own user ([`crate::permissions`]).
    pub user: Option<String>,
    pub password: Option<Secret>,
    /// A token, when the server's `authorization` asks for one.
    pub token: Option<Secret>,
    /// A `.creds` file (JWT + NKey seed) for servers run with decentralized auth (NGS,
    /// operator mode).
    pub creds_file: Option<PathBuf>,
    pub tls: NatsTls,
}

/// TLS towards NATS. A `tls://` URL, or a server that requires TLS, turns it on even without
/// these settings (system roots are then trusted).
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct NatsTls {
    /// Refuse to talk to a server that does not offer TLS.
    pub required: bool,
    /// PEM file of the CA(s) that signed the server's certificate, added to the system roots.
    pub ca_file: Option<PathBuf>,
    /// PEM client certificate and key, for servers that verify clients (`verify: true`).
    pub cert_file: Option<PathBuf>,
    pub key_file: Option<PathBuf>,
}

impl Default for NatsConfig {
    fn default() -> Self {
        NatsConfig {
            url: "nats://127.0.0.1:4222".into(),
            ensure_topology: true,
            topology: TopologyConfig::default(),
            publish_timeout: Duration::from_secs(5),
            user: None,
            password: None,
            token: None,
            creds_file: None,
            tls: NatsTls::default(),
        }
    }
}

/// By hand so the URL's credentials, if any, stay out of `{:?}` (secrets print as `***`
/// through [`Secret`] already).
impl std::fmt::Debug for NatsConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("NatsConfig")
            .field("url", &redact_url(&self.url))
            .field("ensure_topology", &self.ensure_topology)
            .field("topology", &self.topology)
            .field("publish_timeout", &self.publish_timeout)
            .field("user", &self.user)
            .field("password", &self.password)
            .field("token", &self.token)
            .field("creds_file", &self.creds_file)
            .field("tls", &self.tls)
            .finish()
    }
}

impl NatsConfig {
    /// The URL as it may be logged.
    pub fn redacted_url(&self) -> String {
        redact_url(&self.url)
    }
}

/// `url` (one or several, comma-separated) with any userinfo (`user:password@`, `token@`)
/// replaced by `***@`: the one way every service puts a NATS URL into a log line or an error
/// (security review M13).
pub fn redact_url(url: &str) -> String {
    url.split(',')
        .map(|one| {
            let start = one.find("://").map_or(0, |i| i + 3);
            let authority_end = one[start..]
                .find(['/', '?', '#'])
                .map_or(one.len(), |i| start + i);
            match one[start..authority_end].rfind('@') {
                Some(at) => format!("{}***{}", &one[..start], &one[start + at..]),
                None => one.to_owned(),
            }
        })
        .collect::<Vec<_>>()
        .join(",")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn redacts_userinfo_only() {
        for (url, want) in [
            ("nats://127.0.0.1:4222", "nats://127.0.0.1:4222"),
            ("nats://user:p%40ss@nats:4222", "nats://***@nats:4222"),
            ("tls://s3cr3t-token@nats", "tls://***@nats"),
            ("user:pass@host:4222", "***@host:4222"),
            (
                "nats://a:b@n1:4222, nats://n2:4222,nats://c:d@n3",
                "nats://***@n1:4222, nats://n2:4222,nats://***@n3",
            ),
            ("nats://host/path@x", "nats://host/path@x"),
        ] {
            assert_eq!(redact_url(url), want, "{url}");
        }
    }

    #[test]
    fn debug_hides_url_credentials() {
        let c = NatsConfig {
            url: "nats://u:hunter2@h:4222".into(),
            password: Some(Secret::new("hunter3")),
            ..NatsConfig::default()
        };
        let shown = format!("{c:?}");
        assert!(
            !shown.contains("hunter2") && !shown.contains("hunter3"),
            "{shown}"
        );
    }
}
