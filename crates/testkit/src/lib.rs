//! Test-only helpers. Every test gets real dependencies of its own: a nats-server with
//! JetStream on a free port and a temporary store (killed and removed on drop), the real
//! gateway running in-process on port 0, and read-back of what landed in a stream.
//!
//! Nothing here is mocked and nothing is skipped: when a binary is missing, the helper
//! panics with the command that installs it.

mod config_service;
mod gateway;
mod nats;
mod postgres;

pub use config_service::{
    Bearer, ConfigClient, ConfigHarness, Database, TOKENS, TestToken, test_config_service_config,
};
pub use gateway::{GatewayHarness, TEST_TOKEN, test_gateway_config};
pub use nats::{NatsServer, nats_server_bin, read_stream, small_topology};
pub use postgres::PgSchema;
