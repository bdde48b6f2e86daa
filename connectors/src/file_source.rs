//! The file source: NDJSON files (plain or gzip), globs, or `-` for stdin. Each file is a
//! partition and each line's number its offset, the role a Kafka offset plays later.

use std::any::Any;
use std::fs::File;
use std::io::{BufRead, BufReader, Read};
use std::path::PathBuf;
use std::sync::Arc;

use flate2::read::MultiGzDecoder;
use schemars::JsonSchema;
use serde::Deserialize;

use sluice_engine::batch::{Batch, RawLines};
use sluice_engine::component::{Source, SourceContext};
use sluice_engine::error::ResultExt;
use sluice_engine::format::{DecoderSettings, RecordsFormat};
use sluice_engine::ownership::Rewind;
use sluice_engine::registry::{BuildContext, Component, Issue};
use sluice_engine::stats::RunStats;
use sluice_engine::{EngineError, Result};

/// Reads newline-delimited JSON from files. `.gz` files are decompressed; a glob reads every
/// matching file in name order; `-` reads standard input. Reading resumes after the last
/// committed line of each file.
#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct FileSourceConfig {
    /// A file, a glob such as `data/*.ndjson.gz`, or `-` for standard input.
    pub path: String,
    /// How lines are decoded: `mixpanel` is `{"event": ..., "properties": {...}}`; `records`
    /// is any JSON object per line (or an array of them), mapped to events by `records`.
    #[serde(default = "default_format")]
    pub format: String,
    /// Where `records` finds the event name, time and properties.
    #[serde(default)]
    pub records: Option<RecordsFormat>,
    /// Read each file as one JSON document instead of one record per line (with
    /// `records.records_at` to find the records in it).
    #[serde(default)]
    pub document: bool,
}

fn default_format() -> String {
    "mixpanel".into()
}

impl Component for FileSourceConfig {
    fn validate(&self) -> Vec<Issue> {
        if self.path.trim().is_empty() {
            return vec![Issue::at(
                "path",
                "`path` is empty",
                "name a file, a glob, or - for stdin",
            )];
        }
        if self.path != "-" && glob::Pattern::new(&self.path).is_err() {
            return vec![Issue::at(
                "path",
                format!("`{}` is not a valid glob", self.path),
                "escape [ and ] in file names, or name the file without a pattern",
            )];
        }
        if let Err(i) = DecoderSettings::of(&self.format, &self.records) {
            return vec![i];
        }
        vec![]
    }
    fn describe(&self) -> String {
        format!("{} ({})", self.path, self.format)
    }
    fn format(&self) -> Option<(&str, DecoderSettings)> {
        // `validate` reported a mismatch already; the topology does not run with one.
        let settings = DecoderSettings::of(&self.format, &self.records).unwrap_or_default();
        Some((&self.format, settings))
    }
    fn build_source(&self, cx: &BuildContext) -> Result<Box<dyn Source>> {
        Ok(Box::new(FileSource {
            pattern: self.path.clone(),
            files: Vec::new(),
            current: None,
            document: self.document,
            stats: cx.stats.clone(),
            rewind: None,
            last_bytes: 0,
            last_line: 1024,
        }))
    }
    fn as_any(&self) -> &dyn Any {
        self
    }
}

struct Input {
    path: Option<PathBuf>,
    partition: u32,
    start: u64,
}

struct Open {
    reader: BufReader<Box<dyn Read + Send>>,
    /// Bytes read past the last batch's last line (files only).
    carry: Vec<u8>,
    /// A stream that may pause (stdin): send what was read rather than wait for a full batch.
    live: bool,
    partition: u32,
    start: u64,
    next: u64,
    label: String,
}

pub struct FileSource {
    pattern: String,
    files: Vec<Input>,
    current: Option<Open>,
    document: bool,
    stats: Arc<RunStats>,
    rewind: Option<Arc<Rewind>>,
    /// Bytes of the last batch: the next one's buffer starts that big, and never grows by
    /// copying itself over and over.
    last_bytes: usize,
    /// The mean line's bytes in the last batch (a guess before the first).
    last_line: usize,
}

