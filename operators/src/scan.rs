//! The `mixpanel` decoder's one-pass scanner: a line's bytes straight into the batch's
//! fragments, with no document tree in between.
//!
//! It reads JSON as RFC 8259 has it (the line's UTF-8 is checked beforehand), eight bytes at a
//! time where it looks for the end of a string, and writes each property value where it
//! belongs as it goes: strings without escapes are copied once, from the line into their
//! fragment; numbers are converted where they stand; nested arrays and objects are checked
//! and kept as their own compact text. Property names are found by comparing the line's bytes
//! with the name that followed the previous one last time (events of a kind list their
//! properties in the same order), so most keys cost one comparison and no hashing.
//!
//! Whatever it does not take on (a line that is not valid JSON, a surrogate escape, a number
//! outside the range of a double, nesting deeper than [`MAX_DEPTH`]) it gives up on, leaving
//! the batch as it was, and the decoder reads that line again with sonic-rs, which decides.

use sluice_engine::batch::{Events, NameRef, Position, TypeClass};

use crate::decode::{micros, Interner, NO_FRAG};

/// Nesting a scan follows within a property value; deeper values go to the fallback.
pub const MAX_DEPTH: usize = 64;

/// The scanner gave up on a line: read it again another way.
#[derive(Debug, PartialEq, Eq)]
pub struct GiveUp;

/// What a scan found wrong with an event that is valid JSON: the dead letter's reason.
pub type Dead = &'static str;

type Scan<T> = std::result::Result<T, GiveUp>;

const LO: u64 = 0x0101_0101_0101_0101;
const HI: u64 = 0x8080_8080_8080_8080;

/// Bytes of `w` equal to `c`: the lowest flagged byte is the first one (later flags may be
/// false, after a borrow).
#[inline(always)]
fn bytes_eq(w: u64, c: u8) -> u64 {
    let x = w ^ (LO * c as u64);
    x.wrapping_sub(LO) & !x & HI
}

/// Bytes of `w` below `n` (`n` at most 128), with the same caveat as [`bytes_eq`].
#[inline(always)]
fn bytes_below(w: u64, n: u8) -> u64 {
    w.wrapping_sub(LO * n as u64) & !w & HI
}

/// The first byte at or after `i` that ends a plain run of string content: `"`, `\` or a
/// control character; `b.len()` if none.
#[inline(always)]
fn string_stop(b: &[u8], mut i: usize) -> usize {
    // Sixteen bytes a step where SSE2 is certain (every x86_64): a third of the instructions
    // per byte of the eight-byte words below, which still take the rest.
    #[cfg(all(target_arch = "x86_64", target_feature = "sse2"))]
    while let Some(chunk) = b.get(i..).and_then(|s| s.first_chunk::<16>()) {
        use std::arch::x86_64::{
            _mm_cmpeq_epi8, _mm_loadu_si128, _mm_min_epu8, _mm_movemask_epi8, _mm_or_si128,
            _mm_set1_epi8,
        };
        // SAFETY: the build enables SSE2 (the cfg above), `chunk` is 16 readable bytes, and
        // `_mm_loadu_si128` takes any alignment.
        let m = unsafe {
            let v = _mm_loadu_si128(chunk.as_ptr().cast());
            let quote = _mm_cmpeq_epi8(v, _mm_set1_epi8(b'"' as i8));
            let backslash = _mm_cmpeq_epi8(v, _mm_set1_epi8(b'\\' as i8));
            // Unsigned: a byte is below 0x20 where its minimum with 0x1F is itself.
            let control = _mm_cmpeq_epi8(_mm_min_epu8(v, _mm_set1_epi8(0x1F)), v);
            _mm_movemask_epi8(_mm_or_si128(_mm_or_si128(quote, backslash), control)) as u32
        };
        if m != 0 {
            return i + m.trailing_zeros() as usize;
        }
        i += 16;
    }
    while let Some(chunk) = b.get(i..).and_then(|s| s.first_chunk::<8>()) {
        let w = u64::from_le_bytes(*chunk);
        let m = bytes_eq(w, b'"') | bytes_eq(w, b'\\') | bytes_below(w, 0x20);
        if m != 0 {
            return i + (m.trailing_zeros() / 8) as usize;
        }
        i += 8;
    }
    while let Some(&c) = b.get(i) {
        if c == b'"' || c == b'\\' || c < 0x20 {
            return i;
        }
        i += 1;
    }
    b.len()
}

/// The powers of ten a double holds exactly.
const POW10: [f64; 23] = [
    1e0, 1e1, 1e2, 1e3, 1e4, 1e5, 1e6, 1e7, 1e8, 1e9, 1e10, 1e11, 1e12, 1e13, 1e14, 1e15, 1e16,
    1e17, 1e18, 1e19, 1e20, 1e21, 1e22,
];

/// The powers of ten below eight digits' worth, as integers.
const POW10_INT: [u64; 8] = [1, 10, 100, 1_000, 10_000, 100_000, 1_000_000, 10_000_000];

