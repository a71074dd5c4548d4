//! `auditstream-gateway`: loads configuration, binds, and runs the gateway until SIGINT or
//! SIGTERM.

use std::process::ExitCode;

use auditstream_gateway::{GatewayConfig, Listeners, run};
use auditstream_telemetry::service::{Args, bind, cancel_on_signal, parse_args};
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
    let file =
        match parse_args(std::env::args().skip(1)).map_err(|e| anyhow::anyhow!("{e}\n{USAGE}"))? {
            Args::Help => {
                println!("{USAGE}");
                return Ok(());
            }
            Args::Run { config } => config,
        };
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
    let listeners = Listeners {
        http: bind(config.http_addr, "http_addr")
            .await
            .map_err(anyhow::Error::msg)?,
        grpc: bind(config.grpc_addr, "grpc_addr")
            .await
            .map_err(anyhow::Error::msg)?,
        ops: bind(config.ops_addr, "ops_addr")
            .await
            .map_err(anyhow::Error::msg)?,
    };
    let shutdown = CancellationToken::new();
    tokio::spawn(cancel_on_signal(shutdown.clone()));
    run(config, listeners, shutdown).await
}
