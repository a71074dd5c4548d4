//! One HTTP destination: encodes a batch per its preset, sends it, and says what the answer
//! means (sink-core's [`Class`], with a detail for admins and a hint saying what to fix).

use std::sync::Arc;

use auditstream_egress::{Egress, Reply, gzip, status_text};
use auditstream_sink_core::{
    classify::{Class, classify_http},
    deliver::{Answer, Destination, RequestCaps},
    event::Event,
};
use bytes::Bytes;
use http::{HeaderValue, Method, Request, StatusCode, header};
use http_body_util::Full;

use crate::{
    preset::Preset,
    target::{AuthKind, Target},
};

/// Splunk HEC's answer codes that mean the token or the HEC input is set up wrongly rather
/// than the data being bad: incorrect index (7), data channel missing or invalid (10, 11:
/// indexer acknowledgment is on), ACK disabled (14), query-string authorization disabled (16).
const SPLUNK_CONFIGURATION_CODES: [i64; 5] = [7, 10, 11, 14, 16];
/// Splunk HEC's "No data": the token was accepted but the body was empty.
const SPLUNK_NO_DATA: i64 = 5;

pub struct HttpDestination {
    pub(crate) egress: Egress,
    pub(crate) target: Arc<Target>,
    pub(crate) caps: RequestCaps,
    /// The service's limit on a request body (before compression).
    pub(crate) max_body: usize,
}

impl std::fmt::Debug for HttpDestination {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // Never the URL's path or the headers: a Sumo Logic URL and auth headers are secrets.
        f.debug_struct("HttpDestination")
            .field("host", &self.target.host)
            .field("preset", &self.target.preset.name())
            .field("caps", &self.caps)
            .finish()
    }
}

impl Destination<Event> for HttpDestination {
    fn caps(&self) -> RequestCaps {
        self.caps
    }

    async fn send(&self, items: &[Event]) -> Answer {
        if items.is_empty() {
            return Answer::delivered("nothing to send");
        }
        let body = self.target.preset.encode(items);
        if body.len() > self.max_body {
            // Within the caps this cannot happen; kept so no request ever exceeds the limit.
            return Answer::new(
                Class::TooLarge,
                format!(
                    "a request of {} events would be {} bytes, more than the {} bytes {} accepts",
                    items.len(),
                    body.len(),
                    self.max_body,
                    self.service()
                ),
                "",
            );
        }
        match self.request(body).await {
            Ok(reply) => self.answer(&reply),
            Err(answer) => answer,
        }
    }

    async fn probe(&self) -> Answer {
        let body = self.target.preset.probe_body().to_vec();
        match self.request(body).await {
            Ok(reply) if self.splunk_no_data(&reply) => Answer::delivered(format!(
                "{}: the HEC token was accepted (no data sent)",
                status_text(reply.status)
            )),
            Ok(reply) => self.answer(&reply),
            Err(answer) => answer,
        }
    }
}

