//! One S3 destination: uploads a request's objects, probes the bucket, and says what S3's
//! answers mean.
//!
//! Every PutObject is a conditional create (`If-None-Match: *`): an object already under its
//! key is never replaced, and the 412 that says so counts as delivered (see
//! `sink_core::object`). Every PutObject carries `Content-MD5`, which S3 requires in buckets
//! with Object Lock default retention and which every S3-compatible store understands (the
//! SDK's own checksums, CRC32 sent as an aws-chunked trailer, are not universally supported,
//! hence `RequestChecksumCalculation::WhenRequired`).

use auditstream_sink_core::{
    Answer, Destination, Event, RequestCaps,
    classify::{Class, classify_object_store, parse_retry_after},
    deliver::worst,
    object::{Layout, Object},
};
use aws_sdk_s3::{
    error::{DisplayErrorContext, ProvideErrorMetadata, SdkError},
    primitives::ByteStream,
    types::ServerSideEncryption,
};
use base64::Engine as _;
use futures_util::{StreamExt, stream};
use md5::{Digest as _, Md5};
use tokio::sync::OnceCell;

use crate::ClientSpec;

pub struct S3Destination {
    spec: ClientSpec,
    /// Made on first use: loading the AWS configuration is async, building is not.
    client: OnceCell<aws_sdk_s3::Client>,
    bucket: String,
    layout: Layout,
    sse: Option<ServerSideEncryption>,
    kms_key_id: Option<String>,
    caps: RequestCaps,
    parallel: usize,
}

impl S3Destination {
    pub(crate) fn new(
        spec: ClientSpec,
        bucket: String,
        layout: Layout,
        sse: Option<ServerSideEncryption>,
        kms_key_id: Option<String>,
        caps: RequestCaps,
        parallel: usize,
    ) -> Self {
        S3Destination {
            spec,
            client: OnceCell::new(),
            bucket,
            layout,
            sse,
            kms_key_id,
            caps,
            parallel,
        }
    }

    async fn client(&self) -> &aws_sdk_s3::Client {
        self.client.get_or_init(|| self.spec.client()).await
    }

    /// Writes `object` unless its key is taken (an object already there is the same events'
    /// of the same stream: delivered, and left as it is).
    async fn put(&self, object: Object) -> Answer {
        let client = self.client().await;
        let key = object.key;
        let mut put = client
            .put_object()
            .bucket(&self.bucket)
            .key(&key)
            .if_none_match("*")
            .content_md5(content_md5(&object.body))
            .body(ByteStream::from(object.body))
            .content_type(object.content_type)
            .set_content_encoding(object.content_encoding.map(str::to_owned));
        if let Some(sse) = &self.sse {
            put = put
                .server_side_encryption(sse.clone())
                .set_ssekms_key_id(self.kms_key_id.clone());
        }
        match put.send().await {
            Ok(_) => Answer::delivered(format!("put s3://{}/{key}", self.bucket)),
            Err(e) => self.answer(&e, "s3:PutObject"),
        }
    }

    fn answer<E: ProvideErrorMetadata + std::error::Error + 'static>(
        &self,
        error: &SdkError<E, aws_sdk_s3::config::http::HttpResponse>,
        action: &str,
    ) -> Answer {
        let (class, detail, hint) = explain(error, &self.bucket, self.layout.prefix(), action);
        Answer::new(class, detail, hint)
    }
}

impl Destination<Event> for S3Destination {
    fn caps(&self) -> RequestCaps {
        self.caps
    }

    async fn send(&self, items: &[Event]) -> Answer {
        let objects = self.layout.objects(items);
        let count = objects.len();
        let answers: Vec<Answer> = stream::iter(objects)
            .map(|o| self.put(o))
            .buffer_unordered(self.parallel)
            .collect()
            .await;
        worst(answers).unwrap_or_else(|| Answer::delivered(format!("{count} objects")))
    }

    async fn probe(&self) -> Answer {
        let client = self.client().await;
        if let Err(e) = client.head_bucket().bucket(&self.bucket).send().await {
            return self.answer(&e, "s3:ListBucket");
        }
        let key = self.layout.probe_key();
        let answer = self
            .put(Object {
                key: key.clone(),
                body: "auditstream probe: safe to delete\n".into(),
                content_type: "text/plain",
                content_encoding: None,
                events: Vec::new(),
            })
            .await;
        if answer.class != Class::Delivered {
            return answer;
        }
        if let Err(e) = client
            .delete_object()
            .bucket(&self.bucket)
            .key(&key)
            .send()
            .await
        {
            // s3:DeleteObject is optional: the probe object is a few bytes under the prefix.
            tracing::info!(bucket = %self.bucket, %key, error = %DisplayErrorContext(&e), "probe object not deleted");
        }
        Answer::delivered(format!("bucket {} writable", self.bucket))
    }
}

