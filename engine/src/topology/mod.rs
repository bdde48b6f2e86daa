//! Topologies: YAML files describing named sources, operators and sinks joined by `inputs`.
//!
//! Parse (with positions), then validate purely (every problem at once, each with
//! `file:line:column`), then build. Nothing here touches the network or a data file.

mod graph;
mod load;
mod schema;

pub use graph::render as render_graph;
pub use load::{load_file, load_str, LoadOptions};
pub use schema::json_schema;

use schemars::JsonSchema;
use serde::Deserialize;

use crate::error::Location;
use crate::registry::{Component, Role};

/// One named component of a topology.
pub struct NodeSpec {
    pub name: String,
    pub role: Role,
    pub type_name: String,
    pub inputs: Vec<String>,
    pub component: Box<dyn Component>,
    pub location: Location,
}

/// Settings of the runtime itself.
#[derive(Clone, Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct RuntimeConfig {
    /// Worker threads for parallel operator chains; 0 (the default) means one per core but
    /// one, left to the sink's thread, and at least one. With 1, a source's whole chain runs
    /// on its sink's thread (when the sink has no other input): the least CPU per event, at the
    /// cost of pipelining across cores (W1 on two cores: 0.90 of the CPU time of two workers,
    /// 1.23 times their wall time). So on two cores the default is one.
    #[serde(default)]
    pub workers: usize,
    /// Lines per batch read from a source. The default, 1,024, keeps a batch and the events
    /// decoded from it (about 1.5 MB) near the cores' caches, and the batches in flight
    /// between stages small beside the memory budget: on W1, 4,096 cost 4% more CPU and 40%
    /// more peak memory.
    #[serde(default = "default_batch_size")]
    pub batch_size: usize,
    /// Batches in flight on each channel; with the batch size, bounds memory.
    #[serde(default = "default_channel_capacity")]
    pub channel_capacity: usize,
    /// The process's memory budget (resident set). Above 3/4 of it, sinks commit what they
    /// hold early, so that many open windows flush instead of growing until the OS kills the
    /// process.
    #[serde(default = "default_memory_budget")]
    pub memory_budget: String,
}

fn default_memory_budget() -> String {
    "1GiB".into()
}

fn default_batch_size() -> usize {
    1024
}
fn default_channel_capacity() -> usize {
    4
}

impl Default for RuntimeConfig {
    fn default() -> Self {
        RuntimeConfig {
            workers: 0,
            batch_size: default_batch_size(),
            channel_capacity: default_channel_capacity(),
            memory_budget: default_memory_budget(),
        }
    }
}

/// A validated topology.
pub struct Topology {
    pub file: String,
    pub name: Option<String>,
    pub nodes: Vec<NodeSpec>,
    pub runtime: RuntimeConfig,
    /// Values that came from the environment: never printed.
    pub secrets: Vec<String>,
}

impl Topology {
    pub fn node(&self, name: &str) -> Option<&NodeSpec> {
        self.nodes.iter().find(|n| n.name == name)
    }
    /// Names of the components that take `name` as an input.
    pub fn consumers(&self, name: &str) -> Vec<&NodeSpec> {
        self.nodes
            .iter()
            .filter(|n| n.inputs.iter().any(|i| i == name))
            .collect()
    }
    /// Sinks reachable downstream of `name`.
    pub fn downstream_sinks(&self, name: &str) -> Vec<&NodeSpec> {
        let mut seen = vec![name.to_string()];
        let mut stack = vec![name.to_string()];
        let mut sinks = Vec::new();
        while let Some(n) = stack.pop() {
            for c in self.consumers(&n) {
                if seen.contains(&c.name) {
                    continue;
                }
                seen.push(c.name.clone());
                if c.role == Role::Sink {
                    sinks.push(c);
                } else {
                    stack.push(c.name.clone());
                }
            }
        }
        sinks
    }
    /// Sources upstream of `name` (itself if it is one).
    pub fn upstream_sources(&self, name: &str) -> Vec<&NodeSpec> {
        let mut out = Vec::new();
        let mut seen = Vec::new();
        let mut stack = vec![name.to_string()];
        while let Some(n) = stack.pop() {
            if seen.contains(&n) {
                continue;
            }
            seen.push(n.clone());
            if let Some(node) = self.node(&n) {
                if node.role == Role::Source {
                    out.push(node);
                }
                stack.extend(node.inputs.iter().cloned());
            }
        }
        out
    }
    /// Replaces every secret in `text` with `***`.
    pub fn redact(&self, text: &str) -> String {
        redact(text, &self.secrets)
    }
}

pub(crate) fn redact(text: &str, secrets: &[String]) -> String {
    let mut out = text.to_string();
    for s in secrets {
        if s.len() >= 3 {
            out = out.replace(s.as_str(), "***");
        }
    }
    out
}
