//! The event model shared by every Auditstream service.
//!
//! Owns what an audit event *is* and when it is valid: the six event types, the ingest
//! envelope, the activity catalog (data embedded from `data/activity-catalog.json`), the
//! ID rule for everything that becomes a NATS subject token, and the size and nesting
//! limits. It does no I/O: the gateway and config-service call it, and so will the router.

pub mod binding;
pub mod body;
pub mod catalog;
pub mod destination;
pub mod envelope;
pub mod event_type;
pub mod http_settings;
pub mod ids;
pub mod limits;
pub mod log;
pub mod routing;
pub mod sink_type;
pub mod template;

pub use catalog::ActivityCatalog;
pub use envelope::{ItemError, ItemErrorCode, ValidatedEvent, validate_envelope, validate_parts};
pub use event_type::EventType;
pub use ids::{IdError, new_event_id, new_stream_uid, validate_id};
pub use limits::Limits;
pub use log::LogLevel;
pub use sink_type::SinkType;
