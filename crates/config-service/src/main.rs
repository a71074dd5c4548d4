//! `auditstream-config-service`: loads configuration, binds, and serves until SIGINT or
//! SIGTERM.

use std::process::ExitCode;

use auditstream_config_service::{ConfigServiceConfig, Listeners, run};
use auditstream_telemetry::service::{Args, bind, cancel_on_signal, parse_args};
use tokio_util::sync::CancellationToken;

const USAGE: &str = "usage: auditstream-config-service [--config FILE]\n\
    Configuration: defaults < FILE (TOML) < AUDITSTREAM_* environment variables (see README).";

#[tokio::main]
async fn main() -> ExitCode {
    match main_inner().await {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("auditstream-config-service: {e:#}");
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
    let loaded =
        auditstream_telemetry::load::<ConfigServiceConfig>(file.as_deref(), std::env::vars())?;
    let config = loaded.config;
    auditstream_telemetry::logging::init(config.log.format, &config.log.filter);
    for var in loaded.ignored_env {
        tracing::warn!(
            var,
            "environment variable names no config-service setting; ignored"
        );
    }
    let listeners = Listeners {
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
