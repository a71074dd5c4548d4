//! Connecting to a destination: resolve, refuse non-public addresses (DESIGN §7, checked again
//! at connect time because DNS answers change after a destination is saved), then TCP and TLS
//! to exactly the addresses that were checked.
//!
//! The connector is the only way the HTTP client opens connections, so the check covers host
//! names and IP literals alike, and a name cannot resolve to one address for the check and
//! another for the connection (DNS rebinding). No proxy is ever used and redirects are never
//! followed (hyper's client does not follow them).

use std::{
    fmt,
    future::Future,
    io,
    net::SocketAddr,
    pin::Pin,
    sync::Arc,
    task::{Context, Poll},
    time::Duration,
};

use auditstream_model::destination::NetworkAllowList;
use http::Uri;
use hyper_util::{
    client::legacy::connect::{Connected, Connection},
    rt::TokioIo,
};
use rustls_pki_types::ServerName;
use tokio::{
    io::{AsyncRead, AsyncWrite, ReadBuf},
    net::TcpStream,
};
use tokio_rustls::{TlsConnector, client::TlsStream};

use crate::address::{AddressCheck, AddressError, literal_ip};

/// Why no connection was made.
#[derive(Debug)]
pub(crate) enum ConnectError {
    /// Every address of the host is refused by the SSRF rules: the model's message.
    Refused(String),
    Resolve {
        host: String,
        error: io::Error,
    },
    Connect {
        host: String,
        addr: SocketAddr,
        error: io::Error,
    },
    Timeout {
        host: String,
        after: Duration,
    },
    Tls {
        host: String,
        error: io::Error,
    },
    Unsupported(String),
}

impl fmt::Display for ConnectError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ConnectError::Refused(message) => f.write_str(message),
            ConnectError::Resolve { host, error } => {
                write!(f, "could not resolve {host}: {error}")
            }
            ConnectError::Connect { host, addr, error } => {
                write!(f, "could not connect to {host} ({addr}): {error}")
            }
            ConnectError::Timeout { host, after } => {
                write!(f, "could not connect to {host} within {after:?}")
            }
            ConnectError::Tls { host, error } => {
                write!(f, "TLS handshake with {host} failed: {}", tls_text(error))
            }
            ConnectError::Unsupported(what) => f.write_str(what),
        }
    }
}

impl std::error::Error for ConnectError {}

/// The rustls error inside an I/O error from the handshake, if that is what it is.
pub(crate) fn rustls_error(error: &io::Error) -> Option<&rustls::Error> {
    error.get_ref()?.downcast_ref::<rustls::Error>()
}

fn tls_text(error: &io::Error) -> String {
    match rustls_error(error) {
        Some(e) => e.to_string(),
        None => error.to_string(),
    }
}

/// The address of an IP-literal URL host (`10.0.0.1`, `[::1]`).
#[derive(Clone)]
pub(crate) struct Connector {
    inner: Arc<Inner>,
}

struct Inner {
    tls: TlsConnector,
    check: AddressCheck,
    connect_timeout: Duration,
}

impl Connector {
    pub(crate) fn new(
        tls: Arc<rustls::ClientConfig>,
        allow: NetworkAllowList,
        connect_timeout: Duration,
    ) -> Self {
        Connector {
            inner: Arc::new(Inner {
                tls: TlsConnector::from(tls),
                check: AddressCheck::from_list(allow),
                connect_timeout,
            }),
        }
    }

    /// The addresses of `host` that may be contacted, in resolver order; an error if none.
    pub(crate) async fn permitted_addresses(
        &self,
        host: &str,
        port: u16,
    ) -> Result<Vec<SocketAddr>, ConnectError> {
        self.inner
            .check
            .permitted(host, port)
            .await
            .map_err(|e| match e {
                AddressError::Refused(message) => ConnectError::Refused(message),
                AddressError::Resolve { host, error } => ConnectError::Resolve { host, error },
            })
    }

