//! The six kinds of audit event the platform emits.

use std::{fmt, str::FromStr};

use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum EventType {
    JobStatus,
    /// Carries step/line data that a stream may choose to leave out.
    JobDetails,
    /// Names a `category` and `action` from the activity catalog.
    UserActivity,
    ApiPlatform,
    /// Carries `log_type` and `level`, which streams may select on.
    LogEvent,
    GenieConversation,
}

impl EventType {
    pub const ALL: [EventType; 6] = [
        EventType::JobStatus,
        EventType::JobDetails,
        EventType::UserActivity,
        EventType::ApiPlatform,
        EventType::LogEvent,
        EventType::GenieConversation,
    ];

    /// The wire name, also the last token of the ingest subject.
    pub const fn as_str(self) -> &'static str {
        match self {
            EventType::JobStatus => "job_status",
            EventType::JobDetails => "job_details",
            EventType::UserActivity => "user_activity",
            EventType::ApiPlatform => "api_platform",
            EventType::LogEvent => "log_event",
            EventType::GenieConversation => "genie_conversation",
        }
    }
}

impl fmt::Display for EventType {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error(
    "unknown event type {0:?}; expected one of job_status, job_details, user_activity, api_platform, log_event, genie_conversation"
)]
pub struct UnknownEventType(pub String);

impl FromStr for EventType {
    type Err = UnknownEventType;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        EventType::ALL
            .into_iter()
            .find(|t| t.as_str() == s)
            .ok_or_else(|| UnknownEventType(s.to_owned()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_round_trip_through_str_and_serde() {
        for t in EventType::ALL {
            assert_eq!(t.as_str().parse::<EventType>(), Ok(t));
            let json = serde_json::to_string(&t).unwrap();
            assert_eq!(json, format!("\"{}\"", t.as_str()));
        }
        assert!("JobStatus".parse::<EventType>().is_err());
    }
}
