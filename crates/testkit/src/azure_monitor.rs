//! A contract-checking stand-in for the Azure Monitor Logs Ingestion API and the Microsoft
//! Entra ID token endpoint it trusts. No emulator of either exists, so this one checks the
//! real API's contract instead of just recording calls: a sink that passes against it sends
//! what Azure accepts.
//!
//! Two listeners on loopback (like two hosts in Azure), one shared state:
//! - the authority host: `POST /{tenant}/oauth2/v2.0/token` with the client-credentials grant
//!   for scope [`MONITOR_SCOPE`]; answers errors as Entra ID does (`error`, `AADSTS…`
//!   description, `error_codes`) and remembers each token it issues with its expiry;
//! - the data collection endpoint: `POST /dataCollectionRules/{immutableId}/streams/{stream}
//!   ?api-version=2023-01-01` with a bearer token and a JSON array of objects (gzip allowed);
//!   204 when accepted, else `{"error":{"code","message"}}`. The checks run in the order of
//!   [`AzureMonitorStandIn`]'s table, the first that fails answers.
//!
//! Every request to either is recorded, refused ones included. Event ids are read from the
//! accepted bodies with [`crate::receiver::event_ids`].

use std::{
    collections::{BTreeMap, HashMap, HashSet},
    io::Read as _,
    net::SocketAddr,
    sync::{Arc, Mutex},
    time::{Duration, Instant},
};

use axum::{
    body::Body,
    extract::{Request, State},
    http::{HeaderMap, HeaderValue, Method, StatusCode, header, request::Parts},
    response::Response,
};
use serde_json::{Value, json};
use tokio::task::JoinHandle;

/// The only scope the token endpoint grants: resource `https://monitor.azure.com/` plus
/// `/.default` (the double slash is what Azure's SDKs send).
pub const MONITOR_SCOPE: &str = "https://monitor.azure.com//.default";
/// The only `api-version` the ingestion endpoint accepts.
pub const INGESTION_API_VERSION: &str = "2023-01-01";
/// Bodies are read up to this, far above any `max_body_bytes`, so an oversize upload gets
/// Azure's 413 rather than a broken connection.
const READ_LIMIT: usize = 64 * 1024 * 1024;
/// Decompression stops here: a gzip bomb is refused (413) without filling memory.
const INFLATE_LIMIT: u64 = 256 * 1024 * 1024;

/// What the stand-in accepts; [`Default`] is a plausible Azure setup.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MonitorContract {
    pub tenant_id: String,
    pub client_id: String,
    pub client_secret: String,
    pub dcr_immutable_id: String,
    pub stream_name: String,
    /// Lifetime of the tokens issued (`expires_in`).
    pub token_lifetime: Duration,
    /// Limit for the body as sent and, when gzipped, decompressed (Azure: 1 MB each).
    pub max_body_bytes: usize,
}

impl Default for MonitorContract {
    fn default() -> Self {
        MonitorContract {
            tenant_id: "00000000-0000-0000-0000-00000000aaaa".into(),
            client_id: "00000000-0000-0000-0000-00000000c11e".into(),
            client_secret: "stand-in-secret".into(),
            dcr_immutable_id: "dcr-5f1c0a7e9b2d4c3e8a6f1b0d2c4e6a8b".into(),
            stream_name: "Custom-AuditLogs_CL".into(),
            token_lifetime: Duration::from_secs(3600),
            max_body_bytes: 1_048_576,
        }
    }
}

/// An answer forced on authorized ingestion requests (after the role check).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum MonitorFault {
    None,
    /// 429 `TooManyRequests` with `Retry-After: <retry_after_secs>`.
    Throttle {
        retry_after_secs: u64,
    },
    /// That status with a JSON error (`InternalServerError` for 500, `ServiceUnavailable`
    /// for 503, ...).
    Status(u16),
}

/// One request to the token endpoint. Form fields it did not carry are empty.
#[derive(Debug, Clone)]
pub struct TokenRequest {
    pub at: Instant,
    pub tenant: String,
    pub grant_type: String,
    pub client_id: String,
    pub scope: String,
    pub status: u16,
    /// Entra's `error` (`invalid_client`, ...) when refused.
    pub error: Option<String>,
}

/// One request to the ingestion endpoint as it arrived and was answered.
#[derive(Debug, Clone)]
pub struct IngestRequest {
    pub at: Instant,
    pub method: String,
    pub path_and_query: String,
    /// Lowercase names, in the order received.
    pub headers: Vec<(String, String)>,
    /// Bytes on the wire (compressed size when gzipped).
    pub raw_len: usize,
    /// Decompressed when `Content-Encoding: gzip`; empty when it could not be decoded.
    pub body: Vec<u8>,
    /// Length of `body`; `None` when the body could not be decoded.
    pub body_len: Option<usize>,
    pub status: u16,
    /// The `error.code` answered, `None` for 204.
    pub error_code: Option<String>,
    /// The ids in `body`; they count as delivered only when `status` is 204.
    pub event_ids: Vec<String>,
    /// The client the bearer token was issued to, when the token is one of ours.
    pub client_id: Option<String>,
}

impl IngestRequest {
    /// The first value of header `name` (case-insensitive).
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }

    pub fn body_text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }
}

/// What the tests can change while the servers run.
struct Settings {
    contract: MonitorContract,
    token_status: Option<u16>,
    role_assigned: bool,
    fault: MonitorFault,
    /// Authorized requests the fault still applies to; `None`: until changed.
    fault_left: Option<usize>,
    reject: Option<String>,
}

struct Issued {
    client_id: String,
    expires_at: Instant,
}

struct Shared {
    settings: Mutex<Settings>,
    /// Access token → to whom and until when.
    tokens: Mutex<HashMap<String, Issued>>,
    token_requests: Mutex<Vec<TokenRequest>>,
    requests: Mutex<Vec<IngestRequest>>,
}

/// The token endpoint and the ingestion endpoint; dropping it stops both.
///
/// Ingestion checks, in order (status, `error.code`):
/// 1. method POST: 405 `MethodNotAllowed`;
/// 2. path `/dataCollectionRules/{id}/streams/{stream}` with the contract's immutable id:
///    404 `NotFound`; the contract's stream (case-sensitive): 404 `InvalidStream`;
/// 3. `api-version=2023-01-01`: 400 `InvalidApiVersion`;
/// 4. `Authorization: Bearer <token>`: missing 401 `MissingToken`, not issued by the token
///    endpoint 401 `InvalidAuthenticationToken`, expired 401 `ExpiredAuthenticationToken`;
/// 5. role assigned: 403 `OperationFailed`;
/// 6. the fault set, if any: 429 `TooManyRequests` or the status set;
/// 7. `Content-Type: application/json` (parameters allowed): 415 `UnsupportedMediaType`;
/// 8. `Content-Encoding` none or gzip: 400 `UnsupportedContentEncoding`; size as sent and
///    decompressed ≤ `max_body_bytes`: 413 `ContentLengthLimitExceeded` (also, before any
///    check, for a body over 64 MiB); gzip that does not decode: 400 `InvalidContentEncoding`;
/// 9. JSON: 400 `InvalidJson`; an array of objects (`[]` is fine): 400
///    `InvalidArrayOfObjects`;
/// 10. no element contains the [`reject_containing`](Self::reject_containing) needle: 400
///     `InvalidData` for the whole request;
/// 11. 204, the ids count as accepted.
///
/// A token stays valid until it expires, also after the secret is rotated (as in Azure).
pub struct AzureMonitorStandIn {
    authority_addr: SocketAddr,
    ingestion_addr: SocketAddr,
    shared: Arc<Shared>,
    servers: [JoinHandle<()>; 2],
}

