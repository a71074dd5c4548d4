//! `auditstream-loadgen`: see the crate docs and `--help`.

use std::{net::SocketAddr, time::Duration};

use auditstream_loadgen::{
    mix::Shape,
    receive::Receiver,
    send::{self, SendPlan, Transport},
    setup::setup,
};
use clap::Parser;

#[derive(Parser, Debug)]
#[command(
    name = "auditstream-loadgen",
    about = "Sends realistic audit events to an Auditstream gateway and verifies their delivery"
)]
struct Args {
    /// The gateway: its HTTP URL (`http://127.0.0.1:8080`), or its gRPC URL with `--grpc`.
    #[arg(long, default_value = "http://127.0.0.1:8080")]
    gateway: String,
    /// A producer token of the gateway.
    #[arg(long, env = "AUDITSTREAM_LOADGEN_TOKEN")]
    token: String,
    /// Send over gRPC (`IngestService.Ingest`) instead of HTTP.
    #[arg(long)]
    grpc: bool,
    /// Events per second over all workers; omit to send as fast as the gateway answers.
    #[arg(long)]
    rate: Option<f64>,
    /// How long to send.
    #[arg(long, default_value = "10s", value_parser = humantime_duration)]
    duration: Duration,
    /// Stop after this many events.
    #[arg(long)]
    events: Option<u64>,
    /// Events per request.
    #[arg(long, default_value_t = 100)]
    batch: usize,
    /// Requests in flight at once.
    #[arg(long, default_value_t = 8)]
    concurrency: usize,
    #[arg(long, default_value_t = 10)]
    orgs: usize,
    #[arg(long, default_value_t = 10)]
    workspaces: usize,
    #[arg(long, default_value_t = 200)]
    min_size: usize,
    #[arg(long, default_value_t = 16 * 1024)]
    max_size: usize,
    /// Send an id with every event (stored one by one, de-duplicated by id) instead of
    /// letting the gateway assign ids (packed per organization).
    #[arg(long)]
    producer_ids: bool,
    #[arg(long, default_value_t = 1)]
    seed: u64,
    /// Prefix of the event ids (one per run, so runs do not collide in the dedup window).
    #[arg(long, default_value = "lg")]
    run: String,
    /// Run the receiving destination on this address and verify delivery.
    #[arg(long)]
    receiver: Option<SocketAddr>,
    /// How long to wait for the last deliveries.
    #[arg(long, default_value = "60s", value_parser = humantime_duration)]
    wait: Duration,
    /// Create the organizations, workspaces and streams first (config-service gRPC URL).
    #[arg(long, requires = "admin_token")]
    setup: Option<String>,
    /// A platform_admin token for --setup: it creates nodes (only platform principals shape
    /// the tenant directory) and streams (which directory_sync may not).
    #[arg(long, env = "AUDITSTREAM_TOKEN")]
    admin_token: Option<String>,
}

fn humantime_duration(s: &str) -> Result<Duration, String> {
    let (n, unit) = s.split_at(s.find(|c: char| !c.is_ascii_digit()).unwrap_or(s.len()));
    let n: u64 = n.parse().map_err(|_| format!("not a duration: {s}"))?;
    match unit {
        "ms" => Ok(Duration::from_millis(n)),
        "s" | "" => Ok(Duration::from_secs(n)),
        "m" => Ok(Duration::from_secs(n * 60)),
        _ => Err(format!("not a duration: {s} (use ms, s or m)")),
    }
}

#[tokio::main]
async fn main() -> std::process::ExitCode {
    let args = Args::parse();
    match run(args).await {
        Ok(true) => std::process::ExitCode::SUCCESS,
        Ok(false) => std::process::ExitCode::FAILURE,
        Err(e) => {
            eprintln!("auditstream-loadgen: {e:#}");
            std::process::ExitCode::from(2)
        }
    }
}

async fn run(args: Args) -> anyhow::Result<bool> {
    let shape = Shape {
        orgs: args.orgs,
        workspaces_per_org: args.workspaces,
        min_size: args.min_size,
        max_size: args.max_size,
        producer_ids: args.producer_ids,
        run: args.run.clone(),
        ..Shape::default()
    };
    let receiver = match args.receiver {
        Some(addr) => Some(Receiver::start(addr).await?),
        None => None,
    };
    if let (Some(config), Some(token)) = (&args.setup, &args.admin_token) {
        let addr = receiver.as_ref().map(|r| r.addr()).ok_or_else(|| {
            anyhow::anyhow!("--setup needs --receiver (the streams' destination)")
        })?;
        setup(config, token, &shape, &format!("http://{addr}")).await?;
    }
    let mut report = send::run(SendPlan {
        transport: if args.grpc {
            Transport::Grpc
        } else {
            Transport::Http
        },
        target: args.gateway.clone(),
        token: args.token.clone(),
        batch: args.batch,
        concurrency: args.concurrency,
        rate: args.rate,
        duration: args.duration,
        max_events: args.events,
        shape,
        seed: args.seed,
    })
    .await?;
    let secs = report.elapsed.as_secs_f64().max(1e-9);
    let mut out = serde_json::json!({
        "transport": if args.grpc { "grpc" } else { "http" },
        "accepted_events": report.accepted.len(),
        "requests": report.requests,
        "failed_requests": report.failed_requests,
        "elapsed_s": secs,
        "events_per_s": report.accepted.len() as f64 / secs,
        "mib_per_s": report.bytes as f64 / secs / (1024.0 * 1024.0),
        "ack_p50_ms": report.ack.percentile_ms(50.0),
        "ack_p99_ms": report.ack.percentile_ms(99.0),
    });
    let mut ok = report.failed_requests == 0 || receiver.is_none();
    if let Some(receiver) = receiver {
        let tally = receiver.wait_for(&report.accepted, args.wait).await;
        let mut latency = receiver.take_latency();
        out["delivered"] = tally.delivered.into();
        out["missing"] = tally.missing.into();
        out["duplicates"] = tally.duplicates.into();
        out["e2e_p50_ms"] = latency.percentile_ms(50.0).into();
        out["e2e_p99_ms"] = latency.percentile_ms(99.0).into();
        ok = tally.missing == 0;
    }
    println!("{}", serde_json::to_string_pretty(&out)?);
    Ok(ok)
}
