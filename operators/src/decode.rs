//! The `mixpanel` decoder: raw lines to events, invalid lines to dead letters (SPEC §2.1).
//!
//! Each line is parsed in one SIMD pass into a sonic-rs DOM (measured faster here than a lazy
//! scan, which skips `properties` once and then walks it again: `cargo bench -p
//! sluice-operators --bench chain`); nested values are written back as compact JSON text, and
//! property names are interned so that everything done per name downstream is done once per
//! distinct name.

use std::hash::BuildHasher;

use hashbrown::HashTable;

use sonic_rs::{JsonContainerTrait, JsonNumberTrait, JsonType, JsonValueTrait, ValueRef};

use sluice_engine::batch::{Batch, DeadLetter, Events, LiteralName, NameRef, Position, TypeClass};
use sluice_engine::component::Operator;
use sluice_engine::Result;

use crate::scan::{scan_line, Decoding, GiveUp};

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
    /// Name numbers by their raw name's hash: a number a slot, the name's bytes compared in its
    /// [`Known`] (a map of `&str` keys and their names took a cache miss per entry and another
    /// to compare each key's bytes: with 64,000 names, a third of an event's extra cost).
    names: HashTable<u32>,
    hasher: Hasher,
    /// By number: each name's bytes, what predicts it, and its fragments in the batch, one
    /// cache line a name.
    by_id: Vec<Known>,
    /// By number: what a name needs only when it gets a fragment in a batch.
    cold: Vec<Cold>,
    /// The number of the name asked last; [`NO_NEXT`] before the first.
    last: u32,
    /// The batch being decoded (a stamp: a name's fragments are current when their stamp is
    /// this one).
    batch: u16,
    /// The (name number, class) of each fragment of the batch, in order.
    keys: Vec<(u32, u8)>,
}

/// A name of an [`Interner`], as much of it as a property reads: the name's bytes followed by
/// the quote that ends a JSON key, as little-endian words (zero after the end; all zero for a
/// name too long for them), to compare with a line's bytes a word at a time (`words` is 0 for
/// a name that cannot be compared so: too long, or holding a quote, backslash or control
/// character, which JSON escapes), the number of the name asked after it last time
/// ([`NO_NEXT`] before there was one; marked [`UNSTABLE`] when not to be tried), the fragment
/// of each class its values went to in the batch (current when `batch` is the batch's stamp),
/// and the event that last had the name, with the fragment its value went to (for repeated
/// keys).
///
/// One cache line, aligned to one. A rare name's property reads its entry cold, and each line
/// an entry spans is one more miss: at 120 bytes over two lines (with the name itself read
/// too, for its length), the entry's misses were half of what a property of 64,000 rare names
/// cost the decoder.
#[derive(Clone, Copy)]
#[repr(C, align(64))]
struct Known {
    key: [u64; KEY_WORDS],
    seen: u64,
    seen_frag: u32,
    next: u32,
    frag: [u32; 3],
    batch: u16,
    words: u8,
    /// The bytes of the last word past the closing quote.
    pad: u8,
}

const _: () = assert!(std::mem::size_of::<Known>() == 64);

/// The rest of what a decoder keeps per name: the name, and how many values and bytes of text
/// each class's fragment had in the last batch (a new fragment starts with that room: grown
/// by doubling from nothing, a batch's fragments were reallocated about once per event).
///
/// Also the name as JSON writes it, when it fits a [`LiteralName`], for its fragments (made
/// once per name here, not per fragment). One cache line, aligned to one: a rare name's
/// fragment reads it cold.
#[derive(Clone, Copy)]
#[repr(align(64))]
struct Cold {
    name: NameRef,
    room: [(u32, u32); 3],
    /// Room for nested values (arrays, objects), from the text fragment of the last batch.
    nested_room: u32,
    literal: Option<LiteralName>,
}

const _: () = assert!(std::mem::size_of::<Cold>() == 64);

const KEY_WORDS: usize = 4;
/// Bytes of a key (its closing quote included) compared a word at a time.
const KEY_BYTES: usize = 8 * KEY_WORDS;

const NO_NEXT: u32 = u32::MAX;

/// Marks a [`Known::next`] that was wrong last time it was tried: not tried again until a
/// lookup finds it right. The name before a rare one is followed by a different rare name each
/// time, and trying the last one read its entry cold only to find another name (a quarter of
/// the scanner's own time at 64,000 names). A marked number is past every entry, so the
/// prediction's bounds check skips it at no cost.
const UNSTABLE: u32 = 1 << 31;

/// The slot of text (strings and nested values) in a [`Known`]'s per-class arrays (numbers
/// are 0, booleans 1).
const TEXT_SLOT: usize = 2;

/// Room for a batch of `lines` lines, from `x` in the last batch of `last_lines` lines, with
/// [`slack`]. Scaled before divided: a whole number per line fell short by the fraction, and
/// the batch's property order then doubled its way past it, every batch.
fn scaled_room(x: usize, last_lines: usize, lines: usize) -> usize {
    slack(x.saturating_mul(lines) / last_lines.max(1)) as usize
}

/// The room a fragment gets from its size in the last batch: an eighth more, since batches
/// vary (with the exact size, every batch a little fuller than the last copied half its
/// fragments' buffers whole as they doubled).
fn slack(n: usize) -> u32 {
    (n + n / 8 + 8).min(u32::MAX as usize) as u32
}

impl Known {
    fn new(raw: &str) -> Self {
        let (key, len) = match quoted_words(raw) {
            Some(key) => (key, raw.len() + 1),
            None => ([0u64; KEY_WORDS], 0),
        };
        // A name JSON escapes is not written in a line as it is: not compared so there.
        let literal = LiteralName::written_as_is(raw.as_bytes());
        let words = if literal { len.div_ceil(8) } else { 0 };
        Known {
            key,
            seen: 0,
            seen_frag: NO_FRAG,
            next: NO_NEXT,
            frag: [NO_FRAG; 3],
            batch: 0,
            words: words as u8,
            pad: (8 * words).saturating_sub(len) as u8,
        }
    }