impl Drop for AzureMonitorStandIn {
    fn drop(&mut self) {
        for server in &self.servers {
            server.abort();
        }
    }
}

impl AzureMonitorStandIn {
    /// Starts both listeners on 127.0.0.1 (free ports), accepting `contract`.
    pub async fn start(contract: MonitorContract) -> Self {
        let shared = Arc::new(Shared {
            settings: Mutex::new(Settings {
                contract,
                token_status: None,
                role_assigned: true,
                fault: MonitorFault::None,
                fault_left: None,
                reject: None,
            }),
            tokens: Mutex::new(HashMap::new()),
            token_requests: Mutex::new(Vec::new()),
            requests: Mutex::new(Vec::new()),
        });
        let authority = axum::Router::new()
            .fallback(token_endpoint)
            .with_state(shared.clone());
        let ingestion = axum::Router::new()
            .fallback(ingestion_endpoint)
            .with_state(shared.clone());
        let (authority_addr, authority) = serve("token endpoint", authority).await;
        let (ingestion_addr, ingestion) = serve("ingestion endpoint", ingestion).await;
        AzureMonitorStandIn {
            authority_addr,
            ingestion_addr,
            shared,
            servers: [authority, ingestion],
        }
    }

    /// What it accepts now (after any rotation or change).
    pub fn contract(&self) -> MonitorContract {
        self.settings().contract.clone()
    }

    /// `http://127.0.0.1:<port>`: where `/{tenant}/oauth2/v2.0/token` lives.
    pub fn authority_host(&self) -> String {
        format!("http://{}", self.authority_addr)
    }

    /// `http://127.0.0.1:<port>`: the data collection endpoint.
    pub fn ingestion_endpoint(&self) -> String {
        format!("http://{}", self.ingestion_addr)
    }

    pub fn authority_addr(&self) -> SocketAddr {
        self.authority_addr
    }

    pub fn ingestion_addr(&self) -> SocketAddr {
        self.ingestion_addr
    }

    /// Rotates the secret: the old one is refused from now on.
    pub fn set_client_secret(&self, secret: &str) {
        self.settings().contract.client_secret = secret.to_owned();
    }

    /// Lifetime of the tokens issued from now on.
    pub fn set_token_lifetime(&self, lifetime: Duration) {
        self.settings().contract.token_lifetime = lifetime;
    }

    /// Every token issued so far is expired from now on.
    pub fn expire_tokens(&self) {
        let now = Instant::now();
        for issued in self.shared.tokens.lock().unwrap().values_mut() {
            issued.expires_at = issued.expires_at.min(now);
        }
    }

    /// `Some(status)`: the token endpoint answers every request with it; `None`: works again.
    pub fn set_token_endpoint_status(&self, status: Option<u16>) {
        self.settings().token_status = status;
    }

    /// Whether the client holds the role on the DCR (Monitoring Metrics Publisher).
    pub fn set_role_assigned(&self, assigned: bool) {
        self.settings().role_assigned = assigned;
    }

    /// `fault` for every authorized request until changed.
    pub fn set_fault(&self, fault: MonitorFault) {
        let mut settings = self.settings();
        settings.fault = fault;
        settings.fault_left = None;
    }

    /// `fault` for the next `requests` authorized requests, then [`MonitorFault::None`].
    pub fn set_fault_for(&self, fault: MonitorFault, requests: usize) {
        let mut settings = self.settings();
        (settings.fault, settings.fault_left) = if requests == 0 {
            (MonitorFault::None, None)
        } else {
            (fault, Some(requests))
        };
    }

    /// `Some(needle)`: a request with an element whose serialized JSON contains `needle` is
    /// refused whole (400 `InvalidData`), as Azure refuses data the DCR cannot take.
    pub fn reject_containing(&self, needle: Option<&str>) {
        self.settings().reject = needle.map(str::to_owned);
    }

    pub fn set_max_body_bytes(&self, limit: usize) {
        self.settings().contract.max_body_bytes = limit;
    }

    /// Every token request so far, in arrival order.
    pub fn token_requests(&self) -> Vec<TokenRequest> {
        self.shared.token_requests.lock().unwrap().clone()
    }

    /// Every ingestion request so far, in arrival order, refused ones included.
    pub fn requests(&self) -> Vec<IngestRequest> {
        self.shared.requests.lock().unwrap().clone()
    }

    /// The event ids of the requests answered 204, in order (duplicates kept).
    pub fn accepted_ids(&self) -> Vec<String> {
        let requests = self.shared.requests.lock().unwrap();
        requests
            .iter()
            .filter(|r| r.status == 204)
            .flat_map(|r| r.event_ids.iter().cloned())
            .collect()
    }

