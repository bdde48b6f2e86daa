//! `stringify-nested`: arrays and objects become compact JSON text (SPEC §5).

use std::any::Any;

use schemars::JsonSchema;
use serde::Deserialize;

use sluice_engine::batch::{Batch, FragValues, Texts};
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
        for f in &mut batch.events.props {
            // Still marked as nested, so that `mp_properties` can embed it as a value.
            let FragValues::Text(texts) = &mut f.values else {
                continue;
            };
            if f.nested.is_empty() || f.nested_compact {
                continue;
            }
            if f.nested
                .iter()
                .all(|&i| is_compact(texts.get(i as usize).as_bytes()))
            {
                continue;
            }
            let mut out = Texts::default();
            let mut nested = f.nested.iter().peekable();
            for (i, s) in texts.iter().enumerate() {
                if nested.next_if_eq(&&(i as u32)).is_some() && !is_compact(s.as_bytes()) {
                    out.push(&compact(s));
                } else {
                    out.push(s);
                }
            }
            *texts = out;
            f.nested_compact = true;
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

    #[test]
    fn nested_values_with_spaces_become_compact_and_the_rest_stay() {
        use sluice_engine::batch::{NameRef, Position, TypeClass};
        let mut b = Batch::default();
        let ev = &mut b.events;
        let f = ev.add_frag_raw(NameRef::intern("x"), TypeClass::String);
        for (i, (text, nested)) in [("{ \"a\" : [1, 2] }", true), ("a b", false), ("[ ]", true)]
            .into_iter()
            .enumerate()
        {
            ev.push_text(f, text, nested);
            let pos = Position {
                partition: 0,
                offset: i as u64,
            };
            ev.finish_row(NameRef::intern("e"), 0, pos, None);
        }
        StringifyNested.process(&mut b).unwrap();
        let got: Vec<String> = (0..3)
            .map(|r| format!("{:?}", b.events.get(r).props().next().unwrap().2))
            .collect();
        assert_eq!(
            got,
            [r#"Json("{\"a\":[1,2]}")"#, r#"Str("a b")"#, r#"Json("[]")"#]
        );
        assert!(b.events.props[0].nested_compact);
    }
}
