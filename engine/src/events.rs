//! A batch's events, column by column.
//!
//! Decoders write each property value straight into the *fragment* of its (name, type class):
//! the rows that have it and their values, one after another. Operators then work once per
//! fragment rather than once per value (`clean-name` and `type-infer` look a name up once per
//! batch), and a sink appends a fragment to its table's column in one go. Nothing is kept per
//! event but its name, time, position, table and date, and the order its properties came in
//! (for views of one event, and for "first seen" among new columns, SPEC §12 D15).
//!
//! A JSON null is never stored: it creates no column (§12 D6) and reads as absent.

use std::sync::Arc;

use crate::batch::{NameRef, Position, TableRef, TypeClass, Value};

/// Text values one after another, and where each ends.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Texts {
    bytes: String,
    ends: Vec<u32>,
}

impl Texts {
    #[inline]
    pub fn len(&self) -> usize {
        self.ends.len()
    }
    pub fn is_empty(&self) -> bool {
        self.ends.is_empty()
    }
    /// All values' bytes, one after another.
    pub fn bytes(&self) -> &str {
        &self.bytes
    }
    /// Where each value ends in [`Texts::bytes`].
    pub fn ends(&self) -> &[u32] {
        &self.ends
    }
    #[inline]
    fn start(&self, i: usize) -> usize {
        if i == 0 {
            0
        } else {
            self.ends[i - 1] as usize
        }
    }
    /// Value `i`.
    #[inline]
    pub fn get(&self, i: usize) -> &str {
        &self.bytes[self.start(i)..self.ends[i] as usize]
    }
    #[inline]
    pub fn push(&mut self, s: &str) {
        self.bytes.push_str(s);
        self.ends.push(self.bytes.len() as u32);
    }
    /// Appends a value that `write` makes at the end of the bytes.
    #[inline]
    pub fn push_with(&mut self, write: impl FnOnce(&mut String)) {
        write(&mut self.bytes);
        self.ends.push(self.bytes.len() as u32);
    }
    /// Removes the last value.
    pub fn pop(&mut self) {
        if self.ends.pop().is_some() {
            let end = self.ends.last().copied().unwrap_or(0) as usize;
            self.bytes.truncate(end);
        }
    }
    pub fn iter(&self) -> impl Iterator<Item = &str> + '_ {
        (0..self.len()).map(|i| self.get(i))
    }
    pub fn clear(&mut self) {
        self.bytes.clear();
        self.ends.clear();
    }
}

/// The values of a fragment.
#[derive(Clone, Debug, PartialEq)]
pub enum FragValues {
    /// Strings, and arrays and objects as compact JSON text.
    Text(Texts),
    Num(Vec<f64>),
    Bool(Vec<bool>),
}

impl FragValues {
    pub fn new(class: TypeClass) -> Self {
        match class {
            TypeClass::Number => FragValues::Num(Vec::new()),
            TypeClass::Boolean => FragValues::Bool(Vec::new()),
            TypeClass::String | TypeClass::Timestamp => FragValues::Text(Texts::default()),
        }
    }
    pub fn class(&self) -> TypeClass {
        match self {
            FragValues::Text(_) => TypeClass::String,
            FragValues::Num(_) => TypeClass::Number,
            FragValues::Bool(_) => TypeClass::Boolean,
        }
    }
    pub fn len(&self) -> usize {
        match self {
            FragValues::Text(t) => t.len(),
            FragValues::Num(v) => v.len(),
            FragValues::Bool(v) => v.len(),
        }
    }
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
    fn pop(&mut self) {
        match self {
            FragValues::Text(t) => t.pop(),
            FragValues::Num(v) => {
                v.pop();
            }
            FragValues::Bool(v) => {
                v.pop();
            }
        }
    }
}

/// A column `type-infer` gave a fragment in one table.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct FragColumn {
    /// Index in [`Events::tables`].
    pub table: u32,
    pub ordinal: u32,
    /// The table's column limit was reached: the values go into `mp_properties`.
    pub overflow: bool,
}

/// A fragment's columns, one per table its events go to.
pub type FragColumns = smallvec::SmallVec<[FragColumn; 1]>;

