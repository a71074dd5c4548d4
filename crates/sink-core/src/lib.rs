//! Delivery mechanics shared by every sink, written once (DESIGN §6).
//!
//! So far: the `Destination` trait and delivering one batch through it, splitting by caps
//! and narrowing refusals to single events ([`deliver`]); how a destination's answer is
//! classified ([`classify`]); when to try again ([`retry`]); a destination's health
//! (healthy → retrying → broken → recovering → healthy, [`health`]); and per-stream batching
//! with global memory bounds ([`batch`]). A sink crate only implements `Destination`; the
//! consumer, backlog and DLQ wiring that drives these pieces is the next step (issue 5) and
//! lives here too, never in a sink.

pub mod batch;
pub mod classify;
pub mod deliver;
pub mod event;
pub mod health;
pub mod retry;
pub mod sink;
