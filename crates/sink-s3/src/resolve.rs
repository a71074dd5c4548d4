//! The S3 client's DNS resolver: every host name the SDK connects to (a connection's
//! S3-compatible endpoint, AWS's regional endpoints, STS) is resolved here and passes the
//! address rule of [`auditstream_egress::AddressCheck`] first (M5), so an endpoint that starts
//! resolving to a loopback, private or metadata address after it was saved is refused at
//! connect time, as the HTTP sinks refuse it. hyper connects to exactly the addresses
//! returned. IP-literal endpoints are not resolved: they were checked when saved and cannot
//! change.

use auditstream_egress::{AddressCheck, AddressError, RefusedAddress};
use aws_smithy_http_client::{
    Builder,
    tls::{Provider, rustls_provider::CryptoMode},
};
use aws_smithy_runtime_api::client::{
    dns::{DnsFuture, ResolveDns, ResolveDnsError},
    http::SharedHttpClient,
};

pub(crate) use auditstream_egress::REFUSED;

#[derive(Debug, Clone)]
struct CheckedDns(AddressCheck);

impl ResolveDns for CheckedDns {
    fn resolve_dns<'a>(&'a self, name: &'a str) -> DnsFuture<'a> {
        DnsFuture::new(async move {
            // The port is hyper's to add; the rule is about addresses.
            match self.0.permitted(name, 0).await {
                Ok(addrs) => Ok(addrs.into_iter().map(|a| a.ip()).collect()),
                Err(AddressError::Refused(message)) => {
                    Err(ResolveDnsError::new(RefusedAddress(message)))
                }
                Err(e) => Err(ResolveDnsError::new(e)),
            }
        })
    }
}

/// The HTTP client every S3 client of this sink uses.
pub(crate) fn http_client(check: AddressCheck) -> SharedHttpClient {
    Builder::new()
        .tls_provider(Provider::Rustls(CryptoMode::AwsLc))
        .build_with_resolver(CheckedDns(check))
}
