//! S3-compatible servers per test, as processes on loopback: moto (S3 and STS; accepts any
//! credentials, records SSE headers) and s3s-fs (checks SigV4 signatures against one key
//! pair, keeps objects in a directory, so it can be stopped and restarted without losing
//! them). Both are installed by the Makefile (`make deps`). What landed is read back through
//! the S3 API with the AWS SDK (list + get), not through the sink's code.

use std::{
    io::Read,
    net::{TcpListener, TcpStream},
    path::PathBuf,
    process::{Child, Command, Stdio},
    time::{Duration, Instant},
};

use aws_sdk_s3::{
    Client,
    config::{BehaviorVersion, Credentials, Region},
};
use bytes::Bytes;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kind {
    Moto,
    S3sFs,
}

/// A running S3-compatible server.
pub struct S3Server {
    kind: Kind,
    port: u16,
    dir: tempfile::TempDir,
    access_key: String,
    secret_key: String,
    child: Option<Child>,
}

/// One object as read back.
#[derive(Debug, Clone)]
pub struct StoredObject {
    pub key: String,
    pub body: Bytes,
    pub content_type: Option<String>,
    pub content_encoding: Option<String>,
    /// `AES256` or `aws:kms`, as the server reports it on GET.
    pub sse: Option<String>,
    pub kms_key_id: Option<String>,
}

impl StoredObject {
    /// The body, gunzipped when it is gzip (by its magic bytes: not every S3-compatible
    /// store keeps `Content-Encoding`).
    pub fn text(&self) -> String {
        let mut s = String::new();
        if self.body.starts_with(&[0x1f, 0x8b]) {
            flate2::read::GzDecoder::new(&self.body[..])
                .read_to_string(&mut s)
                .expect("gzip body");
        } else {
            s = String::from_utf8(self.body.to_vec()).expect("utf-8 body");
        }
        s
    }

    /// The event ID of every JSON document in the body (one per line for NDJSON): its `id`,
    /// or `audit.event_id` of messages rendered with the audit block.
    pub fn event_ids(&self) -> Vec<String> {
        crate::receiver::event_ids(self.text().as_bytes())
    }
}

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("free port")
        .port()
}

fn bin(var: &str, name: &str) -> PathBuf {
    let path = std::env::var_os(var)
        .map(PathBuf::from)
        .unwrap_or_else(|| panic!("{var} is not set: run the tests through `make test` (it installs {name} with `make deps`)"));
    assert!(
        path.exists(),
        "{name} not found at {}: run `make deps`",
        path.display()
    );
    path
}

impl S3Server {
    /// moto's server (S3 + STS). Any credentials are accepted.
    pub fn moto() -> S3Server {
        S3Server::start(Kind::Moto, "moto-key", "moto-secret")
    }

    /// s3s-fs, accepting only `access_key` / `secret_key` (SigV4 checked).
    pub fn s3s_fs(access_key: &str, secret_key: &str) -> S3Server {
        S3Server::start(Kind::S3sFs, access_key, secret_key)
    }

    fn start(kind: Kind, access_key: &str, secret_key: &str) -> S3Server {
        let dir = tempfile::Builder::new()
            .prefix("auditstream-s3-")
            .tempdir()
            .expect("temp dir");
        let mut server = S3Server {
            kind,
            port: free_port(),
            dir,
            access_key: access_key.into(),
            secret_key: secret_key.into(),
            child: None,
        };
        server.restart();
        server
    }