/// The files a pattern names, in order.
pub fn expand(pattern: &str) -> Result<Vec<PathBuf>> {
    let is_glob = pattern.contains(['*', '?', '[']);
    if !is_glob {
        let p = PathBuf::from(pattern);
        if !p.exists() {
            return Err(EngineError::config(
                format!("file source: `{pattern}` does not exist"),
                "check the path (relative paths start from the current directory)",
            ));
        }
        return Ok(vec![p]);
    }
    let mut out: Vec<PathBuf> = glob::glob(pattern)
        .map_err(|e| EngineError::config(format!("bad glob `{pattern}`: {e}"), "fix the pattern"))?
        .filter_map(|r| r.ok())
        .filter(|p| p.is_file())
        .collect();
    out.sort();
    if out.is_empty() {
        return Err(EngineError::config(
            format!("file source: no file matches `{pattern}`"),
            "check the pattern (relative paths start from the current directory)",
        ));
    }
    Ok(out)
}

impl Source for FileSource {
    /// Regular files only: standard input and named pipes wait for their writers.
    fn never_waits(&self) -> bool {
        self.files.iter().all(|f| {
            f.path
                .as_ref()
                .is_some_and(|p| std::fs::metadata(p).is_ok_and(|m| m.is_file()))
        })
    }

    fn open(&mut self, cx: &SourceContext) -> Result<()> {
        if self.pattern == "-" {
            // Standard input cannot be read again: each run is a partition of its own.
            let nanos = std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map(|d| d.as_nanos())
                .unwrap_or_default();
            let partition = cx.partitions.intern(&cx.name, &format!("stdin-{nanos}"));
            self.files.push(Input {
                path: None,
                partition,
                start: 0,
            });
        } else {
            let mut found = Vec::new();
            for p in expand(&self.pattern)? {
                let key = std::fs::canonicalize(&p)
                    .context(|| format!("resolving {}", p.display()))?
                    .display()
                    .to_string();
                found.push((p, key));
            }
            let keys: Vec<String> = found.iter().map(|(_, k)| k.clone()).collect();
            let claims = cx.coordinator.claim(&keys)?;
            for (p, key) in found {
                let partition = cx.partitions.intern(&cx.name, &key);
                let start = claims.get(&key).and_then(|c| c.next_offset).unwrap_or(0);
                self.files.push(Input {
                    path: Some(p),
                    partition,
                    start,
                });
            }
        }
        self.rewind = Some(cx.coordinator.rewind.clone());
        self.files.reverse();
        Ok(())
    }

