//! The sink's side of the control plane: fetching a stream's destination with its secrets
//! (`GetDestination`), reporting status (`ReportStatus`), and answering the config service's
//! requests over NATS (`test_destination`, `list_targets`) for this destination type.

use std::{sync::Arc, time::Duration};

use auditstream_bus::{headers, subjects};
use auditstream_proto::v1::{
    self as pb, GetDestinationRequest, ListTargetsRequest, ListTargetsResponse,
    ReportStatusRequest, StreamStatus, TestDestinationRequest, TestDestinationResponse,
    config_service_client::ConfigServiceClient, get_destination_request::Key,
};
use futures_util::StreamExt;
use prost::Message;
use tokio_util::sync::CancellationToken;
use tonic::{
    metadata::{Ascii, MetadataValue},
    service::{Interceptor, interceptor::InterceptedService},
    transport::Channel,
};

use crate::{
    classify::Class,
    config::ConfigServiceSource,
    deliver::{Answer, Destination},
    sink::Sink,
};

#[derive(Clone)]
pub struct Auth(MetadataValue<Ascii>);

impl Interceptor for Auth {
    fn call(&mut self, mut r: tonic::Request<()>) -> Result<tonic::Request<()>, tonic::Status> {
        r.metadata_mut().insert("authorization", self.0.clone());
        Ok(r)
    }
}

/// A config-service client that connects lazily (a sink starts, and keeps delivering on
/// what it knows, while config-service is down).
#[derive(Clone)]
pub struct Control {
    client: ConfigServiceClient<InterceptedService<Channel, Auth>>,
}

impl Control {
    pub fn new(source: &ConfigServiceSource) -> anyhow::Result<Control> {
        let channel = source
            .tls
            .endpoint(&source.url, "config_service.tls")
            .map_err(anyhow::Error::msg)?
            .connect_timeout(Duration::from_secs(5))
            .timeout(source.timeout)
            .connect_lazy();
        let token: MetadataValue<Ascii> = format!("Bearer {}", source.token.expose())
            .parse()
            .map_err(|_| anyhow::anyhow!("config_service.token is not ASCII"))?;
        Ok(Control {
            client: ConfigServiceClient::with_interceptor(channel, Auth(token)),
        })
    }

    /// The destination of the stream with key `stream_key` (`Stream::key`), and its
    /// connection with secrets.
    pub async fn destination(
        &self,
        stream_key: &str,
    ) -> Result<pb::DestinationDetails, tonic::Status> {
        self.client
            .clone()
            .get_destination(GetDestinationRequest {
                key: Some(Key::StreamKey(stream_key.to_owned())),
            })
            .await
            .map(|r| r.into_inner())
    }

    pub async fn connection(&self, connection_id: &str) -> Result<pb::Connection, String> {
        self.client
            .clone()
            .get_destination(GetDestinationRequest {
                key: Some(Key::ConnectionId(connection_id.to_owned())),
            })
            .await
            .map_err(|s| format!("connection {connection_id}: {}", s.message()))?
            .into_inner()
            .connection
            .ok_or_else(|| format!("connection {connection_id}: not returned"))
    }

    pub async fn report(&self, status: StreamStatus) -> Result<(), tonic::Status> {
        self.client
            .clone()
            .report_status(ReportStatusRequest {
                status: Some(status),
            })
            .await
            .map(|_| ())
    }
}

/// The result word of a class, as `TestDestinationResponse.result` and metrics say it.
pub fn result_word(class: &Class) -> &'static str {
    match class {
        Class::Delivered => "delivered",
        Class::Transient { .. } => "transient",
        Class::Configuration => "configuration",
        Class::TooLarge => "too_large",
        Class::Rejected => "rejected",
    }
}

/// Answers `audit.rpc.<type>.test_destination` and `audit.rpc.<type>.list_targets` in a
/// queue group, so any one replica of the type answers.
pub async fn serve_rpcs<S: Sink>(
    sink: Arc<S>,
    control: Control,
    nats: async_nats::Client,
    probe_timeout: Duration,
    shutdown: CancellationToken,
) -> anyhow::Result<()> {
    let group = format!("sink-{}", S::TYPE.as_str());
    let mut test = nats
        .queue_subscribe(subjects::rpc(S::TYPE, "test_destination"), group.clone())
        .await?;
    let mut targets = nats
        .queue_subscribe(subjects::rpc(S::TYPE, "list_targets"), group)
        .await?;
    loop {
        let (message, is_test) = tokio::select! {
            _ = shutdown.cancelled() => return Ok(()),
            m = test.next() => (m, true),
            m = targets.next() => (m, false),
        };
        let Some(message) = message else {
            return Ok(());
        };
        let Some(reply) = message.reply.clone() else {
            continue;
        };
        let (sink, control, nats) = (sink.clone(), control.clone(), nats.clone());
        tokio::spawn(async move {
            let answer = if is_test {
                test_destination(&*sink, &control, &message.payload, probe_timeout)
                    .await
                    .map(|r| r.encode_to_vec())
            } else {
                list_targets(&*sink, &control, &message.payload)
                    .await
                    .map(|r| r.encode_to_vec())
            };
            let sent = match answer {
                Ok(body) => nats.publish(reply, body.into()).await,
                Err(error) => {
                    let mut h = async_nats::HeaderMap::new();
                    h.insert(headers::ERROR, error.as_str());
                    nats.publish_with_headers(reply, h, Default::default())
                        .await
                }
            };
            if let Err(e) = sent {
                tracing::warn!(error = %e, "cannot answer a config-service request");
            }
        });
    }
}

async fn test_destination<S: Sink>(
    sink: &S,
    control: &Control,
    body: &[u8],
    timeout: Duration,
) -> Result<TestDestinationResponse, String> {
    let request = TestDestinationRequest::decode(body).map_err(|e| format!("bad request: {e}"))?;
    let destination = request
        .destination
        .ok_or("the request carries no destination")?;
    let connection = control.connection(&destination.connection_id).await?;
    let started = std::time::Instant::now();
    let answer = match sink.build(&destination, &connection) {
        Ok(d) => tokio::time::timeout(timeout, d.probe())
            .await
            .unwrap_or_else(|_| {
                Answer::new(
                    Class::Transient { retry_after: None },
                    format!("no answer within {timeout:?}"),
                    "check that the destination is reachable from the sink's network",
                )
            }),
        Err(answer) => answer,
    };
    Ok(TestDestinationResponse {
        ok: answer.class == Class::Delivered,
        result: result_word(&answer.class).to_owned(),
        detail: answer.detail,
        hint: answer.hint,
        latency_ms: started.elapsed().as_millis().min(u32::MAX as u128) as u32,
    })
}

async fn list_targets<S: Sink>(
    sink: &S,
    control: &Control,
    body: &[u8],
) -> Result<ListTargetsResponse, String> {
    let request = ListTargetsRequest::decode(body).map_err(|e| format!("bad request: {e}"))?;
    let connection = control.connection(&request.connection_id).await?;
    let targets = sink.list_targets(&connection).await?;
    Ok(ListTargetsResponse { targets })
}
