//! Input limits. Every one is configuration; the defaults are safe for a shared gateway.

use serde::{Deserialize, Serialize};

/// Limits applied to every event and request at the edge.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Limits {
    /// Largest single event (its JSON envelope), in bytes. Must stay below the NATS server's
    /// `max_payload` minus room for headers; the gateway checks this at start.
    pub max_event_bytes: usize,
    /// Largest request body after decompression, in bytes (a gzip bomb stops here).
    pub max_request_bytes: usize,
    /// Most events in one request.
    pub max_events_per_request: usize,
    /// Deepest nesting of objects and arrays inside one envelope (the envelope is level 1).
    pub max_depth: usize,
}

/// serde_json refuses input nested deeper than this, so a larger `max_depth` could never be
/// reached; configuration above it is an error.
pub const MAX_CONFIGURABLE_DEPTH: usize = 120;

impl Default for Limits {
    fn default() -> Self {
        Limits {
            max_event_bytes: 1024 * 1024,
            max_request_bytes: 10 * 1024 * 1024,
            max_events_per_request: 10_000,
            max_depth: 32,
        }
    }
}

impl Limits {
    /// Checks that the limits are usable together.
    pub fn validate(&self) -> Result<(), String> {
        if self.max_depth == 0 || self.max_depth > MAX_CONFIGURABLE_DEPTH {
            return Err(format!(
                "limits.max_depth must be between 1 and {MAX_CONFIGURABLE_DEPTH}, got {}",
                self.max_depth
            ));
        }
        if self.max_event_bytes == 0
            || self.max_request_bytes == 0
            || self.max_events_per_request == 0
        {
            return Err("limits must be greater than zero".into());
        }
        if self.max_event_bytes > self.max_request_bytes {
            return Err(format!(
                "limits.max_event_bytes ({}) must not exceed limits.max_request_bytes ({})",
                self.max_event_bytes, self.max_request_bytes
            ));
        }
        Ok(())
    }
}