    /// Waits until every id in `ids` was accepted; panics after `timeout` saying how many are
    /// missing and what the requests were answered.
    pub async fn wait_for_ids(&self, ids: &HashSet<String>, timeout: Duration) {
        let deadline = Instant::now() + timeout;
        loop {
            let accepted: HashSet<String> = self.accepted_ids().into_iter().collect();
            let mut missing: Vec<&String> = ids.difference(&accepted).collect();
            if missing.is_empty() {
                return;
            }
            if Instant::now() >= deadline {
                missing.sort();
                // How often each answer was given, e.g. {"204": 3, "401 MissingToken": 1}.
                let mut answers = BTreeMap::<String, usize>::new();
                let requests = self.requests();
                for r in &requests {
                    let code = r.error_code.as_deref().unwrap_or_default();
                    *answers
                        .entry(format!("{} {code}", r.status).trim().to_owned())
                        .or_default() += 1;
                }
                let mut tokens = BTreeMap::<u16, usize>::new();
                for t in self.token_requests() {
                    *tokens.entry(t.status).or_default() += 1;
                }
                panic!(
                    "{} of {} event ids not accepted by the Azure Monitor stand-in within \
                     {timeout:?} (e.g. {:?}); {} ingestion requests answered {answers:?}; \
                     token requests answered {tokens:?}",
                    missing.len(),
                    ids.len(),
                    &missing[..missing.len().min(5)],
                    requests.len(),
                );
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    fn settings(&self) -> std::sync::MutexGuard<'_, Settings> {
        self.shared.settings.lock().unwrap()
    }
}

async fn serve(what: &'static str, app: axum::Router) -> (SocketAddr, JoinHandle<()>) {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .unwrap_or_else(|e| panic!("bind a loopback port for the Azure Monitor {what}: {e}"));
    let addr = listener.local_addr().expect("the stand-in's address");
    let server = tokio::spawn(async move {
        axum::serve(listener, app)
            .await
            .unwrap_or_else(|e| panic!("the Azure Monitor {what} stopped: {e}"));
    });
    (addr, server)
}

fn json_response(status: u16, body: &Value) -> Response {
    let mut response = Response::new(Body::from(body.to_string()));
    *response.status_mut() =
        StatusCode::from_u16(status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
    let json = HeaderValue::from_static("application/json; charset=utf-8");
    response.headers_mut().insert(header::CONTENT_TYPE, json);
    response
}

/// The media type of `Content-Type` without parameters, lowercase.
fn media_type(headers: &HeaderMap) -> String {
    let value = headers.get(header::CONTENT_TYPE).map(|v| v.as_bytes());
    let value = String::from_utf8_lossy(value.unwrap_or_default());
    value
        .split(';')
        .next()
        .unwrap_or("")
        .trim()
        .to_ascii_lowercase()
}

/// `%XX` decoded (and `+` as space in forms and queries); malformed escapes kept as they are.
fn percent_decode(text: &str, plus_is_space: bool) -> String {
    let bytes = text.as_bytes();
    let hex = |at: usize| bytes.get(at).and_then(|&b| (b as char).to_digit(16));
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        match (bytes[i], hex(i + 1), hex(i + 2)) {
            (b'+', ..) if plus_is_space => out.push(b' '),
            (b'%', Some(high), Some(low)) => {
                out.push((high * 16 + low) as u8);
                i += 2;
            }
            (b, ..) => out.push(b),
        }
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// `a=1&b=2` as decoded pairs.
fn parse_pairs(text: &str, plus_is_space: bool) -> Vec<(String, String)> {
    let decode = |s| percent_decode(s, plus_is_space);
    let pairs = text.split('&').filter(|pair| !pair.is_empty());
    pairs
        .map(|pair| {
            let (name, value) = pair.split_once('=').unwrap_or((pair, ""));
            (decode(name), decode(value))
        })
        .collect()
}

fn field<'a>(pairs: &'a [(String, String)], name: &str) -> Option<&'a str> {
    pairs
        .iter()
        .find(|(n, _)| n == name)
        .map(|(_, v)| v.as_str())
}

/// An Entra ID error answer.
struct EntraError {
    status: u16,
    error: &'static str,
    /// The AADSTS code; `None` for the stand-in's own answers (unknown path, down).
    code: Option<u32>,
    description: String,
}

fn entra(status: u16, error: &'static str, code: u32, description: String) -> EntraError {
    let description = format!("AADSTS{code}: {description}");
    let code = Some(code);
    EntraError {
        status,
        error,
        code,
        description,
    }
}

fn missing(name: &str) -> EntraError {
    let description = format!("The request body must contain the following parameter: '{name}'.");
    entra(400, "invalid_request", 900144, description)
}

async fn token_endpoint(State(shared): State<Arc<Shared>>, request: Request) -> Response {
    let at = Instant::now();
    let (parts, body) = request.into_parts();
    let raw = axum::body::to_bytes(body, READ_LIMIT)
        .await
        .unwrap_or_default();
    let form = parse_pairs(&String::from_utf8_lossy(&raw), true);
    let segments: Vec<&str> = parts.uri.path().split('/').collect();
    let tenant = match segments[..] {
        ["", tenant, "oauth2", "v2.0", "token"] if !tenant.is_empty() => Some(tenant),
        _ => None,
    };
    let outcome = issue_token(&shared, &parts, tenant, &form);
    let text = |name| field(&form, name).unwrap_or_default().to_owned();
    shared.token_requests.lock().unwrap().push(TokenRequest {
        at,
        tenant: tenant.unwrap_or_default().to_owned(),
        grant_type: text("grant_type"),
        client_id: text("client_id"),
        scope: text("scope"),
        status: outcome.as_ref().map_or_else(|e| e.status, |_| 200),
        error: outcome.as_ref().err().map(|e| e.error.to_owned()),
    });
    match outcome {
        Ok(token) => json_response(200, &token),
        Err(e) => {
            let mut body = json!({"error": e.error, "error_description": e.description});
            if let Some(code) = e.code {
                body["error_codes"] = json!([code]);
                let uri = format!("https://login.microsoftonline.com/error?code={code}");
                body["error_uri"] = json!(uri);
            }
            json_response(e.status, &body)
        }
    }
}

/// The client-credentials grant, checked as Entra ID does; the token JSON when granted.
fn issue_token(
    shared: &Shared,
    parts: &Parts,
    tenant: Option<&str>,
    form: &[(String, String)],
) -> Result<Value, EntraError> {
    let (contract, down) = {
        let settings = shared.settings.lock().unwrap();
        (settings.contract.clone(), settings.token_status)
    };
    if let Some(status) = down {
        let description = format!("The token endpoint is down (the test set {status}).");
        let error = "temporarily_unavailable";
        return Err(EntraError {
            status,
            error,
            code: None,
            description,
        });
    }
    let Some(tenant) = tenant else {
        let description = format!(
            "Nothing at '{}'; the token endpoint is POST /{{tenant}}/oauth2/v2.0/token.",
            parts.uri.path()
        );
        let error = "invalid_request";
        return Err(EntraError {
            status: 404,
            error,
            code: None,
            description,
        });
    };
    if parts.method != Method::POST {
        let method = &parts.method;
        let description =
            format!("The endpoint only accepts POST requests. Received a {method} request.");
        return Err(entra(405, "invalid_request", 900561, description));
    }
    if !tenant.eq_ignore_ascii_case(&contract.tenant_id) {
        let description = format!(
            "Tenant '{tenant}' not found. Check to make sure you have the correct tenant ID \
             and are signing into the correct cloud."
        );
        return Err(entra(400, "invalid_request", 90002, description));
    }
    let content_type = media_type(&parts.headers);
    if content_type != "application/x-www-form-urlencoded" {
        // Entra ID cannot read the form, so the first parameter is missing.
        let mut error = missing("grant_type");
        let note = format!(" (Content-Type '{content_type}' is not a form.)");
        error.description.push_str(&note);
        return Err(error);
    }
    let grant_type = field(form, "grant_type").ok_or_else(|| missing("grant_type"))?;
    if grant_type != "client_credentials" {
        let description = format!("The app requested an unsupported grant type '{grant_type}'.");
        return Err(entra(400, "unsupported_grant_type", 70003, description));
    }
    let client_id = field(form, "client_id").ok_or_else(|| missing("client_id"))?;
    if !client_id.eq_ignore_ascii_case(&contract.client_id) {
        let description = format!(
            "Application with identifier '{client_id}' was not found in the directory \
             '{tenant}'. This can happen if the application has not been installed by the \
             administrator of the tenant or consented to by any user in the tenant."
        );
        return Err(entra(400, "unauthorized_client", 700016, description));
    }
    let Some(secret) = field(form, "client_secret") else {
        let description = "The request body must contain the following parameter: \
                           'client_assertion' or 'client_secret'.";
        return Err(entra(401, "invalid_client", 7000218, description.into()));
    };
    if secret != contract.client_secret {
        let description = format!(
            "Invalid client secret provided. Ensure the secret being sent in the request is \
             the client secret value, not the client secret ID, for a secret added to app \
             '{client_id}'."
        );
        return Err(entra(401, "invalid_client", 7000215, description));
    }
    let scope = field(form, "scope").ok_or_else(|| missing("scope"))?;
    if scope != MONITOR_SCOPE {
        let description = format!(
            "The provided value for the input parameter 'scope' is not valid. The scope \
             {scope} is not valid (the stand-in grants only {MONITOR_SCOPE})."
        );
        return Err(entra(400, "invalid_scope", 70011, description));
    }
    // Opaque to the client, like a real access token, and never issued twice.
    let token = format!(
        "stand-in.{}{}",
        uuid::Uuid::now_v7().simple(),
        uuid::Uuid::now_v7().simple()
    );
    let lifetime = contract.token_lifetime;
    let client_id = contract.client_id;
    let expires_at = Instant::now() + lifetime;
    let issued = Issued {
        client_id,
        expires_at,
    };
    shared.tokens.lock().unwrap().insert(token.clone(), issued);
    Ok(json!({
        "token_type": "Bearer",
        "expires_in": lifetime.as_secs(),
        "ext_expires_in": lifetime.as_secs(),
        "access_token": token,
    }))
}

/// The bearer token of an ingestion request.
enum Bearer {
    Missing,
    Unknown,
    Issued {
        client_id: String,
        expires_at: Instant,
    },
}

/// The body as the service reads it.
enum Content {
    Plain(Vec<u8>),
    Inflated(Vec<u8>),
    BadGzip(String),
    UnsupportedEncoding(String),
}

impl Content {
    fn decode(raw: &[u8], encoding: Option<&str>) -> Content {
        match encoding.map(|e| e.trim().to_ascii_lowercase()).as_deref() {
            None | Some("identity") => Content::Plain(raw.to_vec()),
            Some("gzip") => {
                // All members, stopping past INFLATE_LIMIT (a bomb then fails the size check).
                let mut out = Vec::new();
                let mut inflater = flate2::read::MultiGzDecoder::new(raw).take(INFLATE_LIMIT);
                match inflater.read_to_end(&mut out) {
                    Ok(_) => Content::Inflated(out),
                    Err(e) => Content::BadGzip(e.to_string()),
                }
            }
            Some(other) => Content::UnsupportedEncoding(other.to_owned()),
        }
    }

    fn body(&self) -> Option<&[u8]> {
        match self {
            Content::Plain(body) | Content::Inflated(body) => Some(body),
            Content::BadGzip(_) | Content::UnsupportedEncoding(_) => None,
        }
    }
}

/// An ingestion error answer.
struct Refusal {
    status: u16,
    code: &'static str,
    message: String,
    retry_after: Option<u64>,
}

fn refuse(status: u16, code: &'static str, message: String) -> Refusal {
    Refusal {
        status,
        code,
        message,
        retry_after: None,
    }
}

async fn ingestion_endpoint(State(shared): State<Arc<Shared>>, request: Request) -> Response {
    let at = Instant::now();
    let (parts, body) = request.into_parts();
    // Read before any check: answering an unread body can reset the connection while the
    // client still sends, and it would see a transport error instead of the answer.
    let raw = axum::body::to_bytes(body, READ_LIMIT).await;
    let token = parts.headers.get(header::AUTHORIZATION).and_then(|v| {
        let (scheme, token) = v.to_str().ok()?.split_once(' ')?;
        let token = token.trim();
        (scheme.eq_ignore_ascii_case("bearer") && !token.is_empty()).then_some(token)
    });
    let bearer = match token {
        None => Bearer::Missing,
        Some(token) => match shared.tokens.lock().unwrap().get(token) {
            None => Bearer::Unknown,
            Some(issued) => Bearer::Issued {
                client_id: issued.client_id.clone(),
                expires_at: issued.expires_at,
            },
        },
    };
    let (raw_len, content, outcome) = match &raw {
        Ok(raw) => {
            let encoding = parts.headers.get(header::CONTENT_ENCODING);
            let encoding = encoding.map(|v| String::from_utf8_lossy(v.as_bytes()));
            let content = Content::decode(raw, encoding.as_deref());
            let outcome = check(&shared, &parts, raw.len(), &content, &bearer);
            (raw.len(), content, outcome)
        }
        Err(e) => {
            let message = format!("The request body was not read within {READ_LIMIT} bytes: {e}");
            let refusal = refuse(413, "ContentLengthLimitExceeded", message);
            // No body to record.
            (0, Content::BadGzip(e.to_string()), Err(refusal))
        }
    };
    let body = content.body().map(<[u8]>::to_vec);
    let headers = parts.headers.iter();
    let headers = headers.map(|(n, v)| (n.to_string(), String::from_utf8_lossy(v.as_bytes())));
    shared.requests.lock().unwrap().push(IngestRequest {
        at,
        method: parts.method.to_string(),
        path_and_query: parts
            .uri
            .path_and_query()
            .map(|p| p.to_string())
            .unwrap_or_default(),
        headers: headers.map(|(n, v)| (n, v.into_owned())).collect(),
        raw_len,
        body_len: body.as_ref().map(Vec::len),
        event_ids: crate::receiver::event_ids(body.as_deref().unwrap_or_default()),
        body: body.unwrap_or_default(),
        status: outcome.as_ref().map_or_else(|r| r.status, |()| 204),
        error_code: outcome.as_ref().err().map(|r| r.code.to_owned()),
        client_id: match bearer {
            Bearer::Issued { client_id, .. } => Some(client_id),
            Bearer::Missing | Bearer::Unknown => None,
        },
    });
    let refusal = match outcome {
        Ok(()) => return Response::builder().status(204).body(Body::empty()).unwrap(),
        Err(refusal) => refusal,
    };
    let body = json!({"error": {"code": refusal.code, "message": refusal.message}});
    let mut response = json_response(refusal.status, &body);
    let headers = response.headers_mut();
    if let Some(secs) = refusal.retry_after {
        headers.insert(header::RETRY_AFTER, HeaderValue::from(secs));
    }
    if refusal.status == 401 {
        let challenge = HeaderValue::from_static("Bearer error=\"invalid_token\"");
        headers.insert(header::WWW_AUTHENTICATE, challenge);
    }
    response
}

fn json_kind(value: &Value) -> &'static str {
    match value {
        Value::Null => "null",
        Value::Bool(_) => "boolean",
        Value::Number(_) => "number",
        Value::String(_) => "string",
        Value::Array(_) => "array",
        Value::Object(_) => "object",
    }
}

/// The ingestion checks, in the order documented on [`AzureMonitorStandIn`].
fn check(
    shared: &Shared,
    parts: &Parts,
    raw_len: usize,
    content: &Content,
    bearer: &Bearer,
) -> Result<(), Refusal> {
    let (contract, role_assigned, reject) = {
        let settings = shared.settings.lock().unwrap();
        let reject = settings.reject.clone();
        (settings.contract.clone(), settings.role_assigned, reject)
    };
    let dcr = &contract.dcr_immutable_id;
    if parts.method != Method::POST {
        let message = format!("The method '{}' is not allowed; use POST.", parts.method);
        return Err(refuse(405, "MethodNotAllowed", message));
    }

    let path = parts.uri.path();
    let route = path.strip_prefix("/dataCollectionRules/");
    let route: Vec<String> = route.map_or_else(Vec::new, |rest| {
        rest.split('/').map(|s| percent_decode(s, false)).collect()
    });
    let (id, stream) = match &route[..] {
        [id, streams, stream] if streams == "streams" => (id, stream),
        _ => {
            let message = format!(
                "Nothing at '{path}'; expected \
                 /dataCollectionRules/{{immutableId}}/streams/{{streamName}}."
            );
            return Err(refuse(404, "NotFound", message));
        }
    };
    if id != dcr {
        let message = format!("No data collection rule with immutable ID '{id}' was found.");
        return Err(refuse(404, "NotFound", message));
    }
    if stream != &contract.stream_name {
        let message = format!(
            "Stream '{stream}' is not declared in the data collection rule with immutable ID \
             '{dcr}' (stream names are case-sensitive)."
        );
        return Err(refuse(404, "InvalidStream", message));
    }

    let query = parse_pairs(parts.uri.query().unwrap_or_default(), true);
    let version = field(&query, "api-version").unwrap_or_default();
    if version != INGESTION_API_VERSION {
        let message = format!("api-version '{version}' is not supported; use 2023-01-01.");
        return Err(refuse(400, "InvalidApiVersion", message));
    }

    let expires_at = match bearer {
        Bearer::Missing => {
            let message = "The request has no 'Authorization: Bearer <token>' header.";
            return Err(refuse(401, "MissingToken", message.into()));
        }
        Bearer::Unknown => {
            let message = "The access token is invalid: the token endpoint did not issue it.";
            return Err(refuse(401, "InvalidAuthenticationToken", message.into()));
        }
        Bearer::Issued { expires_at, .. } => *expires_at,
    };
    let now = Instant::now();
    if now >= expires_at {
        let ago = now - expires_at;
        let message = format!("The access token has expired ({ago:?} ago); get a new one.");
        return Err(refuse(401, "ExpiredAuthenticationToken", message));
    }
    if !role_assigned {
        let message = format!(
            "The authentication token provided does not have access to ingest data for the \
             data collection rule with immutable Id '{dcr}'."
        );
        return Err(refuse(403, "OperationFailed", message));
    }

    match take_fault(shared) {
        MonitorFault::None => {}
        MonitorFault::Throttle { retry_after_secs } => {
            let message = format!("Too many requests; retry after {retry_after_secs} seconds.");
            let refusal = refuse(429, "TooManyRequests", message);
            return Err(Refusal {
                retry_after: Some(retry_after_secs),
                ..refusal
            });
        }
        MonitorFault::Status(status) => {
            let code = match status {
                429 => "TooManyRequests",
                500 => "InternalServerError",
                502 => "BadGateway",
                503 => "ServiceUnavailable",
                504 => "GatewayTimeout",
                _ => "InjectedFault",
            };
            let message = format!("The service answers {status} (a fault set by the test).");
            return Err(refuse(status, code, message));
        }
    }

    let media = media_type(&parts.headers);
    if media != "application/json" {
        let message = format!("Content-Type must be application/json, not '{media}'.");
        return Err(refuse(415, "UnsupportedMediaType", message));
    }
    if let Content::UnsupportedEncoding(encoding) = content {
        let message = format!("Content-Encoding '{encoding}' is not supported; use gzip or none.");
        return Err(refuse(400, "UnsupportedContentEncoding", message));
    }
    let max = contract.max_body_bytes;
    let inflated = match content {
        Content::Inflated(body) => Some(body.len()),
        _ => None,
    };
    if raw_len > max || inflated.is_some_and(|n| n > max) {
        let inflated = inflated.map(|n| format!(" ({n} bytes decompressed)"));
        let message = format!(
            "Maximum allowed content length: {max} bytes. Provided content length: {raw_len} \
             bytes{}.",
            inflated.unwrap_or_default()
        );
        return Err(refuse(413, "ContentLengthLimitExceeded", message));
    }
    let body = match content {
        Content::BadGzip(e) => {
            let message = format!("The gzip body does not decompress: {e}.");
            return Err(refuse(400, "InvalidContentEncoding", message));
        }
        other => other.body().unwrap_or_default(),
    };

    let value: Value = serde_json::from_slice(body).map_err(|e| {
        let message = format!("The body is not valid JSON: {e}.");
        refuse(400, "InvalidJson", message)
    })?;
    let must = "The body must be a JSON array of objects";
    let Value::Array(items) = &value else {
        let message = format!("{must}, not a JSON {}.", json_kind(&value));
        return Err(refuse(400, "InvalidArrayOfObjects", message));
    };
    if let Some((i, item)) = items.iter().enumerate().find(|(_, item)| !item.is_object()) {
        let message = format!("{must}; element {i} is a JSON {}.", json_kind(item));
        return Err(refuse(400, "InvalidArrayOfObjects", message));
    }
    if let Some(needle) = reject
        && let Some(i) = items
            .iter()
            .position(|item| item.to_string().contains(&needle))
    {
        let message = format!(
            "Element {i} of the array was refused (it contains '{needle}'); nothing in this \
             request was ingested."
        );
        return Err(refuse(400, "InvalidData", message));
    }
    Ok(())
}

/// The fault for one authorized request, counting down [`AzureMonitorStandIn::set_fault_for`].
fn take_fault(shared: &Shared) -> MonitorFault {
    let mut settings = shared.settings.lock().unwrap();
    let fault = settings.fault.clone();
    if let Some(left) = settings.fault_left.as_mut() {
        *left -= 1;
        if *left == 0 {
            settings.fault = MonitorFault::None;
            settings.fault_left = None;
        }
    }
    fault
}

#[cfg(test)]
mod tests {
    use std::io::Write as _;

