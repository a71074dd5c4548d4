//! `auditstream-gateway`: loads configuration, binds, and runs the gateway until SIGINT or
//! SIGTERM.

use auditstream_gateway::{GatewayConfig, Listeners, run};
use auditstream_telemetry::service::{bind, service_main};

#[tokio::main]
async fn main() -> std::process::ExitCode {
    service_main(
        "auditstream-gateway",
        |config: GatewayConfig, shutdown| async move {
            config.validate()?;
            let listeners = Listeners {
                http: bind(config.http_addr, "http_addr").await?,
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
