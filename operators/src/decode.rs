//! The `mixpanel` decoder: raw lines to events, invalid lines to dead letters (SPEC §2.1).
//!
//! Each line is parsed in one SIMD pass into a sonic-rs DOM (measured faster here than a lazy
//! scan, which skips `properties` once and then walks it again: `cargo bench -p
//! sluice-operators --bench chain`); nested values are written back as compact JSON text, and
//! property names are interned so that everything done per name downstream is done once per
//! distinct name.

use std::collections::HashMap;

use sonic_rs::{JsonContainerTrait, JsonNumberTrait, JsonType, JsonValueTrait, ValueRef};

use sluice_engine::batch::{
    Batch, DeadLetter, Event, NameRef, Position, Prop, Text, Value, NO_COLUMN,
};
use sluice_engine::component::Operator;
use sluice_engine::Result;

/// Times above this are milliseconds (SPEC §2.1).
const MS_THRESHOLD: f64 = 1e11;

type Hasher = foldhash::fast::RandomState;

/// A decoder's cache of interned names, without a lock: the same raw name always gives the
/// same [`NameRef`], and a number dense within this decoder.
///
/// Events of one kind list their properties in the same order, so each name remembers the
/// name asked after it last time, and that one is tried first: one comparison instead of
/// hashing the name and probing the table (a lookup per property was a tenth of a decoder's
/// time).
pub struct Interner {
    names: HashMap<&'static str, (u32, NameRef), Hasher>,
    /// By number: the name, and the number of the name asked after it last time
    /// ([`NO_NEXT`] before there was one).
    by_id: Vec<(NameRef, u32)>,
    /// The number of the name asked last; [`NO_NEXT`] before the first.
    last: u32,
}

const NO_NEXT: u32 = u32::MAX;

impl Default for Interner {
    fn default() -> Self {
        Interner {
            names: HashMap::default(),
            by_id: Vec::new(),
            last: NO_NEXT,
        }
    }
}

impl Interner {
    pub fn get(&mut self, raw: &str) -> (u32, NameRef) {
        let last = self.last as usize;
        if let Some(&(_, next)) = self.by_id.get(last) {
            if let Some(&(n, _)) = self.by_id.get(next as usize) {
                if n.raw_static() == raw {
                    self.last = next;
                    return (next, n);
                }
            }
        }
        let (id, n) = match self.names.get(raw) {
            Some(&found) => found,
            None => {
                let id = self.names.len() as u32;
                let n = NameRef::intern(raw);
                self.names.insert(n.raw_static(), (id, n));
                self.by_id.push((n, NO_NEXT));
                (id, n)
            }
        };
        if let Some(prev) = self.by_id.get_mut(last) {
            prev.1 = id;
        }
        self.last = id;
        (id, n)
    }
}

/// Decodes Mixpanel event lines: `{"event": NAME, "properties": {"time": .., ...}}`.
#[derive(Default)]
pub struct MixpanelDecoder {
    interner: Interner,
    /// Per name id: (event number, index in props) of its last occurrence, for duplicate keys.
    seen: Vec<(u64, u32)>,
    event_no: u64,
}

/// Makes the decoder; registered as format `mixpanel`.
pub fn mixpanel_decoder(_: &sluice_engine::format::DecoderSettings) -> Box<dyn Operator> {
    Box::new(MixpanelDecoder::default())
}

enum Outcome {
    Event(Event),
    Dead(String),
}