    async fn connect(self, uri: Uri) -> Result<TokioIo<Io>, ConnectError> {
        let https = match uri.scheme_str() {
            Some("https") => true,
            Some("http") => false,
            other => {
                return Err(ConnectError::Unsupported(format!(
                    "URL scheme {other:?} is not supported"
                )));
            }
        };
        let host = uri
            .host()
            .ok_or_else(|| ConnectError::Unsupported("URL has no host".to_owned()))?
            .to_owned();
        let port = uri.port_u16().unwrap_or(if https { 443 } else { 80 });
        let addresses = self.permitted_addresses(&host, port).await?;
        let timeout = self.inner.connect_timeout;
        let attempt = async {
            let mut last = None;
            for addr in addresses {
                match TcpStream::connect(addr).await {
                    Ok(tcp) => {
                        let _ = tcp.set_nodelay(true);
                        return Ok((tcp, addr));
                    }
                    Err(error) => last = Some((addr, error)),
                }
            }
            let (addr, error) = last.expect("at least one permitted address");
            Err(ConnectError::Connect {
                host: host.clone(),
                addr,
                error,
            })
        };
        let timed_out = || ConnectError::Timeout {
            host: host.clone(),
            after: timeout,
        };
        let (tcp, addr) = tokio::time::timeout(timeout, attempt)
            .await
            .map_err(|_| timed_out())??;
        if !https {
            return Ok(TokioIo::new(Io::Plain(tcp)));
        }
        let name = if literal_ip(&host).is_some() {
            ServerName::IpAddress(addr.ip().into())
        } else {
            ServerName::try_from(host.clone()).map_err(|e| {
                ConnectError::Unsupported(format!("{host} is not a valid TLS server name: {e}"))
            })?
        };
        let tls = tokio::time::timeout(timeout, self.inner.tls.connect(name, tcp))
            .await
            .map_err(|_| timed_out())?
            .map_err(|error| ConnectError::Tls {
                host: host.clone(),
                error,
            })?;
        Ok(TokioIo::new(Io::Tls(Box::new(tls))))
    }
}

impl tower_service::Service<Uri> for Connector {
    type Response = TokioIo<Io>;
    type Error = ConnectError;
    type Future = Pin<Box<dyn Future<Output = Result<TokioIo<Io>, ConnectError>> + Send>>;

    fn poll_ready(&mut self, _: &mut Context<'_>) -> Poll<Result<(), ConnectError>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, uri: Uri) -> Self::Future {
        Box::pin(self.clone().connect(uri))
    }
}

/// A connection, plain (only where `allow_insecure_http` let an http:// URL through) or TLS.
pub(crate) enum Io {
    Plain(TcpStream),
    Tls(Box<TlsStream<TcpStream>>),
}

impl Connection for Io {
    fn connected(&self) -> Connected {
        Connected::new()
    }
}

impl AsyncRead for Io {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        match self.get_mut() {
            Io::Plain(s) => Pin::new(s).poll_read(cx, buf),
            Io::Tls(s) => Pin::new(s.as_mut()).poll_read(cx, buf),
        }
    }
}

impl AsyncWrite for Io {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        match self.get_mut() {
            Io::Plain(s) => Pin::new(s).poll_write(cx, buf),
            Io::Tls(s) => Pin::new(s.as_mut()).poll_write(cx, buf),
        }
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match self.get_mut() {
            Io::Plain(s) => Pin::new(s).poll_flush(cx),
            Io::Tls(s) => Pin::new(s.as_mut()).poll_flush(cx),
        }
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match self.get_mut() {
            Io::Plain(s) => Pin::new(s).poll_shutdown(cx),
            Io::Tls(s) => Pin::new(s.as_mut()).poll_shutdown(cx),
        }
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        match self.get_mut() {
            Io::Plain(s) => Pin::new(s).poll_write_vectored(cx, bufs),
            Io::Tls(s) => Pin::new(s.as_mut()).poll_write_vectored(cx, bufs),
        }
    }

    fn is_write_vectored(&self) -> bool {
        match self {
            Io::Plain(s) => s.is_write_vectored(),
            Io::Tls(s) => s.is_write_vectored(),
        }
    }
}

#[cfg(test)]
mod tests {
    use std::net::IpAddr;

    use super::*;

