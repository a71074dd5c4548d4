//! Structured logs: JSON lines by default (what log collectors in Kubernetes expect), plain
//! text for people at a terminal.

use serde::{Deserialize, Serialize};
use tracing_subscriber::EnvFilter;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum LogFormat {
    #[default]
    Json,
    Text,
}

/// The `log` section of every service's configuration.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct LogConfig {
    pub format: LogFormat,
    /// `RUST_LOG` syntax.
    pub filter: String,
}

impl Default for LogConfig {
    fn default() -> Self {
        LogConfig {
            format: LogFormat::Json,
            filter: "info,async_nats=warn,sqlx=warn".into(),
        }
    }
}

/// Installs the global subscriber. `filter` uses `RUST_LOG` syntax (`info,async_nats=warn`).
/// A second call is a no-op, so tests may call it freely.
pub fn init(format: LogFormat, filter: &str) {
    let _ = init_with_traces(format, filter, "", None);
}

/// [`init`], and with `otlp_endpoint` also OpenTelemetry traces of `service`
/// ([`crate::traces`]). An error means the trace exporter could not be set up.
pub fn init_with_traces(
    format: LogFormat,
    filter: &str,
    service: &str,
    otlp_endpoint: Option<&str>,
) -> Result<(), String> {
    use tracing_subscriber::{Layer as _, layer::SubscriberExt as _, util::SubscriberInitExt as _};
    let filter = EnvFilter::try_new(filter).unwrap_or_else(|_| EnvFilter::new("info"));
    let subscriber = tracing_subscriber::registry().with(filter);
    let fmt = tracing_subscriber::fmt::layer().with_writer(std::io::stderr);
    let fmt = match format {
        LogFormat::Json => fmt.json().flatten_event(true).boxed(),
        LogFormat::Text => fmt.boxed(),
    };
    let otel = match otlp_endpoint.filter(|e| !e.trim().is_empty()) {
        Some(endpoint) => Some(crate::traces::layer(service, endpoint.trim())?),
        None => None,
    };
    let _ = subscriber.with(fmt).with(otel).try_init();
    Ok(())
}
