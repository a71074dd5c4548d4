//! Auditstream's S3 sink (DESIGN §6–§7): writes a stream's events as objects to Amazon S3 or
//! an S3-compatible store (Google Cloud Storage's interoperability endpoint, MinIO, Ceph…),
//! on the official `aws-sdk-s3`. Batching, retries, health, backlog and DLQ are sink-core's;
//! this crate builds destinations ([`S3Sink`]) and uploads objects ([`S3Destination`]).
//!
//! # Objects
//!
//! The key layout and encoding are sink-core's [`object`](auditstream_sink_core::object)
//! (shared with the Azure Blob sink): `ndjson` batches, gzip by default, under
//! `<prefix>/<org>/<workspace>/<event_type>/YYYY/MM/DD/HH/<batch id>.ndjson.gz`, the batch id
//! a hash of the batch's event IDs (a retried upload overwrites its object); or `per_event`,
//! one JSON object per event keyed by its ID. Objects carry `Content-Type`, and
//! `Content-Encoding: gzip` when compressed, so tools that honour it see plain JSON. With
//! `sse` set, every put asks for AES256 or aws:kms (with the key ID when given).
//!
//! # Credentials (the connection)
//!
//! - static keys (access key ID, secret, optional session token);
//! - assume-role: STS `AssumeRole` with the role ARN, external ID and session name, called
//!   with the given source keys or, without them, the default chain; credentials are
//!   refreshed before they expire;
//! - the default chain: environment, web identity (IRSA on EKS), ECS/instance profile.
//!
//! With an `endpoint`, S3 *and* STS calls go there (an S3-compatible store with its own STS,
//! or a test server). Requests are signed without the SDK's default CRC checksums
//! (`when_required`), which several S3-compatible stores (GCS among them) reject.
//!
//! # Errors
//!
//! | S3 answer | class | hint |
//! |---|---|---|
//! | AccessDenied, AllAccessDisabled, 403 | configuration | `s3:PutObject` on `arn:aws:s3:::<bucket>/<prefix>*` |
//! | NoSuchBucket, NotFound (HEAD), 404 | configuration | create the bucket or fix its name |
//! | InvalidAccessKeyId, SignatureDoesNotMatch, ExpiredToken, InvalidToken | configuration | update the connection's keys |
//! | PermanentRedirect, AuthorizationHeaderMalformed | configuration | the bucket's region |
//! | SlowDown, InternalError, ServiceUnavailable, RequestTimeout, 5xx, 408, 429 | transient | |
//! | timeouts, connection errors, unreadable answers | transient | |
//! | EntityTooLarge, 413 | too large (split) | |
//! | other 4xx | rejected (narrowed to one event → DLQ) | |
//!
//! The SDK's own retries are off: sink-core retries with backoff, once, in one place.
//!
//! # Probe and targets
//!
//! The probe is a `HeadBucket` plus a small test object put under the prefix (with the same
//! SSE settings as deliveries, so a bucket policy demanding encryption is honoured) and
//! deleted again; the delete is best effort (`s3:DeleteObject` is optional). `ListTargets`
//! answers the buckets the connection can list (`s3:ListAllMyBuckets`).

mod config;
mod destination;

use auditstream_model::SinkType;
use auditstream_proto::v1::{self as pb, destination::Target, s3_credentials::Method};
use auditstream_sink_core::{
    Answer, RequestCaps, Sink, classify::Class, object::Layout, sink::wrong_target,
};
use aws_config::{BehaviorVersion, sts::AssumeRoleProvider};
use aws_sdk_s3::config::{
    Credentials, Region, RequestChecksumCalculation, ResponseChecksumValidation,
    SharedCredentialsProvider, retry::RetryConfig, timeout::TimeoutConfig,
};

pub use config::S3SinkConfig;
pub use destination::{S3Destination, classify};

/// Region when neither the target nor the connection names one.
const DEFAULT_REGION: &str = "us-east-1";

/// Builds S3 destinations with this process's settings.
#[derive(Debug, Clone)]
pub struct S3Sink {
    config: S3SinkConfig,
}

impl S3Sink {
    pub fn new(config: S3SinkConfig) -> Self {
        S3Sink { config }
    }
}

/// How to make an S3 client for a connection: everything but the async part (loading the
/// default chain or setting up STS), which happens on first use.
#[derive(Debug, Clone)]
pub(crate) struct ClientSpec {
    region: String,
    endpoint: Option<String>,
    force_path_style: bool,
    method: Method,
    request_timeout: std::time::Duration,
    connect_timeout: std::time::Duration,
}