/// One property (a name and a type class) across the events of a batch.
#[derive(Clone, Debug)]
pub struct Frag {
    pub name: NameRef,
    /// The events that have it, ascending; one value each.
    pub rows: Vec<u32>,
    pub values: FragValues,
    /// Which values (indexes into `values`) are nested JSON text, ascending.
    pub nested: Vec<u32>,
    /// Every nested value is known to be compact JSON text already (its decoder wrote it so):
    /// `stringify-nested` has nothing to look at.
    pub nested_compact: bool,
    /// Set by `type-infer`: its column in each table its events go to (inline for one table:
    /// with many rare names, a heap block per fragment was a cache miss for each reader).
    pub columns: FragColumns,
    /// The raw name's bytes when its decoder had them at hand, JSON writes them as they are and
    /// they fit: a sink writing an overflowing property's name into `mp_properties` reads them
    /// here. From the shared `Name`, with many rare names, it was a cache miss per value.
    pub literal_name: Option<LiteralName>,
}

/// A name of up to 24 bytes none of which JSON escapes (no quote, backslash or control
/// character): its JSON string is the bytes between quotes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct LiteralName {
    len: u8,
    bytes: [u8; LiteralName::MAX],
}

impl LiteralName {
    pub const MAX: usize = 24;

    /// `None` when `raw` is longer than [`LiteralName::MAX`] or holds a byte JSON escapes.
    pub fn new(raw: &[u8]) -> Option<Self> {
        if raw.len() > Self::MAX || !Self::written_as_is(raw) {
            return None;
        }
        let mut bytes = [0; Self::MAX];
        bytes[..raw.len()].copy_from_slice(raw);
        Some(LiteralName {
            len: raw.len() as u8,
            bytes,
        })
    }

    pub fn as_bytes(&self) -> &[u8] {
        &self.bytes[..self.len as usize]
    }

    /// Whether JSON writes `raw` as it is between quotes: no quote, backslash or control
    /// character.
    pub fn written_as_is(raw: &[u8]) -> bool {
        !raw.iter().any(|&c| c == b'"' || c == b'\\' || c < 0x20)
    }
}

impl Frag {
    pub fn new(name: NameRef, class: TypeClass) -> Self {
        Frag {
            name,
            rows: Vec::new(),
            values: FragValues::new(class),
            nested: Vec::new(),
            nested_compact: false,
            columns: FragColumns::new(),
            literal_name: None,
        }
    }
    pub fn class(&self) -> TypeClass {
        self.values.class()
    }
    pub fn len(&self) -> usize {
        self.rows.len()
    }
    pub fn is_empty(&self) -> bool {
        self.rows.is_empty()
    }
    /// Value `i` (in row order).
    pub fn value(&self, i: usize) -> ValueRef<'_> {
        match &self.values {
            FragValues::Text(t) => {
                if self.nested.binary_search(&(i as u32)).is_ok() {
                    ValueRef::Json(t.get(i))
                } else {
                    ValueRef::Str(t.get(i))
                }
            }
            FragValues::Num(v) => ValueRef::Num(v[i]),
            FragValues::Bool(v) => ValueRef::Bool(v[i]),
        }
    }
    /// The column of table `table` (an index in [`Events::tables`]).
    pub fn column_in(&self, table: u32) -> Option<FragColumn> {
        self.columns.iter().find(|c| c.table == table).copied()
    }
    fn pop(&mut self) {
        if self.rows.pop().is_some() {
            let n = self.values.len();
            self.values.pop();
            if self.nested.last() == Some(&(n as u32 - 1)) {
                self.nested.pop();
            }
        }
    }
}

