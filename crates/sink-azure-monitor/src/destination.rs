//! One Logs Ingestion destination: a batch as one JSON array POSTed to the rule's stream, and
//! what the answer means, with hints that name what to change in Azure.

use std::sync::Arc;

use auditstream_egress::{Egress, Reply, gzip};
use auditstream_sink_core::{
    Answer, Destination, RequestCaps,
    classify::{Class, classify_http},
    event::Event,
};
use bytes::Bytes;
use http::{HeaderValue, Method, Request, StatusCode, Uri, header};
use http_body_util::Full;

use crate::token::TokenSource;

/// The Logs Ingestion API's version this sink speaks.
pub const API_VERSION: &str = "2023-01-01";

pub struct AzureMonitorDestination {
    pub(crate) egress: Egress,
    pub(crate) tokens: Arc<TokenSource>,
    /// `{endpoint}/dataCollectionRules/{id}/streams/{stream}?api-version=2023-01-01`
    pub(crate) uri: Uri,
    pub(crate) endpoint_host: String,
    pub(crate) dcr_immutable_id: String,
    pub(crate) stream_name: String,
    pub(crate) log_type: String,
    pub(crate) resource_id: String,
    pub(crate) gzip: bool,
    pub(crate) caps: RequestCaps,
    /// The largest body sent (before compression).
    pub(crate) max_body: usize,
}

impl std::fmt::Debug for AzureMonitorDestination {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AzureMonitorDestination")
            .field("endpoint", &self.endpoint_host)
            .field("dcr", &self.dcr_immutable_id)
            .field("stream", &self.stream_name)
            .field("caps", &self.caps)
            .finish_non_exhaustive()
    }
}

impl Destination<Event> for AzureMonitorDestination {
    fn caps(&self) -> RequestCaps {
        self.caps
    }

    async fn send(&self, items: &[Event]) -> Answer {
        if items.is_empty() {
            return Answer::delivered("nothing to send");
        }
        let body = json_array(items);
        if body.len() > self.max_body {
            // Within the caps only a single event can be this large: it can never be sent, and
            // sink-core sends it to the DLQ with this reason.
            let what = match items {
                [one] => format!("event {} is {} bytes", one.event_id, one.body.len()),
                _ => format!(
                    "a request of {} events would be {} bytes",
                    items.len(),
                    body.len()
                ),
            };
            return Answer::new(
                Class::TooLarge,
                format!(
                    "{what}, more than the {} bytes this sink sends to the Logs Ingestion API in \
                     one request (the service accepts at most 1 MB)",
                    self.max_body
                ),
                "",
            );
        }
        self.post(Bytes::from(body)).await
    }

    async fn probe(&self) -> Answer {
        // An empty array checks the token, the role, the rule and the stream, and ingests
        // nothing (204).
        self.post(Bytes::from_static(b"[]")).await
    }
}

impl AzureMonitorDestination {
    /// POSTs `body`. A 401 means the endpoint refused the token (revoked, expired early, a
    /// clock off): the token is dropped and the request sent once more with a fresh one, so
    /// an expiring token never costs a retry round or marks the destination broken.
    async fn post(&self, body: Bytes) -> Answer {
        let body = if self.gzip {
            Bytes::from(gzip(body.to_vec()).await)
        } else {
            body
        };
        let mut refused_once = false;
        loop {
            let authorization = match self.tokens.authorization().await {
                Ok(a) => a,
                Err(answer) => return answer,
            };
            let reply = match self.request(body.clone(), authorization.clone()).await {
                Ok(reply) => reply,
                Err(answer) => return answer,
            };
            if reply.status == StatusCode::UNAUTHORIZED && !refused_once {
                refused_once = true;
                self.tokens.invalidate(&authorization);
                continue;
            }
            return self.answer(&reply);
        }
    }

    async fn request(&self, body: Bytes, authorization: HeaderValue) -> Result<Reply, Answer> {
        let mut request = Request::builder()
            .method(Method::POST)
            .uri(self.uri.clone())
            .header(header::CONTENT_TYPE, "application/json")
            .header(header::AUTHORIZATION, authorization)
            .body(Full::new(body))
            .expect("a request from a checked URI");
        if self.gzip {
            request
                .headers_mut()
                .insert(header::CONTENT_ENCODING, HeaderValue::from_static("gzip"));
        }
        self.egress.send(request).await
    }

    fn answer(&self, reply: &Reply) -> Answer {
        let status = reply.status.as_u16();
        let class = classify_http(
            status,
            reply.header(header::RETRY_AFTER),
            time::OffsetDateTime::now_utc(),
        );
        let detail = reply.detail();
        let hint = match &class {
            Class::Delivered => return Answer::delivered(detail),
            Class::Transient { .. } => String::new(),
            Class::TooLarge => "the Logs Ingestion API refused the request as too large; it is \
                                split and retried, and an event too large on its own goes to the \
                                dead-letter queue"
                .to_owned(),
            Class::Rejected => format!(
                "the Logs Ingestion API refused this data: check that the events match the \
                 columns the stream {} declares in the data collection rule",
                self.stream_name
            ),
            Class::Configuration => self.configuration_hint(status),
        };
        Answer::new(class, detail, hint)
    }

    fn configuration_hint(&self, status: u16) -> String {
        let client_id = &self.tokens.identity().client_id;
        let dcr = &self.dcr_immutable_id;
        let rule = if self.resource_id.is_empty() {
            format!("the data collection rule {dcr}")
        } else {
            format!("the data collection rule {dcr} ({})", self.resource_id)
        };
        let role = format!(
            "the app {client_id} needs the role Monitoring Metrics Publisher on {rule} (Access \
             control (IAM) → Add role assignment; a new assignment can take up to 30 minutes to \
             apply)"
        );
        match status {
            401 => format!(
                "the ingestion endpoint refused a fresh token of app {client_id}: check that the \
                 connection's tenant ID is the tenant of the rule's subscription and that its \
                 authority host is of the same cloud as {}; {role}",
                self.endpoint_host
            ),
            403 => format!("{role}; then the backlog is delivered"),
            404 => format!(
                "{} has no data collection rule {dcr} with the stream {}: check the immutable ID \
                 (immutableId in the rule's JSON view), the stream name (case-sensitive, as in \
                 the rule's streamDeclarations, usually Custom-{}_CL) and that the endpoint is \
                 the rule's logs ingestion endpoint or a data collection endpoint in its region; \
                 also, {role}",
                self.endpoint_host, self.stream_name, self.log_type
            ),
            _ => format!(
                "{} does not answer like the Logs Ingestion API (HTTP {status}): check the \
                 destination's ingestion endpoint (https://<name>.<region>.ingest.monitor.azure.com)",
                self.endpoint_host
            ),
        }
    }
}

/// `[e1,e2,...]`: the rendered messages as they are, never parsed and re-serialized.
fn json_array(items: &[Event]) -> Vec<u8> {
    let size = items.iter().map(|e| e.body.len() + 1).sum::<usize>() + 1;
    let mut body = Vec::with_capacity(size);
    body.push(b'[');
    for (i, event) in items.iter().enumerate() {
        if i > 0 {
            body.push(b',');
        }
        body.extend_from_slice(&event.body);
    }
    body.push(b']');
    body
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_batch_is_one_array_of_the_messages_as_rendered() {
        let events = [
            Event::new("a", r#"{"x":1}"#),
            Event::new("b", r#"{"y":"z"}"#),
        ];
        assert_eq!(json_array(&events), br#"[{"x":1},{"y":"z"}]"#);
        assert_eq!(json_array(&events[..1]), br#"[{"x":1}]"#);
    }
}
