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
use auditstream_sink_azure_blob::{AzureBlobDestination, AzureBlobSink, AzureBlobSinkConfig};
use auditstream_sink_core::{Answer, Destination, Event, RequestCaps, Sink, classify::Class};
use auditstream_sink_s3::{S3Destination, S3Sink, S3SinkConfig};
use auditstream_testkit::{Azurite, S3Server};

const RUNS: usize = 3;
const LANES: usize = 4;
const BATCH: usize = 500;
const EVENTS: usize = 20_000;
const PER_EVENT_EVENTS: usize = 500;

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

/// One report row: printed, and kept for `target/bench/report.{md,json}`.
fn summary(name: &str, mut samples: Vec<(f64, f64)>) -> (String, serde_json::Value) {
    samples.sort_by(|a, b| a.0.total_cmp(&b.0));
    let (min, med, max) = (
        samples[0],
        samples[samples.len() / 2],
        samples[samples.len() - 1],
    );
    let row = format!(
        "| {name} | {:.0} | {:.0} – {:.0} | {:.1} |",
        med.0, min.0, max.0, med.1
    );
    println!("{row}");
    let json = serde_json::json!({
        "name": name,
        "events_per_s": {"median": med.0, "min": min.0, "max": max.0},
        "mib_per_s": med.1,
    });
    (row, json)
}

fn s3_connection(server: &S3Server) -> pb::Connection {
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

/// A stand-in under test: where targets are made and what they hold.
enum Store<'a> {
    S3(&'a S3Server),
    Blob(&'a Azurite),
}

impl Store<'_> {
    async fn create(&self, name: &str) {
        match self {
            Store::S3(s) => s.create_bucket(name).await,
            Store::Blob(a) => a.create_container(name).await,
        }
    }

    async fn stored(&self, name: &str) -> usize {
        match self {
            Store::S3(s) => s.event_ids(name).await.len(),
            Store::Blob(a) => a.event_ids(name).await.len(),
        }
    }

    /// `LANES` destinations writing to `name` in `format`.
    fn lanes(&self, name: &str, format: pb::ObjectFormat) -> Vec<Lane> {
        let format = format as i32;
        let (prefix, id) = ("bench".to_owned(), "bench".to_owned());
        (0..LANES)
            .map(|_| match self {
                Store::S3(server) => {
                    let target = Target::S3(pb::S3Target {
                        bucket: name.into(),
                        prefix: prefix.clone(),
                        format,
                        ..Default::default()
                    });
                    let sink = S3Sink::new(S3SinkConfig {
                        allow_insecure_http: true,
                        ..Default::default()
                    })
                    .unwrap();
                    Lane::S3(Box::new(
                        sink.build(&destination(&id, target), &s3_connection(server))
                            .unwrap(),
                    ))
                }
                Store::Blob(azurite) => {
                    let target = Target::AzureBlob(pb::AzureBlobTarget {
                        container: name.into(),
                        prefix: prefix.clone(),
                        format,
                        ..Default::default()
                    });
                    let sink = AzureBlobSink::new(AzureBlobSinkConfig {
                        allow_insecure_http: true,
                        ..Default::default()
                    })
                    .unwrap();
                    Lane::Blob(
                        sink.build(&destination(&id, target), &blob_connection(azurite))
                            .unwrap(),
                    )
                }
            })
            .collect()
    }
}

fn destination(connection_id: &str, target: Target) -> pb::Destination {
    pb::Destination {
        connection_id: connection_id.into(),
        target: Some(target),
    }
}

fn blob_connection(azurite: &Azurite) -> pb::Connection {
    pb::Connection {
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
    }
}

enum Lane {
    S3(Box<S3Destination>),
    Blob(AzureBlobDestination),
}

impl Destination<Event> for Lane {
    fn caps(&self) -> RequestCaps {
        match self {
            Lane::S3(d) => d.caps(),
            Lane::Blob(d) => d.caps(),
        }
    }

    async fn send(&self, items: &[Event]) -> Answer {
        match self {
            Lane::S3(d) => d.send(items).await,
            Lane::Blob(d) => d.send(items).await,
        }
    }

    async fn probe(&self) -> Answer {
        match self {
            Lane::S3(d) => d.probe().await,
            Lane::Blob(d) => d.probe().await,
        }
    }
}

/// The `ndjson.gz` and `per_event` rows of one sink → stand-in pair.
async fn rows(name: &str, store: Store<'_>, out: &mut Vec<(String, serde_json::Value)>) {
    for (format, total, label) in [
        (pb::ObjectFormat::Ndjson, EVENTS, "ndjson.gz"),
        (pb::ObjectFormat::PerEvent, PER_EVENT_EVENTS, "per_event"),
    ] {
        let mut samples = Vec::new();
        for run in 0..RUNS {
            let target = format!("bench-{}-{run}", label.replace(['.', '_'], "-"));
            store.create(&target).await;
            samples.push(push(&store.lanes(&target, format), &events(run, total)).await);
            assert_eq!(store.stored(&target).await, total, "every event stored");
        }
        out.push(summary(&format!("{name}, {label}"), samples));
    }
}

#[tokio::main]
async fn main() {
    println!("| sink → stand-in, format | events/s (median) | min – max | MiB/s |");
    println!("|---|---|---|---|");
    let mut out = Vec::new();
    let moto = S3Server::moto();
    rows("sink-s3 → moto", Store::S3(&moto), &mut out).await;
    let s3s = S3Server::s3s_fs("AKIABENCH00000000000", "bench-secret");
    rows("sink-s3 → s3s-fs", Store::S3(&s3s), &mut out).await;
    let azurite = Azurite::start();
    rows("sink-azure-blob → Azurite", Store::Blob(&azurite), &mut out).await;
    add_to_report(&out);
}

/// Appends the rows to the report `make bench` wrote just before (the e2e bench), so one
/// file holds every figure.
fn add_to_report(rows: &[(String, serde_json::Value)]) {
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../target/bench");
    std::fs::create_dir_all(&dir).unwrap();
    let md = dir.join("report.md");
    let mut text = std::fs::read_to_string(&md).unwrap_or_default();
    text += "\n## Object-store sinks into their local stand-ins\n\n\
             sink-core and the sink alone (no gateway or router), 1 KiB events, median of 3 runs. \
             The stand-ins are the bound, not the sinks: s3s-fs (Rust, a file per object) takes \
             the same sink-s3 several times faster than moto (Python), and `per_event` writes one \
             object per event.\n\n\
             | sink → stand-in, format | events/s (median) | min – max | MiB/s |\n|---|---|---|---|\n";
    for (row, _) in rows {
        text += row;
        text += "\n";
    }
    std::fs::write(&md, text).unwrap();
    let json = dir.join("report.json");
    let mut report: serde_json::Value = std::fs::read_to_string(&json)
        .ok()
        .and_then(|t| serde_json::from_str(&t).ok())
        .unwrap_or_else(|| serde_json::json!({}));
    report["object_stores"] = rows.iter().map(|(_, j)| j.clone()).collect();
    std::fs::write(&json, serde_json::to_string_pretty(&report).unwrap()).unwrap();
}