/// Where the ASCII digits from `i` end: eight bytes a step (a fraction's digits, a time in
/// milliseconds), then one at a time.
#[inline(always)]
fn digits_end(b: &[u8], mut i: usize) -> usize {
    while let Some(chunk) = b.get(i..).and_then(|s| s.first_chunk::<8>()) {
        let m = not_digits(u64::from_le_bytes(*chunk));
        if m != 0 {
            return i + (m.trailing_zeros() / 8) as usize;
        }
        i += 8;
    }
    while let Some(b'0'..=b'9') = b.get(i) {
        i += 1;
    }
    i
}

/// Per byte of `w`, nonzero where it is not an ASCII digit: a digit is `0x3_` with a low half
/// below ten, which adding 6 leaves below 0x10. No addition carries out of its byte, so every
/// byte is told exactly.
#[inline(always)]
fn not_digits(w: u64) -> u64 {
    const HIGH: u64 = 0xF0F0_F0F0_F0F0_F0F0;
    let t = w ^ 0x3030_3030_3030_3030;
    (t | ((t & 0x0F0F_0F0F_0F0F_0F0F) + 0x0606_0606_0606_0606)) & HIGH
}

/// Whether the eight bytes of `w` are all ASCII digits.
#[inline(always)]
fn eight_digits(w: u64) -> bool {
    not_digits(w) == 0
}

/// The number eight ASCII digits spell (the first byte, lowest in `w`, the most
/// significant): pairs, then fours, then the eight combined by three multiplications.
#[inline(always)]
fn eight_digits_value(w: u64) -> u64 {
    let w = (w & 0x0F0F_0F0F_0F0F_0F0F).wrapping_mul(10 * 256 + 1) >> 8;
    let w = (w & 0x00FF_00FF_00FF_00FF).wrapping_mul(100 * 65536 + 1) >> 16;
    (w & 0x0000_FFFF_0000_FFFF).wrapping_mul(10000 * (1 << 32) + 1) >> 32
}

/// Where a number's fraction and exponent end (either may be absent), from `i` just after
/// its integer digits, with their grammar checked; and whether each was there.
#[inline(always)]
fn fraction_and_exponent(b: &[u8], mut i: usize) -> Scan<(usize, bool, bool)> {
    let fraction = b.get(i) == Some(&b'.');
    if fraction {
        i = some_digits(b, i + 1)?;
    }
    let exponent = matches!(b.get(i), Some(b'e' | b'E'));
    if exponent {
        i += 1;
        if let Some(b'+' | b'-') = b.get(i) {
            i += 1;
        }
        i = some_digits(b, i)?;
    }
    Ok((i, fraction, exponent))
}

/// The end of the digits at `i`, of which there must be one at least.
#[inline(always)]
fn some_digits(b: &[u8], from: usize) -> Scan<usize> {
    let i = digits_end(b, from);
    if i == from {
        Err(GiveUp)
    } else {
        Ok(i)
    }
}

fn hex4(b: &[u8]) -> Option<u32> {
    let mut v = 0;
    for &c in b.get(..4)? {
        v = v * 16 + (c as char).to_digit(16)?;
    }
    Some(v)
}

/// A line being scanned.
pub struct Scanner<'a> {
    s: &'a str,
    b: &'a [u8],
    i: usize,
}

impl<'a> Scanner<'a> {
    pub fn new(line: &'a str) -> Self {
        Scanner {
            s: line,
            b: line.as_bytes(),
            i: 0,
        }
    }

    #[inline(always)]
    fn peek(&self) -> Option<u8> {
        self.b.get(self.i).copied()
    }

    /// Skips whitespace; whether there was any. Lines written by programs mostly have none
    /// between tokens: one byte looked at.
    #[inline(always)]
    fn ws(&mut self) -> bool {
        match self.b.get(self.i) {
            Some(&c) if c > b' ' => false,
            _ => self.ws_run(),
        }
    }

    fn ws_run(&mut self) -> bool {
        let start = self.i;
        while let Some(b' ' | b'\t' | b'\n' | b'\r') = self.peek() {
            self.i += 1;
        }
        self.i != start
    }

    #[inline(always)]
    fn eat(&mut self, c: u8) -> Scan<()> {
        if self.peek() == Some(c) {
            self.i += 1;
            Ok(())
        } else {
            Err(GiveUp)
        }
    }

    /// Takes `c`, after whitespace if any: the byte is looked at once when there is none.
    #[inline(always)]
    fn eat_after_ws(&mut self, c: u8) -> Scan<()> {
        self.eat(c).or_else(|_| {
            self.ws_run();
            self.eat(c)
        })
    }

    /// After a member or element (and any whitespace): a comma (taken: `true`) or `close`
    /// (taken: `false`).
    #[inline(always)]
    fn comma_or(&mut self, close: u8) -> Scan<bool> {
        match self.take_comma_or(close) {
            Some(comma) => Ok(comma),
            None => self.comma_or_after_ws(close),
        }
    }

    fn comma_or_after_ws(&mut self, close: u8) -> Scan<bool> {
        self.ws_run();
        self.take_comma_or(close).ok_or(GiveUp)
    }