    fn next_batch(&mut self, max_lines: usize) -> Result<Option<Batch>> {
        if self.rewind.as_ref().is_some_and(|r| r.current() > 0) {
            // Files have no group protocol to hand them over: a second run on the same
            // catalog has taken them.
            return Err(EngineError::Fenced(
                "another run claimed this source's files in the same catalog; run one worker per file source".into(),
            ));
        }
        loop {
            if self.current.is_none() {
                let Some(input) = self.files.pop() else {
                    return Ok(None);
                };
                self.current = Some(open(input)?);
            }
            let Some(cur) = self.current.as_mut() else {
                continue;
            };
            let mut raw = RawLines {
                partition: cur.partition,
                buf: Vec::with_capacity(self.last_bytes + self.last_bytes / 8),
                lines: Vec::with_capacity(if self.document {
                    1
                } else {
                    max_lines.min(1 << 16)
                }),
            };
            let mut eof = false;
            let mut bytes = 0u64;
            let first_line = cur.next;
            if self.document {
                let n = cur
                    .reader
                    .read_to_end(&mut raw.buf)
                    .context(|| format!("reading {}", cur.label))?;
                bytes = n as u64;
                if cur.start == 0 && n > 0 {
                    raw.lines.push((0, 0, raw.buf.len() as u32));
                }
                cur.next = 1;
                eof = true;
            }
            if !eof && !cur.live {
                let (end, n) = read_lines(cur, &mut raw, max_lines, self.last_line)?;
                eof = end;
                bytes = n;
            }
            while !eof && cur.live && raw.lines.len() < max_lines {
                let start = raw.buf.len();
                let n = read_line(&mut cur.reader, &mut raw.buf)
                    .context(|| format!("reading {}", cur.label))?;
                if n == 0 {
                    eof = true;
                    break;
                }
                bytes += n as u64;
                let offset = cur.next;
                cur.next += 1;
                if offset < cur.start {
                    raw.buf.truncate(start);
                    continue;
                }
                let mut end = raw.buf.len();
                if raw.buf[start..end].ends_with(b"\n") {
                    end -= 1;
                }
                raw.lines.push((offset, start as u32, end as u32));
                if cur.live && cur.reader.buffer().is_empty() {
                    break;
                }
            }
            self.last_bytes = raw.buf.len();
            if !raw.lines.is_empty() {
                self.last_line = raw.buf.len() / raw.lines.len() + 1;
            }
            RunStats::add(&self.stats.lines_read, raw.lines.len() as u64);
            RunStats::add(&self.stats.bytes_read, bytes);
            // Lines passed over as committed by an earlier run: the summary says so, rather
            // than leave bytes read and no lines unexplained.
            let below = |line: u64| line.min(cur.start);
            RunStats::add(
                &self.stats.already_committed,
                below(cur.next) - below(first_line),
            );
            metrics::counter!("sluice_source_lines_total").increment(raw.lines.len() as u64);
            let batch = Batch {
                progress: vec![(cur.partition, cur.next)],
                raw,
                ..Default::default()
            };
            if eof {
                tracing::debug!(file = %cur.label, lines = cur.next, "finished reading");
                self.current = None;
            }
            return Ok(Some(batch));
        }
    }
}

/// Bytes asked of a file in one read at most.
const READ_BYTES: usize = 1 << 20;

/// Reads the lines of a file (not a stream that pauses) into `raw` until it holds
/// `max_lines` or the file ends, straight into the batch's buffer: one copy from the kernel,
/// none from a reader's buffer (that copy was half of the reading thread's time). Reads are
/// sized by the lines still wanted and `line_bytes` (the last batch's mean line), so that
/// little is read past the batch; what is (the next lines' beginning) is kept in `cur.carry`
/// for the next batch. Lines before `cur.start` (committed before) are dropped. Returns
/// whether the file ended, and the bytes read.
fn read_lines(
    cur: &mut Open,
    raw: &mut RawLines,
    max_lines: usize,
    line_bytes: usize,
) -> Result<(bool, u64)> {
    raw.buf.extend_from_slice(&cur.carry);
    cur.carry.clear();
    let mut bytes = 0u64;
    // The line being looked at starts at `line`; `searched` bytes have no line end left.
    let (mut line, mut searched) = (0usize, 0usize);
    // Bytes at the front holding lines committed before.
    let mut skipped = 0usize;
    let mut eof = false;
    loop {
        while raw.lines.len() < max_lines {
            let Some(i) = memchr::memchr(b'\n', &raw.buf[searched..]) else {
                searched = raw.buf.len();
                break;
            };
            let end = searched + i;
            searched = end + 1;
            take_line(cur, raw, line, end, &mut skipped)?;
            line = end + 1;
        }
        if raw.lines.len() >= max_lines {
            break;
        }
        if eof {
            if line < raw.buf.len() {
                // The last line, with no line end.
                let end = raw.buf.len();
                take_line(cur, raw, line, end, &mut skipped)?;
                line = end;
            }
            break;
        }
        if skipped > 0 && raw.lines.is_empty() {
            // Every line so far was committed before: dropped now, not held until a batch
            // fills (resuming far into a large file held all it skipped in memory).
            raw.buf.drain(..skipped);
            (line, searched) = (line - skipped, searched - skipped);
            skipped = 0;
        }
        let want = (max_lines - raw.lines.len())
            .saturating_mul(line_bytes)
            .saturating_add(4096)
            .clamp(64 << 10, READ_BYTES);
        raw.buf.reserve(want);
        let n = (&mut cur.reader)
            .take(want as u64)
            .read_to_end(&mut raw.buf)
            .context(|| format!("reading {}", cur.label))?;
        bytes += n as u64;
        eof = n == 0;
    }
    cur.carry.extend_from_slice(&raw.buf[line..]);
    raw.buf.truncate(line);
    if skipped > 0 {
        raw.buf.drain(..skipped);
        let shift = skipped as u32;
        for l in &mut raw.lines {
            l.1 -= shift;
            l.2 -= shift;
        }
    }
    Ok((eof && cur.carry.is_empty(), bytes))
}

