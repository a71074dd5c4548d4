//! Azurite (the Azure Blob Storage emulator) per test: `azurite-blob` as a process on a free
//! loopback port with its own data directory (installed by `make deps`, started directly, not
//! through npx, whose death would leave node running). Azurite checks SAS signatures, so the
//! sink's self-signed SAS is really verified. What landed is read back through the Blob API
//! with the `azure_storage_blob` client (list + download), not through the sink's code.

use std::{
    io::Read,
    net::{SocketAddr, TcpListener, TcpStream},
    path::PathBuf,
    process::{Child, Command, Stdio},
    time::{Duration, Instant},
};

use azure_core::http::{ClientOptions, Url};
use azure_storage_blob::{
    BlobContainerClient, BlobContainerClientOptions, BlobServiceClient, BlobServiceClientOptions,
};
use bytes::Bytes;
use futures_util::TryStreamExt as _;

/// The variable the Makefile sets to the project-local `azurite-blob`.
pub const AZURITE_BLOB_BIN_ENV: &str = "AZURITE_BLOB_BIN";

/// A running azurite-blob.
pub struct Azurite {
    port: u16,
    dir: tempfile::TempDir,
    child: Option<Child>,
}

/// One blob as read back.
#[derive(Debug, Clone)]
pub struct StoredBlob {
    pub name: String,
    /// The body as stored (still gzipped when `content_encoding` says so).
    pub body: Bytes,
    pub content_type: Option<String>,
    pub content_encoding: Option<String>,
}

impl StoredBlob {
    /// The body, gunzipped when it was stored with `Content-Encoding: gzip`.
    pub fn text(&self) -> String {
        let mut s = String::new();
        if self.content_encoding.as_deref() == Some("gzip") {
            flate2::read::GzDecoder::new(&self.body[..])
                .read_to_string(&mut s)
                .unwrap_or_else(|e| panic!("blob {}: not gzip: {e}", self.name));
        } else {
            s = String::from_utf8_lossy(&self.body).into_owned();
        }
        s
    }

    /// The event id of every JSON document in the body (one per line for NDJSON): its
    /// `audit.event_id` (what the router adds), else its `id`.
    pub fn event_ids(&self) -> Vec<String> {
        crate::receiver::event_ids(self.text().as_bytes())
    }
}

impl Azurite {
    /// The emulator's well-known account.
    pub const ACCOUNT: &'static str = "devstoreaccount1";
    /// The emulator's well-known account key (public, documented by Microsoft).
    pub const KEY: &'static str =
        "Eby8vdM02xNOcqFlqUwJPLlmEtlCDXJ1OUzFT50uSRZ6IFsuFq2UVErCz4I6tq/K1SZFPTOtr/KBHBeksoGMGw==";
    /// An account SAS for the test kit's own reads and writes (`ss=b&srt=sco&sp=rwdlac`, valid
    /// until 2099), pre-signed with [`Self::KEY`] so the test kit needs no HMAC code:
    ///
    /// ```text
    /// python3 -c 'import hmac,hashlib,base64; k=base64.b64decode("<KEY>");
    ///   s="devstoreaccount1\nrwdlac\nb\nsco\n\n2099-12-31T23:59:59Z\n\n\n2022-11-02\n\n";
    ///   print(base64.b64encode(hmac.new(k,s.encode(),hashlib.sha256).digest()).decode())'
    /// ```
    ///
    /// (The sink's `sas` tests check that its signer gives the same signature.)
    pub const SAS: &'static str = "sv=2022-11-02&ss=b&srt=sco&sp=rwdlac&se=2099-12-31T23%3A59%3A59Z\
         &sig=L6eS0IDm5g9NsF6mNLkaJ55vcoS0rdSxijoI18l4uaE%3D";

    /// Starts azurite-blob on a free loopback port with a fresh data directory.
    pub fn start() -> Azurite {
        let dir = tempfile::Builder::new()
            .prefix("auditstream-azurite-")
            .tempdir()
            .expect("temp dir");
        let port = TcpListener::bind("127.0.0.1:0")
            .and_then(|l| l.local_addr())
            .expect("free port")
            .port();
        let mut azurite = Azurite {
            port,
            dir,
            child: None,
        };
        azurite.spawn();
        azurite
    }

    pub fn port(&self) -> u16 {
        self.port
    }

    pub fn addr(&self) -> SocketAddr {
        ([127, 0, 0, 1], self.port).into()
    }

    /// The blob service URL of the account: `http://127.0.0.1:<port>/devstoreaccount1` (no
    /// trailing slash).
    pub fn endpoint(&self) -> String {
        Self::endpoint_at(&format!("http://{}", self.addr()))
    }

    /// The account's blob service URL behind another base URL (a [`crate::FaultProxy`]'s).
    pub fn endpoint_at(base_url: &str) -> String {
        format!("{}/{}", base_url.trim_end_matches('/'), Self::ACCOUNT)
    }

