//! sluice's connectors: where events come from and where they land.
//!
//! The shaping decision: a sink owns its exactly-once guarantee. It commits objects, catalog
//! changes and source positions as one unit through a [`catalog::Catalog`] and an
//! [`store::ObjectStore`], both traits, so the local embedded pair (a directory and an SQLite
//! catalog) and the cloud pair (S3 and Glue) run the same protocol, and `sluice query` reads
//! either the same way.

pub mod aws;
pub mod catalog;
pub mod failpoints;
pub mod file_source;
pub mod kafka;
pub mod lake;
pub mod query;
pub mod store;

use sluice_engine::registry::{Registry, Role, TypedPlugin};

/// Registers every source and sink type.
pub fn register(r: &mut Registry) {
    r.add(Box::new(TypedPlugin::<file_source::FileSourceConfig>::new(
        "file",
        Role::Source,
        "Reads NDJSON files (plain or .gz), globs, or - for stdin.",
    )));
    r.add(Box::new(TypedPlugin::<kafka::KafkaSourceConfig>::new(
        "kafka",
        Role::Source,
        "Consumes Kafka topics as a consumer-group member; positions are committed with the data.",
    )));
    r.add(Box::new(TypedPlugin::<lake::ParquetSinkConfig>::new(
        "lake",
        Role::Sink,
        "Windowed Parquet files in an object store, registered in a catalog, committed exactly once.",
    )));
}