    /// A comma (taken: `Some(true)`) or `close` (taken: `Some(false)`) right here.
    #[inline(always)]
    fn take_comma_or(&mut self, close: u8) -> Option<bool> {
        let comma = match self.peek() {
            Some(b',') => true,
            Some(c) if c == close => false,
            _ => return None,
        };
        self.i += 1;
        Some(comma)
    }

    /// The text at `start..end`, which must begin and end on character boundaries. Checked
    /// inline: `str::get` is a call, made for every string of a line (2% of a W1 run).
    #[inline(always)]
    fn text(&self, start: usize, end: usize) -> Scan<&'a str> {
        let (_, from) = self.s.split_at_checked(start).ok_or(GiveUp)?;
        let (text, _) = from
            .split_at_checked(end.checked_sub(start).ok_or(GiveUp)?)
            .ok_or(GiveUp)?;
        Ok(text)
    }

    /// The rest of a string whose opening quote is behind: its content when it has no escape
    /// (`Ok(Some)`), or `Ok(None)` with `self.i` at the opening quote's end, for
    /// [`Scanner::unescape_into`].
    #[inline(always)]
    fn plain_string(&mut self) -> Scan<Option<&'a str>> {
        let start = self.i;
        let end = string_stop(self.b, start);
        match self.b.get(end) {
            Some(b'"') => {
                self.i = end + 1;
                self.text(start, end).map(Some)
            }
            Some(b'\\') => Ok(None),
            _ => Err(GiveUp),
        }
    }

    /// Unescapes the rest of a string (opening quote behind) onto `out`.
    fn unescape_into(&mut self, out: &mut String) -> Scan<()> {
        loop {
            let start = self.i;
            let end = string_stop(self.b, start);
            out.push_str(self.text(start, end)?);
            self.i = end;
            if self.string_end()? {
                return Ok(());
            }
            out.push(self.escape()?);
        }
    }

    /// [`Scanner::skip_string`] with its common case, a string without escapes, inline (the
    /// strings of nested values: a call each was a third of skipping them).
    #[inline(always)]
    fn skip_plain_string(&mut self) -> Scan<()> {
        let end = string_stop(self.b, self.i);
        if self.b.get(end) == Some(&b'"') {
            self.i = end + 1;
            return Ok(());
        }
        self.i = end;
        self.skip_string()
    }

    /// Skips the rest of a string (opening quote behind), checking its escapes.
    fn skip_string(&mut self) -> Scan<()> {
        loop {
            self.i = string_stop(self.b, self.i);
            if self.string_end()? {
                return Ok(());
            }
            self.escape()?;
        }
    }

    /// At a string's closing quote (taken: `true`) or at a backslash (`false`).
    #[inline(always)]
    fn string_end(&mut self) -> Scan<bool> {
        match self.peek() {
            Some(b'"') => {
                self.i += 1;
                Ok(true)
            }
            Some(b'\\') => Ok(false),
            _ => Err(GiveUp),
        }
    }

    /// The character an escape at `self.i` (its backslash) stands for, taken. Surrogates
    /// (pairs or lone) are left to the fallback.
    fn escape(&mut self) -> Scan<char> {
        let c = *self.b.get(self.i + 1).ok_or(GiveUp)?;
        self.i += 2;
        Ok(match c {
            b'"' => '"',
            b'\\' => '\\',
            b'/' => '/',
            b'b' => '\u{8}',
            b'f' => '\u{c}',
            b'n' => '\n',
            b'r' => '\r',
            b't' => '\t',
            b'u' => {
                let v = hex4(self.b.get(self.i..).ok_or(GiveUp)?).ok_or(GiveUp)?;
                self.i += 4;
                char::from_u32(v).ok_or(GiveUp)?
            }
            _ => return Err(GiveUp),
        })
    }

    /// A number at `self.i`: its value as a double, and whether it is written as an integer.
    #[inline(always)]
    fn number(&mut self) -> Scan<(f64, bool)> {
        // The place is kept in a local (in a register) and written back once.
        let b = self.b;
        let start = self.i;
        let mut i = start;
        let neg = b.get(i) == Some(&b'-');
        if neg {
            i += 1;
        }
        let digits = i;
        let mut v: u64 = 0;
        match b.get(i) {
            Some(b'0') => i += 1,
            Some(b'1'..=b'9') => {
                // Eight digits a step while there are eight (times in milliseconds have 13).
                while let Some(w) = b.get(i..).and_then(|r| r.first_chunk::<8>()) {
                    let w = u64::from_le_bytes(*w);
                    if !eight_digits(w) {
                        break;
                    }
                    v = v
                        .wrapping_mul(100_000_000)
                        .wrapping_add(eight_digits_value(w));
                    i += 8;
                }
                // The rest, fewer than eight, in one step too when a word is left: counted up
                // to the word's first other byte, moved to the word's end behind '0's.
                if let Some(w) = b.get(i..).and_then(|r| r.first_chunk::<8>()) {
                    let w = u64::from_le_bytes(*w);
                    let n = (not_digits(w).trailing_zeros() / 8) as usize;
                    if (1..8).contains(&n) {
                        let padded = (w << (64 - 8 * n)) | (0x3030_3030_3030_3030 >> (8 * n));
                        v = v
                            .wrapping_mul(POW10_INT[n])
                            .wrapping_add(eight_digits_value(padded));
                        i += n;
                    }
                } else {
                    while let Some(&c @ b'0'..=b'9') = b.get(i) {
                        v = v.wrapping_mul(10).wrapping_add((c - b'0') as u64);
                        i += 1;
                    }
                }
            }
            _ => return Err(GiveUp),
        }
        let int_len = i - digits;
        let (end, fraction, exponent) = fraction_and_exponent(b, i)?;
        let integer = !fraction && !exponent;
        self.i = end;
        if integer && int_len <= 18 {
            // Exact in an i64: converted as sonic-rs converts its integers.
            let x = v as i64;
            return Ok((if neg { -x } else { x } as f64, true));
        }
        if fraction && !exponent {
            // A decimal whose digits make an integer of at most 2^53 and whose fraction has
            // at most 22 digits is that integer over a power of ten, both exact as doubles:
            // one division, rounded correctly, is the nearest double (the fast path of every
            // correct reader, `str::parse` among them), without the call.
            let places = end - i - 1;
            if int_len + places <= 19 && places <= 22 {
                let m = b[i + 1..end].iter().fold(v, |m, &c| {
                    m.wrapping_mul(10).wrapping_add((c - b'0') as u64)
                });
                if m <= 1 << 53 {
                    let x = m as f64 / POW10[places];
                    return Ok((if neg { -x } else { x }, false));
                }
            }
        }
        let x: f64 = self.text(start, self.i)?.parse().map_err(|_| GiveUp)?;
        if !x.is_finite() || integer {
            // Integers past 18 digits and doubles out of range: the fallback decides.
            return Err(GiveUp);
        }
        Ok((x, false))
    }

    /// Skips a literal.
    #[inline(always)]
    fn literal(&mut self, word: &[u8]) -> Scan<()> {
        if self.b.get(self.i..self.i + word.len()) == Some(word) {
            self.i += word.len();
            Ok(())
        } else {
            Err(GiveUp)
        }
    }

    /// Skips a number, checking its grammar (no value made).
    #[inline(always)]
    fn skip_number(&mut self) -> Scan<()> {
        let b = self.b;
        let mut i = self.i;
        if b.get(i) == Some(&b'-') {
            i += 1;
        }
        match b.get(i) {
            Some(b'0') => i += 1,
            Some(b'1'..=b'9') => i = digits_end(b, i),
            _ => return Err(GiveUp),
        }
        let (i, _, exponent) = fraction_and_exponent(b, i)?;
        // A number past f64's range is refused by the document reader: let it say so.
        if exponent || i - self.i > 300 {
            let finite = std::str::from_utf8(&b[self.i..i])
                .ok()
                .and_then(|t| t.parse::<f64>().ok())
                .is_some_and(f64::is_finite);
            if !finite {
                return Err(GiveUp);
            }
        }
        self.i = i;
        Ok(())
    }

    /// Skips any value, checking it; whether it had no whitespace inside.
    fn skip_value(&mut self, depth: usize) -> Scan<bool> {
        match self.peek() {
            Some(b'"') => {
                self.i += 1;
                self.skip_string()?;
                Ok(true)
            }
            Some(b'{' | b'[') => self.skip_nested(depth),
            Some(b't') => self.literal(b"true").map(|_| true),
            Some(b'f') => self.literal(b"false").map(|_| true),
            Some(b'n') => self.literal(b"null").map(|_| true),
            Some(b'-' | b'0'..=b'9') => self.skip_number().map(|_| true),
            _ => Err(GiveUp),
        }
    }

    /// Skips the object or array at `self.i` (within `depth` others), checking it, in one
    /// loop over its tokens (a call per token and level cost a tenth of a run); whether it had
    /// no whitespace.
    fn skip_nested(&mut self, depth: usize) -> Scan<bool> {
        // The containers open, innermost last: their closing bytes.
        let mut open = [0u8; MAX_DEPTH];
        let mut level = 0usize;
        let mut compact = true;
        // Opening a container, from a value's first byte.
        macro_rules! open {
            ($close:expr) => {{
                if depth + level >= MAX_DEPTH {
                    return Err(GiveUp);
                }
                open[level] = $close;
                level += 1;
                self.i += 1;
            }};
        }
        match self.peek() {
            Some(b'{') => open!(b'}'),
            Some(b'[') => open!(b']'),
            _ => return Err(GiveUp),
        }
        // Just inside a container: it may close at once.
        let mut first = true;
        loop {
            compact &= !self.ws();
            let close = open[level - 1];
            if first && self.peek() == Some(close) {
                self.i += 1;
                level -= 1;
            } else {
                if close == b'}' {
                    self.eat(b'"')?;
                    self.skip_plain_string()?;
                    compact &= !self.ws();
                    self.eat(b':')?;
                    compact &= !self.ws();
                }
                match self.peek() {
                    Some(b'"') => {
                        self.i += 1;
                        self.skip_plain_string()?;
                    }
                    Some(b'{') => {
                        open!(b'}');
                        first = true;
                        continue;
                    }
                    Some(b'[') => {
                        open!(b']');
                        first = true;
                        continue;
                    }
                    Some(b't') => self.literal(b"true")?,
                    Some(b'f') => self.literal(b"false")?,
                    Some(b'n') => self.literal(b"null")?,
                    Some(b'-' | b'0'..=b'9') => self.skip_number()?,
                    _ => return Err(GiveUp),
                }
            }
            // After a value (or a container just closed): a comma, or closes.
            loop {
                if level == 0 {
                    return Ok(compact);
                }
                compact &= !self.ws();
                match self.peek() {
                    Some(b',') => {
                        self.i += 1;
                        break;
                    }
                    Some(c) if c == open[level - 1] => {
                        self.i += 1;
                        level -= 1;
                    }
                    _ => return Err(GiveUp),
                }
            }
            first = false;
        }
    }

    /// The text of the nested value just skipped (from `start`), compact: as it stands when
    /// it has no whitespace, else with the whitespace between tokens removed.
    fn nested_text(&self, start: usize, compact: bool, out: &mut String) -> Scan<()> {
        let text = self.text(start, self.i)?;
        if compact {
            out.push_str(text);
            return Ok(());
        }
        let b = text.as_bytes();
        let mut i = 0;
        while i < b.len() {
            match b[i] {
                b' ' | b'\t' | b'\n' | b'\r' => i += 1,
                b'"' => {
                    // A string, escapes and all, as it stands.
                    let mut j = i + 1;
                    loop {
                        j = string_stop(b, j);
                        match b.get(j) {
                            Some(b'\\') => j += 2,
                            _ => break,
                        }
                    }
                    let end = (j + 1).min(b.len());
                    out.push_str(text.get(i..end).ok_or(GiveUp)?);
                    i = end;
                }
                _ => {
                    let mut j = i;
                    while j < b.len() && !matches!(b[j], b' ' | b'\t' | b'\n' | b'\r' | b'"') {
                        j += 1;
                    }
                    out.push_str(text.get(i..j).ok_or(GiveUp)?);
                    i = j;
                }
            }
        }
        Ok(())
    }
}

