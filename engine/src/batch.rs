//! What flows between components: batches of events, never one event per message.

use std::sync::{Mutex, OnceLock};

pub use crate::events::{
    EventRef, Events, Frag, FragColumn, FragColumns, FragIndex, FragValues, LiteralName, Texts,
    ValueRef,
};

/// Where an event came from: a source partition (a Kafka partition, one input file) and the
/// offset in it (a Kafka offset, a line number). Partitions are numbered per run by
/// [`crate::runtime::Partitions`].
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Position {
    pub partition: u32,
    pub offset: u64,
}

/// A property or event name as it arrived, with its cleaned form computed once per distinct
/// name (by the `clean-name` operator), not once per event.
///
/// The raw name's bytes are held in place up to 24 of them (longer ones on the heap), in a
/// cache line of its own: a name read cold (a rare property's, in the sink's `mp_properties`)
/// then costs one miss, where a pointer to the bytes elsewhere cost a second one.
#[derive(Debug)]
#[repr(align(64))]
pub struct Name {
    raw: compact_str::CompactString,
    clean: OnceLock<Box<str>>,
    /// Dense: names are numbered from 0 as the process first meets them ([`NameRef::id`]).
    id: u32,
}

/// An interned [`Name`]: names live for the whole process, once per distinct raw name, so an
/// event's properties carry a plain pointer. A reference count would be touched twice per
/// property by different threads (the decoder that clones it, the sink that drops it), and
/// that shared cache line measured as the costliest instruction of decoding.
///
/// The memory this keeps is the bytes of each distinct name ever seen, as the decoders'
/// interners kept before: usually a few thousand names; a stream of ever-new property names
/// (ids used as keys) grows it without bound.
#[derive(Clone, Copy, Debug)]
pub struct NameRef(&'static Name);

impl std::ops::Deref for NameRef {
    type Target = Name;
    fn deref(&self) -> &Name {
        self.0
    }
}

impl NameRef {
    /// The process's one `Name` for `raw`. Takes a lock: callers on hot paths keep their own
    /// cache in front of it (as the decoders' interners do).
    pub fn intern(raw: &str) -> NameRef {
        type Names = std::collections::HashMap<&'static str, NameRef>;
        static NAMES: OnceLock<Mutex<Names>> = OnceLock::new();
        let names = NAMES.get_or_init(Default::default);
        // A panic while holding the lock cannot leave the map half-changed: take it anyway.
        let mut names = names.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(n) = names.get(raw) {
            return *n;
        }
        let Ok(id) = u32::try_from(names.len()) else {
            // Four billion distinct names: the process has long run out of memory before.
            panic!("more than {} distinct names", u32::MAX);
        };
        let name: &'static Name = Box::leak(Box::new(Name {
            raw: compact_str::CompactString::new(raw),
            clean: OnceLock::new(),
            id,
        }));
        let n = NameRef(name);
        names.insert(&name.raw, n);
        n
    }

    /// The raw name, borrowed for as long as the process lives.
    pub fn raw_static(self) -> &'static str {
        &self.0.raw
    }

    /// The cleaned name, once `clean-name` has seen it, borrowed for as long as the process
    /// lives.
    pub fn clean_static(self) -> Option<&'static str> {
        self.0.clean()
    }

    /// The name's number: equal for equal raw names, for the life of the process, and dense
    /// (names are numbered from 0 as the process first meets them), to index tables by.
    pub fn id(self) -> usize {
        self.0.id as usize
    }
}

impl PartialEq for NameRef {
    fn eq(&self, other: &Self) -> bool {
        std::ptr::eq(self.0, other.0)
    }
}
impl Eq for NameRef {}

impl Name {
    pub fn raw(&self) -> &str {
        &self.raw
    }
    /// The cleaned name, once `clean-name` has seen it.
    pub fn clean(&self) -> Option<&str> {
        self.clean.get().map(|s| &**s)
    }
    /// Sets the cleaned name with `f` if it is not set yet; returns it.
    pub fn clean_with(&self, f: impl FnOnce(&str) -> String) -> &str {
        self.clean.get_or_init(|| f(&self.raw).into_boxed_str())
    }
}

/// The type class a value belongs to; it decides the column (SPEC §4, §12 D6).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum TypeClass {
    String,
    Number,
    Boolean,
    /// Only the system column `time`.
    Timestamp,
}