    use super::*;

    /// A form body by hand: reqwest is built without its `form` feature.
    fn form(pairs: &[(&str, &str)]) -> String {
        let encode = |text: &str| -> String {
            let byte = |b: u8| match b {
                b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'.' | b'_' | b'~' => {
                    (b as char).to_string()
                }
                b' ' => "+".to_owned(),
                _ => format!("%{b:02X}"),
            };
            text.bytes().map(byte).collect()
        };
        let pairs: Vec<String> = pairs
            .iter()
            .map(|(n, v)| format!("{}={}", encode(n), encode(v)))
            .collect();
        pairs.join("&")
    }

    /// The grant `contract` accepts.
    fn grant(contract: &MonitorContract) -> Vec<(&str, &str)> {
        vec![
            ("grant_type", "client_credentials"),
            ("client_id", &contract.client_id),
            ("client_secret", &contract.client_secret),
            ("scope", MONITOR_SCOPE),
        ]
    }

    /// `pairs` with field `name` set to `value`.
    fn with<'a>(
        pairs: &[(&'a str, &'a str)],
        name: &str,
        value: &'a str,
    ) -> Vec<(&'a str, &'a str)> {
        let set = |&(n, v): &(&'a str, &'a str)| (n, if n == name { value } else { v });
        pairs.iter().map(set).collect()
    }

