//! `auditstream-router`: loads configuration, binds the ops port, and routes until SIGINT or
//! SIGTERM.

use std::process::ExitCode;

use auditstream_router::{Listeners, RouterConfig, run};
use auditstream_telemetry::service::{bind, cancel_on_signal, load_config};
use tokio_util::sync::CancellationToken;

#[tokio::main]
async fn main() -> ExitCode {
    match main_inner().await {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("auditstream-router: {e:#}");
            ExitCode::FAILURE
        }
    }
}

async fn main_inner() -> anyhow::Result<()> {
    let Some(config) = load_config::<RouterConfig>(
        "auditstream-router",
        std::env::args().skip(1),
        std::env::vars(),
    )
    .map_err(anyhow::Error::msg)?
    else {
        return Ok(());
    };
    let listeners = Listeners {
        ops: bind(config.ops_addr, "ops_addr")
            .await
            .map_err(anyhow::Error::msg)?,
    };
    let shutdown = CancellationToken::new();
    tokio::spawn(cancel_on_signal(shutdown.clone()));
    run(config, listeners, shutdown).await
}
