//! `auditstream-sink-http`: sink-core's runtime around the HTTP destination, until SIGINT or
//! SIGTERM. Configuration: the runtime's sections plus `sink.*` (see the README).

use auditstream_sink_http::{HttpSink, HttpSinkConfig};

#[tokio::main]
async fn main() -> std::process::ExitCode {
    auditstream_sink_core::sink_main(|config: &HttpSinkConfig| HttpSink::new(config.clone())).await
}