/// The decoder's state that a scan uses.
pub(crate) struct Decoding<'d> {
    pub interner: &'d mut Interner,
    pub event_names: &'d mut Interner,
    pub event_no: u64,
    pub time_id: u32,
    pub distinct_id: u32,
    pub scratch: &'d mut String,
}

/// An event's `distinct_id` as found in its properties.
enum Distinct<'a> {
    None,
    /// Text in the line, or (when `None`) in the scratch buffer.
    Text(Option<&'a str>),
}

/// Scans one line (valid UTF-8, trimmed) into `ev`: `Ok(Ok(()))` for an event, `Ok(Err)` with
/// the reason for valid JSON that is not a usable event, `Err(GiveUp)` when the line must be
/// read again another way. In both error cases `ev` is left as it was.
pub(crate) fn scan_line(
    d: &mut Decoding<'_>,
    ev: &mut Events,
    pos: Position,
    line: &str,
) -> Scan<std::result::Result<(), Dead>> {
    let r = scan(d, ev, pos, line);
    if !matches!(r, Ok(Ok(()))) {
        ev.abandon_row();
    }
    r
}

fn scan(
    d: &mut Decoding<'_>,
    ev: &mut Events,
    pos: Position,
    line: &str,
) -> Scan<std::result::Result<(), Dead>> {
    let mut s = Scanner::new(line);
    s.eat(b'{')?;
    s.ws();
    // `Some(Ok(name))`, or `Some(Err(reason))` for an event field that cannot be a name; the
    // first `event` and the first `properties` count, as sonic-rs's lookups find them.
    let mut name: Option<std::result::Result<NameRef, Dead>> = None;
    let mut props: Option<std::result::Result<(), Dead>> = None;
    let mut time: Option<std::result::Result<i64, Dead>> = None;
    let mut distinct = Distinct::None;
    if s.peek() == Some(b'}') {
        s.i += 1;
    } else {
        loop {
            s.eat(b'"')?;
            let key_start = s.i;
            let key = match s.plain_string()? {
                Some(k) => k,
                None => {
                    // An escaped key that may spell `event` or `properties`: the fallback
                    // reads those.
                    s.i = key_start;
                    let mut k = String::new();
                    s.unescape_into(&mut k)?;
                    if k == "event" || k == "properties" {
                        return Err(GiveUp);
                    }
                    ""
                }
            };
            s.ws();
            s.eat(b':')?;
            s.ws();
            match key {
                "event" if name.is_none() => {
                    name = Some(match s.peek() {
                        Some(b'"') => {
                            s.i += 1;
                            let escaped;
                            let text = match s.plain_string()? {
                                Some(t) => t,
                                None => {
                                    let mut t = String::new();
                                    s.unescape_into(&mut t)?;
                                    escaped = t;
                                    escaped.as_str()
                                }
                            };
                            if text.is_empty() {
                                Err("empty event name")
                            } else {
                                Ok(d.event_names.get(text).1)
                            }
                        }
                        _ => {
                            s.skip_value(0)?;
                            Err("event name is not a string")
                        }
                    });
                }
                "properties" if props.is_none() => {
                    if s.peek() == Some(b'{') {
                        properties(d, ev, &mut s, &mut time, &mut distinct)?;
                        props = Some(Ok(()));
                    } else {
                        s.skip_value(0)?;
                        props = Some(Err("`properties` is not an object"));
                    }
                }
                _ => {
                    s.skip_value(0)?;
                }
            }
            s.ws();
            match s.peek() {
                Some(b',') => {
                    s.i += 1;
                    s.ws();
                }
                Some(b'}') => {
                    s.i += 1;
                    break;
                }
                _ => return Err(GiveUp),
            }
        }
    }
    s.ws();
    if s.i != s.b.len() {
        return Err(GiveUp);
    }
    // The reasons, in the order the DOM decoder checks them.
    let name = match name {
        None => return Ok(Err("missing event name (`event`)")),
        Some(Err(r)) => return Ok(Err(r)),
        Some(Ok(n)) => n,
    };
    match props {
        None => return Ok(Err("missing `properties`")),
        Some(Err(r)) => return Ok(Err(r)),
        Some(Ok(())) => {}
    }
    let time_us = match time {
        None => return Ok(Err("missing `properties.time`")),
        Some(Err(r)) => return Ok(Err(r)),
        Some(Ok(t)) => t,
    };
    let distinct = match distinct {
        Distinct::None => None,
        Distinct::Text(Some(t)) => Some(t),
        Distinct::Text(None) => Some(d.scratch.as_str()),
    };
    ev.finish_row(name, time_us, pos, distinct);
    Ok(Ok(()))
}

