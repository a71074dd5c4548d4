//! TLS for the gRPC APIs, shared by the servers (gateway, config-service) and their clients
//! (the config-client of router and sinks, `auditctl`), so every hop configures it the same
//! way: PEM files on disk (a Kubernetes Secret mounted as files), rustls underneath.
//!
//! A server serves TLS when `cert_file` and `key_file` are set, and also asks clients for a
//! certificate signed by `client_ca_file` when that is set (mutual TLS). A client uses TLS
//! for `https://` URLs, trusting the system roots plus `ca_file`, and presents
//! `cert_file`/`key_file` when the server wants a client certificate.

use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};
use tonic::transport::{Certificate, ClientTlsConfig, Endpoint, Identity, ServerTlsConfig};

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ServerTls {
    /// PEM certificate chain the server presents; with `key_file`, turns TLS on.
    pub cert_file: Option<PathBuf>,
    pub key_file: Option<PathBuf>,
    /// PEM CA(s); when set, clients must present a certificate signed by one of them.
    pub client_ca_file: Option<PathBuf>,
}

impl ServerTls {
    /// The tonic configuration, `None` for plaintext; an error names the setting at fault.
    pub fn tonic_config(&self, section: &str) -> Result<Option<ServerTlsConfig>, String> {
        auditstream_telemetry::install_crypto_provider();
        let (cert, key) = match (&self.cert_file, &self.key_file) {
            (None, None) if self.client_ca_file.is_none() => return Ok(None),
            (Some(cert), Some(key)) => (cert, key),
            _ => {
                return Err(format!(
                    "{section}.cert_file and {section}.key_file go together (and client_ca_file needs them)"
                ));
            }
        };
        let identity = Identity::from_pem(
            read(cert, section, "cert_file")?,
            read(key, section, "key_file")?,
        );
        let mut config = ServerTlsConfig::new().identity(identity);
        if let Some(ca) = &self.client_ca_file {
            config =
                config.client_ca_root(Certificate::from_pem(read(ca, section, "client_ca_file")?));
        }
        Ok(Some(config))
    }

    /// A tonic server builder that serves TLS when it is configured.
    pub fn server(&self, section: &str) -> Result<tonic::transport::Server, String> {
        let mut server = tonic::transport::Server::builder();
        if let Some(tls) = self.tonic_config(section)? {
            server = server
                .tls_config(tls)
                .map_err(|e| format!("{section}: {e}"))?;
        }
        Ok(server)
    }
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ClientTls {
    /// PEM CA(s) trusted besides the system roots (a private CA, a self-signed server).
    pub ca_file: Option<PathBuf>,
    /// PEM client certificate and key, for servers that require one.
    pub cert_file: Option<PathBuf>,
    pub key_file: Option<PathBuf>,
    /// Name to verify the server's certificate against, when it differs from the URL's host.
    pub domain: Option<String>,
}

impl ClientTls {
    /// An endpoint for `url`: TLS for `https://`, plaintext for `http://`.
    pub fn endpoint(&self, url: &str, section: &str) -> Result<Endpoint, String> {
        auditstream_telemetry::install_crypto_provider();
        let endpoint = Endpoint::from_shared(url.to_owned())
            .map_err(|e| format!("invalid URL {url:?}: {e}"))?;
        if !url.starts_with("https://") {
            if self.ca_file.is_some() || self.cert_file.is_some() {
                return Err(format!(
                    "{section}: TLS files are set but {url:?} is not an https:// URL"
                ));
            }
            return Ok(endpoint);
        }
        let mut config = ClientTlsConfig::new().with_native_roots();
        if let Some(ca) = &self.ca_file {
            config = config.ca_certificate(Certificate::from_pem(read(ca, section, "ca_file")?));
        }
        match (&self.cert_file, &self.key_file) {
            (Some(cert), Some(key)) => {
                config = config.identity(Identity::from_pem(
                    read(cert, section, "cert_file")?,
                    read(key, section, "key_file")?,
                ));
            }
            (None, None) => {}
            _ => {
                return Err(format!(
                    "{section}.cert_file and {section}.key_file go together"
                ));
            }
        }
        if let Some(domain) = &self.domain {
            config = config.domain_name(domain.clone());
        }
        endpoint
            .tls_config(config)
            .map_err(|e| format!("{section}: {e}"))
    }
}

fn read(path: &Path, section: &str, field: &str) -> Result<Vec<u8>, String> {
    std::fs::read(path).map_err(|e| format!("{section}.{field} {}: {e}", path.display()))
}
