//! Events/s that the object-store sinks push into their local stand-ins: sink-s3 into moto
//! and s3s-fs, sink-azure-blob into Azurite. The sink's `Destination` is driven directly (no
//! NATS, router or batching), with batches as sink-core cuts them by default (500 events of
//! about 1 KiB), `LANES` streams at once like a sink with that many busy streams; the
//! `per_event` rows write one object per event.
//!
//! Run with `make bench` (or `cargo bench -p auditstream-tests --bench object_stores` with
//! the stand-ins' variables as the Makefile exports them). Each figure is the median of
//! `RUNS` runs with min and max. These stand-ins are single-process servers on this machine
//! (moto and Azurite in Python and Node, s3s-fs writing files), so they, not the sink, are
//! the bound: the figures say what a test run can push, not what S3 or Azure would take.

use std::time::Instant;

use auditstream_proto::v1::{
    self as pb, connection::Credentials, destination::Target, s3_credentials::Method,
};
use auditstream_sink_azure_blob::{AzureBlobSink, AzureBlobSinkConfig};
use auditstream_sink_core::{Destination, Event, Sink, classify::Class};
use auditstream_sink_s3::{S3Sink, S3SinkConfig};
use auditstream_testkit::{Azurite, S3Server};

const RUNS: usize = 3;
const LANES: usize = 4;
const BATCH: usize = 500;
const EVENTS: usize = 20_000;
const PER_EVENT_EVENTS: usize = 2_000;

fn events(run: usize, n: usize) -> Vec<Event> {
    let filler = "x".repeat(900);
    (0..n)
        .map(|i| {
            let id = format!("bench-{run}-{i}");
            let body = format!(
                r#"{{"id":"{id}","event_type":"job_status","data":{{"job":{i},"note":"{filler}"}}}}"#
            );
            let mut e = Event::new(&id, body);
            e.org_id = "org".into();
            e.workspace_id = format!("ws-{}", i % 8);
            e.event_type = "job_status".into();
            e.occurred_at = "2026-11-23T08:30:00Z".into();
            e
        })
        .collect()
}

/// Sends `events` through `destinations` (one lane each, batches of `BATCH`); events/s.
async fn push<D: Destination<Event>>(destinations: &[D], events: &[Event]) -> (f64, f64) {
    let lanes: Vec<&[Event]> = events
        .chunks(events.len().div_ceil(destinations.len()))
        .collect();
    let bytes: usize = events.iter().map(|e| e.body.len()).sum();
    let start = Instant::now();
    futures_util::future::join_all(destinations.iter().zip(lanes).map(|(d, lane)| async move {
        for batch in lane.chunks(BATCH) {
            let answer = d.send(batch).await;
            assert_eq!(answer.class, Class::Delivered, "{answer:?}");
        }
    }))
    .await;
    let secs = start.elapsed().as_secs_f64();
    (
        events.len() as f64 / secs,
        bytes as f64 / secs / (1024.0 * 1024.0),
    )
}

fn summary(name: &str, mut samples: Vec<(f64, f64)>) {
    samples.sort_by(|a, b| a.0.total_cmp(&b.0));
    let (min, med, max) = (
        samples[0],
        samples[samples.len() / 2],
        samples[samples.len() - 1],
    );
    println!(
        "| {name} | {:.0} | {:.0} – {:.0} | {:.1} |",
        med.0, min.0, max.0, med.1
    );
}

fn s3_credentials(server: &S3Server) -> pb::Connection {
    pb::Connection {
        id: "bench".into(),
        credentials: Some(Credentials::S3(pb::S3Credentials {
            method: Some(Method::StaticKeys(pb::S3StaticKeys {
                access_key_id: server.access_key().into(),
                secret_access_key: server.secret_key().into(),
                session_token: String::new(),
            })),
            region: "us-east-1".into(),
            endpoint: server.endpoint(),
            force_path_style: true,
        })),
        ..Default::default()
    }
}

async fn s3_rows(name: &str, server: &S3Server) {
    let sink = S3Sink::new(S3SinkConfig {
        allow_insecure_http: true,
        ..Default::default()
    });
    for (format, total, label) in [
        (pb::ObjectFormat::Ndjson, EVENTS, "ndjson.gz"),
        (pb::ObjectFormat::PerEvent, PER_EVENT_EVENTS, "per_event"),
    ] {
        let mut samples = Vec::new();
        for run in 0..RUNS {
            let bucket = format!("bench-{}-{run}", label.replace('.', "-").replace('_', "-"));
            server.create_bucket(&bucket).await;
            let destination = pb::Destination {
                connection_id: "bench".into(),
                target: Some(Target::S3(pb::S3Target {
                    bucket: bucket.clone(),
                    prefix: "bench".into(),
                    format: format as i32,
                    ..Default::default()
                })),
            };
            let lanes: Vec<_> = (0..LANES)
                .map(|_| sink.build(&destination, &s3_credentials(server)).unwrap())
                .collect();
            samples.push(push(&lanes, &events(run, total)).await);
            assert_eq!(
                server.event_ids(&bucket).await.len(),
                total,
                "every event stored"
            );
        }
        summary(&format!("sink-s3 → {name}, {label}"), samples);
    }
}

async fn azurite_rows(azurite: &Azurite) {
    let sink = AzureBlobSink::new(AzureBlobSinkConfig {
        allow_insecure_http: true,
        ..Default::default()
    })
    .unwrap();
    let connection = pb::Connection {
        id: "bench".into(),
        credentials: Some(Credentials::AzureBlob(pb::AzureBlobCredentials {
            account: Azurite::ACCOUNT.into(),
            endpoint: azurite.endpoint(),
            method: Some(pb::azure_blob_credentials::Method::SharedKey(
                pb::AzureSharedKey {
                    account_key: Azurite::KEY.into(),
                },
            )),
        })),
        ..Default::default()
    };
    for (format, total, label) in [
        (pb::ObjectFormat::Ndjson, EVENTS, "ndjson.gz"),
        (pb::ObjectFormat::PerEvent, PER_EVENT_EVENTS, "per_event"),
    ] {
        let mut samples = Vec::new();
        for run in 0..RUNS {
            let container = format!("bench-{}-{run}", label.replace('.', "-").replace('_', "-"));
            azurite.create_container(&container).await;
            let destination = pb::Destination {
                connection_id: "bench".into(),
                target: Some(Target::AzureBlob(pb::AzureBlobTarget {
                    container: container.clone(),
                    prefix: "bench".into(),
                    format: format as i32,
                    ..Default::default()
                })),
            };
            let lanes: Vec<_> = (0..LANES)
                .map(|_| sink.build(&destination, &connection).unwrap())
                .collect();
            samples.push(push(&lanes, &events(run, total)).await);
            assert_eq!(
                azurite.event_ids(&container).await.len(),
                total,
                "every event stored"
            );
        }
        summary(&format!("sink-azure-blob → Azurite, {label}"), samples);
    }
}

#[tokio::main]
async fn main() {
    println!("| sink → stand-in, format | events/s (median) | min – max | MiB/s |");
    println!("|---|---|---|---|");
    s3_rows("moto", &S3Server::moto()).await;
    s3_rows(
        "s3s-fs",
        &S3Server::s3s_fs("AKIABENCH00000000000", "bench-secret"),
    )
    .await;
    azurite_rows(&Azurite::start()).await;
}
