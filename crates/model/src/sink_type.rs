//! Destination types. Each has its own sink worker and its own subject token
//! (`audit.deliver.<sink_type>.<stream_id>`), so SREs scale them independently.

use std::{fmt, str::FromStr};

use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum SinkType {
    S3,
    AzureBlob,
    AzureMonitor,
    Http,
}

impl SinkType {
    pub const ALL: [SinkType; 4] = [
        SinkType::S3,
        SinkType::AzureBlob,
        SinkType::AzureMonitor,
        SinkType::Http,
    ];

    /// The subject token and configuration name.
    pub const fn as_str(self) -> &'static str {
        match self {
            SinkType::S3 => "s3",
            SinkType::AzureBlob => "azure_blob",
            SinkType::AzureMonitor => "azure_monitor",
            SinkType::Http => "http",
        }
    }
}

impl fmt::Display for SinkType {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for SinkType {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        SinkType::ALL
            .into_iter()
            .find(|t| t.as_str() == s)
            .ok_or_else(|| {
                format!(
                    "unknown destination type {s:?}; expected s3, azure_blob, azure_monitor or http"
                )
            })
    }
}
