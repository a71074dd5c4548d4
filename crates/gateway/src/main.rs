//! `auditstream-gateway`: loads configuration, binds, and runs the gateway until SIGINT or
//! SIGTERM.

use std::process::ExitCode;

use auditstream_gateway::{GatewayConfig, Listeners, run};
use auditstream_telemetry::service::{bind, cancel_on_signal, load_config};
use tokio_util::sync::CancellationToken;

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
    let Some(config) = load_config::<GatewayConfig>(
        "auditstream-gateway",
        std::env::args().skip(1),
        std::env::vars(),
    )
    .map_err(anyhow::Error::msg)?
    else {
        return Ok(());
    };
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