    /// Whether the name is `raw`, whose bytes with a closing quote are `quoted` (as words,
    /// zero past the quote; `None` for a name too long for them): from the words when they
    /// fit (they hold the quote, so equal words are equal names of equal length), without
    /// reading the name itself.
    #[inline(always)]
    fn is(&self, cold: &Cold, raw: &str, quoted: Option<&[u64; KEY_WORDS]>) -> bool {
        match quoted {
            Some(q) => self.key == *q,
            None => self.key == [0; KEY_WORDS] && cold.name.raw_static() == raw,
        }
    }

    /// Whether `b` starts with the name and its closing quote, and then the bytes they take;
    /// `None` when that cannot be told a word at a time here (too near the end of `b`, or no
    /// words for this name).
    #[inline(always)]
    fn starts(&self, b: &[u8]) -> Option<(bool, usize)> {
        // The words and the last one's unused bytes are the name's, worked out once (working
        // them out per key was 2% of W1's instructions).
        let words = self.words as usize;
        if words == 0 {
            return None;
        }
        let b = b.get(..8 * words)?;
        let word = |k: usize| {
            let mut chunk = [0u8; 8];
            chunk.copy_from_slice(&b[8 * k..8 * k + 8]);
            u64::from_le_bytes(chunk)
        };
        let mut diff = 0;
        for k in 0..words - 1 {
            diff |= word(k) ^ self.key[k];
        }
        let pad = self.pad as usize;
        diff |= (word(words - 1) & (u64::MAX >> (8 * pad))) ^ self.key[words - 1];
        Some((diff == 0, 8 * words - pad))
    }
}

impl Cold {
    fn new(name: NameRef) -> Self {
        Cold {
            name,
            room: [(0, 0); 3],
            nested_room: 0,
            literal: LiteralName::new(name.raw_static().as_bytes()),
        }
    }
}

/// `raw`'s bytes and a closing quote as the words a [`Known`] keeps of its name, or `None`
/// when they do not fit.
#[inline(always)]
fn quoted_words(raw: &str) -> Option<[u64; KEY_WORDS]> {
    let raw = raw.as_bytes();
    if raw.len() >= KEY_BYTES {
        return None;
    }
    let mut bytes = [0u8; KEY_BYTES];
    bytes[..raw.len()].copy_from_slice(raw);
    bytes[raw.len()] = b'"';
    let mut key = [0u64; KEY_WORDS];
    for (w, chunk) in key.iter_mut().zip(bytes.as_chunks::<8>().0) {
        *w = u64::from_le_bytes(*chunk);
    }
    Some(key)
}

impl Default for Interner {
    fn default() -> Self {
        Interner {
            names: HashTable::new(),
            hasher: Hasher::default(),
            by_id: Vec::new(),
            cold: Vec::new(),
            last: NO_NEXT,
            batch: 1,
            keys: Vec::new(),
        }
    }
}

impl Interner {
    pub fn get(&mut self, raw: &str) -> (u32, NameRef) {
        if let Some(next) = self.predicted() {
            let name = self.cold[next as usize].name;
            if name.raw_static() == raw {
                self.last = next;
                return (next, name);
            }
        }
        self.get_unpredicted(raw)
    }

    /// [`Interner::get`] for a name [`Interner::predict`] has just found is not the
    /// predicted one: looked up at once.
    pub fn get_unpredicted(&mut self, raw: &str) -> (u32, NameRef) {
        let id = self.lookup(raw);
        (id, self.cold[id as usize].name)
    }

    /// The number of `raw`, looked up (and made, the first time): what the scanner needs, and
    /// all it reads is the table and the name's [`Known`], not its [`Cold`] entry (with
    /// 64,000 rare names, reading the name there was one more cache miss per property, a
    /// fourteenth of the lookup's time).
    pub fn lookup(&mut self, raw: &str) -> u32 {
        let hash = self.hasher.hash_one(raw);
        let quoted = quoted_words(raw);
        let (by_id, cold) = (&self.by_id, &self.cold);
        let found = self
            .names
            .find(hash, |&id| {
                by_id[id as usize].is(&cold[id as usize], raw, quoted.as_ref())
            })
            .copied();
        let id = match found {
            Some(id) => id,
            None => {
                let id = self.by_id.len() as u32;
                let n = NameRef::intern(raw);
                self.by_id.push(Known::new(raw));
                self.cold.push(Cold::new(n));
                let (cold, hasher) = (&self.cold, &self.hasher);
                self.names.insert_unique(hash, id, |&id| {
                    hasher.hash_one(cold[id as usize].name.raw_static())
                });
                id
            }
        };
        if let Some(prev) = self.by_id.get_mut(self.last as usize) {
            prev.next = if prev.next & UNSTABLE != 0 {
                // Not tried (or never set): right this time, it is tried again next time.
                if prev.next & !UNSTABLE == id {
                    id
                } else {
                    id | UNSTABLE
                }
            } else {
                // Tried and wrong (or not comparable in place): not tried next time.
                id | UNSTABLE
            };
        }
        self.last = id;
        id
    }

    /// A new batch: no name has a fragment in it yet.
    fn next_batch(&mut self) {
        self.keys.clear();
        self.batch = self.batch.wrapping_add(1);
        if self.batch == 0 {
            // Stamps wrapped around: old entries could look current.
            for k in &mut self.by_id {
                k.batch = 0;
            }
            self.batch = 1;
        }
    }

