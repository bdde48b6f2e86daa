//! `sluice graph`: the dataflow as text.

use std::fmt::Write;

use super::Topology;
use crate::registry::Role;

/// Renders the topology as an indented tree from each source, one component per line.
pub fn render(t: &Topology) -> String {
    let mut out = String::new();
    for source in t.nodes.iter().filter(|n| n.role == Role::Source) {
        walk(t, &source.name, 0, &mut Vec::new(), &mut out);
    }
    out
}

fn walk(t: &Topology, name: &str, depth: usize, path: &mut Vec<String>, out: &mut String) {
    let Some(node) = t.node(name) else { return };
    let role = match node.role {
        Role::Source => "source",
        Role::Operator => "operator",
        Role::Sink => "sink",
    };
    let indent = if depth == 0 {
        String::new()
    } else {
        format!("{}└─ ", "   ".repeat(depth - 1))
    };
    let desc = node.component.describe();
    let _ = writeln!(
        out,
        "{indent}{name}  [{role}: {}]{}{}",
        node.type_name,
        if desc.is_empty() { "" } else { "  " },
        t.redact(&desc)
    );
    if path.iter().any(|p| p == name) {
        return;
    }
    path.push(name.to_string());
    for c in t.consumers(name) {
        walk(t, &c.name, depth + 1, path, out);
    }
    path.pop();
}
