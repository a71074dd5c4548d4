//! `auditstream-sink-s3`: sink-core's runtime around the S3 destination, until SIGINT or
//! SIGTERM. Configuration: the runtime's sections plus `sink.*` (see the README).

use auditstream_sink_s3::{S3Sink, S3SinkConfig};

#[tokio::main]
async fn main() -> std::process::ExitCode {
    auditstream_sink_core::sink_main(|config: &S3SinkConfig| S3Sink::new(config.clone())).await
}