/// A property value, borrowed from a batch.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum ValueRef<'a> {
    Str(&'a str),
    /// An array or object as compact JSON text.
    Json(&'a str),
    Num(f64),
    Bool(bool),
}

impl<'a> ValueRef<'a> {
    pub fn class(self) -> TypeClass {
        match self {
            ValueRef::Str(_) | ValueRef::Json(_) => TypeClass::String,
            ValueRef::Num(_) => TypeClass::Number,
            ValueRef::Bool(_) => TypeClass::Boolean,
        }
    }
    pub fn to_value(self) -> Value {
        match self {
            ValueRef::Str(s) => Value::String(s.into()),
            ValueRef::Json(s) => Value::Json(s.into()),
            ValueRef::Num(x) => Value::Number(x),
            ValueRef::Bool(b) => Value::Bool(b),
        }
    }
}

/// No table or date yet.
pub const UNSET: u32 = u32::MAX;
/// A date not set yet.
pub const NO_DATE: i32 = i32::MIN;

/// The events of a batch, column by column.
#[derive(Clone, Debug)]
pub struct Events {
    /// Per event: its name as it arrived.
    pub name: Vec<NameRef>,
    /// Per event: UTC time in microseconds since the epoch.
    pub time_us: Vec<i64>,
    /// Per event: where it came from.
    pub pos: Vec<Position>,
    /// The events that have a `distinct_id`, and its text.
    pub distinct_rows: Vec<u32>,
    pub distinct_ids: Texts,
    /// Properties, one fragment per (name, class), in order of first arrival.
    pub props: Vec<Frag>,
    /// Event `r`'s properties in the order they came: `order[starts[r]..starts[r + 1]]`, each
    /// (fragment, value index).
    order: Vec<(u32, u32)>,
    starts: Vec<u32>,
    /// Per event: its table, an index in `tables`; set by `type-infer` (empty before).
    pub table: Vec<u32>,
    pub tables: Vec<Arc<TableRef>>,
    /// Per event: the calendar day in the project timezone, days since 1970-01-01; set by
    /// `partition-by-date` (empty before).
    pub date: Vec<i32>,
}

impl Default for Events {
    fn default() -> Self {
        Events {
            name: Vec::new(),
            time_us: Vec::new(),
            pos: Vec::new(),
            distinct_rows: Vec::new(),
            distinct_ids: Texts::default(),
            props: Vec::new(),
            order: Vec::new(),
            starts: vec![0],
            table: Vec::new(),
            tables: Vec::new(),
            date: Vec::new(),
        }
    }
}

impl Events {
    /// Room for `n` events.
    pub fn with_capacity(n: usize) -> Self {
        let mut e = Events::default();
        e.name.reserve(n);
        e.time_us.reserve(n);
        e.pos.reserve(n);
        e.starts.reserve(n);
        e
    }

    /// Room for `events` more events with `props` properties among them, `frags` fragments,
    /// and `id_bytes` bytes of distinct ids.
    pub fn reserve(&mut self, events: usize, props: usize, frags: usize, id_bytes: usize) {
        // Grown by doubling, a batch of thousands of fragments (one per property name and
        // type class: a wide table's sparse names) copied them all a dozen times.
        self.props.reserve(frags);
        self.name.reserve(events);
        self.time_us.reserve(events);
        self.pos.reserve(events);
        self.starts.reserve(events);
        self.distinct_rows.reserve(events);
        self.distinct_ids.ends.reserve(events);
        self.distinct_ids.bytes.reserve(id_bytes);
        self.order.reserve(props);
    }

    /// The properties of all events, the fragments, and the bytes of distinct ids: what
    /// [`Events::reserve`] takes.
    pub fn room(&self) -> (usize, usize, usize) {
        (
            self.order.len(),
            self.props.len(),
            self.distinct_ids.bytes.len(),
        )
    }

    /// About the bytes the events hold, as a sink counts them: 16 per event, its name, and
    /// per value its bytes (strings, with 8 for their end and row), 12 (numbers) or 5
    /// (booleans).
    pub fn approx_bytes(&self) -> usize {
        let mut bytes = 16 * self.len() + self.distinct_ids.bytes.len();
        let mut last: Option<(NameRef, usize)> = None;
        for &n in &self.name {
            bytes += match last {
                Some((l, len)) if l == n => len,
                _ => {
                    let len = n.raw().len();
                    last = Some((n, len));
                    len
                }
            };
        }
        for f in &self.props {
            bytes += match &f.values {
                FragValues::Text(t) => t.bytes.len() + 8 * t.len(),
                FragValues::Num(v) => 12 * v.len(),
                FragValues::Bool(v) => 5 * v.len(),
            };
        }
        bytes
    }

    pub fn len(&self) -> usize {
        self.name.len()
    }
    pub fn is_empty(&self) -> bool {
        self.name.is_empty()
    }

    /// The row the next finished event gets.
    #[inline]
    pub fn next_row(&self) -> u32 {
        self.name.len() as u32
    }

    /// A new, empty fragment for (`name`, `class`); returns its index. Callers keep their own
    /// index of fragments by name (one per batch and key). Nested values pushed into it must
    /// be compact JSON text (every decoder writes them so); [`Events::add_frag_raw`] makes a
    /// fragment for text that may not be.
    #[inline]
    pub fn add_frag(&mut self, name: NameRef, class: TypeClass) -> u32 {
        let mut f = Frag::new(name, class);
        f.nested_compact = true;
        self.props.push(f);
        (self.props.len() - 1) as u32
    }

    /// Like [`Events::add_frag`], with room for `values` values, `bytes` bytes of text and
    /// `nested` nested values before it grows.
    pub fn add_frag_with_room(
        &mut self,
        name: NameRef,
        class: TypeClass,
        values: usize,
        bytes: usize,
        nested: usize,
    ) -> u32 {
        let f = self.add_frag(name, class);
        let frag = &mut self.props[f as usize];
        frag.rows.reserve(values);
        frag.nested.reserve(nested);
        match &mut frag.values {
            FragValues::Text(t) => {
                t.ends.reserve(values);
                t.bytes.reserve(bytes);
            }
            FragValues::Num(v) => v.reserve(values),
            FragValues::Bool(v) => v.reserve(values),
        }
        f
    }

    /// A new fragment whose nested values may have whitespace between tokens:
    /// `stringify-nested` makes them compact.
    pub fn add_frag_raw(&mut self, name: NameRef, class: TypeClass) -> u32 {
        self.props.push(Frag::new(name, class));
        (self.props.len() - 1) as u32
    }

    /// Appends a value of the event being built to fragment `frag` (which must be of text
    /// class); `nested` marks compact JSON text of an array or object.
    #[inline(always)]
    pub fn push_text(&mut self, frag: u32, s: &str, nested: bool) {
        self.push_text_with(frag, nested, |b| b.push_str(s));
    }

    /// Like [`Events::push_text`], with the text written by `write` at the end of the
    /// fragment's bytes (unescaping, compacting).
    #[inline(always)]
    pub fn push_text_with(&mut self, frag: u32, nested: bool, write: impl FnOnce(&mut String)) {
        let row = self.next_row();
        let f = &mut self.props[frag as usize];
        if let FragValues::Text(t) = &mut f.values {
            let i = t.len() as u32;
            t.push_with(write);
            if nested {
                f.nested.push(i);
            }
            f.rows.push(row);
            self.order.push((frag, i));
        }
    }

    #[inline(always)]
    pub fn push_num(&mut self, frag: u32, x: f64) {
        let row = self.next_row();
        let f = &mut self.props[frag as usize];
        if let FragValues::Num(v) = &mut f.values {
            let i = v.len() as u32;
            v.push(x);
            f.rows.push(row);
            self.order.push((frag, i));
        }
    }

    #[inline(always)]
    pub fn push_bool(&mut self, frag: u32, b: bool) {
        let row = self.next_row();
        let f = &mut self.props[frag as usize];
        if let FragValues::Bool(v) = &mut f.values {
            let i = v.len() as u32;
            v.push(b);
            f.rows.push(row);
            self.order.push((frag, i));
        }
    }

    /// Takes back the value the event being built gave fragment `frag` (a repeated key: the
    /// last value wins). Nothing happens if it gave none.
    pub fn unpush(&mut self, frag: u32) {
        let row = self.next_row();
        let from = self.starts[row as usize] as usize;
        if let Some(k) = self.order[from..].iter().position(|&(f, _)| f == frag) {
            self.order.remove(from + k);
            self.props[frag as usize].pop();
        }
    }

    /// Finishes the event being built.
    #[inline]
    pub fn finish_row(
        &mut self,
        name: NameRef,
        time_us: i64,
        pos: Position,
        distinct_id: Option<&str>,
    ) {
        let row = self.next_row();
        if let Some(d) = distinct_id {
            self.distinct_rows.push(row);
            self.distinct_ids.push(d);
        }
        self.name.push(name);
        self.time_us.push(time_us);
        self.pos.push(pos);
        self.starts.push(self.order.len() as u32);
    }

    /// Gives up the event being built: the values it gave are taken back.
    pub fn abandon_row(&mut self) {
        let from = self.starts[self.name.len()] as usize;
        while self.order.len() > from {
            if let Some((f, _)) = self.order.pop() {
                self.props[f as usize].pop();
            }
        }
    }

    /// Appends a whole event (for decoders of other shapes and for tests): `index` finds or
    /// makes the fragment of each (name, class). Nulls are left out; a repeated name keeps its
    /// last value.
    pub fn push_event(
        &mut self,
        index: &mut FragIndex,
        name: NameRef,
        time_us: i64,
        pos: Position,
        distinct_id: Option<&str>,
        props: &[(NameRef, Value)],
    ) {
        for (i, (k, v)) in props.iter().enumerate() {
            if props[i + 1..].iter().any(|(later, _)| later == k) {
                continue;
            }
            let Some(class) = v.class() else { continue };
            let f = index.get(self, *k, class);
            match v {
                Value::Number(x) => self.push_num(f, *x),
                Value::Bool(b) => self.push_bool(f, *b),
                Value::String(s) => self.push_text(f, s, false),
                Value::Json(s) => self.push_text(f, s, true),
                Value::Null => {}
            }
        }
        self.finish_row(name, time_us, pos, distinct_id);
    }

    /// Event `row`, to look at.
    pub fn get(&self, row: usize) -> EventRef<'_> {
        EventRef { events: self, row }
    }

    pub fn iter(&self) -> impl Iterator<Item = EventRef<'_>> + '_ {
        (0..self.len()).map(|r| self.get(r))
    }

    /// The distinct id of event `row`.
    pub fn distinct_id(&self, row: usize) -> Option<&str> {
        self.distinct_rows
            .binary_search(&(row as u32))
            .ok()
            .map(|i| self.distinct_ids.get(i))
    }

    /// Keeps the events for which `keep` (one entry per event) is true, in order; returns how
    /// many were dropped.
    pub fn retain(&mut self, keep: &[bool]) -> usize {
        let n = self.len();
        // An event `keep` says nothing of is dropped.
        let keep: Vec<bool> = (0..n)
            .map(|r| keep.get(r).copied().unwrap_or(false))
            .collect();
        let keep = &keep[..];
        let kept = keep.iter().filter(|&&k| k).count();
        if kept == n {
            return 0;
        }
        // New row numbers: the kept rows counted.
        let mut new_row = Vec::with_capacity(n);
        let mut next = 0u32;
        for &k in keep {
            new_row.push(next);
            if k {
                next += 1;
            }
        }
        // Fragments: kept values, renumbered rows, and each old value's new index.
        let mut new_index: Vec<Vec<u32>> = Vec::with_capacity(self.props.len());
        for f in &mut self.props {
            let mut fresh = Frag::new(f.name, f.class());
            fresh.literal_name = f.literal_name;
            let old = std::mem::replace(f, fresh);
            let mut map = vec![u32::MAX; old.len()];
            let mut nested = old.nested.iter().peekable();
            for (i, &row) in old.rows.iter().enumerate() {
                let is_nested = nested.peek() == Some(&&(i as u32));
                if is_nested {
                    nested.next();
                }
                if !keep[row as usize] {
                    continue;
                }
                map[i] = f.rows.len() as u32;
                if is_nested {
                    f.nested.push(f.rows.len() as u32);
                }
                f.rows.push(new_row[row as usize]);
                match (&mut f.values, &old.values) {
                    (FragValues::Text(t), FragValues::Text(o)) => t.push(o.get(i)),
                    (FragValues::Num(t), FragValues::Num(o)) => t.push(o[i]),
                    (FragValues::Bool(t), FragValues::Bool(o)) => t.push(o[i]),
                    _ => {}
                }
            }
            f.columns = old.columns;
            f.nested_compact = old.nested_compact;
            new_index.push(map);
        }
        let mut order = Vec::with_capacity(self.order.len());
        let mut starts = Vec::with_capacity(kept + 1);
        starts.push(0);
        for (r, _) in keep.iter().enumerate().filter(|(_, &k)| k) {
            for &(f, i) in &self.order[self.starts[r] as usize..self.starts[r + 1] as usize] {
                order.push((f, new_index[f as usize][i as usize]));
            }
            starts.push(order.len() as u32);
        }
        self.order = order;
        self.starts = starts;
        let mut ids = Texts::default();
        let mut rows = Vec::new();
        for (i, &r) in self.distinct_rows.iter().enumerate() {
            if keep[r as usize] {
                rows.push(new_row[r as usize]);
                ids.push(self.distinct_ids.get(i));
            }
        }
        self.distinct_rows = rows;
        self.distinct_ids = ids;
        pick(&mut self.name, keep);
        pick(&mut self.time_us, keep);
        pick(&mut self.pos, keep);
        if self.table.len() == n {
            pick(&mut self.table, keep);
        }
        if self.date.len() == n {
            pick(&mut self.date, keep);
        }
        n - kept
    }
}

