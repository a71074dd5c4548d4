//! One stream's container: uploads a request's objects, and probes.
//!
//! Uploads are conditional creates (`If-None-Match: *`): a blob already under its name is
//! never replaced, and the 409 `BlobAlreadyExists` that says so counts as delivered (see
//! `sink_core::object`). So the sink also works with containers under immutable storage
//! (time-based retention, version-level WORM), which refuse overwrites anyway.

use std::{sync::Arc, time::Duration};

use auditstream_sink_core::{
    Answer, Destination, Event, RequestCaps, deliver::worst, object::Layout,
};
use azure_storage_blob::{BlobContainerClient, models::BlobClientUploadOptions};
use bytes::Bytes;
use futures_util::StreamExt as _;
use time::OffsetDateTime;

use crate::{
    account::ContainerClients,
    classify::{Ctx, Failure, Op, classify},
};

/// A stream's Azure Blob destination, built by [`crate::AzureBlobSink`].
pub struct AzureBlobDestination {
    pub(crate) clients: ContainerClients,
    pub(crate) container: String,
    pub(crate) layout: Layout,
    pub(crate) caps: RequestCaps,
    pub(crate) request_timeout: Duration,
    pub(crate) max_parallel_uploads: usize,
}

impl std::fmt::Debug for AzureBlobDestination {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AzureBlobDestination")
            .field("account", self.clients.account())
            .field("container", &self.container)
            .field("layout", &self.layout)
            .finish_non_exhaustive()
    }
}

/// The body of the probe's test blob.
const PROBE_BODY: &[u8] = b"auditstream destination test; safe to delete\n";

impl AzureBlobDestination {
    fn ctx(&self) -> Ctx<'_> {
        Ctx {
            account: &self.clients.account().name,
            container: &self.container,
            method: self.clients.account().method(),
            op: Op::Write,
        }
    }

    fn answer(&self, failure: &Failure) -> Answer {
        classify(failure, &self.ctx(), OffsetDateTime::now_utc())
    }

    fn client(&self) -> Result<Arc<BlobContainerClient>, Answer> {
        self.clients
            .get(OffsetDateTime::now_utc())
            .map_err(|e| self.answer(&Failure::from_error(&e)))
    }

    /// Runs one storage call within the request timeout.
    async fn call<T>(
        &self,
        call: impl Future<Output = azure_core::Result<T>>,
    ) -> Result<T, Failure> {
        match tokio::time::timeout(self.request_timeout, call).await {
            Ok(Ok(value)) => Ok(value),
            Ok(Err(e)) => Err(Failure::from_error(&e)),
            Err(_) => Err(Failure::Timeout(self.request_timeout)),
        }
    }

    /// Writes one block blob unless one of that name exists.
    async fn upload(
        &self,
        client: &BlobContainerClient,
        key: &str,
        body: Bytes,
        content_type: &str,
        content_encoding: Option<&str>,
    ) -> Result<(), Failure> {
        let options = BlobClientUploadOptions {
            blob_content_type: Some(content_type.to_owned()),
            blob_content_encoding: content_encoding.map(str::to_owned),
            ..Default::default()
        }
        .if_not_exists();
        let blob = client.blob_client(key);
        self.call(blob.upload(body.into(), Some(options)))
            .await
            .map(drop)
    }
}

fn combine(answers: Vec<Answer>, container: &str) -> Answer {
    let count = answers.len();
    worst(answers).unwrap_or_else(|| {
        Answer::delivered(format!("{count} blob(s) written to container {container}"))
    })
}

impl Destination<Event> for AzureBlobDestination {
    fn caps(&self) -> RequestCaps {
        self.caps
    }

    async fn send(&self, items: &[Event]) -> Answer {
        let client = match self.client() {
            Ok(c) => c,
            Err(answer) => return answer,
        };
        let objects = self.layout.objects(items);
        let answers: Vec<Answer> = futures_util::stream::iter(objects)
            .map(|o| {
                let client = client.clone();
                async move {
                    match self
                        .upload(&client, &o.key, o.body, o.content_type, o.content_encoding)
                        .await
                    {
                        Ok(()) => Answer::delivered(o.key),
                        Err(failure) => {
                            // Delivered too when the blob exists already (classify).
                            let answer = self.answer(&failure);
                            tracing::debug!(blob = %o.key, class = ?answer.class, detail = %answer.detail, "upload answered with an error");
                            answer
                        }
                    }
                }
            })
            .buffer_unordered(self.max_parallel_uploads)
            .collect()
            .await;
        combine(answers, &self.container)
    }

    /// The container exists (when the credentials may read its properties) and a test blob
    /// can be written under the prefix; the test blob is deleted again if the credentials
    /// allow it (delete is optional, a leftover is only logged).
    async fn probe(&self) -> Answer {
        let client = match self.client() {
            Ok(c) => c,
            Err(answer) => return answer,
        };
        match self.call(client.get_properties(None)).await {
            Ok(_) => {}
            // Delivery needs create and write only. A container SAS can never read the
            // container's properties, and a role or SAS may lack read: the write below tells
            // whether the credentials work.
            Err(f) if f.is_forbidden() => {
                tracing::debug!(container = %self.container, "container properties not readable; probing with a write");
            }
            Err(f) => return self.answer(&f),
        }
        let key = self.layout.probe_key();
        if let Err(f) = self
            .upload(
                &client,
                &key,
                Bytes::from_static(PROBE_BODY),
                "text/plain",
                None,
            )
            .await
        {
            return self.answer(&f);
        }
        if let Err(f) = self.call(client.blob_client(&key).delete(None)).await {
            tracing::info!(
                container = %self.container,
                blob = %key,
                error = ?f,
                "could not delete the probe's test blob (delete permission is optional)"
            );
        }
        Answer::delivered(format!(
            "wrote a test blob to container {} of account {}",
            self.container,
            self.clients.account().name
        ))
    }
}

#[cfg(test)]
mod tests {
    use auditstream_sink_core::classify::Class;

    use super::*;

    fn answer(class: Class, detail: &str) -> Answer {
        Answer::new(class, detail, "")
    }

    #[test]
    fn a_request_is_delivered_when_every_blob_is() {
        // The ranking itself is sink-core's `worst`, tested there.
        let all_ok = combine(
            vec![answer(Class::Delivered, "a"), answer(Class::Delivered, "b")],
            "c",
        );
        assert_eq!(all_ok.class, Class::Delivered);
        assert_eq!(all_ok.detail, "2 blob(s) written to container c");
        let broken = combine(
            vec![
                answer(Class::Delivered, "a"),
                answer(Class::Configuration, "403"),
            ],
            "c",
        );
        assert_eq!(broken.detail, "403");
    }
}