impl MixpanelDecoder {
    fn decode(&mut self, pos: Position, line: &[u8]) -> Outcome {
        let line = trim(line);
        if line.is_empty() {
            return Outcome::Dead("empty line".into());
        }
        if line[0] != b'{' {
            return Outcome::Dead(if sonic_rs::from_slice::<sonic_rs::Value>(line).is_ok() {
                "not a JSON object".into()
            } else {
                "invalid JSON".into()
            });
        }
        // One SIMD pass builds a DOM of the line: cheaper than a lazy scan that skips
        // `properties` once and then walks it again.
        let doc: sonic_rs::Value = match sonic_rs::from_slice(line) {
            Ok(v) => v,
            Err(e) => {
                return Outcome::Dead(format!("invalid JSON: {}", first_line(&e.to_string())))
            }
        };
        let Some(obj) = doc.as_object() else {
            return Outcome::Dead("not a JSON object".into());
        };
        let name = match obj.get(&"event") {
            None => return Outcome::Dead("missing event name (`event`)".into()),
            Some(v) => match v.as_str() {
                Some("") => return Outcome::Dead("empty event name".into()),
                Some(s) => self.interner.get(s).1,
                None => return Outcome::Dead("event name is not a string".into()),
            },
        };
        let Some(props_v) = obj.get(&"properties") else {
            return Outcome::Dead("missing `properties`".into());
        };
        let Some(props_obj) = props_v.as_object() else {
            return Outcome::Dead("`properties` is not an object".into());
        };
        self.event_no += 1;
        let mut time: Option<&sonic_rs::Value> = None;
        let mut distinct_id: Option<Text> = None;
        let mut out: Vec<Prop> = Vec::with_capacity(props_obj.len());
        for (k, v) in props_obj.iter() {
            match k {
                "time" => {
                    time = Some(v);
                    continue;
                }
                "distinct_id" => {
                    distinct_id = match v.get_type() {
                        JsonType::Null => None,
                        JsonType::String => v.as_str().map(Text::from),
                        _ => Some(sonic_rs::to_string(v).unwrap_or_default().into()),
                    };
                    continue;
                }
                _ => {}
            }
            // One look at the node (`as_ref`): asking its type and then its value unpacked it
            // twice, which was a sixth of the decoder's own instructions.
            let value = match v.as_ref() {
                ValueRef::Null => Value::Null,
                ValueRef::Bool(b) => Value::Bool(b),
                ValueRef::Number(n) => match n.as_f64() {
                    Some(f) => Value::Number(f),
                    None => Value::String(sonic_rs::to_string(v).unwrap_or_default().into()),
                },
                ValueRef::String(s) => Value::String(s.into()),
                ValueRef::Array(_) | ValueRef::Object(_) => {
                    Value::Json(sonic_rs::to_string(v).unwrap_or_default().into())
                }
            };
            let (id, key) = self.interner.get(k);
            let id = id as usize;
            if self.seen.len() <= id {
                self.seen.resize(id + 1, (0, 0));
            }
            let (no, idx) = self.seen[id];
            if no == self.event_no {
                // A repeated key: the last value wins, as in JSON parsers generally.
                out[idx as usize].value = value;
            } else {
                self.seen[id] = (self.event_no, out.len() as u32);
                out.push(Prop {
                    name: key,
                    value,
                    column: NO_COLUMN,
                    overflow: false,
                });
            }
        }
        let time_us = match time {
            None => return Outcome::Dead("missing `properties.time`".into()),
            Some(t) => match t.get_type() {
                JsonType::Number => match t.as_f64() {
                    Some(f) if f.is_finite() && f >= 0.0 => {
                        if f > MS_THRESHOLD {
                            (f * 1000.0) as i64
                        } else {
                            (f * 1_000_000.0) as i64
                        }
                    }
                    _ => {
                        return Outcome::Dead("`properties.time` is not a usable epoch time".into())
                    }
                },
                _ => return Outcome::Dead("`properties.time` is not a number".into()),
            },
        };
        Outcome::Event(Event {
            name,
            time_us,
            distinct_id,
            props: out,
            table: None,
            date: None,
            pos,
        })
    }
}

fn trim(mut line: &[u8]) -> &[u8] {
    while let [rest @ .., last] = line {
        if last.is_ascii_whitespace() {
            line = rest;
        } else {
            break;
        }
    }
    while let [first, rest @ ..] = line {
        if first.is_ascii_whitespace() {
            line = rest;
        } else {
            break;
        }
    }
    line
}

fn first_line(s: &str) -> &str {
    s.lines().next().unwrap_or(s)
}

impl Operator for MixpanelDecoder {
    fn process(&mut self, batch: &mut Batch) -> Result<()> {
        let raw = std::mem::take(&mut batch.raw);
        batch.events.reserve(raw.lines.len());
        for (pos, line) in raw.iter() {
            match self.decode(pos, line) {
                Outcome::Event(e) => batch.events.push(e),
                Outcome::Dead(reason) => batch.dead.push(DeadLetter {
                    pos,
                    reason,
                    raw: String::from_utf8_lossy(line).into_owned(),
                }),
            }
        }
        Ok(())
    }

