//! `auditstream-router`: loads configuration, binds the ops port, and routes until SIGINT or
//! SIGTERM.

use auditstream_router::{Listeners, RouterConfig, run};
use auditstream_telemetry::service::{bind, service_main};

#[tokio::main]
async fn main() -> std::process::ExitCode {
    service_main(
        "auditstream-router",
        |config: RouterConfig, shutdown| async move {
            let listeners = Listeners {
                ops: bind(config.ops_addr, "ops_addr").await?,
            };
            run(config, listeners, shutdown)
                .await
                .map_err(|e| format!("{e:#}"))
        },
    )
    .await
}