/// Takes the line at `start..end` of `raw.buf` (without its `\n`) as the file's next: into
/// `raw.lines`, or, if it was committed before, into the `skipped` front.
fn take_line(
    cur: &mut Open,
    raw: &mut RawLines,
    start: usize,
    end: usize,
    skipped: &mut usize,
) -> Result<()> {
    let offset = cur.next;
    cur.next += 1;
    if offset < cur.start {
        *skipped = (end + 1).min(raw.buf.len());
        return Ok(());
    }
    let place = |at: usize| {
        u32::try_from(at)
            .map_err(|_| EngineError::Internal(format!("a batch of {} past 4 GiB", cur.label)))
    };
    raw.lines.push((offset, place(start)?, place(end)?));
    Ok(())
}

/// Appends the next line to `buf`, with its `\n` if it has one; returns the bytes taken (0
/// at the end). `BufRead::read_until`, but the line end is searched with SIMD (`memchr`).
fn read_line(r: &mut impl BufRead, buf: &mut Vec<u8>) -> std::io::Result<usize> {
    let mut taken = 0;
    loop {
        let available = match r.fill_buf() {
            Ok(b) => b,
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(e),
        };
        let (used, done) = match memchr::memchr(b'\n', available) {
            Some(i) => (i + 1, true),
            None => (available.len(), available.is_empty()),
        };
        buf.extend_from_slice(&available[..used]);
        r.consume(used);
        taken += used;
        if done {
            return Ok(taken);
        }
    }
}

