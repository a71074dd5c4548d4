//! `auditstream-config-service`: loads configuration, binds, and serves until SIGINT or
//! SIGTERM.

use auditstream_config_service::{ConfigServiceConfig, Listeners, run};
use auditstream_telemetry::service::{bind, service_main};

#[tokio::main]
async fn main() -> std::process::ExitCode {
    service_main(
        "auditstream-config-service",
        |config: ConfigServiceConfig, shutdown| async move {
            let listeners = Listeners {
                grpc: bind(config.grpc_addr, "grpc_addr").await?,
                ops: bind(config.ops_addr, "ops_addr").await?,
            };
            run(config, listeners, shutdown)
                .await
                .map_err(|e| format!("{e:#}"))
        },
    )
    .await
}
