//! Run-wide counters for the summary and the progress line. The Prometheus series are emitted
//! next to them, through the `metrics` facade, at the same places.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Mutex;

#[derive(Debug, Default)]
pub struct RunStats {
    pub lines_read: AtomicU64,
    pub bytes_read: AtomicU64,
    pub dead_letters: AtomicU64,
    pub filtered: AtomicU64,
    pub rows_written: AtomicU64,
    pub files_written: AtomicU64,
    pub bytes_written: AtomicU64,
    pub commits: AtomicU64,
    /// Events skipped because a previous run had already committed them.
    pub already_committed: AtomicU64,
    /// Commits refused because another worker had claimed one of their partitions.
    pub fenced: AtomicU64,
    rows_per_table: Mutex<BTreeMap<String, u64>>,
}

impl RunStats {
    pub fn add(counter: &AtomicU64, n: u64) {
        counter.fetch_add(n, Ordering::Relaxed);
    }
    pub fn get(counter: &AtomicU64) -> u64 {
        counter.load(Ordering::Relaxed)
    }
    pub fn add_rows(&self, sink: &str, table: &str, n: u64) {
        Self::add(&self.rows_written, n);
        if let Ok(mut m) = self.rows_per_table.lock() {
            *m.entry(format!("{sink}.{table}")).or_default() += n;
        }
    }
    pub fn rows_per_table(&self) -> BTreeMap<String, u64> {
        self.rows_per_table
            .lock()
            .map(|m| m.clone())
            .unwrap_or_default()
    }
}