fn open(input: Input) -> Result<Open> {
    let (reader, label): (Box<dyn Read + Send>, String) = match &input.path {
        None => (Box::new(std::io::stdin()), "stdin".to_string()),
        Some(p) => {
            let mut f = File::open(p).context(|| format!("opening {}", p.display()))?;
            let mut magic = [0u8; 2];
            let n = f
                .read(&mut magic)
                .context(|| format!("reading {}", p.display()))?;
            drop(f);
            let f = File::open(p).context(|| format!("opening {}", p.display()))?;
            let gz = n == 2 && magic == [0x1f, 0x8b];
            let r: Box<dyn Read + Send> = if gz {
                Box::new(MultiGzDecoder::new(f))
            } else {
                Box::new(f)
            };
            (r, p.display().to_string())
        }
    };
    let live = input.path.is_none();
    Ok(Open {
        // Files are read straight into batches (`read_lines`); a stream through a buffer.
        reader: BufReader::with_capacity(if live { 1 << 20 } else { 0 }, reader),
        carry: Vec::new(),
        live,
        partition: input.partition,
        start: input.start,
        next: 0,
        label,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lines_are_cut_as_read_until_cuts_them_across_buffer_ends() {
        let text: &[u8] =
            b"{\"a\":1}\n\n{\"b\":\"a longer line than the buffer\"}\r\nx\n\nlast line, no end";
        for capacity in [1, 2, 3, 7, 64, 1 << 10] {
            let mut ours = BufReader::with_capacity(capacity, text);
            let mut std_ = BufReader::with_capacity(capacity, text);
            let (mut a, mut b) = (Vec::new(), Vec::new());
            loop {
                let n = read_line(&mut ours, &mut a).unwrap();
                let m = std_.read_until(b'\n', &mut b).unwrap();
                assert_eq!((n, &a), (m, &b), "buffer of {capacity}");
                if n == 0 {
                    break;
                }
            }
            assert_eq!(a, text);
        }
    }

    /// A file (not a stream) read from `reader`, resuming at line `start`.
    fn test_file(reader: Box<dyn Read + Send>, start: u64) -> Open {
        Open {
            reader: BufReader::with_capacity(0, reader),
            carry: Vec::new(),
            live: false,
            partition: 0,
            start,
            next: 0,
            label: "test".into(),
        }
    }

    /// A reader that hands out at most `step` bytes a call, as a pipe or a decoder may.
    struct Trickle<'a> {
        rest: &'a [u8],
        step: usize,
    }

    impl Read for Trickle<'_> {
        fn read(&mut self, out: &mut [u8]) -> std::io::Result<usize> {
            let n = self.step.min(out.len()).min(self.rest.len());
            out[..n].copy_from_slice(&self.rest[..n]);
            self.rest = &self.rest[n..];
            Ok(n)
        }
    }

    #[test]
    fn files_are_read_into_batches_line_by_line_whatever_the_reads_and_the_resume_point() {
        let text: &'static [u8] =
            b"{\"a\":1}\n\n{\"b\":\"a longer line than most\"}\r\nx\n\nlast line, no end";
        let expected: Vec<&[u8]> = text.split(|&c| c == b'\n').collect();
        for step in [1, 3, 7, 64, 1 << 16] {
            for max_lines in [1, 2, 4, 100] {
                for start in [0u64, 1, 3, 6, 7] {
                    for line_bytes in [1, 16, 1024] {
                        let mut cur = test_file(Box::new(Trickle { rest: text, step }), start);
                        let mut got: Vec<(u64, Vec<u8>)> = Vec::new();
                        let mut read = 0u64;
                        for _ in 0..100 {
                            let mut raw = RawLines::default();
                            let (eof, n) =
                                read_lines(&mut cur, &mut raw, max_lines, line_bytes).unwrap();
                            read += n;
                            assert!(raw.lines.len() <= max_lines);
                            for &(o, a, b) in &raw.lines {
                                got.push((o, raw.buf[a as usize..b as usize].to_vec()));
                            }
                            if eof {
                                break;
                            }
                        }
                        let want: Vec<(u64, Vec<u8>)> = expected
                            .iter()
                            .enumerate()
                            .skip(start as usize)
                            .map(|(i, l)| (i as u64, l.to_vec()))
                            .collect();
                        let case = format!("step {step}, {max_lines} lines, from {start}");
                        assert_eq!(got, want, "{case}");
                        assert_eq!(read, text.len() as u64, "{case}");
                        assert_eq!(cur.next, expected.len() as u64, "{case}");
                    }
                }
            }
        }
    }

    /// Resuming far into a file: the lines committed before are read and dropped as reading
    /// goes on, so a batch never holds more than a read's worth of them.
    #[test]
    fn lines_committed_before_are_dropped_as_they_are_read() {
        let lines = 20_000u64;
        let text: Vec<u8> = (0..lines)
            .flat_map(|i| format!("{{\"n\":{i},\"pad\":\"{:>80}\"}}\n", "").into_bytes())
            .collect();
        let start = lines - 3;
        let mut cur = test_file(Box::new(std::io::Cursor::new(text.clone())), start);
        let mut raw = RawLines::default();
        let (eof, n) = read_lines(&mut cur, &mut raw, 1024, 100).unwrap();
        assert!(eof);
        assert_eq!(n, text.len() as u64);
        let got: Vec<u64> = raw.lines.iter().map(|l| l.0).collect();
        assert_eq!(got, [start, start + 1, start + 2]);
        let first = &raw.buf[raw.lines[0].1 as usize..raw.lines[0].2 as usize];
        assert!(first.starts_with(format!("{{\"n\":{start},").as_bytes()));
        // 1.9 MB of text skipped; a read is at most READ_BYTES.
        assert!(text.len() > 3 * READ_BYTES / 2);
        assert!(
            raw.buf.capacity() <= READ_BYTES + (64 << 10),
            "{} bytes held",
            raw.buf.capacity()
        );
    }
}
