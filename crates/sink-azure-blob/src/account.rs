//! A connection's storage account: its endpoint, how requests are authorized, and the SDK
//! clients built from both.

use std::sync::{Arc, Mutex};

use auditstream_proto::v1 as pb;
use auditstream_sink_core::Answer;
use azure_core::{
    cloud::{CloudConfiguration, CustomConfiguration},
    credentials::{Secret, TokenCredential},
    http::{ClientOptions, RetryOptions, Transport, Url},
};
use azure_identity::{ClientSecretCredential, ClientSecretCredentialOptions};
use azure_storage_blob::{
    BlobContainerClient, BlobContainerClientOptions, BlobServiceClient, BlobServiceClientOptions,
};
use time::{Duration, OffsetDateTime};

use crate::{classify::Method, sas::AccountKey};

/// A self-signed SAS is valid this long...
const SAS_VALIDITY: Duration = Duration::hours(1);
/// ...from this long before it was signed (clock skew between the sink and Azure)...
const SAS_BACKDATE: Duration = Duration::minutes(5);
/// ...and replaced this long before it expires (requests in flight, clock skew).
const SAS_RENEW_BEFORE: Duration = Duration::minutes(10);

/// How requests are authorized.
enum Auth {
    /// An account SAS signed here from the key, renewed before it expires.
    SharedKey(AccountKey),
    /// The connection's SAS token, appended to every URL as it is.
    Sas(String),
    /// Entra ID tokens (client credentials) as bearer tokens.
    Token(Arc<dyn TokenCredential>),
}

pub struct Account {
    /// The account name, for messages and SAS signing (may be empty for a SAS or token
    /// connection whose endpoint does not name it).
    pub name: String,
    /// The blob service URL without query: `https://<account>.blob.core.windows.net/` or the
    /// connection's endpoint (`http://127.0.0.1:10000/devstoreaccount1` for Azurite).
    endpoint: Url,
    auth: Auth,
    /// The sink's HTTP client, shared by every account so connections are pooled.
    transport: Transport,
}

impl std::fmt::Debug for Account {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Account")
            .field("name", &self.name)
            .field("endpoint", &self.endpoint.as_str())
            .field("method", &self.method())
            .finish()
    }
}

impl Account {
    /// The account of a connection's credentials. Nothing is sent over the network.
    pub fn new(
        credentials: &pb::AzureBlobCredentials,
        allow_insecure_http: bool,
        transport: Transport,
    ) -> Result<Account, Answer> {
        use pb::azure_blob_credentials::Method as M;
        let account = credentials.account.trim();
        let endpoint = if credentials.endpoint.trim().is_empty() {
            if account.is_empty() {
                return Err(Answer::configuration(
                    "the connection names neither a storage account nor an endpoint",
                    "set the connection's account (or endpoint, for Azurite or a sovereign cloud)",
                ));
            }
            Url::parse(&format!("https://{account}.blob.core.windows.net/")).map_err(|_| {
                Answer::configuration(
                    format!("{account:?} is not a storage account name"),
                    "set the connection's account to the storage account's name",
                )
            })?
        } else {
            parse_endpoint(credentials.endpoint.trim(), allow_insecure_http)?
        };
        let name = if account.is_empty() {
            account_of(&endpoint)
        } else {
            account.to_owned()
        };
        let https = endpoint.scheme() == "https";
        let auth = match &credentials.method {
            None => {
                return Err(Answer::configuration(
                    "the connection has no credentials",
                    "give the connection a shared key, a SAS token or client credentials",
                ));
            }
            Some(M::SharedKey(k)) => {
                if name.is_empty() {
                    return Err(Answer::configuration(
                        "a shared key needs the storage account's name",
                        "set the connection's account",
                    ));
                }
                Auth::SharedKey(AccountKey::new(&name, &k.account_key).map_err(|e| {
                    Answer::configuration(
                        e,
                        "set the connection's account key to key1 or key2 of the storage account \
                         (Access keys in the Azure portal)",
                    )
                })?)
            }
            Some(M::Sas(s)) => {
                let token = s.sas_token.trim().trim_start_matches('?');
                if !token.contains("sig=") {
                    return Err(Answer::configuration(
                        "the SAS token has no signature (sig=)",
                        "paste the whole SAS token (sv=…&sig=…) into the connection",
                    ));
                }
                Auth::Sas(token.to_owned())
            }
            Some(M::ClientCredentials(c)) => {
                if !https {
                    return Err(Answer::configuration(
                        "client credentials need an https endpoint",
                        "use the account's https endpoint, or a shared key or SAS for an emulator",
                    ));
                }
                Auth::Token(client_credential(c, transport.clone())?)
            }
        };
        Ok(Account {
            name,
            endpoint,
            auth,
            transport,
        })
    }

