//! `auditstream-sink-azure-monitor`: sink-core's runtime around the Logs Ingestion API
//! destination, until SIGINT or SIGTERM. Configuration: the runtime's sections plus `sink.*`
//! (see the README).

use auditstream_sink_azure_monitor::{AzureMonitorSink, AzureMonitorSinkConfig};

#[tokio::main]
async fn main() -> std::process::ExitCode {
    auditstream_sink_core::sink_main(|config: &AzureMonitorSinkConfig| {
        AzureMonitorSink::new(config.clone())
    })
    .await
}