/// The `Content-MD5` header of `body`: its MD5, base64.
fn content_md5(body: &[u8]) -> String {
    base64::engine::general_purpose::STANDARD.encode(Md5::digest(body))
}

/// Class, detail and hint of an SDK error, for `action` on `bucket` (under `prefix`).
pub(crate) fn explain<E: ProvideErrorMetadata + std::error::Error + 'static>(
    error: &SdkError<E, aws_sdk_s3::config::http::HttpResponse>,
    bucket: &str,
    prefix: &str,
    action: &str,
) -> (Class, String, String) {
    match error {
        SdkError::ServiceError(e) => {
            let raw = e.raw();
            let status = raw.status().as_u16();
            let retry_after = raw.headers().get("retry-after");
            let code = e.err().code();
            let message = e.err().message().unwrap_or_default();
            let detail = format!(
                "S3 answered {status} {}: {message}",
                code.unwrap_or("(no code)")
            );
            let (class, hint) = classify(status, code, retry_after, bucket, prefix, action);
            (class, detail, hint)
        }
        SdkError::TimeoutError(_) => (
            Class::Transient { retry_after: None },
            format!("S3 call timed out: {}", DisplayErrorContext(error)),
            String::new(),
        ),
        SdkError::DispatchFailure(_)
            if DisplayErrorContext(error)
                .to_string()
                .contains(crate::resolve::REFUSED) =>
        {
            // The endpoint's name resolves to an address the rules refuse (M5): the stream
            // is broken until an admin or operator acts, whatever DNS said at save time.
            let text = DisplayErrorContext(error).to_string();
            // The refusal is the innermost error: everything after the marker is its text.
            let reason = text
                .split_once(crate::resolve::REFUSED)
                .map(|(_, r)| r.trim_start_matches(": ").trim().to_owned())
                .unwrap_or_default();
            (
                Class::Configuration,
                format!("S3 endpoint {}: {reason}", crate::resolve::REFUSED),
                "point the connection's endpoint at a public address, or have the operator \
                 allow the network in the S3 sink's sink.allowed_networks"
                    .to_owned(),
            )
        }
        SdkError::DispatchFailure(d) if !d.is_io() && !d.is_timeout() && d.is_other() => {
            // Not the network: typically the credentials could not be resolved (no default
            // chain source, STS refused the role).
            let text = DisplayErrorContext(error).to_string();
            let (class, hint) = credential_failure(&text);
            (class, format!("S3 call not sent: {text}"), hint)
        }
        SdkError::ConstructionFailure(_) => {
            let text = DisplayErrorContext(error).to_string();
            let (class, hint) = credential_failure(&text);
            (class, format!("S3 request not built: {text}"), hint)
        }
        _ => (
            Class::Transient { retry_after: None },
            format!("S3 unreachable: {}", DisplayErrorContext(error)),
            String::new(),
        ),
    }
}

/// A failure before anything was sent: credentials that cannot be had are a configuration
/// error; anything else (STS unreachable) is retried.
fn credential_failure(text: &str) -> (Class, String) {
    let refused = [
        "AccessDenied",
        "InvalidClientTokenId",
        "SignatureDoesNotMatch",
        "no credentials",
        "failed to load credentials",
        "ExpiredToken",
        "not authorized",
    ];
    if refused
        .iter()
        .any(|r| text.to_ascii_lowercase().contains(&r.to_ascii_lowercase()))
    {
        (
            Class::Configuration,
            "the connection's credentials could not be obtained: check the access keys, or that the role trusts the caller (sts:AssumeRole, external ID), or the pod's identity (IRSA)".into(),
        )
    } else {
        (Class::Transient { retry_after: None }, String::new())
    }
}