    /// Starts the server (again) on the same port and, for s3s-fs, the same directory.
    pub fn restart(&mut self) {
        assert!(self.child.is_none(), "already running");
        let port = self.port.to_string();
        let log = std::fs::File::create(self.dir.path().join("server.log")).expect("log file");
        let mut command = match self.kind {
            Kind::Moto => {
                let mut c = Command::new(bin("MOTO_SERVER_BIN", "moto_server"));
                c.args(["-H", "127.0.0.1", "-p", &port]);
                c
            }
            Kind::S3sFs => {
                let data = self.dir.path().join("data");
                std::fs::create_dir_all(&data).unwrap();
                let mut c = Command::new(bin("S3S_FS_BIN", "s3s-fs"));
                c.args(["--host", "127.0.0.1", "--port", &port])
                    .args(["--access-key", &self.access_key])
                    .args(["--secret-key", &self.secret_key])
                    .arg(data);
                c
            }
        };
        let child = command
            .stdin(Stdio::null())
            .stdout(log.try_clone().unwrap())
            .stderr(log)
            .spawn()
            .expect("spawn S3 server");
        self.child = Some(child);
        let deadline = Instant::now() + Duration::from_secs(30);
        while TcpStream::connect(("127.0.0.1", self.port)).is_err() {
            if let Some(status) = self.child.as_mut().unwrap().try_wait().unwrap() {
                panic!(
                    "S3 server exited ({status}): {}",
                    std::fs::read_to_string(self.dir.path().join("server.log")).unwrap_or_default()
                );
            }
            assert!(
                Instant::now() < deadline,
                "S3 server did not listen on {port}"
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// Kills the server (SIGKILL) and waits for it; `restart` brings it back.
    pub fn stop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    pub fn addr(&self) -> std::net::SocketAddr {
        ([127, 0, 0, 1], self.port).into()
    }

    /// `http://127.0.0.1:<port>`.
    pub fn endpoint(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    pub fn access_key(&self) -> &str {
        &self.access_key
    }

    pub fn secret_key(&self) -> &str {
        &self.secret_key
    }

    /// An SDK client of the server, with its credentials (path-style, us-east-1).
    pub fn client(&self) -> Client {
        let config = aws_sdk_s3::Config::builder()
            .behavior_version(BehaviorVersion::latest())
            .region(Region::new("us-east-1"))
            .endpoint_url(self.endpoint())
            .force_path_style(true)
            .credentials_provider(Credentials::new(
                &self.access_key,
                &self.secret_key,
                None,
                None,
                "testkit",
            ))
            .build();
        Client::from_conf(config)
    }

    pub async fn create_bucket(&self, bucket: &str) {
        self.client()
            .create_bucket()
            .bucket(bucket)
            .send()
            .await
            .unwrap_or_else(|e| {
                panic!(
                    "create bucket {bucket}: {}",
                    aws_sdk_s3::error::DisplayErrorContext(e)
                )
            });
    }

    /// Every object of `bucket` (list, then get each), sorted by key.
    pub async fn objects(&self, bucket: &str) -> Vec<StoredObject> {
        let client = self.client();
        let mut keys = Vec::new();
        let mut pages = client
            .list_objects_v2()
            .bucket(bucket)
            .into_paginator()
            .send();
        while let Some(page) = pages.next().await {
            let page = page.unwrap_or_else(|e| {
                panic!(
                    "list {bucket}: {}",
                    aws_sdk_s3::error::DisplayErrorContext(e)
                )
            });
            keys.extend(
                page.contents()
                    .iter()
                    .filter_map(|o| o.key().map(str::to_owned)),
            );
        }
        keys.sort();
        let mut out = Vec::with_capacity(keys.len());
        for key in keys {
            let got = client
                .get_object()
                .bucket(bucket)
                .key(&key)
                .send()
                .await
                .unwrap_or_else(|e| {
                    panic!(
                        "get {bucket}/{key}: {}",
                        aws_sdk_s3::error::DisplayErrorContext(e)
                    )
                });
            let content_type = got.content_type().map(str::to_owned);
            let content_encoding = got.content_encoding().map(str::to_owned);
            let sse = got.server_side_encryption().map(|s| s.as_str().to_owned());
            let kms_key_id = got.ssekms_key_id().map(str::to_owned);
            let body = got.body.collect().await.expect("object body").into_bytes();
            out.push(StoredObject {
                key,
                body,
                content_type,
                content_encoding,
                sse,
                kms_key_id,
            });
        }
        out
    }

    /// The event IDs in `bucket`'s objects, excluding probe objects, duplicates included.
    pub async fn event_ids(&self, bucket: &str) -> Vec<String> {
        self.objects(bucket)
            .await
            .iter()
            .filter(|o| !o.key.contains(".auditstream-probe/"))
            .flat_map(StoredObject::event_ids)
            .collect()
    }
}

impl Drop for S3Server {
    fn drop(&mut self) {
        self.stop();
    }
}
