//! ListTargets: the buckets or containers a connection reaches are known only to the sink of
//! its type (it holds the SDK), so the question goes to that sink over NATS request-reply.
//! The request carries only the connection id; the sink fetches the credentials itself
//! through `GetDestination`, so secrets never travel on the bus.

use std::time::Duration;

use auditstream_bus::{headers, subjects};
use auditstream_model::SinkType;
use auditstream_proto::v1::{ListTargetsRequest, ListTargetsResponse};
use prost::Message;

use crate::error::ServiceError;

fn binary(sink: SinkType) -> String {
    format!("auditstream-sink-{}", sink.as_str().replace('_', "-"))
}

pub async fn list(
    nats: &async_nats::Client,
    sink: SinkType,
    connection_id: &str,
    timeout: Duration,
) -> Result<ListTargetsResponse, ServiceError> {
    let body = ListTargetsRequest {
        connection_id: connection_id.to_owned(),
    }
    .encode_to_vec();
    let subject = subjects::rpc(sink, "list_targets");
    let answer = tokio::time::timeout(timeout, nats.request(subject, body.into()))
        .await
        .map_err(|_| {
            ServiceError::Unavailable(format!(
                "{} did not answer ListTargets within {timeout:?}",
                binary(sink)
            ))
        })?;
    let message = answer.map_err(|e| match e.kind() {
        async_nats::RequestErrorKind::NoResponders => ServiceError::Unavailable(format!(
            "no {} is running to list the targets of {sink} connections; ListTargets is answered by the sink of the connection's type",
            binary(sink)
        )),
        _ => ServiceError::Unavailable(format!("ListTargets request to {} failed: {e}", binary(sink))),
    })?;
    if let Some(error) = message.headers.as_ref().and_then(|h| h.get(headers::ERROR)) {
        return Err(ServiceError::FailedPrecondition(error.as_str().to_owned()));
    }
    ListTargetsResponse::decode(message.payload.as_ref()).map_err(|e| {
        ServiceError::Internal(format!(
            "{} answered ListTargets with bad data: {e}",
            binary(sink)
        ))
    })
}