    /// Notes the sizes of the batch's fragments, for the next batch's.
    fn remember(&mut self, ev: &Events) {
        for (f, &(id, c)) in ev.props.iter().zip(&self.keys) {
            let bytes = match &f.values {
                sluice_engine::batch::FragValues::Text(t) => t.bytes().len(),
                _ => 0,
            };
            if let Some(k) = self.cold.get_mut(id as usize) {
                k.room[c as usize] = (slack(f.len()), slack(bytes));
                // Only text holds nested values (a number fragment of the same name must not
                // wipe them out).
                if c as usize == TEXT_SLOT {
                    k.nested_room = match f.nested.len() {
                        0 => 0,
                        n => slack(n),
                    };
                }
            }
        }
    }

    /// Name `id`'s fragment of `class` in the batch, made on first use.
    #[inline(always)]
    pub(crate) fn frag(&mut self, ev: &mut Events, id: u32, class: TypeClass) -> u32 {
        let batch = self.batch;
        let k = &mut self.by_id[id as usize];
        if k.batch != batch {
            k.batch = batch;
            k.frag = [NO_FRAG; 3];
        }
        let c = match class {
            TypeClass::Number => 0,
            TypeClass::Boolean => 1,
            _ => TEXT_SLOT,
        };
        if k.frag[c] == NO_FRAG {
            let cold = &self.cold[id as usize];
            let (values, bytes) = cold.room[c];
            let nested = if c == TEXT_SLOT {
                cold.nested_room as usize
            } else {
                0
            };
            let f =
                ev.add_frag_with_room(cold.name, class, values as usize, bytes as usize, nested);
            ev.props[f as usize].literal_name = cold.literal;
            k.frag[c] = f;
            self.keys.push((id, c as u8));
        }
        k.frag[c]
    }

    /// Before a value of name `id` in event `event`: if the event had the name already (a
    /// repeated key), its earlier value is taken back, the last one winning.
    #[inline(always)]
    pub(crate) fn repeat(&mut self, ev: &mut Events, id: u32, event: u64) {
        let k = &self.by_id[id as usize];
        let (no, prev) = (k.seen, k.seen_frag);
        if no == event && prev != NO_FRAG {
            ev.unpush(prev);
        }
    }

    /// After a value of name `id` in event `event` went to `frag` ([`NO_FRAG`]: a null).
    #[inline(always)]
    pub(crate) fn seen(&mut self, id: u32, event: u64, frag: u32) {
        let k = &mut self.by_id[id as usize];
        (k.seen, k.seen_frag) = (event, frag);
    }

    #[inline(always)]
    fn predicted(&self) -> Option<u32> {
        let next = self.by_id.get(self.last as usize)?.next;
        ((next as usize) < self.by_id.len()).then_some(next)
    }

    /// The name that followed the last one asked, last time, if `b` (a line's bytes from a
    /// key's first character) spells it and its closing quote: its number and the
    /// bytes it takes with the quote. It is then the last asked.
    #[inline(always)]
    pub fn predict(&mut self, b: &[u8]) -> Option<(u32, usize)> {
        let next = self.by_id.get(self.last as usize)?.next;
        let k = self.by_id.get(next as usize)?;
        let (found, taken) = match k.starts(b) {
            Some(found) => found,
            None => {
                // Near the end of the line, or a name too long for words: byte by byte.
                let raw = self.cold[next as usize].name.raw_static().as_bytes();
                let literal = LiteralName::written_as_is(raw);
                let found = literal && b.starts_with(raw) && b.get(raw.len()) == Some(&b'"');
                (found, raw.len() + 1)
            }
        };
        if !found {
            return None;
        }
        self.last = next;
        Some((next, taken))
    }
}

/// Decodes Mixpanel event lines: `{"event": NAME, "properties": {"time": .., ...}}`.
pub struct MixpanelDecoder {
    /// Property names; event names have their own (their order follows no pattern, and
    /// would break the chain of property names that follow each other).
    interner: Interner,
    event_names: Interner,
    event_no: u64,
    scratch: String,
    /// The interner's numbers of `time` and `distinct_id`.
    time_id: u32,
    distinct_id: u32,
    /// Lines read with sonic-rs because the scanner gave up on them.
    pub fallbacks: u64,
    /// Off only in tests, to compare the scanner with the document reader.
    scanner: bool,
    /// The last batch's [`Events::room`], and its lines.
    room: (usize, usize, usize),
    room_lines: usize,
}

impl Default for MixpanelDecoder {
    fn default() -> Self {
        let mut interner = Interner::default();
        let time_id = interner.get("time").0;
        let distinct_id = interner.get("distinct_id").0;
        MixpanelDecoder {
            interner,
            event_names: Interner::default(),
            event_no: 0,
            scratch: String::new(),
            time_id,
            distinct_id,
            fallbacks: 0,
            scanner: true,
            room: (0, 0, 0),
            room_lines: 0,
        }
    }
}

/// No fragment: a key whose value was null.
pub(crate) const NO_FRAG: u32 = u32::MAX;

/// Makes the decoder; registered as format `mixpanel`.
pub fn mixpanel_decoder(_: &sluice_engine::format::DecoderSettings) -> Box<dyn Operator> {
    Box::new(MixpanelDecoder::default())
}

impl MixpanelDecoder {
    /// Decodes one line into `ev` (with `text`, the line as UTF-8 when it is); the reason it
    /// is a dead letter otherwise (and `ev` is as it was).
    fn decode_line(
        &mut self,
        ev: &mut Events,
        pos: Position,
        line: &[u8],
        text: Option<&str>,
    ) -> Result<(), String> {
        if let Some(text) = text.filter(|_| self.scanner) {
            let text = text.trim_matches(|c: char| c.is_ascii_whitespace());
            if !text.is_empty() {
                self.event_no += 1;
                let mut d = Decoding {
                    interner: &mut self.interner,
                    event_names: &mut self.event_names,
                    event_no: self.event_no,
                    time_id: self.time_id,
                    distinct_id: self.distinct_id,
                    scratch: &mut self.scratch,
                };
                match scan_line(&mut d, ev, pos, text) {
                    Ok(Ok(())) => return Ok(()),
                    Ok(Err(reason)) => return Err(reason.into()),
                    Err(GiveUp) => self.fallbacks += 1,
                }
            }
        }
        self.decode(ev, pos, line)
    }