    /// Status and JSON body (`Null` when empty).
    async fn answer(response: reqwest::Response) -> (u16, Value) {
        let status = response.status().as_u16();
        let bytes = response.bytes().await.unwrap();
        if bytes.is_empty() {
            return (status, Value::Null);
        }
        let text = String::from_utf8_lossy(&bytes);
        let json =
            serde_json::from_slice(&bytes).unwrap_or_else(|e| panic!("{status} {text}: {e}"));
        (status, json)
    }

    /// `"200"`, or status, `error` and `error_codes` (`"401 invalid_client [7000215]"`); the body.
    async fn entra_answer(response: reqwest::Response) -> (String, Value) {
        let (status, body) = answer(response).await;
        let Some(error) = body["error"].as_str() else {
            return (status.to_string(), body);
        };
        let codes = body
            .get("error_codes")
            .map(|c| format!(" {c}"))
            .unwrap_or_default();
        (format!("{status} {error}{codes}"), body)
    }

    async fn ask_token(
        az: &AzureMonitorStandIn,
        tenant: &str,
        pairs: &[(&str, &str)],
    ) -> (String, Value) {
        let url = format!("{}/{tenant}/oauth2/v2.0/token", az.authority_host());
        let request = reqwest::Client::new().post(url).body(form(pairs));
        let request = request.header("content-type", "application/x-www-form-urlencoded");
        entra_answer(request.send().await.unwrap()).await
    }

    async fn token(az: &AzureMonitorStandIn) -> String {
        let contract = az.contract();
        let (outcome, body) = ask_token(az, &contract.tenant_id, &grant(&contract)).await;
        assert_eq!(outcome, "200", "{body}");
        body["access_token"].as_str().unwrap().to_owned()
    }