    fn connector(allow: &[&str]) -> Connector {
        let allow =
            NetworkAllowList::parse(&allow.iter().map(|s| s.to_string()).collect::<Vec<_>>())
                .unwrap();
        let roots = rustls::RootCertStore::empty();
        let tls = rustls::ClientConfig::builder_with_provider(Arc::new(
            rustls::crypto::ring::default_provider(),
        ))
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_root_certificates(roots)
        .with_no_client_auth();
        Connector::new(Arc::new(tls), allow, Duration::from_secs(1))
    }

    #[tokio::test]
    async fn non_public_addresses_are_refused_unless_allow_listed() {
        let open = connector(&[]);
        for (host, class) in [
            ("127.0.0.1", "loopback"),
            ("169.254.169.254", "cloud metadata"),
            ("10.1.2.3", "private"),
            ("[::1]", "loopback"),
            ("localhost", "loopback"),
        ] {
            match open.permitted_addresses(host, 443).await {
                Err(ConnectError::Refused(m)) => assert!(m.contains(class), "{host}: {m}"),
                other => panic!("{host}: {other:?}"),
            }
        }
        let allowed = connector(&["127.0.0.0/8", "10.0.0.0/8", "::1"]);
        for host in ["127.0.0.1", "10.1.2.3", "[::1]"] {
            assert!(
                allowed.permitted_addresses(host, 443).await.is_ok(),
                "{host}"
            );
        }
        // Metadata stays refused unless a network containing it is listed.
        assert!(matches!(
            allowed.permitted_addresses("169.254.169.254", 80).await,
            Err(ConnectError::Refused(_))
        ));
        assert!(
            connector(&["169.254.169.254/32"])
                .permitted_addresses("169.254.169.254", 80)
                .await
                .is_ok()
        );
        assert!(open.permitted_addresses("8.8.8.8", 443).await.is_ok());
    }

    #[tokio::test]
    async fn a_name_that_later_resolves_to_a_private_address_is_refused() {
        // DNS rebinding: collector.example resolved to a public address when the destination
        // was saved (and for the first connections); then its record changes to loopback,
        // where something listens. The rule is applied to every connection's own answer.
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        listener.set_nonblocking(true).unwrap();
        let port = listener.local_addr().unwrap().port();
        let answer = Arc::new(std::sync::Mutex::new(IpAddr::from([8, 8, 8, 8])));
        let mut connector = connector(&[]);
        let current = answer.clone();
        let inner = Arc::get_mut(&mut connector.inner).unwrap();
        inner.check = inner
            .check
            .clone()
            .with_resolver(Arc::new(move |host, port| {
                assert_eq!(host, "collector.example");
                let ip = *current.lock().unwrap();
                Box::pin(async move { Ok(vec![SocketAddr::new(ip, port)]) })
            }));
        assert_eq!(
            connector
                .permitted_addresses("collector.example", port)
                .await
                .unwrap(),
            [SocketAddr::new([8, 8, 8, 8].into(), port)]
        );

        *answer.lock().unwrap() = IpAddr::from([127, 0, 0, 1]);
        let uri: Uri = format!("http://collector.example:{port}/").parse().unwrap();
        match connector.clone().connect(uri).await {
            Err(ConnectError::Refused(m)) => {
                assert!(m.contains("loopback"), "{m}");
            }
            Err(other) => panic!("{other}"),
            Ok(_) => panic!("connected to a loopback address"),
        }
        assert!(listener.accept().is_err(), "nothing connected");

        // The metadata address is refused the same way.
        *answer.lock().unwrap() = IpAddr::from([169, 254, 169, 254]);
        assert!(matches!(
            connector.permitted_addresses("collector.example", 80).await,
            Err(ConnectError::Refused(m)) if m.contains("metadata")
        ));
    }

    #[tokio::test]
    async fn a_refused_address_is_never_connected_to() {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        listener.set_nonblocking(true).unwrap();
        let port = listener.local_addr().unwrap().port();
        let uri: Uri = format!("http://127.0.0.1:{port}/").parse().unwrap();
        let err = connector(&[]).connect(uri.clone()).await.err().unwrap();
        assert!(matches!(err, ConnectError::Refused(_)), "{err:?}");
        assert!(listener.accept().is_err(), "nothing connected");
        assert!(connector(&["127.0.0.1"]).connect(uri).await.is_ok());
    }
}