    /// Decodes one line into `ev` through a sonic-rs document: the way for lines the scanner
    /// gives up on, which decides what they are.
    fn decode(&mut self, ev: &mut Events, pos: Position, line: &[u8]) -> Result<(), String> {
        let line = trim(line);
        if line.is_empty() {
            return Err("empty line".into());
        }
        if line[0] != b'{' {
            return Err(if sonic_rs::from_slice::<sonic_rs::Value>(line).is_ok() {
                "not a JSON object".into()
            } else {
                "invalid JSON".into()
            });
        }
        // One SIMD pass builds a DOM of the line: cheaper than a lazy scan that skips
        // `properties` once and then walks it again.
        let doc: sonic_rs::Value = match sonic_rs::from_slice(line) {
            Ok(v) => v,
            Err(e) => return Err(format!("invalid JSON: {}", first_line(&e.to_string()))),
        };
        let Some(obj) = doc.as_object() else {
            return Err("not a JSON object".into());
        };
        let name = match obj.get(&"event") {
            None => return Err("missing event name (`event`)".into()),
            Some(v) => match v.as_str() {
                Some("") => return Err("empty event name".into()),
                Some(s) => self.event_names.get(s).1,
                None => return Err("event name is not a string".into()),
            },
        };
        let Some(props_v) = obj.get(&"properties") else {
            return Err("missing `properties`".into());
        };
        let Some(props_obj) = props_v.as_object() else {
            return Err("`properties` is not an object".into());
        };
        self.event_no += 1;
        let mut time: Option<&sonic_rs::Value> = None;
        let mut distinct_id: Option<&sonic_rs::Value> = None;
        for (k, v) in props_obj.iter() {
            match k {
                "time" => {
                    time = Some(v);
                    continue;
                }
                "distinct_id" => {
                    distinct_id = Some(v);
                    continue;
                }
                _ => {}
            }
            let (id, _) = self.interner.get(k);
            // A repeated key: the last value wins, as in JSON parsers generally.
            self.interner.repeat(ev, id, self.event_no);
            // One look at the node (`as_ref`): asking its type and then its value unpacked it
            // twice, which was a sixth of the decoder's own instructions.
            let frag = match v.as_ref() {
                ValueRef::Null => NO_FRAG,
                ValueRef::Bool(b) => {
                    let f = self.interner.frag(ev, id, TypeClass::Boolean);
                    ev.push_bool(f, b);
                    f
                }
                ValueRef::Number(n) => match n.as_f64() {
                    Some(x) => {
                        let f = self.interner.frag(ev, id, TypeClass::Number);
                        ev.push_num(f, x);
                        f
                    }
                    None => {
                        let f = self.interner.frag(ev, id, TypeClass::String);
                        let text = sonic_rs::to_string(v).unwrap_or_default();
                        ev.push_text(f, &text, false);
                        f
                    }
                },
                ValueRef::String(s) => {
                    let f = self.interner.frag(ev, id, TypeClass::String);
                    ev.push_text(f, s, false);
                    f
                }
                ValueRef::Array(_) | ValueRef::Object(_) => {
                    let f = self.interner.frag(ev, id, TypeClass::String);
                    let text = sonic_rs::to_string(v).unwrap_or_default();
                    ev.push_text(f, &text, true);
                    f
                }
            };
            self.interner.seen(id, self.event_no, frag);
        }
        let time_us = match time_of(time) {
            Ok(t) => t,
            Err(reason) => {
                ev.abandon_row();
                return Err(reason.into());
            }
        };
        let distinct = match distinct_id.map(|v| v.as_ref()) {
            None | Some(ValueRef::Null) => None,
            Some(ValueRef::String(s)) => Some(s),
            Some(_) => {
                self.scratch.clear();
                if let Some(v) = distinct_id {
                    self.scratch
                        .push_str(&sonic_rs::to_string(v).unwrap_or_default());
                }
                Some(self.scratch.as_str())
            }
        };
        ev.finish_row(name, time_us, pos, distinct);
        Ok(())
    }
}

/// `properties.time` in microseconds (SPEC §2.1: above 1e11, milliseconds).
fn time_of(time: Option<&sonic_rs::Value>) -> Result<i64, &'static str> {
    match time {
        None => Err("missing `properties.time`"),
        Some(t) => match t.get_type() {
            JsonType::Number => match t.as_f64() {
                Some(f) => micros(f),
                None => Err("`properties.time` is not a usable epoch time"),
            },
            _ => Err("`properties.time` is not a number"),
        },
    }
}