/// Keeps the elements of `v` whose place in `keep` is true.
fn pick<T>(v: &mut Vec<T>, keep: &[bool]) {
    let mut r = 0;
    v.retain(|_| {
        r += 1;
        keep[r - 1]
    });
}

/// Finds a batch's fragment by (name, class), making it on first use (one whose nested
/// values `stringify-nested` checks).
#[derive(Default)]
pub struct FragIndex {
    map: std::collections::HashMap<(usize, TypeClass), u32>,
}

impl FragIndex {
    pub fn get(&mut self, events: &mut Events, name: NameRef, class: TypeClass) -> u32 {
        *self
            .map
            .entry((name.id(), class))
            .or_insert_with(|| events.add_frag_raw(name, class))
    }
    /// For the next batch.
    pub fn clear(&mut self) {
        self.map.clear();
    }
}

/// One event of a batch.
#[derive(Clone, Copy)]
pub struct EventRef<'a> {
    events: &'a Events,
    row: usize,
}

impl<'a> EventRef<'a> {
    pub fn row(&self) -> usize {
        self.row
    }
    pub fn name(&self) -> NameRef {
        self.events.name[self.row]
    }
    pub fn time_us(&self) -> i64 {
        self.events.time_us[self.row]
    }
    pub fn pos(&self) -> Position {
        self.events.pos[self.row]
    }
    pub fn distinct_id(&self) -> Option<&'a str> {
        self.events.distinct_id(self.row)
    }
    /// Its table, once `type-infer` has given it one.
    pub fn table(&self) -> Option<&'a Arc<TableRef>> {
        let t = *self.events.table.get(self.row)?;
        self.events.tables.get(t as usize)
    }
    /// Its date, once `partition-by-date` has given it one.
    pub fn date(&self) -> Option<i32> {
        self.events.date.get(self.row).copied()
    }
    /// Its properties in the order they came, each with its fragment's index.
    pub fn props(&self) -> impl Iterator<Item = (u32, NameRef, ValueRef<'a>)> + 'a {
        let e = self.events;
        let (s, t) = (e.starts[self.row] as usize, e.starts[self.row + 1] as usize);
        e.order[s..t].iter().map(move |&(f, i)| {
            let frag = &e.props[f as usize];
            (f, frag.name, frag.value(i as usize))
        })
    }
    /// Its properties in the order they came, each as (fragment index, value index in the
    /// fragment): what [`EventRef::props`] reads, without reading the fragments.
    pub fn order(&self) -> &'a [(u32, u32)] {
        let e = self.events;
        &e.order[e.starts[self.row] as usize..e.starts[self.row + 1] as usize]
    }
    /// The value of property `raw` (its name as it arrived), if the event has one.
    pub fn prop(&self, raw: &str) -> Option<ValueRef<'a>> {
        self.props()
            .find(|(_, n, _)| n.raw() == raw)
            .map(|(_, _, v)| v)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pos(offset: u64) -> Position {
        Position {
            partition: 0,
            offset,
        }
    }

    fn n(s: &str) -> NameRef {
        NameRef::intern(s)
    }

    /// A name JSON writes as it is, up to 24 bytes, is kept; one with a byte JSON escapes,
    /// or longer, is not.
    #[test]
    fn a_literal_name_is_one_json_writes_as_it_is_and_fits() {
        for raw in [
            "",
            "a",
            "$browser",
            "Odd Name é",
            &"x".repeat(24),
            "ü".repeat(12).as_str(),
        ] {
            let l = LiteralName::new(raw.as_bytes()).expect(raw);
            assert_eq!(l.as_bytes(), raw.as_bytes());
            assert_eq!(serde_json::to_string(raw).unwrap(), format!("\"{raw}\""));
        }
        for raw in ["q\"", "back\\slash", "tab\t", "nul\u{0}", &"x".repeat(25)] {
            assert_eq!(LiteralName::new(raw.as_bytes()), None, "{raw:?}");
        }
    }

    #[test]
    fn events_keep_their_values_in_order_and_drop_what_they_give_up() {
        let mut ev = Events::default();
        let mut ix = FragIndex::default();
        ev.push_event(
            &mut ix,
            n("a"),
            1,
            pos(0),
            Some("u1"),
            &[
                (n("k"), Value::Number(1.0)),
                (n("s"), Value::String("x".into())),
                (n("j"), Value::Json("[1]".into())),
                (n("z"), Value::Null),
            ],
        );
        // A row given up halfway leaves nothing behind.
        let f = ix.get(&mut ev, n("k"), TypeClass::Number);
        ev.push_num(f, 9.0);
        let g = ix.get(&mut ev, n("new"), TypeClass::Boolean);
        ev.push_bool(g, true);
        ev.abandon_row();
        // A repeated key keeps its last value, of whatever class.
        let s = ix.get(&mut ev, n("s"), TypeClass::String);
        ev.push_text(s, "first", false);
        ev.unpush(s);
        let k = ix.get(&mut ev, n("s"), TypeClass::Number);
        ev.push_num(k, 2.5);
        ev.finish_row(n("b"), 2, pos(1), None);
        ev.push_event(
            &mut ix,
            n("c"),
            3,
            pos(2),
            Some("u3"),
            &[
                (n("s"), Value::String("y".into())),
                (n("k"), Value::Number(3.0)),
            ],
        );
        assert_eq!(ev.len(), 3);
        fn props(ev: &Events, r: usize) -> Vec<(String, ValueRef<'_>)> {
            ev.get(r)
                .props()
                .map(|(_, k, v)| (k.raw().to_string(), v))
                .collect()
        }
        assert_eq!(
            props(&ev, 0),
            [
                ("k".into(), ValueRef::Num(1.0)),
                ("s".into(), ValueRef::Str("x")),
                ("j".into(), ValueRef::Json("[1]"))
            ]
        );
        assert_eq!(props(&ev, 1), [("s".into(), ValueRef::Num(2.5))]);
        assert_eq!(
            props(&ev, 2),
            [
                ("s".into(), ValueRef::Str("y")),
                ("k".into(), ValueRef::Num(3.0))
            ]
        );
        assert_eq!(
            {
                let i = ix.get(&mut ev, n("new"), TypeClass::Boolean) as usize;
                ev.props[i].len()
            },
            0
        );
        assert_eq!(ev.distinct_id(0), Some("u1"));
        assert_eq!(ev.distinct_id(1), None);

        // Dropping the middle event renumbers the others, their values and their order.
        assert_eq!(ev.retain(&[true, false, true]), 1);
        assert_eq!(ev.len(), 2);
        assert_eq!(props(&ev, 0)[2], ("j".into(), ValueRef::Json("[1]")));
        assert_eq!(
            props(&ev, 1),
            [
                ("s".into(), ValueRef::Str("y")),
                ("k".into(), ValueRef::Num(3.0))
            ]
        );
        assert_eq!(ev.distinct_id(1), Some("u3"));
        assert_eq!(ev.get(1).time_us(), 3);
        let i = ix.get(&mut ev, n("k"), TypeClass::Number) as usize;
        let k = &ev.props[i];
        assert_eq!(k.rows, [0, 1]);
        let i = ix.get(&mut ev, n("s"), TypeClass::Number) as usize;
        let s_num = &ev.props[i];
        assert!(s_num.is_empty());
    }
}