    pub fn method(&self) -> Method {
        match self.auth {
            Auth::SharedKey(_) => Method::SharedKey,
            Auth::Sas(_) => Method::Sas,
            Auth::Token(_) => Method::ClientCredentials,
        }
    }

    /// The SDK's client options: sink-core retries (with backoff and the destination's health
    /// in view), so the SDK does not.
    fn client_options(&self) -> ClientOptions {
        ClientOptions {
            retry: RetryOptions::none(),
            transport: Some(self.transport.clone()),
            ..Default::default()
        }
    }

    /// `url` with the SAS query, and when that SAS must be replaced (`None`: never).
    fn authorize(&self, mut url: Url, now: OffsetDateTime) -> (Url, Option<OffsetDateTime>) {
        match &self.auth {
            Auth::SharedKey(key) => {
                let expiry = now + SAS_VALIDITY;
                let query = key.sign(now - SAS_BACKDATE, expiry, url.scheme() == "https");
                url.set_query(Some(&query));
                (url, Some(expiry - SAS_RENEW_BEFORE))
            }
            Auth::Sas(token) => {
                url.set_query(Some(token));
                (url, None)
            }
            Auth::Token(_) => (url, None),
        }
    }

    fn credential(&self) -> Option<Arc<dyn TokenCredential>> {
        match &self.auth {
            Auth::Token(c) => Some(c.clone()),
            _ => None,
        }
    }

    /// A client of `container`, and when it must be rebuilt (its SAS expires).
    pub fn container_client(
        &self,
        container: &str,
        now: OffsetDateTime,
    ) -> azure_core::Result<(BlobContainerClient, Option<OffsetDateTime>)> {
        let mut url = self.endpoint.clone();
        url.path_segments_mut()
            .map_err(|()| {
                azure_core::Error::with_message(
                    azure_core::error::ErrorKind::Other,
                    "the endpoint cannot have a container path",
                )
            })?
            .pop_if_empty()
            .push(container);
        let (url, renew_at) = self.authorize(url, now);
        let options = BlobContainerClientOptions {
            client_options: self.client_options(),
            ..Default::default()
        };
        let client = BlobContainerClient::new(url, self.credential(), Some(options))?;
        Ok((client, renew_at))
    }

    /// A client of the account's blob service (listing containers).
    pub fn service_client(&self, now: OffsetDateTime) -> azure_core::Result<BlobServiceClient> {
        let (url, _) = self.authorize(self.endpoint.clone(), now);
        let options = BlobServiceClientOptions {
            client_options: self.client_options(),
            ..Default::default()
        };
        BlobServiceClient::new(url, self.credential(), Some(options))
    }
}

/// A container client kept while its authorization is valid (a self-signed SAS is renewed by
/// building a new client; the transport, and so the connections, stay the same).
pub struct ContainerClients {
    account: Arc<Account>,
    container: String,
    current: Mutex<Option<(Option<OffsetDateTime>, Arc<BlobContainerClient>)>>,
}

impl ContainerClients {
    /// Builds the first client now, so an unusable URL is a build error.
    pub fn new(account: Arc<Account>, container: &str) -> azure_core::Result<ContainerClients> {
        let clients = ContainerClients {
            account,
            container: container.to_owned(),
            current: Mutex::new(None),
        };
        clients.get(OffsetDateTime::now_utc())?;
        Ok(clients)
    }

    pub fn account(&self) -> &Account {
        &self.account
    }

