//! `auditstream-gateway`: loads configuration, binds, and runs the gateway until SIGINT or
//! SIGTERM.

use std::{path::PathBuf, process::ExitCode};

use anyhow::Context as _;
use auditstream_gateway::{GatewayConfig, Listeners, run};
use tokio_util::sync::CancellationToken;

const USAGE: &str = "usage: auditstream-gateway [--config FILE]\n\
    Configuration: defaults < FILE (TOML) < AUDITSTREAM_* environment variables (see README).";

#[tokio::main]
async fn main() -> ExitCode {
    match main_inner().await {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("auditstream-gateway: {e:#}");
            ExitCode::FAILURE
        }
    }
}

async fn main_inner() -> anyhow::Result<()> {
    let mut file: Option<PathBuf> = None;
    let mut args = std::env::args().skip(1);
    while let Some(arg) = args.next() {
        match arg.as_str() {
            "--config" | "-c" => file = Some(args.next().context("--config needs a file")?.into()),
            "--help" | "-h" => {
                println!("{USAGE}");
                return Ok(());
            }
            other => anyhow::bail!("unknown argument {other:?}\n{USAGE}"),
        }
    }
    let loaded = auditstream_telemetry::load::<GatewayConfig>(file.as_deref(), std::env::vars())?;
    let config = loaded.config;
    auditstream_telemetry::logging::init(config.log.format, &config.log.filter);
    for var in loaded.ignored_env {
        tracing::warn!(
            var,
            "environment variable names no gateway setting; ignored"
        );
    }
    config.validate().map_err(anyhow::Error::msg)?;
    let bind = |addr, name: &'static str| async move {
        tokio::net::TcpListener::bind(addr)
            .await
            .with_context(|| format!("cannot listen on {name} {addr} (is the port in use?)"))
    };
    let listeners = Listeners {
        http: bind(config.http_addr, "http_addr").await?,
        grpc: bind(config.grpc_addr, "grpc_addr").await?,
        ops: bind(config.ops_addr, "ops_addr").await?,
    };
    let shutdown = CancellationToken::new();
    tokio::spawn(cancel_on_signal(shutdown.clone()));
    run(config, listeners, shutdown).await
}

async fn cancel_on_signal(shutdown: CancellationToken) {
    let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())
        .expect("can install a SIGTERM handler");
    tokio::select! {
        _ = tokio::signal::ctrl_c() => {}
        _ = term.recv() => {}
    }
    tracing::info!("shutdown requested");
    shutdown.cancel();
}