/// What an S3 error answer means, and what to fix: by S3's error code, then by status.
pub fn classify(
    status: u16,
    code: Option<&str>,
    retry_after: Option<&str>,
    bucket: &str,
    prefix: &str,
    action: &str,
) -> (Class, String) {
    let resource = if action == "s3:PutObject" {
        let p = if prefix.is_empty() {
            String::new()
        } else {
            format!("{prefix}/")
        };
        format!("arn:aws:s3:::{bucket}/{p}*")
    } else {
        format!("arn:aws:s3:::{bucket}")
    };
    let permission = format!(
        "the credentials lack {action} on {resource}: grant it in the IAM policy (and check the bucket policy)"
    );
    let keys = "S3 refused the connection's keys: update the access key ID, secret and session token of the connection".to_owned();
    let transient = || Class::Transient {
        retry_after: retry_after
            .and_then(|v| parse_retry_after(v, time::OffsetDateTime::now_utc())),
    };
    match code.unwrap_or_default() {
        "AccessDenied" | "AllAccessDisabled" | "Forbidden" | "AccountProblem" => {
            (Class::Configuration, permission)
        }
        "NoSuchBucket" | "NotFound" => (
            Class::Configuration,
            format!("bucket {bucket} does not exist (or not in this account/endpoint): create it or fix the destination's bucket"),
        ),
        "InvalidAccessKeyId" | "SignatureDoesNotMatch" | "InvalidToken" | "TokenRefreshRequired" => {
            (Class::Configuration, keys)
        }
        "ExpiredToken" => (
            Class::Configuration,
            "the session token expired: give the connection new keys, or use assume-role or the default chain, which refresh themselves".into(),
        ),
        "PermanentRedirect" | "AuthorizationHeaderMalformed" | "IllegalLocationConstraintException" => (
            Class::Configuration,
            format!("bucket {bucket} is in another region: set the destination's (or the connection's) region to the bucket's"),
        ),
        "RequestTimeTooSkewed" => (
            Class::Configuration,
            "this host's clock is more than 15 minutes off: fix NTP on the sink's nodes".into(),
        ),
        // ConditionalRequestConflict: a concurrent conditional write of the same key (another
        // replica delivering a redelivered copy); the retry finds the object stored.
        // BadDigest: the body was damaged on the way, the Content-MD5 caught it.
        "SlowDown" | "InternalError" | "ServiceUnavailable" | "RequestTimeout" | "OperationAborted"
        | "ConditionalRequestConflict" | "BadDigest" => (transient(), String::new()),
        "EntityTooLarge" => (Class::TooLarge, String::new()),
        _ => {
            let class = classify_object_store(status, code, retry_after, time::OffsetDateTime::now_utc());
            let hint = match (&class, status) {
                (Class::Configuration, 403) => permission,
                (Class::Configuration, 404) => format!("bucket {bucket} was not found: create it or fix the destination's bucket"),
                (Class::Configuration, 401) => keys,
                (Class::Configuration, 400..=499) => format!(
                    "S3 refused {action} on bucket {bucket} because of how the bucket or the connection is set up, not because of the events: fix what S3 said (bucket policy, Object Lock, KMS key, the connection's endpoint)"
                ),
                (Class::Configuration, _) => format!("S3 answered {status}: check the connection's endpoint"),
                _ => String::new(),
            };
            (class, hint)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn c(status: u16, code: &str) -> (Class, String) {
        classify(
            status,
            Some(code),
            None,
            "audit-bkt",
            "logs",
            "s3:PutObject",
        )
    }

    #[test]
    fn refusals_are_configuration_errors_with_what_to_fix() {
        let (class, hint) = c(403, "AccessDenied");
        assert_eq!(class, Class::Configuration);
        assert!(
            hint.contains("s3:PutObject on arn:aws:s3:::audit-bkt/logs/*"),
            "{hint}"
        );
        for code in ["InvalidAccessKeyId", "SignatureDoesNotMatch"] {
            let (class, hint) = c(403, code);
            assert_eq!(class, Class::Configuration);
            assert!(hint.contains("keys"), "{code}: {hint}");
        }
        let (class, hint) = c(404, "NoSuchBucket");
        assert_eq!(class, Class::Configuration);
        assert!(hint.contains("bucket audit-bkt does not exist"), "{hint}");
        assert!(c(400, "ExpiredToken").1.contains("expired"));
        assert!(c(301, "PermanentRedirect").1.contains("region"));
        // HEAD answers carry no body, so no code: the status decides.
        let (class, hint) = classify(403, None, None, "b", "", "s3:ListBucket");
        assert_eq!(class, Class::Configuration);
        assert!(hint.contains("s3:ListBucket on arn:aws:s3:::b"), "{hint}");
    }

    #[test]
    fn throttling_and_server_errors_are_transient() {
        for (status, code) in [
            (503, "SlowDown"),
            (500, "InternalError"),
            (503, "ServiceUnavailable"),
            (400, "RequestTimeout"),
            (502, "BadGateway"),
        ] {
            assert!(
                matches!(c(status, code).0, Class::Transient { .. }),
                "{status} {code}"
            );
        }
        let (class, _) = classify(503, Some("SlowDown"), Some("7"), "b", "", "s3:PutObject");
        assert_eq!(
            class,
            Class::Transient {
                retry_after: Some(std::time::Duration::from_secs(7))
            }
        );
    }

    #[test]
    fn size_stored_objects_and_configuration_refusals() {
        assert_eq!(c(400, "EntityTooLarge").0, Class::TooLarge);
        // The conditional create found the object: stored before, delivered.
        assert_eq!(
            c(412, "PreconditionFailed"),
            (Class::Delivered, String::new())
        );
        assert!(matches!(
            c(409, "ConditionalRequestConflict").0,
            Class::Transient { .. }
        ));
        // No 4xx of S3 is about the data: the bucket's configuration, so broken, not DLQ.
        for (status, code) in [
            (400, "InvalidArgument"),
            (400, "InvalidRequest"),
            (409, "InvalidBucketState"),
        ] {
            let (class, hint) = c(status, code);
            assert_eq!(class, Class::Configuration, "{code}");
            assert!(hint.contains("Object Lock"), "{code}: {hint}");
        }
    }
}
