//! The address rule at connect time (DESIGN §7), for any HTTP client a sink uses: resolve a
//! host and keep only the addresses that may be contacted (loopback, private, link-local and
//! metadata addresses are refused unless an operator allow-lists them). The project's own
//! connector ([`crate::Egress`]) and the SDK clients (S3's DNS resolver hook) both ask this,
//! so a name that starts resolving to an internal address after a destination was saved is
//! refused however the sink talks to it.

use std::{fmt, future::Future, io, net::SocketAddr, pin::Pin, sync::Arc};

use auditstream_model::destination::{NetworkAllowList, check_destination_ip};

/// Host name and port → addresses. The system resolver in production; tests substitute one
/// whose answer changes, to show the rule holds after a DNS change (rebinding).
pub type Resolve = Arc<
    dyn Fn(String, u16) -> Pin<Box<dyn Future<Output = io::Result<Vec<SocketAddr>>> + Send>>
        + Send
        + Sync,
>;

fn system_resolver() -> Resolve {
    Arc::new(|host, port| {
        Box::pin(async move { Ok(tokio::net::lookup_host((host, port)).await?.collect()) })
    })
}

/// Starts the text of an SDK error that wraps a [`RefusedAddress`], so a sink can tell a
/// refused address (a configuration error) from a network failure in the SDK's error chain.
pub const REFUSED: &str = "refused by the address rules";

/// A refusal as an error an SDK's resolver hook can return (its Display starts with
/// [`REFUSED`]).
#[derive(Debug)]
pub struct RefusedAddress(pub String);

impl fmt::Display for RefusedAddress {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{REFUSED}: {}", self.0)
    }
}

impl std::error::Error for RefusedAddress {}

/// Why a host may not be contacted.
#[derive(Debug)]
pub enum AddressError {
    /// Every address of the host is refused by the address rules: the model's message.
    Refused(String),
    Resolve {
        host: String,
        error: io::Error,
    },
}

impl fmt::Display for AddressError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            AddressError::Refused(message) => f.write_str(message),
            AddressError::Resolve { host, error } => {
                write!(f, "could not resolve {host}: {error}")
            }
        }
    }
}

impl std::error::Error for AddressError {}

/// The allow-list and the resolver. Cheap to clone.
#[derive(Clone)]
pub struct AddressCheck {
    allow: Arc<NetworkAllowList>,
    resolve: Resolve,
}

impl fmt::Debug for AddressCheck {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("AddressCheck")
            .field("allow", &self.allow)
            .finish_non_exhaustive()
    }
}

impl AddressCheck {
    /// From a sink's `allowed_networks` setting (CIDR networks, addresses or host names).
    pub fn new(allowed_networks: &[String]) -> anyhow::Result<AddressCheck> {
        let allow = NetworkAllowList::parse(allowed_networks)
            .map_err(|e| anyhow::anyhow!("allowed_networks: {e}"))?;
        Ok(AddressCheck::from_list(allow))
    }

    pub(crate) fn from_list(allow: NetworkAllowList) -> AddressCheck {
        AddressCheck {
            allow: Arc::new(allow),
            resolve: system_resolver(),
        }
    }

    /// The same rule with another resolver (tests: a DNS answer that changes).
    pub fn with_resolver(mut self, resolve: Resolve) -> AddressCheck {
        self.resolve = resolve;
        self
    }

    /// The addresses of `host` that may be contacted, in resolver order; an error if none.
    pub async fn permitted(&self, host: &str, port: u16) -> Result<Vec<SocketAddr>, AddressError> {
        let resolved: Vec<SocketAddr> = match literal_ip(host) {
            Some(ip) => vec![SocketAddr::new(ip, port)],
            None => (self.resolve)(host.to_owned(), port)
                .await
                .map_err(|error| AddressError::Resolve {
                    host: host.to_owned(),
                    error,
                })?,
        };
        let mut permitted = Vec::new();
        let mut refusal = None;
        for addr in resolved {
            // Only the message is used: the field was named when the URL was checked.
            match check_destination_ip("url", host, addr.ip(), &self.allow) {
                Ok(()) if !permitted.contains(&addr) => permitted.push(addr),
                Ok(()) => {}
                Err(e) => {
                    refusal.get_or_insert(e.message);
                }
            }
        }
        match (permitted.is_empty(), refusal) {
            (false, _) => Ok(permitted),
            (true, Some(message)) => Err(AddressError::Refused(message)),
            (true, None) => Err(AddressError::Resolve {
                host: host.to_owned(),
                error: io::Error::new(io::ErrorKind::NotFound, "no addresses"),
            }),
        }
    }
}

/// An IP literal host (`[::1]` as hyper gives it, or `127.0.0.1`).
pub(crate) fn literal_ip(host: &str) -> Option<std::net::IpAddr> {
    host.strip_prefix('[')
        .and_then(|h| h.strip_suffix(']'))
        .unwrap_or(host)
        .parse()
        .ok()
}
