//! The core of sluice: what flows, what processes it, and how a topology runs.
//!
//! The design decision that shapes this crate: **batches flow, control rides in-band, and the
//! engine knows nothing of Kafka, AWS, Parquet or Mixpanel.** A [`batch::Batch`] carries many
//! events together with their provenance (source partition and offset) and the progress it
//! accounts for; operators ([`component::Operator`]) transform batches in place; sinks
//! ([`component::Sink`]) decide when what they hold is durably committed. Connectors and
//! operators live in their own crates and plug in through one explicit
//! [`registry::Registry`], so `cargo check` of the core stays fast and the core stays testable
//! without any service.
//!
//! Topologies are YAML files: parsed with positions ([`topology::load`]), validated purely with
//! every error at once ([`topology::validate`]), then built and run by [`runtime`].

pub mod batch;
pub mod commit;
pub mod component;
pub mod error;
pub mod events;
pub mod format;
pub mod ownership;
pub mod registry;
pub mod runtime;
pub mod stats;
pub mod topology;
pub mod units;

pub use batch::{
    Batch, DeadLetter, Events, Frag, FragValues, Name, NameRef, Position, Text, TypeClass, Value,
    ValueRef,
};
pub use error::{EngineError, Result};
