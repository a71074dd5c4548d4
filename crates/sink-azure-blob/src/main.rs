//! `auditstream-sink-azure-blob`: sink-core's runtime around the Azure Blob destination, until
//! SIGINT or SIGTERM. Configuration: the runtime's sections plus `sink.*` (see the README).

use auditstream_sink_azure_blob::{AzureBlobSink, AzureBlobSinkConfig};

#[tokio::main]
async fn main() -> std::process::ExitCode {
    auditstream_sink_core::sink_main(|config: &AzureBlobSinkConfig| {
        AzureBlobSink::new(config.clone())
    })
    .await
}
