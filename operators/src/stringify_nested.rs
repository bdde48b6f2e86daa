//! `stringify-nested`: arrays and objects become compact JSON text (SPEC §5).

use std::any::Any;

use schemars::JsonSchema;
use serde::Deserialize;

use sluice_engine::batch::{Batch, Value};
use sluice_engine::component::Operator;
use sluice_engine::registry::{BuildContext, Component};
use sluice_engine::Result;

/// Writes array and object properties as compact JSON text with their original keys in their
/// original order. Nothing is flattened.
#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct StringifyNestedConfig {}

impl Component for StringifyNestedConfig {
    fn describe(&self) -> String {
        "arrays/objects -> compact JSON text".into()
    }
    fn build_operator(&self, _cx: &BuildContext) -> Result<Box<dyn Operator>> {
        Ok(Box::new(StringifyNested))
    }
    fn as_any(&self) -> &dyn Any {
        self
    }
}

pub struct StringifyNested;

/// Compact JSON text of a raw nested value: the raw text itself when it has no whitespace
/// outside strings (the common case, no re-serialising), else re-serialised.
pub fn compact(raw: &str) -> String {
    if is_compact(raw.as_bytes()) {
        return raw.to_string();
    }
    match sonic_rs::from_str::<sonic_rs::Value>(raw) {
        Ok(v) => sonic_rs::to_string(&v).unwrap_or_else(|_| raw.to_string()),
        Err(_) => raw.to_string(),
    }
}

fn is_compact(b: &[u8]) -> bool {
    let mut in_str = false;
    let mut esc = false;
    for &c in b {
        if in_str {
            if esc {
                esc = false;
            } else if c == b'\\' {
                esc = true;
            } else if c == b'"' {
                in_str = false;
            }
        } else if c == b'"' {
            in_str = true;
        } else if c.is_ascii_whitespace() {
            return false;
        }
    }
    true
}

impl Operator for StringifyNested {
    fn process(&mut self, batch: &mut Batch) -> Result<()> {
        for e in &mut batch.events {
            for p in &mut e.props {
                // Still marked as JSON, so that `mp_properties` can embed it as a value.
                if let Value::Json(raw) = &mut p.value {
                    if !is_compact(raw.as_bytes()) {
                        *raw = compact(raw).into();
                    }
                }
            }
        }
        Ok(())
    }
    fn fork(&self) -> Option<Box<dyn Operator>> {
        Some(Box::new(StringifyNested))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn compacts_and_keeps_key_order() {
        assert_eq!(compact(r#"{"b":1,"a":[1,2]}"#), r#"{"b":1,"a":[1,2]}"#);
        assert_eq!(
            compact("{ \"b\" : 1, \"a\" : [1, 2] }"),
            r#"{"b":1,"a":[1,2]}"#
        );
        assert_eq!(compact(r#"["a b", "c"]"#), r#"["a b","c"]"#);
        assert_eq!(compact(r#"["a b"]"#), r#"["a b"]"#);
    }
}
