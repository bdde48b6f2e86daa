//! The `records` decoder: JSON records that are not in Mixpanel's shape, mapped to events by
//! [`RecordsFormat`] (which field is the name, the time, the properties).
//!
//! Less tuned than the `mixpanel` decoder (it builds a DOM per line): it exists to take in
//! other tools' exports and test fixtures, not firehoses.

use chrono::{DateTime, NaiveDateTime};
use sonic_rs::{JsonContainerTrait, JsonType, JsonValueTrait, Value as Json};

use sluice_engine::batch::{Batch, DeadLetter, FragIndex, NameRef, Text, Value};
use sluice_engine::component::Operator;
use sluice_engine::format::{DecoderSettings, RecordsFormat};
use sluice_engine::Result;

use crate::decode::Interner;

/// Makes the decoder; registered as format `records`.
pub fn records_decoder(settings: &DecoderSettings) -> Box<dyn Operator> {
    Box::new(RecordsDecoder {
        f: settings.records.clone(),
        interner: Interner::default(),
    })
}

pub struct RecordsDecoder {
    f: RecordsFormat,
    interner: Interner,
}

fn path<'a>(v: &'a Json, dotted: &str) -> Option<&'a Json> {
    let mut cur = v;
    if dotted.is_empty() || dotted == "." {
        return Some(cur);
    }
    for seg in dotted.split('.') {
        cur = cur.as_object()?.get(&seg)?;
    }
    Some(cur)
}

/// Epoch seconds or milliseconds, or a date-time string, to microseconds.
pub fn parse_time(v: &Json) -> Option<i64> {
    match v.get_type() {
        JsonType::Number => epoch(v.as_f64()?),
        JsonType::String => parse_time_str(v.as_str()?),
        _ => None,
    }
}

fn epoch(f: f64) -> Option<i64> {
    if !f.is_finite() || f < 0.0 {
        return None;
    }
    // Seconds up to 1e11 (year 5138), milliseconds up to 1e14, microseconds beyond.
    Some(if f > 1e14 {
        f as i64
    } else if f > 1e11 {
        (f * 1000.0) as i64
    } else {
        (f * 1e6) as i64
    })
}

fn parse_time_str(s: &str) -> Option<i64> {
    let s = s.trim();
    if let Ok(t) = DateTime::parse_from_rfc3339(s) {
        return Some(t.timestamp_micros());
    }
    if let Ok(t) = DateTime::parse_from_rfc2822(s) {
        return Some(t.timestamp_micros());
    }
    if let Ok(t) = DateTime::parse_from_str(s, "%a %b %d %H:%M:%S %z %Y") {
        return Some(t.timestamp_micros());
    }
    for f in [
        "%Y-%m-%dT%H:%M:%S%.f",
        "%Y-%m-%d %H:%M:%S%.f",
        "%Y-%m-%d %H:%M:%S%.f UTC",
    ] {
        if let Ok(t) = NaiveDateTime::parse_from_str(s, f) {
            return Some(t.and_utc().timestamp_micros());
        }
    }
    if let Ok(d) = chrono::NaiveDate::parse_from_str(s, "%Y-%m-%d") {
        return d
            .and_hms_opt(0, 0, 0)
            .map(|t| t.and_utc().timestamp_micros());
    }
    s.parse::<f64>().ok().and_then(epoch)
}

fn value_of(v: &Json) -> Value {
    match v.get_type() {
        JsonType::Null => Value::Null,
        JsonType::Boolean => Value::Bool(v.as_bool().unwrap_or(false)),
        JsonType::Number => v.as_f64().map(Value::Number).unwrap_or(Value::Null),
        JsonType::String => Value::String(v.as_str().unwrap_or_default().into()),
        JsonType::Array | JsonType::Object => {
            Value::Json(sonic_rs::to_string(v).unwrap_or_default().into())
        }
    }
}

fn text_of(v: &Json) -> Option<Text> {
    match v.get_type() {
        JsonType::String => v.as_str().map(Text::from),
        JsonType::Null => None,
        _ => sonic_rs::to_string(v).ok().map(Text::from),
    }
}

/// A record read as an event.
struct Record {
    name: NameRef,
    time_us: i64,
    distinct_id: Option<Text>,
    props: Vec<(NameRef, Value)>,
}