/// The `properties` object at `s.i`: every value into its fragment; `time` and `distinct_id`
/// kept aside.
#[inline(always)]
fn properties<'a>(
    d: &mut Decoding<'_>,
    ev: &mut Events,
    s: &mut Scanner<'a>,
    time: &mut Option<std::result::Result<i64, Dead>>,
    distinct: &mut Distinct<'a>,
) -> Scan<()> {
    s.i += 1;
    s.ws();
    if s.peek() == Some(b'}') {
        s.i += 1;
        return Ok(());
    }
    // The first key's opening quote (each later one is taken after its comma).
    s.eat(b'"')?;
    loop {
        // The name: the one that followed the last one last time, if the line spells it
        // here, else the key read and looked up.
        let id = match d.interner.predict(&s.b[s.i..]) {
            Some((id, taken)) => {
                s.i += taken;
                id
            }
            None => match s.plain_string()? {
                Some(k) => d.interner.lookup(k),
                None => {
                    let mut k = String::new();
                    s.unescape_into(&mut k)?;
                    d.interner.get(&k).0
                }
            },
        };
        s.eat_after_ws(b':')?;
        s.ws();
        if id == d.time_id {
            *time = Some(match s.peek() {
                Some(b'-' | b'0'..=b'9') => micros(s.number()?.0),
                _ => {
                    s.skip_value(0)?;
                    Err("`properties.time` is not a number")
                }
            });
        } else if id == d.distinct_id {
            *distinct = match s.peek() {
                Some(b'"') => {
                    s.i += 1;
                    match s.plain_string()? {
                        Some(t) => Distinct::Text(Some(t)),
                        None => {
                            d.scratch.clear();
                            s.unescape_into(d.scratch)?;
                            Distinct::Text(None)
                        }
                    }
                }
                Some(b'n') => {
                    s.literal(b"null")?;
                    Distinct::None
                }
                Some(b'-' | b'0'..=b'9') => {
                    let start = s.i;
                    let (_, integer) = s.number()?;
                    if !integer || s.b[start..s.i] == *b"-0" {
                        // sonic-rs writes other numbers its own way: leave them to it.
                        return Err(GiveUp);
                    }
                    Distinct::Text(Some(s.text(start, s.i)?))
                }
                _ => return Err(GiveUp),
            };
        } else {
            value(d, ev, s, id)?;
        }
        // Whitespace is looked for only where neither a comma nor the end stands.
        if !s.comma_or(b'}')? {
            return Ok(());
        }
        s.eat_after_ws(b'"')?;
    }
}

