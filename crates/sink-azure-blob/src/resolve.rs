//! The Blob sink's HTTP client: reqwest (the Azure SDK's own transport) with a DNS resolver
//! behind the connect-time address rule of [`auditstream_egress::AddressCheck`] (M5). Every
//! name the SDK connects to — the account's endpoint, and for client credentials the Entra
//! authority host that receives the client secret — is resolved here first, so a name that
//! starts resolving to a loopback, private or metadata address after the connection was saved
//! is refused; reqwest connects to exactly the addresses returned. No proxy, no redirects.
//! IP-literal endpoints are not resolved: they were checked when saved and cannot change.

use std::sync::Arc;

use auditstream_egress::{AddressCheck, AddressError, RefusedAddress};
use reqwest::dns::{Addrs, Name, Resolve, Resolving};

pub(crate) use auditstream_egress::REFUSED;

struct CheckedDns(AddressCheck);

impl Resolve for CheckedDns {
    fn resolve(&self, name: Name) -> Resolving {
        let check = self.0.clone();
        Box::pin(async move {
            // The port is reqwest's to add; the rule is about addresses.
            match check.permitted(name.as_str(), 0).await {
                Ok(addrs) => Ok(Box::new(addrs.into_iter()) as Addrs),
                Err(AddressError::Refused(message)) => {
                    Err(Box::new(RefusedAddress(message)).into())
                }
                Err(e) => Err(Box::new(e).into()),
            }
        })
    }
}

/// The client every Blob client (and Entra credential) of this sink uses. Blobs are read
/// back as stored: no automatic decompression (the SDK's default client for storage does
/// the same).
pub(crate) fn http_client(check: AddressCheck) -> anyhow::Result<reqwest::Client> {
    Ok(reqwest::Client::builder()
        .dns_resolver(Arc::new(CheckedDns(check)))
        .no_proxy()
        .redirect(reqwest::redirect::Policy::none())
        .build()?)
}