    /// `"204"` or status and `error.code` (`"401 MissingToken"`); the body. `Content-Type` is
    /// `application/json` unless `headers` name one.
    async fn upload(
        url: &str,
        token: Option<&str>,
        headers: &[(&str, &str)],
        body: &[u8],
    ) -> (String, Value) {
        let mut request = reqwest::Client::new().post(url).body(body.to_vec());
        if !headers
            .iter()
            .any(|(n, _)| n.eq_ignore_ascii_case("content-type"))
        {
            request = request.header("content-type", "application/json");
        }
        if let Some(token) = token {
            request = request.header("authorization", format!("Bearer {token}"));
        }
        for (name, value) in headers {
            request = request.header(*name, *value);
        }
        let (status, body) = answer(request.send().await.unwrap()).await;
        match body["error"]["code"].as_str() {
            Some(code) => (format!("{status} {code}"), body),
            None => (status.to_string(), body),
        }
    }

    fn message(body: &Value) -> &str {
        body["error"]["message"].as_str().unwrap_or_default()
    }

    /// A stand-in with the default contract, a valid token and the upload URL.
    struct Kit {
        az: AzureMonitorStandIn,
        url: String,
        token: String,
    }

    impl Kit {
        async fn start() -> Kit {
            let az = AzureMonitorStandIn::start(MonitorContract::default()).await;
            let c = az.contract();
            let url = format!(
                "{}/dataCollectionRules/{}/streams/{}?api-version=2023-01-01",
                az.ingestion_endpoint(),
                c.dcr_immutable_id,
                c.stream_name
            );
            let token = token(&az).await;
            Kit { az, url, token }
        }

        /// Uploads to the kit's URL with the kit's token.
        async fn send(&self, headers: &[(&str, &str)], body: &[u8]) -> (String, Value) {
            upload(&self.url, Some(&self.token), headers, body).await
        }

        /// As [`Kit::send`], the outcome only.
        async fn outcome(&self, headers: &[(&str, &str)], body: &[u8]) -> String {
            self.send(headers, body).await.0
        }
    }

    fn gzip(data: &[u8]) -> Vec<u8> {
        let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
        gz.write_all(data).unwrap();
        gz.finish().unwrap()
    }

    #[test]
    fn percent_decoding() {
        assert_eq!(percent_decode("a%2Fb+c%zz%4", true), "a/b c%zz%4");
        assert_eq!(percent_decode("a+b%20c", false), "a+b c");
    }