/// An epoch time in seconds (or milliseconds, above 1e11) as microseconds.
pub(crate) fn micros(f: f64) -> Result<i64, &'static str> {
    if f.is_finite() && f >= 0.0 {
        Ok(if f > MS_THRESHOLD {
            (f * 1000.0) as i64
        } else {
            (f * 1_000_000.0) as i64
        })
    } else {
        Err("`properties.time` is not a usable epoch time")
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
        let mut ev = std::mem::take(&mut batch.events);
        if ev.is_empty() {
            // Room for as many properties and bytes of ids per line, and fragments, as the last
            // batch had.
            ev = Events::default();
            let lines = raw.lines.len();
            let (props, frags, ids) = self.room;
            let per_line = |x: usize| scaled_room(x, self.room_lines, lines);
            ev.reserve(lines, per_line(props), frags, per_line(ids));
        }
        self.interner.next_batch();
        // The batch's UTF-8 is checked once, in one pass; line by line only if it fails.
        let whole = simdutf8::basic::from_utf8(&raw.buf).ok();
        for &(offset, start, end) in &raw.lines {
            let pos = Position {
                partition: raw.partition,
                offset,
            };
            let line = &raw.buf[start as usize..end as usize];
            let text = match whole {
                Some(all) => all.get(start as usize..end as usize),
                None => simdutf8::basic::from_utf8(line).ok(),
            };
            if let Err(reason) = self.decode_line(&mut ev, pos, line, text) {
                batch.dead.push(DeadLetter {
                    pos,
                    reason,
                    raw: String::from_utf8_lossy(line).into_owned(),
                });
            }
        }
        self.interner.remember(&ev);
        if !raw.lines.is_empty() {
            self.room = ev.room();
            self.room_lines = raw.lines.len();
        }
        batch.events = ev;
        Ok(())
    }

    fn fork(&self) -> Option<Box<dyn Operator>> {
        Some(Box::new(MixpanelDecoder::default()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use sluice_engine::batch::{RawLines, ValueRef};

    fn decode_lines(lines: &[&str]) -> Batch {
        decode_with(lines, true)
    }

    /// Decodes with the scanner (and the fallback it hands lines to), or with the document
    /// reader alone.
    fn decode_with<S: AsRef<str>>(lines: &[S], scanner: bool) -> Batch {
        let mut b = Batch {
            raw: RawLines::from_lines(lines),
            ..Default::default()
        };
        let mut d = MixpanelDecoder {
            scanner,
            ..Default::default()
        };
        d.process(&mut b).unwrap();
        b
    }

    /// A batch as comparable text: per event its name, time, distinct id and properties
    /// (nested values as the JSON they mean, each fraction in them written `#` and kept
    /// aside in `floats`), then the dead letters with their reasons.
    fn canonical(b: &Batch, floats: &mut Vec<f64>) -> Vec<String> {
        let mut out: Vec<String> = b
            .events
            .iter()
            .map(|e| {
                let props: Vec<String> = e
                    .props()
                    .map(|(_, k, v)| match v {
                        ValueRef::Json(t) => {
                            let j: serde_json::Value = serde_json::from_str(t)
                                .unwrap_or_else(|err| panic!("{t} is not JSON: {err}"));
                            format!("{:?}=json:{}", k.raw(), fractions_aside(j, floats))
                        }
                        ValueRef::Num(x) => format!("{:?}={:?}", k.raw(), x.to_bits()),
                        v => format!("{:?}={v:?}", k.raw()),
                    })
                    .collect();
                format!(
                    "{}: {:?} {} {:?} {}",
                    e.pos().offset,
                    e.name().raw(),
                    e.time_us(),
                    e.distinct_id(),
                    props.join(", ")
                )
            })
            .collect();
        out.extend(
            b.dead
                .iter()
                .map(|d| format!("{}: dead: {}", d.pos.offset, d.reason)),
        );
        out
    }

    /// `value` with every fraction written `#` and pushed onto `floats`. The nested text the
    /// scanner keeps is the line's own; sonic-rs writes back the number it read, which may be
    /// one unit in the last place away from the text (it reads `8.52487099226642e-24` as
    /// `8.524870992266421e-24`) and says `0.0` for `-0.0`: `agree` compares them as numbers.
    fn fractions_aside(value: serde_json::Value, floats: &mut Vec<f64>) -> serde_json::Value {
        use serde_json::Value as J;
        match value {
            J::Number(n) if n.is_f64() => {
                floats.push(n.as_f64().unwrap_or(f64::NAN));
                J::from("#")
            }
            J::Array(a) => J::Array(a.into_iter().map(|v| fractions_aside(v, floats)).collect()),
            J::Object(o) => J::Object(
                o.into_iter()
                    .map(|(k, v)| (k, fractions_aside(v, floats)))
                    .collect(),
            ),
            v => v,
        }
    }

    /// Whether two fractions are the same number but for rounding in the last place.
    fn near(a: f64, b: f64) -> bool {
        a == b || (a - b).abs() <= a.abs().max(b.abs()) * 4.0 * f64::EPSILON
    }

    /// Whether nested text is compact: no whitespace outside strings.
    fn compact(t: &str) -> bool {
        crate::stringify_nested::compact(t) == t
    }

    /// The scanner and the document reader agree on `lines`; the scanner's nested text is
    /// compact. Returns how many lines the scanner gave up on.
    fn agree<S: AsRef<str> + std::fmt::Debug>(lines: &[S]) -> u64 {
        let fast = decode_with(lines, true);
        let slow = decode_with(lines, false);
        let (mut fa, mut fb) = (Vec::new(), Vec::new());
        let (a, b) = (canonical(&fast, &mut fa), canonical(&slow, &mut fb));
        for (x, y) in a.iter().zip(&b) {
            assert_eq!(x, y, "the scanner and the document reader differ");
        }
        assert_eq!(a.len(), b.len(), "{lines:?}");
        assert_eq!(fa.len(), fb.len(), "{lines:?}");
        for (x, y) in fa.iter().zip(&fb) {
            assert!(near(*x, *y), "nested {x} and {y} differ: {lines:?}");
        }
        for e in fast.events.iter() {
            for (_, _, v) in e.props() {
                if let ValueRef::Json(t) = v {
                    assert!(compact(t), "{t} is not compact");
                }
            }
        }
        let mut d = MixpanelDecoder::default();
        let mut b = Batch {
            raw: RawLines::from_lines(lines),
            ..Default::default()
        };
        d.process(&mut b).unwrap();
        d.fallbacks
    }

    #[test]
    fn a_text_fragment_keeps_room_for_its_nested_values_beside_a_number_fragment() {
        // Name `a` has nested values (text) and numbers in each batch: the number fragment,
        // noted after the text one, must not take the text fragment's nested room away.
        let lines: Vec<String> = (0..40)
            .map(|i| {
                let a = if i % 4 == 3 {
                    "7".to_string()
                } else {
                    format!("[{i}]")
                };
                format!(r#"{{"event":"e","properties":{{"time":1,"a":{a}}}}}"#)
            })
            .collect();
        let mut d = MixpanelDecoder::default();
        for batch in 0..2 {
            let mut b = Batch {
                raw: RawLines::from_lines(&lines),
                ..Default::default()
            };
            d.process(&mut b).unwrap();
            let text = b
                .events
                .props
                .iter()
                .find(|f| f.name.raw() == "a" && f.class() == TypeClass::String)
                .unwrap();
            assert_eq!(text.nested.len(), 30);
            if batch == 1 {
                // The room the last batch noted (grown from less, it would stop at 32).
                let room = slack(30) as usize;
                assert!(text.nested.capacity() >= room, "{}", text.nested.capacity());
            }
        }
    }

    #[test]
    fn a_batch_gets_at_least_the_room_the_last_one_needed_per_line() {
        // 25.9 properties per line last time: 1,000 lines need 25,900, not 25 x 1,000.
        assert!(scaled_room(26_522, 1_024, 1_000) >= 25_900);
        for (x, last, lines) in [(0, 0, 10), (7, 3, 3), (1_000_003, 1_024, 2_048), (5, 1, 0)] {
            let room = scaled_room(x, last, lines);
            assert!(
                room * last.max(1) >= x * lines,
                "{x} {last} {lines}: {room}"
            );
            // An eighth more, and a few: never a multiple of what was needed.
            assert!(
                room <= x * lines / last.max(1) * 9 / 8 + 8,
                "{x} {last} {lines}: {room}"
            );
        }
    }

    #[test]
    fn a_name_is_predicted_after_another_once_it_followed_it_twice_running() {
        // Each name asked as a scanner asks it: the predicted one if the line spells it,
        // else looked up. A successor is tried once it followed the name twice running, and
        // not after it was wrong, until it is right again.
        let mut i = Interner::default();
        let mut ask = |name: &str| {
            let line = format!("{name}\":1}}}}");
            match i.predict(line.as_bytes()) {
                Some((id, taken)) => {
                    assert_eq!(taken, name.len() + 1);
                    (id, true)
                }
                None => (i.get_unpredicted(name).0, false),
            }
        };
        let asked: Vec<bool> = ["a", "b", "a", "c", "a", "c", "a", "c", "a", "b", "a", "b"]
            .iter()
            .map(|n| ask(n).1)
            .collect();
        // a->b, then a->c: a's successor changes, not tried; c follows a twice running, then
        // it is tried (and right); b after a is wrong once, then not tried.
        let want = [
            false, false, false, false, false, false, false, true, true, false, false, false,
        ];
        assert_eq!(asked, want);
        // b->a and a->b have each been seen twice running by now.
        assert_eq!(ask("a"), (0, true));
        assert_eq!(ask("b"), (1, true));
    }

    /// A fragment carries its name as JSON writes it (for `mp_properties`) when JSON writes
    /// the name as it is and it fits: names of 0 to 39 bytes, names JSON escapes, names of
    /// several-byte characters.
    #[test]
    fn fragments_carry_the_names_json_writes_as_they_are() {
        let mut names: Vec<String> = (0..40).map(|n| "k".repeat(n)).collect();
        names.extend(["a\\\"b", "tab\\t", "é中", "ü".repeat(12).as_str()].map(String::from));
        let props: Vec<String> = names.iter().map(|n| format!(r#""{n}":1"#)).collect();
        let line = format!(
            r#"{{"event":"e","properties":{{"time":1,{}}}}}"#,
            props.join(",")
        );
        let b = decode_lines(&[line.as_str(), line.as_str()]);
        assert!(b.dead.is_empty(), "{:?}", b.dead);
        let mut kept = 0;
        for f in &b.events.props {
            let raw = f.name.raw();
            let plain = !raw.bytes().any(|c| c == b'"' || c == b'\\' || c < 0x20);
            match &f.literal_name {
                Some(l) => {
                    assert_eq!(l.as_bytes(), raw.as_bytes());
                    kept += 1;
                }
                None => assert!(!plain || raw.len() > LiteralName::MAX, "{raw:?}"),
            }
        }
        // Every plain name of up to 24 bytes: 0 to 24 k's, é中 and the ü's.
        assert_eq!(kept, 25 + 2);
    }

    #[test]
    fn predicted_names_of_every_length_take_their_own_bytes() {
        // The same names in the same order on every line, so from the second line on each key
        // is the predicted one: names ending on each byte of a word (the quote filling a word,
        // or spilling into the next), names too long for the words, names JSON escapes, and a
        // name that is a prefix of the next one; the last key is too near the end of its line
        // for a word (compared byte by byte there).
        let mut names: Vec<String> = (0..40).map(|n| "k".repeat(n)).collect();
        names.extend(["a\\\"b", "tab\\t", "é中", "z"].map(String::from));
        let line = |v: usize| {
            let props: Vec<String> = names
                .iter()
                .enumerate()
                .map(|(i, n)| format!(r#""{n}":{}"#, i + v))
                .collect();
            format!(
                r#"{{"event":"e","properties":{{"time":1,{}}}}}"#,
                props.join(",")
            )
        };
        let lines: Vec<String> = (0..4).map(line).collect();
        assert_eq!(agree(&lines), 0);
        let b = decode_lines(&lines.iter().map(|l| l.as_str()).collect::<Vec<_>>());
        assert!(b.dead.is_empty(), "{:?}", b.dead);
        for r in 0..4 {
            let got: Vec<(String, f64)> = b
                .events
                .get(r)
                .props()
                .map(|(_, k, v)| match v {
                    ValueRef::Num(x) => (k.raw().to_string(), x),
                    v => panic!("{v:?}"),
                })
                .collect();
            let want: Vec<(String, f64)> = names
                .iter()
                .enumerate()
                .map(|(i, n)| {
                    let n = n.replace("\\\"", "\"").replace("\\t", "\t");
                    (n, (i + r) as f64)
                })
                .collect();
            assert_eq!(got, want, "line {r}");
        }
    }

    #[test]
    fn the_scanner_reads_generated_events_as_the_document_reader_does() {
        let gen = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("../../shared/tools/gen_events.py");
        let out = std::process::Command::new("python3")
            .arg(&gen)
            .args(["--events", "3000", "--seed", "5", "--bad-fraction", "0.05"])
            .output();
        let Ok(out) = out.map_err(|e| eprintln!("{}: {e}", gen.display())) else {
            assert!(
                std::env::var_os("SLUICE_REQUIRE_SHARED").is_none(),
                "the shared generator is required"
            );
            return;
        };
        let text = String::from_utf8(out.stdout).unwrap();
        let lines: Vec<&str> = text.lines().collect();
        assert!(lines.len() >= 2900, "{} lines", lines.len());
        let fallbacks = agree(&lines);
        // Only the malformed lines (about 5%) go to the fallback.
        assert!(fallbacks < 300, "{fallbacks} fallbacks");
    }

    #[test]
    fn the_scanner_reads_the_shared_files_as_the_document_reader_does() {
        let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../../shared/data");
        if !root.is_dir() {
            assert!(
                std::env::var_os("SLUICE_REQUIRE_SHARED").is_none(),
                "{} is required",
                root.display()
            );
            return;
        }
        let mut files = vec![root];
        let mut lines = 0;
        while let Some(p) = files.pop() {
            if p.is_dir() {
                files.extend(std::fs::read_dir(&p).unwrap().map(|e| e.unwrap().path()));
                continue;
            }
            // Gzipped files are left out: this crate reads no gzip.
            if p.extension().is_some_and(|e| e == "gz") {
                continue;
            }
            let bytes = std::fs::read(&p).unwrap();
            let text = String::from_utf8_lossy(&bytes);
            let all: Vec<&str> = text.lines().collect();
            for chunk in all.chunks(512) {
                agree(chunk);
                lines += chunk.len();
            }
        }
        assert!(lines > 10_000, "{lines} lines");
    }

    mod fuzz {
        use super::*;
        use proptest::prelude::*;

        fn ws() -> impl Strategy<Value = String> {
            prop_oneof![
                6 => Just(String::new()),
                1 => Just(" ".to_string()),
                1 => Just("\n\t ".to_string()),
            ]
        }

        fn string_body() -> impl Strategy<Value = String> {
            prop_oneof![
                "[a-zA-Z0-9 _.$-]{0,30}",
                "[a-z]{0,5}(\\\\[\"\\\\/bfnrt]|\\\\u00[0-7][0-9a-f]|\\\\u20ac|\\\\ud83c\\\\udf89|é|中|🎉)[a-z]{0,5}",
                Just("\\ud800".to_string()),
                Just("\\x".to_string()),
                Just("tab\there".to_string()),
            ]
        }

        fn number() -> impl Strategy<Value = String> {
            prop_oneof![
                any::<i32>().prop_map(|x| x.to_string()),
                any::<i64>().prop_map(|x| x.to_string()),
                any::<u64>().prop_map(|x| x.to_string()),
                any::<f64>()
                    .prop_filter("finite", |x| x.is_finite())
                    .prop_map(|x| x.to_string()),
                any::<f64>()
                    .prop_filter("finite", |x| x.is_finite())
                    .prop_map(|x| format!("{x:e}")),
                "-?(0|[1-9][0-9]{0,20})(\\.[0-9]{1,20})?([eE][+-]?[0-9]{1,3})?",
                Just("-0".to_string()),
                Just("1e400".to_string()),
                Just("01".to_string()),
                Just("1.".to_string()),
                Just("123456789012345678901234567890".to_string()),
            ]
        }

        fn value() -> impl Strategy<Value = String> {
            let leaf = prop_oneof![
                string_body().prop_map(|s| format!("\"{s}\"")),
                number(),
                Just("true".to_string()),
                Just("false".to_string()),
                Just("null".to_string()),
            ];
            leaf.prop_recursive(3, 24, 4, |inner| {
                prop_oneof![
                    (prop::collection::vec((inner.clone(), ws()), 0..4)).prop_map(|v| {
                        let items: Vec<String> =
                            v.into_iter().map(|(x, w)| format!("{w}{x}{w}")).collect();
                        format!("[{}]", items.join(","))
                    }),
                    (prop::collection::vec(("[a-z]{1,3}", inner, ws()), 0..4)).prop_map(|v| {
                        let items: Vec<String> = v
                            .into_iter()
                            .map(|(k, x, w)| format!("{w}\"{k}\"{w}:{w}{x}"))
                            .collect();
                        format!("{{{}}}", items.join(","))
                    }),
                ]
            })
        }

        fn key() -> impl Strategy<Value = String> {
            prop_oneof![
                4 => "[a-d]",
                1 => Just("time".to_string()),
                1 => Just("distinct_id".to_string()),
                1 => Just("$city".to_string()),
                1 => Just("a\\u0062".to_string()),
                1 => Just("ti\\u006de".to_string()),
                1 => string_body(),
            ]
        }

        fn line() -> impl Strategy<Value = String> {
            let props = prop::collection::vec((key(), value(), ws()), 0..8).prop_map(|v| {
                let items: Vec<String> = v
                    .into_iter()
                    .map(|(k, x, w)| format!("{w}\"{k}\"{w}:{w}{x}{w}"))
                    .collect();
                format!("{{{}}}", items.join(","))
            });
            let time = prop_oneof![
                Just(String::new()),
                number().prop_map(|n| format!("\"time\":{n},")),
                Just("\"time\":\"x\",".to_string()),
            ];
            let event = prop_oneof![
                4 => string_body().prop_map(|s| format!("\"event\":\"{s}\"")),
                1 => value().prop_map(|v| format!("\"event\":{v}")),
                1 => Just("\"other\":1".to_string()),
                1 => Just("\"ev\\u0065nt\":\"x\"".to_string()),
            ];
            (event, time, props, ws(), any::<bool>(), any::<u16>()).prop_map(
                |(event, time, props, w, event_first, cut)| {
                    let props = props.replacen('{', &format!("{{{time}"), 1);
                    let props = if props.ends_with(",}") {
                        props.replace(",}", "}")
                    } else {
                        props
                    };
                    let body = if event_first {
                        format!("{w}{event}{w},\"properties\"{w}:{w}{props}")
                    } else {
                        format!("\"properties\":{props},{w}{event}")
                    };
                    let line = format!("{{{body}}}");
                    // Sometimes cut short, or with a stray byte.
                    match cut % 16 {
                        0 => {
                            let mut at = line.len() * (cut as usize % 97) / 97;
                            while !line.is_char_boundary(at) {
                                at -= 1;
                            }
                            line[..at].to_string()
                        }
                        1 => format!("{line}x"),
                        _ => line,
                    }
                },
            )
        }

        proptest! {
            #![proptest_config(ProptestConfig::with_cases(3000))]
            #[test]
            fn the_scanner_agrees_with_the_document_reader(lines in prop::collection::vec(line(), 1..6)) {
                agree(&lines);
            }
        }
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
    fn the_interner_tells_names_apart_by_their_bytes_at_every_length() {
        // Names compared as words (up to 30 bytes and the quote) and names that are not (31
        // bytes and more, quotes, backslashes, control bytes), names that are each other's
        // prefixes, and enough of them for the table to grow several times: looked up
        // again, in another order, each has its first number.
        let mut names: Vec<String> = Vec::new();
        for len in 0..40 {
            names.push("n".repeat(len));
            names.push(format!("{}\"", "q".repeat(len)));
            names.push(format!("{}\\", "b".repeat(len)));
            names.push(format!("{}\u{1}", "c".repeat(len)));
            names.push(format!("{}é", "e".repeat(len)));
        }
        names.extend((0..5_000).map(|k| format!("custom_{k}")));
        let mut i = Interner::default();
        let ids: Vec<u32> = names.iter().map(|n| i.get_unpredicted(n).0).collect();
        assert_eq!(ids, (0..names.len() as u32).collect::<Vec<_>>());
        for (k, n) in names.iter().enumerate().rev() {
            let (id, name) = i.get_unpredicted(n);
            assert_eq!((id as usize, name.raw()), (k, n.as_str()));
        }
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
        let json = |r: usize| -> Vec<(String, String)> {
            b.events
                .get(r)
                .props()
                .map(|(_, k, v)| match v {
                    ValueRef::Json(t) => (k.raw().to_string(), t.to_string()),
                    v => panic!("{v:?} is not nested"),
                })
                .collect()
        };
        // Strings as written (escapes kept), the spaces between tokens gone.
        let expected_a = format!(r#"{{"k":[1,"{long}",{{"z":null}}]}}"#);
        assert_eq!(
            json(0),
            [("a".to_string(), expected_a), ("b".into(), "[]".into())]
        );
        assert_eq!(
            json(1),
            [
                ("c".to_string(), r#"{"q":"\u00e9\n"}"#.to_string()),
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
        let e = b.events.get(0);
        assert_eq!(e.name().raw(), "Signed up");
        assert_eq!(e.time_us(), 1_602_611_311_000_000);
        assert_eq!(e.distinct_id(), Some("u-42"));
        let vals: Vec<(&str, ValueRef<'_>)> =
            e.props().map(|(_, k, v)| (k.raw_static(), v)).collect();
        // A null is no value.
        assert_eq!(
            vals,
            vec![
                ("$city", ValueRef::Str("Paris")),
                ("n", ValueRef::Num(1.5)),
                ("ok", ValueRef::Bool(true)),
                ("cart", ValueRef::Json(r#"[{"sku":"A1"}]"#)),
            ]
        );
    }

    #[test]
    fn milliseconds_and_numeric_distinct_ids() {
        let b = decode_lines(&[
            r#"{"event":"a","properties":{"time":1602611311123,"distinct_id":42}}"#,
        ]);
        assert_eq!(b.events.get(0).time_us(), 1_602_611_311_123_000);
        assert_eq!(b.events.get(0).distinct_id(), Some("42"));
    }

    #[test]
    fn duplicate_keys_keep_the_last_value() {
        let b = decode_lines(&[
            r#"{"event":"a","properties":{"time":1,"k":1,"k":"two"}}"#,
            r#"{"event":"a","properties":{"time":1,"k":"one","j":2,"k":null}}"#,
            r#"{"event":"a","properties":{"time":1,"k":[1],"k":false}}"#,
        ]);
        let props = |r: usize| -> Vec<(String, ValueRef<'_>)> {
            b.events
                .get(r)
                .props()
                .map(|(_, k, v)| (k.raw().to_string(), v))
                .collect()
        };
        assert_eq!(props(0), [("k".to_string(), ValueRef::Str("two"))]);
        assert_eq!(props(1), [("j".to_string(), ValueRef::Num(2.0))]);
        assert_eq!(props(2), [("k".to_string(), ValueRef::Bool(false))]);
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
