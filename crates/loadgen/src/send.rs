//! Sending: batches of generated events to the gateway over HTTP (NDJSON) or gRPC (`Ingest`),
//! from `concurrency` workers, at a fixed total rate or as fast as the gateway answers. A
//! request counts as accepted only when the gateway answered 200 / OK for all its events (the
//! ids it reports are then durable); ack latency is measured per request.

use std::{
    sync::Arc,
    time::{Duration, Instant},
};

use auditstream_proto::v1::{
    IngestEvent, IngestRequest, ingest_service_client::IngestServiceClient,
};

use crate::{
    mix::{Generated, Generator, Shape},
    stats::Samples,
};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Transport {
    Http,
    Grpc,
}

#[derive(Debug, Clone)]
pub struct SendPlan {
    pub transport: Transport,
    /// `http://host:port` of the gateway's HTTP or gRPC listener.
    pub target: String,
    pub token: String,
    pub batch: usize,
    pub concurrency: usize,
    /// Events per second over all workers; `None`: as fast as allowed.
    pub rate: Option<f64>,
    pub duration: Duration,
    /// Stop after this many events (whichever comes first with `duration`).
    pub max_events: Option<u64>,
    pub shape: Shape,
    pub seed: u64,
}

#[derive(Debug, Default)]
pub struct SendReport {
    pub accepted: Vec<String>,
    /// The organization of each accepted event, in the same order.
    pub accepted_orgs: Vec<String>,
    pub requests: u64,
    pub failed_requests: u64,
    pub bytes: u64,
    pub ack: Samples,
    pub elapsed: Duration,
}

pub fn now_ns() -> u128 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap_or_default()
        .as_nanos()
}

pub async fn run(plan: SendPlan) -> anyhow::Result<SendReport> {
    let started = Instant::now();
    let deadline = started + plan.duration;
    let sent = Arc::new(std::sync::atomic::AtomicU64::new(0));
    let http = reqwest::Client::builder()
        .timeout(Duration::from_secs(30))
        .pool_max_idle_per_host(plan.concurrency)
        .build()?;
    let mut workers = Vec::new();
    for w in 0..plan.concurrency.max(1) {
        let plan = plan.clone();
        let http = http.clone();
        let sent = sent.clone();
        let mut grpc = match plan.transport {
            Transport::Grpc => Some(IngestServiceClient::connect(plan.target.clone()).await?),
            Transport::Http => None,
        };
        workers.push(tokio::spawn(async move {
            let mut report = SendReport::default();
            let mut shape = plan.shape.clone();
            shape.run = format!("{}-{w}", shape.run);
            let mut generator = Generator::new(shape, plan.seed + w as u64);
            // Each worker's share of the rate: one batch every `interval`.
            let interval = plan.rate.map(|r| {
                Duration::from_secs_f64(plan.batch as f64 * plan.concurrency as f64 / r.max(1.0))
            });
            // Workers are spread over the interval, so a fixed rate arrives evenly and not
            // as bursts of `concurrency` batches at once (which would measure queueing
            // behind the burst, not the service).
            let mut next_at = Instant::now()
                + interval.map_or(Duration::ZERO, |i| {
                    i.mul_f64(w as f64 / plan.concurrency.max(1) as f64)
                });
            loop {
                if Instant::now() >= deadline {
                    break;
                }
                let n = sent.fetch_add(plan.batch as u64, std::sync::atomic::Ordering::Relaxed);
                if plan.max_events.is_some_and(|max| n >= max) {
                    break;
                }
                if let Some(interval) = interval {
                    let now = Instant::now();
                    if next_at > now {
                        tokio::time::sleep(next_at - now).await;
                    }
                    next_at += interval;
                }
                let now = now_ns();
                let events: Vec<Generated> = (0..plan.batch).map(|_| generator.next(now)).collect();
                let asked = Instant::now();
                let (ids, bytes) = match &mut grpc {
                    Some(client) => send_grpc(client, &plan.token, &events).await,
                    None => send_http(&http, &plan, &events).await,
                };
                report.requests += 1;
                report.bytes += bytes;
                match ids {
                    Some(ids) if ids.len() == events.len() => {
                        report.ack.push_micros(asked.elapsed().as_micros() as u64);
                        for (id, e) in ids.into_iter().zip(events) {
                            report.accepted.push(id);
                            report.accepted_orgs.push(e.org_id);
                        }
                    }
                    _ => report.failed_requests += 1,
                }
            }
            report
        }));
    }
    let mut total = SendReport::default();
    for w in workers {
        let r = w.await?;
        total.accepted.extend(r.accepted);
        total.accepted_orgs.extend(r.accepted_orgs);
        total.requests += r.requests;
        total.failed_requests += r.failed_requests;
        total.bytes += r.bytes;
        total.ack.extend(r.ack);
    }
    total.elapsed = started.elapsed();
    Ok(total)
}

/// The ids the gateway reported, in request order, when it stored every event.
type Stored = Option<Vec<String>>;

async fn send_http(http: &reqwest::Client, plan: &SendPlan, events: &[Generated]) -> (Stored, u64) {
    let mut body = String::with_capacity(events.iter().map(|e| e.envelope.len() + 1).sum());
    for e in events {
        body.push_str(&e.envelope);
        body.push('\n');
    }
    let bytes = body.len() as u64;
    let response = http
        .post(format!("{}/v1/events", plan.target.trim_end_matches('/')))
        .bearer_auth(&plan.token)
        .header("content-type", "application/x-ndjson")
        .body(body)
        .send()
        .await;
    let ids = match response {
        Ok(r) if r.status() == 200 => r.bytes().await.ok().and_then(|b| answered_ids(&b)),
        _ => None,
    };
    (ids, bytes)
}

/// `results[].id` of a 200 answer (only the ids are read, not every outcome's fields).
fn answered_ids(body: &[u8]) -> Stored {
    #[derive(serde::Deserialize)]
    struct Answer {
        results: Vec<Item>,
    }
    #[derive(serde::Deserialize)]
    struct Item {
        id: String,
    }
    let answer: Answer = serde_json::from_slice(body).ok()?;
    Some(answer.results.into_iter().map(|i| i.id).collect())
}

async fn send_grpc(
    client: &mut IngestServiceClient<tonic::transport::Channel>,
    token: &str,
    events: &[Generated],
) -> (Stored, u64) {
    let request = IngestRequest {
        events: events
            .iter()
            .map(|e| IngestEvent {
                id: e.id.clone(),
                event_type: e.event_type.to_owned(),
                occurred_at: e.occurred_at.clone(),
                org_id: e.org_id.clone(),
                workspace_id: e.workspace_id.clone(),
                data_json: e.data.clone().into_bytes(),
            })
            .collect(),
    };
    let bytes = events.iter().map(|e| e.data.len() as u64).sum();
    let mut request = tonic::Request::new(request);
    if let Ok(value) = format!("Bearer {token}").parse() {
        request.metadata_mut().insert("authorization", value);
    }
    let ids = match client.ingest(request).await {
        Ok(reply) => {
            let reply = reply.into_inner();
            (reply.accepted as usize == events.len())
                .then(|| reply.results.into_iter().map(|r| r.id).collect())
        }
        Err(_) => None,
    };
    (ids, bytes)
}