impl HttpDestination {
    fn service(&self) -> &'static str {
        match self.target.preset {
            Preset::Generic(_) => "the endpoint",
            Preset::SumoLogic => "Sumo Logic",
            Preset::Datadog => "Datadog",
            Preset::SplunkHec(_) => "Splunk HEC",
        }
    }

    /// Sends one POST; an error is the answer to give when no HTTP answer came.
    async fn request(&self, body: Vec<u8>) -> Result<Reply, Answer> {
        let target = &self.target;
        let body = if target.gzip { gzip(body).await } else { body };
        let mut request = Request::builder()
            .method(Method::POST)
            .uri(target.uri.clone())
            .body(Full::new(Bytes::from(body)))
            .expect("a request from a checked URI");
        let headers = request.headers_mut();
        headers.insert(
            header::CONTENT_TYPE,
            HeaderValue::from_static(target.preset.content_type()),
        );
        if target.gzip {
            headers.insert(header::CONTENT_ENCODING, HeaderValue::from_static("gzip"));
        }
        for (name, value) in &target.headers {
            headers.insert(name.clone(), value.clone());
        }
        self.egress.send(request).await
    }

    fn splunk_no_data(&self, reply: &Reply) -> bool {
        matches!(self.target.preset, Preset::SplunkHec(_))
            && reply.status == StatusCode::BAD_REQUEST
            && splunk_code(&reply.body) == Some(SPLUNK_NO_DATA)
    }

    fn answer(&self, reply: &Reply) -> Answer {
        let status = reply.status.as_u16();
        let mut class = classify_http(
            status,
            reply.header(header::RETRY_AFTER),
            time::OffsetDateTime::now_utc(),
        );
        let detail = reply.detail();
        if class == Class::Delivered {
            return Answer::delivered(detail);
        }
        if class == Class::Rejected
            && matches!(self.target.preset, Preset::SplunkHec(_))
            && splunk_code(&reply.body).is_some_and(|c| SPLUNK_CONFIGURATION_CODES.contains(&c))
        {
            class = Class::Configuration;
        }
        let hint = self.hint(&class, reply, &detail);
        Answer::new(class, detail, hint)
    }

    fn hint(&self, class: &Class, reply: &Reply, detail: &str) -> String {
        let host = &self.target.host;
        let status = reply.status.as_u16();
        match class {
            Class::Delivered | Class::Transient { .. } => String::new(),
            Class::TooLarge => format!(
                "{} refused the request as too large; it is split and retried, and an event \
                 too large on its own goes to the dead-letter queue",
                self.service()
            ),
            Class::Rejected => format!("the endpoint rejected this event: {detail}"),
            Class::Configuration => match status {
                401 | 403 | 407 => self.credentials_hint(status),
                404 => self.path_hint(),
                405 => format!(
                    "{host} does not accept POST at this URL (HTTP 405): check that the URL is \
                     {}",
                    self.intake_url()
                ),
                410 => format!(
                    "the endpoint no longer exists (HTTP 410): check that the URL is {}",
                    self.intake_url()
                ),
                300..=399 => {
                    let to = reply
                        .header(header::LOCATION)
                        .and_then(|l| l.parse::<http::Uri>().ok())
                        .and_then(|u| u.host().map(|h| format!(" to {h}")))
                        .unwrap_or_default();
                    format!(
                        "{host} redirects{to} (HTTP {status}); redirects are not followed, so \
                         set the destination's URL to the final address"
                    )
                }
                400..=499 if matches!(self.target.preset, Preset::SplunkHec(_)) => {
                    splunk_configuration_hint(splunk_code(&reply.body), host)
                }
                _ => format!(
                    "{host} does not answer like {} (HTTP {status}): check that the URL is {}",
                    match self.target.preset {
                        Preset::Generic(_) => "a log intake",
                        _ => self.service(),
                    },
                    self.intake_url()
                ),
            },
        }
    }

    fn credentials_hint(&self, status: u16) -> String {
        let host = &self.target.host;
        if self.target.auth == AuthKind::Url
            || (self.target.preset == Preset::SumoLogic && self.target.auth == AuthKind::None)
        {
            return format!(
                "the endpoint refused the request (HTTP {status}): the connection's URL carries \
                 its credentials; it may have been regenerated or the source deleted, so copy \
                 the source's URL again into the connection (url auth)"
            );
        }
        let what = match (&self.target.auth, &self.target.preset) {
            (AuthKind::None, preset) => {
                let suggestion = match preset {
                    Preset::Datadog => "an API key: header DD-API-KEY or a bearer token",
                    Preset::SplunkHec(_) => "a HEC token (bearer)",
                    _ => "the credentials the endpoint expects",
                };
                return format!(
                    "the endpoint requires credentials (HTTP {status}) and the connection has \
                     none: add {suggestion} to the connection"
                );
            }
            (AuthKind::Url, _) => unreachable!("answered above"),
            (AuthKind::Basic, _) => "user name and password".to_owned(),
            (AuthKind::Bearer, Preset::Datadog) => "API key (sent as DD-API-KEY)".to_owned(),
            (AuthKind::Bearer, Preset::SplunkHec(_)) => "HEC token".to_owned(),
            (AuthKind::Bearer, _) => "bearer token".to_owned(),
            (AuthKind::Header(name), Preset::Datadog) if name == "dd-api-key" => {
                "API key (DD-API-KEY)".to_owned()
            }
            (AuthKind::Header(name), _) => format!("{name} header value"),
        };
        format!(
            "the endpoint refused the credentials (HTTP {status}): check the connection's \
             {what} and that it may write to {host}"
        )
    }

    fn path_hint(&self) -> String {
        let host = &self.target.host;
        match self.target.preset {
            Preset::SumoLogic => "Sumo Logic has no HTTP source at this URL (HTTP 404): the \
                source may have been deleted or its URL regenerated; copy the source's URL \
                again"
                .to_owned(),
            _ => format!(
                "{host} has no such path (HTTP 404): check the destination URL's path; it \
                 should be {}",
                self.intake_url()
            ),
        }
    }

    /// The documented intake URL of the preset, for hints.
    fn intake_url(&self) -> &'static str {
        match self.target.preset {
            Preset::Generic(_) => "the receiver's intake URL",
            Preset::SumoLogic => {
                "the HTTP source's URL (https://endpoint<N>.collection.<deployment>.sumologic.com\
                 /receiver/v1/http/<code>)"
            }
            Preset::Datadog => {
                "https://http-intake.logs.<site>/api/v2/logs (e.g. \
                 https://http-intake.logs.datadoghq.com/api/v2/logs, \
                 https://http-intake.logs.datadoghq.eu/api/v2/logs)"
            }
            Preset::SplunkHec(_) => {
                "https://<host>:8088/services/collector/event (Splunk Cloud: \
                 https://http-inputs-<stack>.splunkcloud.com/services/collector/event)"
            }
        }
    }
}

fn splunk_configuration_hint(code: Option<i64>, host: &str) -> String {
    match code {
        Some(7) => "the HEC token may not write to this index: allow the index in the token's \
                    settings, or change the destination's splunk-index"
            .to_owned(),
        Some(10 | 11 | 14) => "the HEC token has indexer acknowledgment enabled, which this sink \
                               does not use: turn it off in the token's settings"
            .to_owned(),
        Some(16) => "the HEC input does not accept this form of authentication: give the token \
                     as the connection's bearer token"
            .to_owned(),
        _ => format!("check the destination's Splunk HEC settings on {host}"),
    }
}

/// Splunk HEC's `code` in a JSON answer.
fn splunk_code(body: &[u8]) -> Option<i64> {
    serde_json::from_slice::<serde_json::Value>(body)
        .ok()?
        .get("code")?
        .as_i64()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn splunk_codes() {
        assert_eq!(splunk_code(br#"{"text":"No data","code":5}"#), Some(5));
        assert_eq!(splunk_code(b"<html>"), None);
    }
}
