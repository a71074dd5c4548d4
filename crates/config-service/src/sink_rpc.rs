//! Questions only the sink of a destination type can answer, asked over NATS request-reply
//! on `audit.rpc.<sink_type>.<operation>`: the buckets or containers a connection reaches
//! (ListTargets: only the sink holds the cloud SDK) and a probe of a destination
//! (TestDestination). Requests carry ids and non-secret settings only; the sink fetches the
//! credentials itself through `GetDestination`, so secrets never travel on the bus.
//!
//! The sink answers with the protobuf response as the body, or with an `Auditstream-Error`
//! header carrying what went wrong (then FAILED_PRECONDITION).

use std::time::Duration;

use auditstream_bus::{headers, subjects};
use auditstream_model::SinkType;
use auditstream_proto::v1::{
    ListTargetsRequest, ListTargetsResponse, TestDestinationRequest, TestDestinationResponse,
};
use prost::Message;

use crate::error::ServiceError;

/// One kind of question to a sink.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum SinkRpc {
    ListTargets,
    TestDestination,
}

impl SinkRpc {
    /// The last token of the subject.
    fn operation(self) -> &'static str {
        match self {
            SinkRpc::ListTargets => "list_targets",
            SinkRpc::TestDestination => "test_destination",
        }
    }

    /// The RPC's name, as admins see it.
    fn name(self) -> &'static str {
        match self {
            SinkRpc::ListTargets => "ListTargets",
            SinkRpc::TestDestination => "TestDestination",
        }
    }

    /// Why a sink is needed: "… is running to <purpose>; <rpc> is answered by the sink of the
    /// <whose> type".
    fn purpose(self, sink: SinkType) -> (String, &'static str) {
        match self {
            SinkRpc::ListTargets => (
                format!("list the targets of {sink} connections"),
                "connection's",
            ),
            SinkRpc::TestDestination => (format!("test {sink} destinations"), "destination's"),
        }
    }
}

fn binary(sink: SinkType) -> String {
    format!("auditstream-sink-{}", sink.as_str().replace('_', "-"))
}

/// Sends `request` to any replica of the `sink` type and decodes its answer.
async fn call<Resp: Message + Default>(
    nats: &async_nats::Client,
    sink: SinkType,
    rpc: SinkRpc,
    request: &impl Message,
    timeout: Duration,
) -> Result<Resp, ServiceError> {
    let subject = subjects::rpc(sink, rpc.operation());
    let body = request.encode_to_vec();
    let answer = tokio::time::timeout(timeout, nats.request(subject, body.into()))
        .await
        .map_err(|_| {
            ServiceError::Unavailable(format!(
                "{} did not answer {} within {timeout:?}",
                binary(sink),
                rpc.name()
            ))
        })?;
    let message = answer.map_err(|e| match e.kind() {
        async_nats::RequestErrorKind::NoResponders => {
            let (purpose, whose) = rpc.purpose(sink);
            ServiceError::Unavailable(format!(
                "no {} is running to {purpose}; {} is answered by the sink of the {whose} type",
                binary(sink),
                rpc.name()
            ))
        }
        _ => ServiceError::Unavailable(format!(
            "{} request to {} failed: {e}",
            rpc.name(),
            binary(sink)
        )),
    })?;
    if let Some(error) = message.headers.as_ref().and_then(|h| h.get(headers::ERROR)) {
        return Err(ServiceError::FailedPrecondition(error.as_str().to_owned()));
    }
    Resp::decode(message.payload.as_ref()).map_err(|e| {
        ServiceError::Internal(format!(
            "{} answered {} with bad data: {e}",
            binary(sink),
            rpc.name()
        ))
    })
}

/// ListTargets: the request carries only the connection id.
pub async fn list_targets(
    nats: &async_nats::Client,
    sink: SinkType,
    connection_id: &str,
    timeout: Duration,
) -> Result<ListTargetsResponse, ServiceError> {
    let request = ListTargetsRequest {
        connection_id: connection_id.to_owned(),
    };
    call(nats, sink, SinkRpc::ListTargets, &request, timeout).await
}

/// TestDestination: `request.destination` is always set (resolved from the stream when asked
/// by stream id), so the sink needs nothing but the connection's secrets.
pub async fn test_destination(
    nats: &async_nats::Client,
    sink: SinkType,
    request: &TestDestinationRequest,
    timeout: Duration,
) -> Result<TestDestinationResponse, ServiceError> {
    call(nats, sink, SinkRpc::TestDestination, request, timeout).await
}