    #[tokio::test]
    async fn token_endpoint_checks_the_client_credentials_grant() {
        let az = AzureMonitorStandIn::start(MonitorContract::default()).await;
        let c = az.contract();
        assert!(az.authority_host().starts_with("http://127.0.0.1:"));
        assert_ne!(az.authority_addr(), az.ingestion_addr());
        let good = grant(&c);
        let tenant = c.tenant_id.as_str();

        let (outcome, body) = ask_token(&az, tenant, &good).await;
        assert_eq!(outcome, "200");
        assert_eq!(
            (&body["token_type"], &body["expires_in"]),
            (&json!("Bearer"), &json!(3600))
        );
        assert_eq!(body["ext_expires_in"], 3600);
        let first = body["access_token"].as_str().unwrap().to_owned();
        assert!(first.len() > 32, "{first}");
        assert_ne!(token(&az).await, first, "every token is new");

        let other = "00000000-0000-0000-0000-00000000bbbb";
        let (outcome, body) = ask_token(&az, other, &good).await;
        assert_eq!(outcome, "400 invalid_request [90002]");
        let description = body["error_description"].as_str().unwrap();
        assert!(description.starts_with(&format!("AADSTS90002: Tenant '{other}' not found.")));

        let url = format!("{}/{tenant}/oauth2/v2.0/token", az.authority_host());
        let json = reqwest::Client::new()
            .post(&url)
            .header("content-type", "application/json");
        let json = json
            .body(r#"{"grant_type":"client_credentials"}"#)
            .send()
            .await
            .unwrap();
        assert_eq!(entra_answer(json).await.0, "400 invalid_request [900144]");
        let get = reqwest::get(&url).await.unwrap();
        assert_eq!(entra_answer(get).await.0, "405 invalid_request [900561]");

        let password = with(&good, "grant_type", "password");
        let (outcome, _) = ask_token(&az, tenant, &password).await;
        assert_eq!(outcome, "400 unsupported_grant_type [70003]");

        let stranger = "00000000-0000-0000-0000-0000000000ff";
        let (outcome, body) = ask_token(&az, tenant, &with(&good, "client_id", stranger)).await;
        assert_eq!(outcome, "400 unauthorized_client [700016]");
        let description = body["error_description"].as_str().unwrap();
        let expected = format!("identifier '{stranger}' was not found in the directory '{tenant}'");
        assert!(description.contains(&expected), "{description}");

        let (outcome, body) = ask_token(&az, tenant, &with(&good, "client_secret", "guess")).await;
        assert_eq!(outcome, "401 invalid_client [7000215]");
        let description = body["error_description"].as_str().unwrap();
        let expected = format!(
            "not the client secret ID, for a secret added to app '{}'.",
            c.client_id
        );
        assert!(description.ends_with(&expected), "{description}");

        // One slash short: the real endpoint refuses it too.
        let one_slash = with(&good, "scope", "https://monitor.azure.com/.default");
        assert_eq!(
            ask_token(&az, tenant, &one_slash).await.0,
            "400 invalid_scope [70011]"
        );
        assert_eq!(
            ask_token(&az, tenant, &good[..3]).await.0,
            "400 invalid_request [900144]"
        );

        az.set_token_endpoint_status(Some(503));
        assert_eq!(
            ask_token(&az, tenant, &good).await.0,
            "503 temporarily_unavailable"
        );
        az.set_token_endpoint_status(None);
        token(&az).await;

        let requests = az.token_requests();
        let statuses: Vec<u16> = requests.iter().map(|r| r.status).collect();
        assert_eq!(
            statuses,
            [200, 200, 400, 400, 405, 400, 400, 401, 400, 400, 503, 200]
        );
        let first = &requests[0];
        assert_eq!(
            (first.tenant.as_str(), first.grant_type.as_str()),
            (tenant, "client_credentials")
        );
        assert_eq!(
            (first.client_id.as_str(), first.scope.as_str()),
            (c.client_id.as_str(), MONITOR_SCOPE)
        );
        assert_eq!(requests[7].error.as_deref(), Some("invalid_client"));
    }

    #[tokio::test]
    async fn a_rotated_secret_refuses_the_old_one() {
        let kit = Kit::start().await;
        let old = kit.az.contract();
        // Characters that must be percent-encoded in the form.
        let secret = "n3w~se+cret&=% /x";
        kit.az.set_client_secret(secret);
        assert_eq!(kit.az.contract().client_secret, secret);
        let (outcome, _) = ask_token(&kit.az, &old.tenant_id, &grant(&old)).await;
        assert_eq!(outcome, "401 invalid_client [7000215]");
        token(&kit.az).await;
        // A token issued with the old secret stays valid until it expires, as in Azure.
        assert_eq!(kit.outcome(&[], b"[]").await, "204");
        let statuses: Vec<u16> = kit.az.token_requests().iter().map(|r| r.status).collect();
        assert_eq!(statuses, [200, 401, 200]);
    }

    #[tokio::test]
    async fn accepts_a_valid_upload_and_records_it() {
        let kit = Kit::start().await;
        let c = kit.az.contract();
        let plain =
            br#"[{"id":"a","TimeGenerated":"2024-05-01T00:00:00Z"},{"audit":{"event_id":"b"}}]"#;
        assert_eq!(kit.send(&[], plain).await, ("204".to_owned(), Value::Null));
        let json = br#"[{"id":"c"}]"#;
        let zipped = gzip(json);
        let headers = [
            ("content-type", "application/json; charset=utf-8"),
            ("content-encoding", "gzip"),
        ];
        assert_eq!(kit.outcome(&headers, &zipped).await, "204");
        // The probe a sink sends to check its access.
        assert_eq!(kit.outcome(&[], b"[]").await, "204");

        assert_eq!(kit.az.accepted_ids(), ["a", "b", "c"]);
        let requests = kit.az.requests();
        assert_eq!(requests.len(), 3);
        let first = &requests[0];
        assert_eq!(first.method, "POST");
        let path = format!(
            "/dataCollectionRules/{}/streams/{}",
            c.dcr_immutable_id, c.stream_name
        );
        assert_eq!(
            first.path_and_query,
            format!("{path}?api-version=2023-01-01")
        );
        let authorization = format!("Bearer {}", kit.token);
        assert_eq!(first.header("Authorization"), Some(authorization.as_str()));
        assert_eq!(
            (first.raw_len, first.body_len),
            (plain.len(), Some(plain.len()))
        );
        assert_eq!((first.status, first.error_code.as_deref()), (204, None));
        assert_eq!(first.client_id.as_deref(), Some(c.client_id.as_str()));
        let second = &requests[1];
        assert_eq!(
            (second.raw_len, second.body_len),
            (zipped.len(), Some(json.len()))
        );
        assert_eq!(second.body, json);
        assert!(requests[2].event_ids.is_empty());
        let want: HashSet<String> = ["a", "c"].map(String::from).into();
        kit.az.wait_for_ids(&want, Duration::from_secs(1)).await;
    }

    #[tokio::test]
    async fn checks_method_route_and_api_version_first() {
        let kit = Kit::start().await;
        let c = kit.az.contract();
        let t = Some(kit.token.as_str());
        let body = br#"[{"id":"a"}]"#;

        let put = reqwest::Client::new()
            .put(&kit.url)
            .bearer_auth(&kit.token)
            .send()
            .await
            .unwrap();
        let (status, answer_body) = answer(put).await;
        assert_eq!(
            (status, &answer_body["error"]["code"]),
            (405, &json!("MethodNotAllowed"))
        );

        let base = format!("{}/dataCollectionRules", kit.az.ingestion_endpoint());
        let other = "dcr-00000000000000000000000000000000";
        let wrong_dcr = format!(
            "{base}/{other}/streams/{}?api-version=2023-01-01",
            c.stream_name
        );
        let (outcome, answer_body) = upload(&wrong_dcr, t, &[], body).await;
        assert_eq!(outcome, "404 NotFound");
        assert!(message(&answer_body).contains(&format!("immutable ID '{other}'")));
        // The route is checked before the token.
        assert_eq!(upload(&wrong_dcr, None, &[], body).await.0, "404 NotFound");

        let rule = format!("{base}/{}", c.dcr_immutable_id);
        let lowercase = format!("{rule}/streams/custom-auditlogs_cl?api-version=2023-01-01");
        let (outcome, answer_body) = upload(&lowercase, t, &[], body).await;
        assert_eq!(outcome, "404 InvalidStream");
        assert!(message(&answer_body).contains("'custom-auditlogs_cl'"));
        let tables = format!("{rule}/tables/{}?api-version=2023-01-01", c.stream_name);
        assert_eq!(upload(&tables, t, &[], body).await.0, "404 NotFound");

        let route = format!("{rule}/streams/{}", c.stream_name);
        assert_eq!(
            upload(&route, t, &[], body).await.0,
            "400 InvalidApiVersion"
        );
        let preview = format!("{route}?api-version=2021-11-01-preview");
        assert_eq!(
            upload(&preview, t, &[], body).await.0,
            "400 InvalidApiVersion"
        );
        assert_eq!(
            upload(&preview, None, &[], body).await.0,
            "400 InvalidApiVersion"
        );

        assert!(kit.az.accepted_ids().is_empty());
        let requests = kit.az.requests();
        assert_eq!(requests.len(), 8);
        assert!(requests.iter().all(|r| r.error_code.is_some()));
    }

    #[tokio::test]
    async fn checks_the_bearer_token() {
        let kit = Kit::start().await;
        let (az, url) = (&kit.az, kit.url.as_str());
        let body = br#"[{"id":"a"}]"#;

        let (outcome, _) = upload(url, None, &[], body).await;
        assert_eq!(outcome, "401 MissingToken");
        let basic = [("authorization", "Basic dXNlcjpwYXNz")];
        assert_eq!(upload(url, None, &basic, body).await.0, "401 MissingToken");
        // The token is checked before the content type.
        let text = [("content-type", "text/plain")];
        assert_eq!(upload(url, None, &text, body).await.0, "401 MissingToken");
        let (outcome, _) = upload(url, Some("not-a-token"), &[], body).await;
        assert_eq!(outcome, "401 InvalidAuthenticationToken");
        let challenge = reqwest::Client::new().post(url).send().await.unwrap();
        assert_eq!(
            challenge.headers()["www-authenticate"],
            "Bearer error=\"invalid_token\""
        );

        assert_eq!(kit.outcome(&[], body).await, "204");
        az.expire_tokens();
        let (outcome, answer_body) = kit.send(&[], body).await;
        assert_eq!(outcome, "401 ExpiredAuthenticationToken");
        assert!(
            message(&answer_body).contains("has expired"),
            "{answer_body}"
        );
        let fresh = token(az).await;
        assert_eq!(upload(url, Some(&fresh), &[], body).await.0, "204");

        az.set_token_lifetime(Duration::from_secs(1));
        let contract = az.contract();
        let (outcome, short) = ask_token(az, &contract.tenant_id, &grant(&contract)).await;
        assert_eq!((outcome.as_str(), &short["expires_in"]), ("200", &json!(1)));
        let short = short["access_token"].as_str().unwrap();
        assert_eq!(upload(url, Some(short), &[], body).await.0, "204");
        tokio::time::sleep(Duration::from_millis(1100)).await;
        let (outcome, _) = upload(url, Some(short), &[], body).await;
        assert_eq!(outcome, "401 ExpiredAuthenticationToken");
        let (outcome, _) = upload(url, Some(&fresh), &[], body).await;
        assert_eq!(outcome, "204", "issued before the lifetime changed");

        let clients: Vec<Option<String>> = az.requests().into_iter().map(|r| r.client_id).collect();
        let ours = Some(contract.client_id);
        let mut expected = vec![None; 5];
        expected.resize(11, ours);
        assert_eq!(clients, expected);
    }

    #[tokio::test]
    async fn needs_the_role_on_the_rule() {
        let kit = Kit::start().await;
        kit.az.set_role_assigned(false);
        let (outcome, body) = kit.send(&[], b"[]").await;
        assert_eq!(outcome, "403 OperationFailed");
        let dcr = kit.az.contract().dcr_immutable_id;
        assert_eq!(
            message(&body),
            format!(
                "The authentication token provided does not have access to ingest data for the \
                 data collection rule with immutable Id '{dcr}'."
            )
        );
        kit.az.set_role_assigned(true);
        assert_eq!(kit.outcome(&[], b"[]").await, "204");
    }

    #[tokio::test]
    async fn checks_content_type_encoding_and_size() {
        let kit = Kit::start().await;
        let max = kit.az.contract().max_body_bytes;
        assert_eq!(max, 1_048_576);

        let text = [("content-type", "text/plain")];
        assert_eq!(kit.outcome(&text, b"[]").await, "415 UnsupportedMediaType");
        let ndjson = [("content-type", "application/x-ndjson")];
        assert_eq!(
            kit.outcome(&ndjson, b"[]").await,
            "415 UnsupportedMediaType"
        );

        // A one-event array of exactly `len` bytes.
        let padded = |len: usize| {
            let pad = "x".repeat(len - r#"[{"id":"edge","pad":""}]"#.len());
            format!(r#"[{{"id":"edge","pad":"{pad}"}}]"#).into_bytes()
        };
        assert_eq!(
            kit.outcome(&[], &padded(max)).await,
            "204",
            "exactly the limit"
        );
        let (outcome, body) = kit.send(&[], &padded(max + 1)).await;
        assert_eq!(outcome, "413 ContentLengthLimitExceeded");
        let expected = format!(
            "allowed content length: {max} bytes. Provided content length: {} bytes.",
            max + 1
        );
        assert!(message(&body).contains(&expected), "{body}");

        // Small on the wire, too big once decompressed.
        let gz = [("content-encoding", "gzip")];
        let bomb = gzip(&padded(2 * max));
        assert!(bomb.len() < max / 100, "{}", bomb.len());
        let (outcome, body) = kit.send(&gz, &bomb).await;
        assert_eq!(outcome, "413 ContentLengthLimitExceeded");
        let expected = format!(
            "content length: {} bytes ({} bytes decompressed)",
            bomb.len(),
            2 * max
        );
        assert!(message(&body).contains(&expected), "{body}");
        assert_eq!(kit.outcome(&gz, &gzip(&padded(max))).await, "204");

        let deflate = [("content-encoding", "deflate")];
        assert_eq!(
            kit.outcome(&deflate, b"[]").await,
            "400 UnsupportedContentEncoding"
        );
        assert_eq!(
            kit.outcome(&gz, b"[] is not gzip").await,
            "400 InvalidContentEncoding"
        );

        kit.az.set_max_body_bytes(10);
        assert_eq!(
            kit.outcome(&[], br#"[{"id":"a"}]"#).await,
            "413 ContentLengthLimitExceeded"
        );
        assert_eq!(kit.outcome(&[], b"[]").await, "204");

        let requests = kit.az.requests();
        let recorded = &requests[4];
        assert_eq!(
            (recorded.raw_len, recorded.body_len),
            (bomb.len(), Some(2 * max))
        );
        let undecoded = (requests[6].body_len, requests[7].body_len);
        assert_eq!(undecoded, (None, None), "deflate, not gzip");
        assert_eq!(kit.az.accepted_ids(), ["edge", "edge"]);
    }

    #[tokio::test]
    async fn body_must_be_an_array_of_objects() {
        let kit = Kit::start().await;
        for (body, outcome, says) in [
            (
                &br#"{"id":"a"}"#[..],
                "400 InvalidArrayOfObjects",
                "not a JSON object",
            ),
            (
                b"[1,2]",
                "400 InvalidArrayOfObjects",
                "element 0 is a JSON number",
            ),
            (
                br#"[{"id":"a"},"b"]"#,
                "400 InvalidArrayOfObjects",
                "element 1 is a JSON string",
            ),
            (
                br#"[{"id":"a"},[]]"#,
                "400 InvalidArrayOfObjects",
                "element 1 is a JSON array",
            ),
            (b"not json", "400 InvalidJson", "not valid JSON"),
            (b"", "400 InvalidJson", "not valid JSON"),
            (br#"[{"id":"a"}"#, "400 InvalidJson", "not valid JSON"),
        ] {
            let text = String::from_utf8_lossy(body);
            let (got, answer_body) = kit.send(&[], body).await;
            assert_eq!(got, outcome, "{text}");
            assert!(
                message(&answer_body).contains(says),
                "{text}: {answer_body}"
            );
        }
        assert!(kit.az.accepted_ids().is_empty());
        assert_eq!(kit.outcome(&[], b"[]").await, "204");
        assert_eq!(kit.outcome(&[], b" [ {} ] ").await, "204");
    }

    #[tokio::test]
    async fn refuses_a_request_with_a_poisoned_element_whole() {
        let kit = Kit::start().await;
        kit.az.reject_containing(Some("poison"));
        let (outcome, body) = kit
            .send(&[], br#"[{"id":"a"},{"id":"p","x":"poison"}]"#)
            .await;
        assert_eq!(outcome, "400 InvalidData");
        assert!(
            message(&body).contains("Element 1 of the array was refused"),
            "{body}"
        );
        assert_eq!(kit.outcome(&[], br#"[{"id":"a"}]"#).await, "204");
        assert_eq!(kit.outcome(&[], br#"[{"id":"b"}]"#).await, "204");
        kit.az.reject_containing(None);
        assert_eq!(
            kit.outcome(&[], br#"[{"id":"p","x":"poison"}]"#).await,
            "204"
        );
        assert_eq!(kit.az.accepted_ids(), ["a", "b", "p"]);
    }

    #[tokio::test]
    async fn faults_apply_to_authorized_requests() {
        let kit = Kit::start().await;
        let body = br#"[{"id":"a"}]"#;
        kit.az.set_fault_for(
            MonitorFault::Throttle {
                retry_after_secs: 7,
            },
            1,
        );
        // Refused before the fault: does not use it up.
        assert_eq!(
            upload(&kit.url, None, &[], body).await.0,
            "401 MissingToken"
        );
        let throttled = reqwest::Client::new()
            .post(&kit.url)
            .bearer_auth(&kit.token);
        let throttled = throttled
            .header("content-type", "application/json")
            .body(&body[..]);
        let throttled = throttled.send().await.unwrap();
        assert_eq!(throttled.headers()["retry-after"], "7");
        let (status, answer_body) = answer(throttled).await;
        assert_eq!(
            (status, &answer_body["error"]["code"]),
            (429, &json!("TooManyRequests"))
        );
        assert_eq!(kit.outcome(&[], body).await, "204", "throttled once");

        kit.az.set_fault(MonitorFault::Status(503));
        assert_eq!(kit.outcome(&[], body).await, "503 ServiceUnavailable");
        assert_eq!(kit.outcome(&[], body).await, "503 ServiceUnavailable");
        kit.az.set_fault(MonitorFault::Status(500));
        assert_eq!(kit.outcome(&[], body).await, "500 InternalServerError");
        kit.az.set_fault(MonitorFault::None);
        assert_eq!(kit.outcome(&[], body).await, "204");
        kit.az.set_fault_for(MonitorFault::Status(500), 2);
        assert_eq!(kit.outcome(&[], body).await, "500 InternalServerError");
        assert_eq!(kit.outcome(&[], body).await, "500 InternalServerError");
        assert_eq!(kit.outcome(&[], body).await, "204");
        assert_eq!(kit.az.accepted_ids(), ["a", "a", "a"]);
    }

    #[tokio::test]
    #[should_panic(expected = "1 of 2 event ids not accepted by the Azure Monitor stand-in")]
    async fn waiting_for_missing_ids_says_how_many() {
        let kit = Kit::start().await;
        kit.send(&[], br#"[{"id":"a"}]"#).await;
        let want: HashSet<String> = ["a", "zz"].map(String::from).into();
        kit.az.wait_for_ids(&want, Duration::from_millis(100)).await;
    }
}