    pub fn get(&self, now: OffsetDateTime) -> azure_core::Result<Arc<BlobContainerClient>> {
        let mut current = self.current.lock().expect("container client lock");
        if let Some((renew_at, client)) = current.as_ref()
            && renew_at.is_none_or(|at| now < at)
        {
            return Ok(client.clone());
        }
        let (client, renew_at) = self.account.container_client(&self.container, now)?;
        let client = Arc::new(client);
        *current = Some((renew_at, client.clone()));
        Ok(client)
    }

    /// When the current client must be replaced (tests).
    #[cfg(test)]
    pub fn renew_at(&self) -> Option<OffsetDateTime> {
        self.current
            .lock()
            .unwrap()
            .as_ref()
            .and_then(|(at, _)| *at)
    }
}

fn parse_endpoint(endpoint: &str, allow_insecure_http: bool) -> Result<Url, Answer> {
    let url = Url::parse(endpoint.trim_end_matches('/')).map_err(|e| {
        Answer::configuration(
            format!("the endpoint {endpoint:?} is not a URL: {e}"),
            "set the connection's endpoint to the blob service URL, e.g. \
             https://<account>.blob.core.usgovcloudapi.net",
        )
    })?;
    match url.scheme() {
        "https" => {}
        "http" if allow_insecure_http => {}
        "http" => {
            return Err(Answer::configuration(
                format!("the endpoint {url} is unencrypted http"),
                "use an https endpoint (http is only accepted when the sink's \
                 allow_insecure_http is set, for emulators)",
            ));
        }
        other => {
            return Err(Answer::configuration(
                format!("the endpoint has the scheme {other:?}"),
                "use an https endpoint",
            ));
        }
    }
    if url.query().is_some() || url.fragment().is_some() || !url.username().is_empty() {
        return Err(Answer::configuration(
            "the endpoint carries a query, fragment or user name",
            "give the endpoint as the bare blob service URL; a SAS token goes into the \
             connection's sas field",
        ));
    }
    if url.host_str().is_none_or(str::is_empty) {
        return Err(Answer::configuration(
            format!("the endpoint {endpoint:?} has no host"),
            "set the connection's endpoint to the blob service URL",
        ));
    }
    Ok(url)
}

/// The account an endpoint names: the first path segment of an emulator-style URL
/// (`http://127.0.0.1:10000/devstoreaccount1`), else the first label of the host
/// (`acme.blob.core.windows.net`).
fn account_of(endpoint: &Url) -> String {
    if let Some(first) = endpoint.path_segments().and_then(|mut s| s.next())
        && !first.is_empty()
    {
        return first.to_owned();
    }
    match endpoint.host_str() {
        // An IP address (v6 in brackets) names no account.
        Some(h) if !h.starts_with('[') && h.parse::<std::net::Ipv4Addr>().is_err() => {
            h.split('.').next().unwrap_or_default().to_owned()
        }
        _ => String::new(),
    }
}

fn client_credential(
    c: &pb::AzureClientCredentials,
    transport: Transport,
) -> Result<Arc<dyn TokenCredential>, Answer> {
    let cloud = if c.authority_host.trim().is_empty() {
        // Explicit, so the library does not read AZURE_AUTHORITY_HOST from the environment.
        CloudConfiguration::AzurePublic
    } else {
        let mut custom = CustomConfiguration::default();
        custom.authority_host = c.authority_host.trim().trim_end_matches('/').to_owned();
        custom.into()
    };
    let options = ClientSecretCredentialOptions {
        client_options: ClientOptions {
            retry: RetryOptions::none(),
            transport: Some(transport),
            cloud: Some(Arc::new(cloud)),
            ..Default::default()
        },
    };
    let credential = ClientSecretCredential::new(
        c.tenant_id.trim(),
        c.client_id.trim().to_owned(),
        Secret::new(c.client_secret.clone()),
        Some(options),
    )
    .map_err(|e| {
        Answer::configuration(
            format!("the client credentials are unusable: {e}"),
            "check the connection's tenant_id, client_id, client_secret and authority_host \
             (https)",
        )
    })?;
    Ok(credential)
}
