//! `log_event` severity levels.
//!
//! Ordered from least to most severe so a stream can later select "warn and above".
//! `warning` and `critical` are accepted as spellings of `warn` and `fatal` because
//! logging libraries disagree on them; the event body keeps what the producer sent.

use std::str::FromStr;

use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum LogLevel {
    Trace,
    Debug,
    Info,
    Warn,
    Error,
    Fatal,
}

impl LogLevel {
    pub const NAMES: &'static str =
        "trace, debug, info, warn (or warning), error, fatal (or critical)";
}

impl FromStr for LogLevel {
    type Err = ();

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Ok(match s {
            "trace" => LogLevel::Trace,
            "debug" => LogLevel::Debug,
            "info" => LogLevel::Info,
            "warn" | "warning" => LogLevel::Warn,
            "error" => LogLevel::Error,
            "fatal" | "critical" => LogLevel::Fatal,
            _ => return Err(()),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn levels_parse_with_aliases_and_order_by_severity() {
        assert_eq!("warning".parse(), Ok(LogLevel::Warn));
        assert_eq!("critical".parse(), Ok(LogLevel::Fatal));
        assert!("ERROR".parse::<LogLevel>().is_err());
        assert!(LogLevel::Debug < LogLevel::Error);
    }
}