impl ClientSpec {
    fn new(creds: &pb::S3Credentials, region: &str, config: &S3SinkConfig) -> Result<Self, Answer> {
        let configuration =
            |detail: String, hint: &str| Answer::new(Class::Configuration, detail, hint.to_owned());
        let method = creds.method.clone().ok_or_else(|| {
            configuration(
                "the S3 connection has no credentials method".into(),
                "set static keys, assume-role or the default chain on the connection",
            )
        })?;
        let endpoint = match creds.endpoint.trim() {
            "" => None,
            e if e.starts_with("https://") => Some(e.to_owned()),
            e if e.starts_with("http://") && config.allow_insecure_http => Some(e.to_owned()),
            e if e.starts_with("http://") => {
                return Err(configuration(
                    format!("endpoint {e} is not https"),
                    "use an https:// endpoint (http:// needs sink.allow_insecure_http)",
                ));
            }
            e => {
                return Err(configuration(
                    format!("endpoint {e:?} is not an http(s) URL"),
                    "set the connection's endpoint to https://host[:port]",
                ));
            }
        };
        let region = [region, &creds.region]
            .into_iter()
            .find(|r| !r.is_empty())
            .unwrap_or(DEFAULT_REGION)
            .to_owned();
        Ok(ClientSpec {
            region,
            endpoint,
            force_path_style: creds.force_path_style,
            method,
            request_timeout: config.request_timeout,
            connect_timeout: config.connect_timeout,
        })
    }

    /// The client: loads the shared AWS configuration (region, endpoint, the default chain
    /// where used) and wraps the credentials.
    pub(crate) async fn client(&self) -> aws_sdk_s3::Client {
        let static_keys = |k: &pb::S3StaticKeys| {
            Credentials::new(
                &k.access_key_id,
                &k.secret_access_key,
                Some(k.session_token.clone()).filter(|t| !t.is_empty()),
                None,
                "auditstream-connection",
            )
        };
        let mut loader = aws_config::defaults(BehaviorVersion::latest())
            .region(Region::new(self.region.clone()))
            // STS may retry its own calls; S3 calls below do not.
            .timeout_config(self.timeouts());
        if let Some(endpoint) = &self.endpoint {
            loader = loader.endpoint_url(endpoint);
        }
        match &self.method {
            Method::StaticKeys(k) => loader = loader.credentials_provider(static_keys(k)),
            Method::AssumeRole(r) => {
                if let Some(k) = &r.source_keys {
                    loader = loader.credentials_provider(static_keys(k));
                }
            }
            Method::DefaultChain(_) => {}
        }
        let shared = loader.load().await;
        let mut s3 = aws_sdk_s3::config::Builder::from(&shared)
            .force_path_style(self.force_path_style)
            .retry_config(RetryConfig::disabled())
            // No aws-chunked CRC32 trailers, which not every S3-compatible store accepts:
            // PutObject carries Content-MD5 instead (see `destination`).
            .request_checksum_calculation(RequestChecksumCalculation::WhenRequired)
            .response_checksum_validation(ResponseChecksumValidation::WhenRequired);
        if let Method::AssumeRole(r) = &self.method {
            let mut role = AssumeRoleProvider::builder(&r.role_arn)
                .session_name(if r.session_name.is_empty() {
                    "auditstream"
                } else {
                    &r.session_name
                })
                .region(Region::new(self.region.clone()));
            if !r.external_id.is_empty() {
                role = role.external_id(&r.external_id);
            }
            let provider = role.configure(&shared).build().await;
            s3 = s3.credentials_provider(SharedCredentialsProvider::new(provider));
        }
        aws_sdk_s3::Client::from_conf(s3.build())
    }

    fn timeouts(&self) -> TimeoutConfig {
        TimeoutConfig::builder()
            .connect_timeout(self.connect_timeout)
            .operation_attempt_timeout(self.request_timeout)
            .operation_timeout(self.request_timeout)
            .build()
    }
}

impl Sink for S3Sink {
    type Destination = S3Destination;
    const TYPE: SinkType = SinkType::S3;