impl TypeClass {
    pub fn as_str(self) -> &'static str {
        match self {
            TypeClass::String => "string",
            TypeClass::Number => "number",
            TypeClass::Boolean => "boolean",
            TypeClass::Timestamp => "timestamp",
        }
    }
    pub fn parse(s: &str) -> Option<Self> {
        Some(match s {
            "string" => TypeClass::String,
            "number" => TypeClass::Number,
            "boolean" => TypeClass::Boolean,
            "timestamp" => TypeClass::Timestamp,
            _ => return None,
        })
    }
    /// The Glue / Hive type of a column of this class in Parquet tables.
    pub fn glue_type(self) -> &'static str {
        match self {
            TypeClass::String => "string",
            TypeClass::Number => "double",
            TypeClass::Boolean => "boolean",
            TypeClass::Timestamp => "timestamp",
        }
    }
}

/// Text of values: up to 24 bytes inline, so that most property values cost no allocation to
/// make in the decoder and none to free in the sink (another thread, where a free costs more).
pub type Text = compact_str::CompactString;

/// A property value.
#[derive(Clone, Debug, PartialEq)]
pub enum Value {
    Null,
    Bool(bool),
    Number(f64),
    String(Text),
    /// An array or object, as JSON text (raw until `stringify-nested` makes it compact);
    /// written as a string column. Boxed rather than [`Text`]: a `Value` is then 24 bytes,
    /// not 32 (a property 40, not 48), and events are mostly properties, written by a
    /// decoder and read by a sink on another core. Nested values are few, and mostly longer
    /// than `Text` holds inline anyway.
    Json(Box<str>),
}

impl Value {
    /// The class of the value; `None` for null, which never creates a column (§12 D6).
    pub fn class(&self) -> Option<TypeClass> {
        match self {
            Value::Null => None,
            Value::Bool(_) => Some(TypeClass::Boolean),
            Value::Number(_) => Some(TypeClass::Number),
            Value::String(_) | Value::Json(_) => Some(TypeClass::String),
        }
    }

    /// The text of a string or of nested JSON; `None` for other values.
    pub fn text(&self) -> Option<&str> {
        match self {
            Value::String(s) => Some(s),
            Value::Json(s) => Some(s),
            _ => None,
        }
    }
}

/// The table an event goes to, as the schema registry assigned it.
#[derive(Debug, PartialEq, Eq, Hash)]
pub struct TableRef {
    pub id: i64,
    pub name: String,
    /// `mp_event_name` holds the cleaned event name rather than the original (SPEC §12 D1).
    pub cleaned_event_name: bool,
}

/// A line that could not become an event, with why, and where it came from.
#[derive(Clone, Debug, PartialEq)]
pub struct DeadLetter {
    pub pos: Position,
    pub reason: String,
    pub raw: String,
}

/// Raw input lines, as a source reads them, before decoding.
#[derive(Clone, Debug, Default)]
pub struct RawLines {
    pub buf: Vec<u8>,
    /// (offset, start, end) of each line in `buf`.
    pub lines: Vec<(u64, u32, u32)>,
    pub partition: u32,
}

impl RawLines {
    /// Lines of one partition numbered from 0, for tests and benchmarks.
    pub fn from_lines<S: AsRef<str>>(lines: &[S]) -> Self {
        let mut raw = RawLines::default();
        for (i, l) in lines.iter().enumerate() {
            let s = raw.buf.len() as u32;
            raw.buf.extend_from_slice(l.as_ref().as_bytes());
            raw.lines.push((i as u64, s, raw.buf.len() as u32));
        }
        raw
    }

    pub fn iter(&self) -> impl Iterator<Item = (Position, &[u8])> {
        self.lines.iter().map(move |&(offset, s, e)| {
            (
                Position {
                    partition: self.partition,
                    offset,
                },
                &self.buf[s as usize..e as usize],
            )
        })
    }
}

/// The unit of data between components.
#[derive(Clone, Debug, Default)]
pub struct Batch {
    /// Undecoded lines from a source; the decoder empties it into `events` and `dead`.
    pub raw: RawLines,
    pub events: Events,
    pub dead: Vec<DeadLetter>,
    /// Events dropped on purpose by filters (counted, not dead letters).
    pub filtered: u64,
    /// For each partition this batch touches: every offset below this value has been accounted
    /// for by this batch or an earlier one (rows, dead letters or filtered).
    pub progress: Vec<(u32, u64)>,
    /// The source's rewind generation when it read this batch (see [`crate::ownership`]).
    pub generation: u64,
}

impl Batch {
    pub fn is_empty(&self) -> bool {
        self.raw.lines.is_empty() && self.events.is_empty() && self.dead.is_empty()
    }
}