    fn fork(&self) -> Option<Box<dyn Operator>> {
        Some(Box::new(MixpanelDecoder::default()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use sluice_engine::batch::RawLines;

    fn decode_lines(lines: &[&str]) -> Batch {
        let mut b = Batch {
            raw: RawLines::from_lines(lines),
            ..Default::default()
        };
        MixpanelDecoder::default().process(&mut b).unwrap();
        b
    }

    #[test]
    fn the_interner_gives_each_name_one_number_whatever_order_names_come_in() {
        // Orders that follow the remembered one, orders that break it, repeats and names
        // met once: every name keeps the number of its first arrival, and its one NameRef.
        let seqs: [&[&str]; 6] = [
            &["a", "b", "c"],
            &["a", "b", "c"],
            &["a", "c", "b", "d"],
            &["b", "b", "a", "e"],
            &["a", "b", "c", "d", "e"],
            &["e", "d", "c", "b", "a", "a"],
        ];
        let mut i = Interner::default();
        let mut first: Vec<&str> = Vec::new();
        for seq in seqs {
            for &raw in seq {
                if !first.contains(&raw) {
                    first.push(raw);
                }
                let (id, n) = i.get(raw);
                assert_eq!(n.raw(), raw);
                assert_eq!(first[id as usize], raw, "the number of {raw}");
                assert_eq!(n.id(), NameRef::intern(raw).id());
            }
        }
        assert_eq!(first.len(), 5);
    }

    #[test]
    fn nested_values_are_compact_json_each_on_its_own() {
        // One decoder, a long value with escapes and then short ones: each comes out whole,
        // compact and alone.
        let long = "x\\\"y\\u00e9 ".repeat(200);
        let first = format!(
            r#"{{"event":"e","properties":{{"time":1,"a":{{ "k" : [1, "{long}", {{"z":null}}] }},"b":[]}}}}"#
        );
        let second = r#"{"event":"e","properties":{"time":2,"c":{"q":"\u00e9\n"},"d":[true]}}"#;
        let b = decode_lines(&[&first, second]);
        assert!(b.dead.is_empty(), "{:?}", b.dead);
        let json = |e: &Event| -> Vec<(String, String)> {
            e.props
                .iter()
                .map(|p| match &p.value {
                    Value::Json(t) => (p.name.raw().to_string(), t.to_string()),
                    v => panic!("{v:?} is not nested"),
                })
                .collect()
        };
        let long_out = "x\\\"y\u{e9} ".repeat(200);
        let expected_a = format!(r#"{{"k":[1,"{long_out}",{{"z":null}}]}}"#);
        assert_eq!(
            json(&b.events[0]),
            [("a".to_string(), expected_a), ("b".into(), "[]".into())]
        );
        assert_eq!(
            json(&b.events[1]),
            [
                ("c".to_string(), "{\"q\":\"é\\n\"}".to_string()),
                ("d".into(), "[true]".into())
            ]
        );
    }

    #[test]
    fn decodes_an_event() {
        let b = decode_lines(&[
            r#"{"event":"Signed up","properties":{"time":1602611311,"distinct_id":"u-42","$city":"Paris","n":1.5,"ok":true,"cart":[{"sku":"A1"}],"none":null}}"#,
        ]);
        assert!(b.dead.is_empty(), "{:?}", b.dead);
        let e = &b.events[0];
        assert_eq!(e.name.raw(), "Signed up");
        assert_eq!(e.time_us, 1_602_611_311_000_000);
        assert_eq!(e.distinct_id.as_deref(), Some("u-42"));
        let vals: Vec<(&str, &Value)> = e.props.iter().map(|p| (p.name.raw(), &p.value)).collect();
        assert_eq!(
            vals,
            vec![
                ("$city", &Value::String("Paris".into())),
                ("n", &Value::Number(1.5)),
                ("ok", &Value::Bool(true)),
                ("cart", &Value::Json(r#"[{"sku":"A1"}]"#.into())),
                ("none", &Value::Null),
            ]
        );
    }

    #[test]
    fn milliseconds_and_numeric_distinct_ids() {
        let b = decode_lines(&[
            r#"{"event":"a","properties":{"time":1602611311123,"distinct_id":42}}"#,
        ]);
        assert_eq!(b.events[0].time_us, 1_602_611_311_123_000);
        assert_eq!(b.events[0].distinct_id.as_deref(), Some("42"));
    }

    #[test]
    fn duplicate_keys_keep_the_last_value() {
        let b = decode_lines(&[r#"{"event":"a","properties":{"time":1,"k":1,"k":"two"}}"#]);
        assert_eq!(b.events[0].props.len(), 1);
        assert_eq!(b.events[0].props[0].value, Value::String("two".into()));
    }

    #[test]
    fn invalid_lines_are_dead_letters_with_reasons() {
        let b = decode_lines(&[
            "{not json",
            r#"{"event": "No Properties"}"#,
            r#"{"properties": {"time": 1700000000, "distinct_id": "u"}}"#,
            r#"{"event": "Bad Time", "properties": {"time": "yesterday"}}"#,
            r#"{"event": 42, "properties": {"time": 1700000000}}"#,
            r#"[1,2]"#,
            r#"{"event": "x", "properties": {"distinct_id": "u"}}"#,
            "",
        ]);
        assert!(b.events.is_empty());
        let reasons: Vec<&str> = b.dead.iter().map(|d| d.reason.as_str()).collect();
        assert_eq!(reasons.len(), 8);
        assert!(reasons[0].starts_with("invalid JSON"), "{reasons:?}");
        assert_eq!(reasons[1], "missing `properties`");
        assert_eq!(reasons[2], "missing event name (`event`)");
        assert_eq!(reasons[3], "`properties.time` is not a number");
        assert_eq!(reasons[4], "event name is not a string");
        assert_eq!(reasons[5], "not a JSON object");
        assert_eq!(reasons[6], "missing `properties.time`");
        assert_eq!(reasons[7], "empty line");
        assert_eq!(b.dead[3].pos.offset, 3);
    }
}