impl RecordsDecoder {
    fn record(&mut self, r: &Json) -> std::result::Result<Record, String> {
        if !r.is_object() {
            return Err("the record is not a JSON object".into());
        }
        let f = &self.f;
        let name = match f
            .event_field
            .as_deref()
            .and_then(|p| path(r, p))
            .and_then(text_of)
        {
            Some(n) if !n.is_empty() => n,
            _ => match &f.event_name {
                Some(n) => n.as_str().into(),
                None => {
                    return Err(match &f.event_field {
                        Some(p) => format!("missing event name (`{p}`)"),
                        None => "no event name: set `records.event_field` or `records.event_name`"
                            .into(),
                    })
                }
            },
        };
        let time_us = match f
            .time_field
            .as_deref()
            .and_then(|p| path(r, p))
            .and_then(parse_time)
        {
            Some(t) => t,
            None => match f.default_time {
                Some(t) => t * 1_000_000,
                None => {
                    return Err(match &f.time_field {
                        Some(p) => format!("missing or unusable time (`{p}`)"),
                        None => {
                            "no time: set `records.time_field` or `records.default_time`".into()
                        }
                    })
                }
            },
        };
        let distinct_id = f
            .distinct_id_field
            .as_deref()
            .and_then(|p| path(r, p))
            .and_then(text_of);
        let (props_obj, skip_top) = match f.properties_field.as_deref() {
            Some(p) => (path(r, p).filter(|v| v.is_object()), false),
            None => (Some(r), true),
        };
        // The name, time and distinct_id fields are not properties as well.
        let base = if skip_top {
            String::new()
        } else {
            format!("{}.", f.properties_field.as_deref().unwrap_or_default())
        };
        let skip: Vec<&str> = [&f.event_field, &f.time_field, &f.distinct_id_field]
            .into_iter()
            .flatten()
            .filter_map(|p| p.strip_prefix(base.as_str()))
            .filter(|p| !p.contains('.'))
            .collect();
        let mut props: Vec<(NameRef, Value)> = Vec::new();
        if let Some(obj) = props_obj.and_then(|o| o.as_object()) {
            for (k, v) in obj.iter() {
                if skip.contains(&k) {
                    continue;
                }
                let value = value_of(v);
                let (_, key) = self.interner.get(k);
                // A repeated key keeps its last value, in the place of its first.
                if let Some(p) = props.iter_mut().find(|p| p.0 == key) {
                    p.1 = value;
                    continue;
                }
                props.push((key, value));
            }
        }
        Ok(Record {
            name: self.interner.get(&name).1,
            time_us,
            distinct_id,
            props,
        })
    }
}

impl Operator for RecordsDecoder {
    fn process(&mut self, batch: &mut Batch) -> Result<()> {
        let raw = std::mem::take(&mut batch.raw);
        let mut index = FragIndex::default();
        for (pos, line) in raw.iter() {
            let text = String::from_utf8_lossy(line);
            if text.trim().is_empty() {
                batch.dead.push(DeadLetter {
                    pos,
                    reason: "empty line".into(),
                    raw: text.into_owned(),
                });
                continue;
            }
            let doc: Json = match sonic_rs::from_str(&text) {
                Ok(v) => v,
                Err(e) => {
                    let msg = e.to_string();
                    batch.dead.push(DeadLetter {
                        pos,
                        reason: format!("invalid JSON: {}", msg.lines().next().unwrap_or_default()),
                        raw: text.into_owned(),
                    });
                    continue;
                }
            };
            let records: Vec<&Json> = match self.f.records_at.clone() {
                Some(p) => match path(&doc, &p) {
                    Some(v) if v.is_array() => {
                        v.as_array().map(|a| a.iter().collect()).unwrap_or_default()
                    }
                    Some(v) if v.is_object() => v
                        .as_object()
                        .map(|o| o.iter().map(|(_, v)| v).collect())
                        .unwrap_or_default(),
                    _ => {
                        batch.dead.push(DeadLetter {
                            pos,
                            reason: format!("no array or object at `{p}`"),
                            raw: text.into_owned(),
                        });
                        continue;
                    }
                },
                None if doc.is_array() => doc
                    .as_array()
                    .map(|a| a.iter().collect())
                    .unwrap_or_default(),
                None => vec![&doc],
            };
            for r in records {
                match self.record(r) {
                    Ok(e) => batch.events.push_event(
                        &mut index,
                        e.name,
                        e.time_us,
                        pos,
                        e.distinct_id.as_deref(),
                        &e.props,
                    ),
                    Err(reason) => batch.dead.push(DeadLetter {
                        pos,
                        reason,
                        raw: sonic_rs::to_string(r).unwrap_or_default(),
                    }),
                }
            }
        }
        Ok(())
    }

    fn fork(&self) -> Option<Box<dyn Operator>> {
        Some(Box::new(RecordsDecoder {
            f: self.f.clone(),
            interner: Interner::default(),
        }))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn times_in_many_shapes() {
        let t = |s: &str| parse_time_str(s);
        assert_eq!(t("2020-03-17T08:24:40"), Some(1_584_433_480_000_000));
        assert_eq!(t("2020-03-17T08:24:40Z"), Some(1_584_433_480_000_000));
        assert_eq!(t("2020-03-17T10:24:40+02:00"), Some(1_584_433_480_000_000));
        assert_eq!(t("2020-03-17 08:24:40.5"), Some(1_584_433_480_500_000));
        assert_eq!(
            t("Tue Mar 17 08:24:40 +0000 2020"),
            Some(1_584_433_480_000_000)
        );
        assert_eq!(t("1584433480"), Some(1_584_433_480_000_000));
        assert_eq!(t("yesterday"), None);
    }
}
