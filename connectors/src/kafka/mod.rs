//! Kafka: the source (a consumer-group member whose positions live in the sinks' catalogs),
//! and the producer side used by `sluice replay` and by dead letters sent to a topic.
//!
//! librdkafka (through `rdkafka`) does the protocol work. What sluice adds is ownership: the
//! Kafka group decides who reads a partition, and the catalog decides what is committed (see
//! `sluice_engine::ownership`). Offsets committed to Kafka only mirror the catalog, so that
//! lag shows in the usual tools.

pub mod produce;
mod source;

use std::collections::BTreeMap;

use rdkafka::ClientConfig;
use schemars::JsonSchema;
use serde::Deserialize;

pub use source::{KafkaSource, KafkaSourceConfig};

/// Settings sluice owns: setting them through `options` would break its guarantees.
const RESERVED: &[(&str, &str)] = &[
    ("bootstrap.servers", "use `brokers`"),
    ("group.id", "use `group`"),
    (
        "enable.auto.commit",
        "sluice commits offsets itself, after the sink has committed the data",
    ),
    (
        "enable.auto.offset.store",
        "sluice stores offsets itself, after the sink has committed the data",
    ),
    (
        "auto.offset.reset",
        "use `start`; committed positions come from the catalog",
    ),
    (
        "enable.partition.eof",
        "sluice sets it to know when it is caught up",
    ),
    ("enable.idempotence", "the producer is always idempotent"),
];

/// librdkafka settings passed through as they are: `security.protocol`, `sasl.mechanism`,
/// `sasl.username`, `sasl.password`, `ssl.ca.location`, `client.id`, `session.timeout.ms`,
/// `group.instance.id`, fetch sizes... (see librdkafka's CONFIGURATION.md).
#[derive(Debug, Default, Clone, Deserialize, JsonSchema)]
#[serde(transparent)]
pub struct ClientOptions(pub BTreeMap<String, String>);

impl ClientOptions {
    /// Problems with the options, as (option, message, hint).
    pub fn problems(&self) -> Vec<(String, String, String)> {
        let mut out = Vec::new();
        for key in self.0.keys() {
            if let Some((_, why)) = RESERVED.iter().find(|(k, _)| k == key) {
                out.push((
                    key.clone(),
                    format!("`{key}` cannot be set in `options`"),
                    why.to_string(),
                ));
            }
        }
        out
    }

    /// A client configuration with `brokers` and these options.
    pub fn client_config(&self, brokers: &str) -> ClientConfig {
        let mut c = ClientConfig::new();
        c.set("bootstrap.servers", brokers);
        for (k, v) in &self.0 {
            c.set(k, v);
        }
        c
    }
}

/// Partition key of a Kafka partition in positions and manifests: `topic/partition`.
pub fn partition_key(topic: &str, partition: i32) -> String {
    format!("{topic}/{partition}")
}

/// Parses a key made by [`partition_key`].
pub fn parse_partition_key(key: &str) -> Option<(&str, i32)> {
    let (t, p) = key.rsplit_once('/')?;
    Some((t, p.parse().ok()?))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn partition_keys_round_trip_even_with_slashes_in_topic_names() {
        let k = partition_key("a/b.events", 7);
        assert_eq!(parse_partition_key(&k), Some(("a/b.events", 7)));
        assert_eq!(parse_partition_key("nope"), None);
    }

    #[test]
    fn reserved_options_are_refused_with_a_reason() {
        let mut o = ClientOptions::default();
        o.0.insert("group.id".into(), "x".into());
        o.0.insert("sasl.mechanism".into(), "SCRAM-SHA-512".into());
        let p = o.problems();
        assert_eq!(p.len(), 1);
        assert!(p[0].2.contains("`group`"));
    }
}