    fn build(
        &self,
        destination: &pb::Destination,
        connection: &pb::Connection,
    ) -> Result<S3Destination, Answer> {
        let target = match &destination.target {
            Some(Target::S3(target)) => target,
            other => return Err(wrong_target(SinkType::S3, other.as_ref())),
        };
        let Some(pb::connection::Credentials::S3(creds)) = &connection.credentials else {
            return Err(Answer::new(
                Class::Configuration,
                format!("connection {} has no S3 credentials", connection.id),
                "use an S3 connection for an S3 destination",
            ));
        };
        let spec = ClientSpec::new(creds, &target.region, &self.config)?;
        let sse = match pb::ServerSideEncryption::try_from(target.sse).unwrap_or_default() {
            pb::ServerSideEncryption::Unspecified => None,
            pb::ServerSideEncryption::Aes256 => {
                Some(aws_sdk_s3::types::ServerSideEncryption::Aes256)
            }
            pb::ServerSideEncryption::AwsKms => {
                Some(aws_sdk_s3::types::ServerSideEncryption::AwsKms)
            }
        };
        let layout = Layout::new(
            &target.prefix,
            pb::ObjectFormat::try_from(target.format).unwrap_or_default(),
            pb::Compression::try_from(target.compression).unwrap_or_default(),
        );
        Ok(S3Destination::new(
            spec,
            target.bucket.clone(),
            layout,
            sse,
            Some(target.kms_key_id.clone()).filter(|k| !k.is_empty()),
            RequestCaps {
                max_events: self.config.max_object_events.max(1),
                max_bytes: self.config.max_object_bytes.max(1),
            },
            self.config.max_parallel_uploads.max(1),
        ))
    }

    async fn list_targets(&self, connection: &pb::Connection) -> Result<Vec<String>, String> {
        let Some(pb::connection::Credentials::S3(creds)) = &connection.credentials else {
            return Err(format!(
                "connection {} has no S3 credentials",
                connection.id
            ));
        };
        let spec = ClientSpec::new(creds, "", &self.config).map_err(|a| a.detail)?;
        let client = spec.client().await;
        let mut buckets = Vec::new();
        let mut pages = client.list_buckets().into_paginator().send();
        while let Some(page) = pages.next().await {
            let page = page.map_err(|e| {
                let (_, detail, hint) = destination::explain(&e, "*", "", "s3:ListAllMyBuckets");
                format!("{detail}; {hint}")
            })?;
            buckets.extend(
                page.buckets()
                    .iter()
                    .filter_map(|b| b.name().map(str::to_owned)),
            );
        }
        buckets.sort();
        Ok(buckets)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn connection(endpoint: &str) -> pb::Connection {
        pb::Connection {
            id: "c1".into(),
            credentials: Some(pb::connection::Credentials::S3(pb::S3Credentials {
                method: Some(Method::DefaultChain(pb::S3DefaultChain {})),
                region: "eu-west-1".into(),
                endpoint: endpoint.into(),
                force_path_style: true,
            })),
            ..Default::default()
        }
    }

    fn destination() -> pb::Destination {
        pb::Destination {
            connection_id: "c1".into(),
            target: Some(Target::S3(pb::S3Target {
                bucket: "b".into(),
                ..Default::default()
            })),
        }
    }

    #[test]
    fn http_endpoints_need_the_switch() {
        let strict = S3Sink::new(S3SinkConfig::default());
        let err = strict
            .build(&destination(), &connection("http://127.0.0.1:9000"))
            .err()
            .expect("refused");
        assert_eq!(err.class, Class::Configuration);
        assert!(err.hint.contains("allow_insecure_http"), "{err:?}");
        let lax = S3Sink::new(S3SinkConfig {
            allow_insecure_http: true,
            ..Default::default()
        });
        assert!(
            lax.build(&destination(), &connection("http://127.0.0.1:9000"))
                .is_ok()
        );
        assert!(
            strict
                .build(
                    &destination(),
                    &connection("https://storage.googleapis.com")
                )
                .is_ok()
        );
    }

    #[test]
    fn region_falls_back_from_target_to_connection_to_default() {
        let c = |r: &str| pb::S3Credentials {
            method: Some(Method::DefaultChain(pb::S3DefaultChain {})),
            region: r.into(),
            ..Default::default()
        };
        let cfg = S3SinkConfig::default();
        assert_eq!(
            ClientSpec::new(&c("eu-west-1"), "us-west-2", &cfg)
                .unwrap()
                .region,
            "us-west-2"
        );
        assert_eq!(
            ClientSpec::new(&c("eu-west-1"), "", &cfg).unwrap().region,
            "eu-west-1"
        );
        assert_eq!(
            ClientSpec::new(&c(""), "", &cfg).unwrap().region,
            DEFAULT_REGION
        );
    }

    #[test]
    fn a_connection_of_another_type_is_a_configuration_error() {
        let sink = S3Sink::new(S3SinkConfig::default());
        let other = pb::Connection {
            id: "h".into(),
            credentials: Some(pb::connection::Credentials::Http(Default::default())),
            ..Default::default()
        };
        let err = sink.build(&destination(), &other).err().unwrap();
        assert_eq!(err.class, Class::Configuration);
    }
}