/// A property's value at `s.i`, into its fragment (a repeated key's earlier value taken
/// back: the last one wins).
#[inline(always)]
fn value(d: &mut Decoding<'_>, ev: &mut Events, s: &mut Scanner<'_>, id: u32) -> Scan<()> {
    d.interner.repeat(ev, id, d.event_no);
    let frag = match s.peek() {
        Some(b'"') => {
            s.i += 1;
            let f = d.interner.frag(ev, id, TypeClass::String);
            match s.plain_string()? {
                Some(t) => ev.push_text(f, t, false),
                None => {
                    let mut r = Ok(());
                    ev.push_text_with(f, false, |out| r = s.unescape_into(out));
                    if r.is_err() {
                        ev.unpush(f);
                        return r;
                    }
                }
            }
            f
        }
        Some(b'-' | b'0'..=b'9') => {
            let (x, _) = s.number()?;
            let f = d.interner.frag(ev, id, TypeClass::Number);
            ev.push_num(f, x);
            f
        }
        Some(b't') => {
            s.literal(b"true")?;
            let f = d.interner.frag(ev, id, TypeClass::Boolean);
            ev.push_bool(f, true);
            f
        }
        Some(b'f') => {
            s.literal(b"false")?;
            let f = d.interner.frag(ev, id, TypeClass::Boolean);
            ev.push_bool(f, false);
            f
        }
        Some(b'n') => {
            s.literal(b"null")?;
            NO_FRAG
        }
        Some(b'{' | b'[') => {
            let start = s.i;
            let compact = s.skip_value(0)?;
            let f = d.interner.frag(ev, id, TypeClass::String);
            let mut r = Ok(());
            ev.push_text_with(f, true, |out| r = s.nested_text(start, compact, out));
            if r.is_err() {
                ev.unpush(f);
                return r;
            }
            f
        }
        _ => return Err(GiveUp),
    };
    d.interner.seen(id, d.event_no, frag);
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn string_stops_are_found_in_and_after_whole_words() {
        let b = b"abcdefghijklmnop\"rest";
        assert_eq!(string_stop(b, 0), 16);
        assert_eq!(string_stop(b"ab\\cd", 0), 2);
        assert_eq!(string_stop(b"abcdefghij\x01", 0), 10);
        assert_eq!(string_stop(b"abc", 0), 3);
        // A byte above 0x80 (UTF-8) is content, and so is DEL.
        assert_eq!(string_stop("éééé\u{7f}ü\"".as_bytes(), 0), 11);
        // A match after a borrow-prone byte is still the first one found.
        assert_eq!(string_stop(b"\x00\x22", 0), 0);
        assert_eq!(string_stop(b"a\x21\x22xxxxxxxxx", 0), 2);
    }

    #[test]
    fn string_stops_match_a_byte_by_byte_search_at_every_length_and_place() {
        let one_at_a_time = |b: &[u8], i: usize| {
            (i..b.len())
                .find(|&k| b[k] == b'"' || b[k] == b'\\' || b[k] < 0x20)
                .unwrap_or(b.len())
        };
        // Every byte value as the stop (or as content), after runs of content of every length
        // up to past two 16-byte steps, from every start, with and without a tail after it.
        for stop in 0..=255u8 {
            for len in 0..40 {
                for tail in [0usize, 3, 20] {
                    let mut b: Vec<u8> = (0..len).map(|k| b"a~\x7f\x80\xff 0}"[k % 8]).collect();
                    b.push(stop);
                    b.extend(std::iter::repeat_n(b'z', tail));
                    for start in 0..b.len() {
                        assert_eq!(
                            string_stop(&b, start),
                            one_at_a_time(&b, start),
                            "stop {stop:#x}, {len} before it, {tail} after, from {start}"
                        );
                    }
                }
            }
        }
    }

    #[test]
    fn nested_values_keep_their_strings_and_lose_their_spaces() {
        let text = r#"{ "a b" : [1, "x \" y" , {"c":null}] }"#;
        let mut s = Scanner::new(text);
        let compact = s.skip_value(0).unwrap();
        assert!(!compact);
        let mut out = String::new();
        s.nested_text(0, compact, &mut out).unwrap();
        assert_eq!(out, r#"{"a b":[1,"x \" y",{"c":null}]}"#);
    }

    #[test]
    fn digit_runs_end_where_the_first_other_byte_stands() {
        let one_at_a_time = |b: &[u8], mut i: usize| {
            while let Some(b'0'..=b'9') = b.get(i) {
                i += 1;
            }
            i
        };
        // Every byte after runs of every length, at every place in and past a word.
        for len in 0..20 {
            for other in (0..=255u8).filter(|c| !c.is_ascii_digit()) {
                for pad in [0, 1, 7, 12] {
                    let mut b: Vec<u8> = vec![b'x'; pad];
                    b.extend((0..len).map(|k| b'0' + (k * 7 % 10) as u8));
                    b.push(other);
                    b.extend_from_slice(b"123");
                    assert_eq!(
                        digits_end(&b, pad),
                        pad + len,
                        "{len} digits, then {other:#x}"
                    );
                    assert_eq!(digits_end(&b, pad), one_at_a_time(&b, pad));
                }
            }
            // Digits to the end of the text.
            let b: Vec<u8> = (0..len).map(|k| b'9' - (k % 10) as u8).collect();
            assert_eq!(digits_end(&b, 0), len);
        }
    }

    #[test]
    fn numbers_read_eight_digits_a_step_as_one_at_a_time() {
        let w = |t: &[u8; 8]| u64::from_le_bytes(*t);
        assert!(eight_digits(w(b"01234567")) && eight_digits(w(b"99999999")));
        for t in [
            b"0123456/",
            b"0123456:",
            b"a1234567",
            b"1234567\xff",
            b"12.45678",
            b"1234567 ",
        ] {
            assert!(!eight_digits(w(t)), "{t:?}");
        }
        assert_eq!(eight_digits_value(w(b"01234567")), 1_234_567);
        assert_eq!(eight_digits_value(w(b"99999999")), 99_999_999);
        assert_eq!(eight_digits_value(w(b"10000000")), 10_000_000);
        // Every length from 1 to 18 digits, whole or with a fraction or an exponent after,
        // at the end of the text or before more.
        for len in 1..=18 {
            let digits: String = (0..len)
                .map(|k| char::from(b'1' + (k * 7 % 9) as u8))
                .collect();
            let whole: i64 = digits.parse().unwrap();
            for (text, want, integer) in [
                (digits.clone(), whole as f64, true),
                (format!("-{digits}"), -whole as f64, true),
                (format!("{digits},\"x\""), whole as f64, true),
                (
                    format!("{digits}.25"),
                    format!("{digits}.25").parse().unwrap(),
                    false,
                ),
                (
                    format!("{digits}e2"),
                    format!("{digits}e2").parse().unwrap(),
                    false,
                ),
            ] {
                let mut s = Scanner::new(&text);
                assert_eq!(s.number(), Ok((want, integer)), "{text}");
                let end = text.find(',').unwrap_or(text.len());
                assert_eq!(s.i, end, "{text}");
            }
        }
    }

    /// Integers of every length to 18 digits, zeros among them, each followed by every amount
    /// of other text from none to past a word (the short tail is read a word at a time only
    /// when eight bytes are left), read as `str::parse` reads them.
    #[test]
    fn integer_tails_read_alike_from_a_word_and_one_at_a_time() {
        for len in 1..=18usize {
            for first in 1..=9u8 {
                let digits: String = (0..len)
                    .map(|k| {
                        char::from(if k == 0 {
                            b'0' + first
                        } else {
                            b'0' + ((k * 3 + first as usize) % 10) as u8
                        })
                    })
                    .collect();
                let want: i64 = digits.parse().unwrap();
                for after in 0..12 {
                    for sign in ["", "-"] {
                        let text = format!("{sign}{digits}{}", &",}]  \"x\":1,2"[..after]);
                        let mut s = Scanner::new(&text);
                        let want = if sign.is_empty() { want } else { -want } as f64;
                        assert_eq!(s.number(), Ok((want, true)), "{text}");
                        assert_eq!(s.i, sign.len() + len, "{text}");
                    }
                }
            }
        }
    }

    /// Decimals read as the nearest double, bit for bit what `str::parse` gives: every count
    /// of integer and fraction digits up to 25 in all, signs, zeros, trailing zeros, and
    /// values either side of 2^53 (where the division stops being exact).
    #[test]
    fn decimals_read_as_the_nearest_double() {
        let mut x = 0x2545_f491_4f6c_dd1du64;
        let mut digits = |n: usize| -> String {
            (0..n)
                .map(|_| {
                    x ^= x << 13;
                    x ^= x >> 7;
                    x ^= x << 17;
                    char::from(b'0' + (x % 10) as u8)
                })
                .collect()
        };
        let mut texts = vec![
            "0.0".to_string(),
            "-0.0".into(),
            "0.1".into(),
            "0.30000000000000004".into(),
            "9007199254740992.0".into(),
            "9007199254740993.0".into(),
            "900719925474099.3".into(),
            "900719925474099.5".into(),
            "1.0000000000000000000001".into(),
            "12.990".into(),
        ];
        for int_len in 1..=19 {
            for places in 1..=(25 - int_len).min(23) {
                for _ in 0..4 {
                    let mut int = digits(int_len);
                    if int.len() > 1 && int.starts_with('0') {
                        int.replace_range(..1, "7");
                    }
                    texts.push(format!("{int}.{}", digits(places)));
                    texts.push(format!("-{int}.{}", digits(places)));
                }
            }
        }
        for text in &texts {
            let want: f64 = text.parse().unwrap();
            let mut s = Scanner::new(text);
            let (got, integer) = s.number().unwrap();
            assert!(!integer, "{text}");
            assert_eq!(got.to_bits(), want.to_bits(), "{text}: {got} for {want}");
            assert_eq!(s.i, text.len(), "{text}");
        }
    }

    #[test]
    fn invalid_values_give_up() {
        for v in [
            "01",
            "1.",
            "-",
            "1e",
            "tru",
            "nul",
            "[1,]",
            "{\"a\"}",
            "\"\\x\"",
            "\"\\ud800\"",
            "[1 2]",
            "{\"a\":1,}",
        ] {
            let mut s = Scanner::new(v);
            let r = s.skip_value(0);
            assert!(r.is_err() || s.i != v.len(), "{v} was taken");
        }
    }
}
