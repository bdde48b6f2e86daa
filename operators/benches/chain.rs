//! Throughput of the operator chain, single-threaded, on the shared generator's events.
//!
//! Input: `../shared/tools/gen_events.py --events 100000 --seed 7` (relative to the workspace
//! root), generated once at start, cut into batches of 1,024 lines as the file source cuts
//! them by default. Every measured iteration runs all 100,000 lines; building the batches and
//! dropping the output are outside the timed part.
//!
//! - `chain/warm`: decode, clean-name, stringify-nested, type-infer (monoschema, in-memory
//!   registry), partition-by-date, with every operator built once and reused: the steady state,
//!   where every name is already interned, cleaned and registered.
//! - `chain/cold`: the same chain, but type-infer and its registry are new for every iteration,
//!   so each (property, type) is registered again. The decoder (hence the interned and cleaned
//!   names) stays warm.
//! - `decode/warm`: the `mixpanel` decoder alone, reused.
//!
//! It runs on mimalloc, as the `sluice` binary does.
//!
//! Run: `cargo bench -p sluice-operators --bench chain -- --warm-up-time 2 --measurement-time 8`

use std::hint::black_box;
use std::path::PathBuf;
use std::process::Command;
use std::sync::Arc;

use criterion::{BatchSize, Criterion, SamplingMode, Throughput};

use sluice_engine::batch::{Batch, RawLines};
use sluice_engine::component::Operator;
use sluice_operators::clean_name::CleanName;
use sluice_operators::decode::MixpanelDecoder;
use sluice_operators::memory_registry::MemoryRegistry;
use sluice_operators::partition_by_date::PartitionByDate;
use sluice_operators::stringify_nested::StringifyNested;
use sluice_operators::type_infer::{SchemaMode, TypeInfer};

#[global_allocator]
static ALLOC: mimalloc::MiMalloc = mimalloc::MiMalloc;

const EVENTS: usize = 100_000;
const SEED: u32 = 7;
const BATCH_LINES: usize = 1024;
const MAX_COLUMNS: u32 = 9500;
const TIMEZONE: &str = "America/Los_Angeles";

/// The generator's path: `../shared/tools/gen_events.py` from the workspace root.
fn generator() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../shared/tools/gen_events.py")
}

/// The generated NDJSON, or `None` (after saying so) if the generator is absent.
fn generate() -> Option<Vec<u8>> {
    let gen = generator();
    if !gen.is_file() {
        println!("skipping the chain benchmark: {} is absent", gen.display());
        return None;
    }
    let out = Command::new("python3")
        .arg(&gen)
        .args(["--events", &EVENTS.to_string(), "--seed", &SEED.to_string()])
        .output()
        .unwrap_or_else(|e| panic!("running python3 {}: {e}", gen.display()));
    assert!(
        out.status.success(),
        "{} failed ({}): {}",
        gen.display(),
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );
    Some(out.stdout)
}

/// Cuts NDJSON into batches of raw lines as the file source does: one buffer per batch with
/// the newlines, line ranges without them, offsets counting lines from 0.
fn batches(ndjson: &[u8]) -> Vec<Batch> {
    let mut out = Vec::new();
    let mut raw = RawLines::default();
    for (offset, line) in ndjson
        .strip_suffix(b"\n")
        .unwrap_or(ndjson)
        .split(|&c| c == b'\n')
        .enumerate()
    {
        let start = raw.buf.len() as u32;
        raw.buf.extend_from_slice(line);
        let end = raw.buf.len() as u32;
        raw.buf.push(b'\n');
        raw.lines.push((offset as u64, start, end));
        if raw.lines.len() == BATCH_LINES {
            out.push(Batch {
                raw: std::mem::take(&mut raw),
                ..Default::default()
            });
        }
    }
    if !raw.lines.is_empty() {
        out.push(Batch {
            raw,
            ..Default::default()
        });
    }
    out
}

fn type_infer() -> TypeInfer {
    TypeInfer::new(
        Arc::new(MemoryRegistry::new()),
        SchemaMode::Monoschema,
        MAX_COLUMNS,
    )
}