    /// Stops Azurite: SIGTERM, so it writes its metadata (it saves it only every 5 s
    /// otherwise), then SIGKILL if it has not exited after 15 s. Its data directory stays for
    /// [`Self::restart`].
    pub fn stop(&mut self) {
        let Some(mut child) = self.child.take() else {
            return;
        };
        let _ = Command::new("kill")
            .args(["-TERM", &child.id().to_string()])
            .status();
        let deadline = Instant::now() + Duration::from_secs(15);
        while Instant::now() < deadline {
            if let Ok(Some(_)) = child.try_wait() {
                return;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        let _ = child.kill();
        let _ = child.wait();
    }

    /// Starts Azurite again on the same port with the same data.
    pub fn restart(&mut self) {
        self.stop();
        self.spawn();
    }

    fn spawn(&mut self) {
        let log_path = self.dir.path().join("azurite.log");
        let log = std::fs::File::options()
            .create(true)
            .append(true)
            .open(&log_path)
            .expect("azurite log file");
        let data = self.dir.path().join("data");
        std::fs::create_dir_all(&data).expect("azurite data dir");
        let mut child = Command::new(azurite_blob_bin())
            .args(["--blobHost", "127.0.0.1", "--blobPort"])
            .arg(self.port.to_string())
            .arg("--location")
            .arg(&data)
            .args(["--skipApiVersionCheck", "--disableTelemetry"])
            .stdin(Stdio::null())
            .stdout(log.try_clone().expect("log handle"))
            .stderr(log)
            .spawn()
            .expect("spawn azurite-blob");
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            if let Ok(Some(status)) = child.try_wait() {
                panic!(
                    "azurite-blob exited with {status}; log:\n{}",
                    std::fs::read_to_string(&log_path).unwrap_or_default()
                );
            }
            if TcpStream::connect(self.addr()).is_ok() {
                break;
            }
            if Instant::now() > deadline {
                let _ = child.kill();
                let _ = child.wait();
                panic!(
                    "azurite-blob did not listen on port {} within 30s; log:\n{}",
                    self.port,
                    std::fs::read_to_string(&log_path).unwrap_or_default()
                );
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        self.child = Some(child);
    }

    fn service(&self) -> BlobServiceClient {
        let mut url = Url::parse(&self.endpoint()).expect("endpoint URL");
        url.set_query(Some(Self::SAS));
        BlobServiceClient::new(
            url,
            None,
            Some(BlobServiceClientOptions {
                client_options: ClientOptions::default(),
                ..Default::default()
            }),
        )
        .expect("service client")
    }

    fn container(&self, name: &str) -> BlobContainerClient {
        let mut url = Url::parse(&format!("{}/{name}", self.endpoint())).expect("container URL");
        url.set_query(Some(Self::SAS));
        BlobContainerClient::new(
            url,
            None,
            Some(BlobContainerClientOptions {
                client_options: ClientOptions::default(),
                ..Default::default()
            }),
        )
        .expect("container client")
    }

    /// Creates a container (3-63 lowercase letters, digits and single hyphens).
    pub async fn create_container(&self, name: &str) {
        self.container(name)
            .create(None)
            .await
            .unwrap_or_else(|e| panic!("create container {name}: {e}"));
    }

    /// The account's containers, sorted.
    pub async fn containers(&self) -> Vec<String> {
        let mut pager = self
            .service()
            .list_containers(None)
            .expect("list containers");
        let mut names = Vec::new();
        while let Some(item) = pager.try_next().await.expect("list containers") {
            names.extend(item.name);
        }
        names.sort();
        names
    }

    /// The names of the blobs in `container`, sorted.
    pub async fn blob_names(&self, container: &str) -> Vec<String> {
        let mut pager = self
            .container(container)
            .list_blobs(None)
            .expect("list blobs");
        let mut names = Vec::new();
        while let Some(item) = pager
            .try_next()
            .await
            .unwrap_or_else(|e| panic!("list blobs of {container}: {e}"))
        {
            names.extend(item.name);
        }
        names.sort();
        names
    }

    /// Every blob in `container` with its body and content headers, by name.
    pub async fn blobs(&self, container: &str) -> Vec<StoredBlob> {
        let client = self.container(container);
        let mut out = Vec::new();
        for name in self.blob_names(container).await {
            let download = match client.blob_client(&name).download(None).await {
                Ok(d) => d,
                // Deleted since it was listed (a probe's test blob).
                Err(e) if e.http_status().is_some_and(|s| u16::from(s) == 404) => continue,
                Err(e) => panic!("download {container}/{name}: {e}"),
            };
            let content_type = download.properties.content_type.clone();
            let content_encoding = download.properties.content_encoding.clone();
            let body = download
                .body
                .collect()
                .await
                .unwrap_or_else(|e| panic!("read {container}/{name}: {e}"));
            out.push(StoredBlob {
                name,
                body,
                content_type,
                content_encoding,
            });
        }
        out
    }

    /// The event ids of every blob in `container`, duplicates included (gunzipped when the
    /// blob says `Content-Encoding: gzip`).
    pub async fn event_ids(&self, container: &str) -> Vec<String> {
        self.blobs(container)
            .await
            .iter()
            .flat_map(StoredBlob::event_ids)
            .collect()
    }
}

impl Drop for Azurite {
    fn drop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

/// The azurite-blob the Makefile installed (`AZURITE_BLOB_BIN`, else `.tools/node_modules`).
pub fn azurite_blob_bin() -> PathBuf {
    if let Some(bin) = std::env::var_os(AZURITE_BLOB_BIN_ENV) {
        let bin = PathBuf::from(bin);
        assert!(
            bin.exists(),
            "{AZURITE_BLOB_BIN_ENV}={} does not exist: run `make deps`",
            bin.display()
        );
        return bin;
    }
    let local = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../../.tools/node_modules/.bin/azurite-blob");
    if local.exists() {
        return local;
    }
    panic!(
        "azurite-blob not found: run the tests with `make test` (`make deps` installs Azurite \
         into .tools), or set {AZURITE_BLOB_BIN_ENV} to an azurite-blob script"
    );
}