fn partition_by_date() -> PartitionByDate {
    PartitionByDate::new(TIMEZONE.parse().expect("a valid timezone"))
}

/// Runs `ops` in order over every batch.
fn run(ops: &mut [&mut dyn Operator], mut batches: Vec<Batch>) -> Vec<Batch> {
    for b in &mut batches {
        for op in ops.iter_mut() {
            op.process(b)
                .expect("operators never fail on an in-memory registry");
        }
    }
    batches
}

fn bench(c: &mut Criterion, input: &[Batch], lines: u64) {
    // What the `mixpanel` decoder factory (`decode::mixpanel_decoder`) builds.
    let mut decode = MixpanelDecoder::default();
    let mut clean = CleanName;
    let mut nested = StringifyNested;
    let mut types = type_infer();
    let mut dates = partition_by_date();

    // Sanity check, and the warm state: every name interned, cleaned and registered.
    let out = run(
        &mut [&mut decode, &mut clean, &mut nested, &mut types, &mut dates],
        input.to_vec(),
    );
    let events: usize = out.iter().map(|b| b.events.len()).sum();
    let dead: usize = out.iter().map(|b| b.dead.len()).sum();
    assert_eq!(
        (events + dead) as u64,
        lines,
        "every line is an event or a dead letter"
    );
    assert!(
        out.iter().all(
            |b| b.events.table.len() == b.events.len() && b.events.date.len() == b.events.len()
        ),
        "every event has a table and a date"
    );
    println!(
        "input: {lines} lines in {} batches of up to {BATCH_LINES}: {events} events, {dead} dead letters",
        input.len()
    );
    drop(out);

    let mut g = c.benchmark_group("chain");
    g.throughput(Throughput::Elements(lines));
    // One iteration is 100,000 events (a good part of a second): ten flat samples.
    g.sample_size(10).sampling_mode(SamplingMode::Flat);
    g.bench_function("warm", |b| {
        b.iter_batched(
            || input.to_vec(),
            |batches| {
                black_box(run(
                    &mut [&mut decode, &mut clean, &mut nested, &mut types, &mut dates],
                    batches,
                ))
            },
            BatchSize::LargeInput,
        )
    });
    g.bench_function("cold", |b| {
        b.iter_batched(
            || (input.to_vec(), type_infer()),
            |(batches, mut fresh)| {
                let out = run(
                    &mut [&mut decode, &mut clean, &mut nested, &mut fresh, &mut dates],
                    batches,
                );
                // Returned, so that dropping it is not timed either.
                black_box((out, fresh))
            },
            BatchSize::LargeInput,
        )
    });
    g.finish();

    let mut g = c.benchmark_group("decode");
    g.throughput(Throughput::Elements(lines));
    g.sample_size(10).sampling_mode(SamplingMode::Flat);
    g.bench_function("warm", |b| {
        b.iter_batched(
            || input.to_vec(),
            |batches| black_box(run(&mut [&mut decode], batches)),
            BatchSize::LargeInput,
        )
    });
    g.finish();

    // type-infer alone, warm, on batches decoded and cleaned beforehand.
    let cleaned = run(&mut [&mut decode, &mut clean, &mut nested], input.to_vec());
    let mut g = c.benchmark_group("type-infer");
    g.throughput(Throughput::Elements(lines));
    g.sample_size(10).sampling_mode(SamplingMode::Flat);
    g.bench_function("warm", |b| {
        b.iter_batched(
            || cleaned.clone(),
            |batches| black_box(run(&mut [&mut types], batches)),
            BatchSize::LargeInput,
        )
    });
    g.finish();
}

fn main() {
    let Some(ndjson) = generate() else {
        return;
    };
    let input = batches(&ndjson);
    drop(ndjson);
    let lines: u64 = input.iter().map(|b| b.raw.lines.len() as u64).sum();
    let mut c = Criterion::default().configure_from_args();
    bench(&mut c, &input, lines);
    c.final_summary();
}
