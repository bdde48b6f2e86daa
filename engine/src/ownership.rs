//! Who may commit which source partition, and how a source learns where to read from.
//!
//! Several workers may feed one catalog (a consumer group). Each source partition has one
//! owner in each sink's catalog: a worker **claims** a partition before reading it, and a commit
//! that includes a partition another worker has claimed since is refused (the worker is
//! *fenced*). The fenced sink drops everything it holds and asks every source for a **rewind**:
//! sources go back to the committed positions of the partitions they still hold, and batches
//! read before the rewind are dropped on arrival. Nothing is lost, because the catalog's
//! positions are the only truth about what was committed, and nothing is written twice, because
//! the commit that would have is refused.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, OnceLock};

use crate::error::Result;

/// What a sink's catalog says about a source partition a worker has just claimed.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Claim {
    /// The next offset to read, if anything was committed.
    pub next_offset: Option<u64>,
    /// This worker already owned the partition, so nobody else committed it since: the worker
    /// may go on from where it had read.
    pub continued: bool,
}

/// A sink's side of partition ownership; usable from any thread.
pub trait Ownership: Send + Sync {
    /// Takes `partitions` of `source` for this worker, resolving commits that earlier owners
    /// left unfinished, and returns what is committed for each.
    fn claim(&self, source: &str, partitions: &[String]) -> Result<HashMap<String, Claim>>;
    /// Committed next offsets of `source`, by partition.
    fn committed(&self, source: &str) -> Result<HashMap<String, u64>>;
}

/// This process's identity as a worker: host, pid and start time.
pub fn worker_id() -> &'static str {
    static ID: OnceLock<String> = OnceLock::new();
    ID.get_or_init(|| {
        let host = std::fs::read_to_string("/etc/hostname")
            .ok()
            .map(|s| s.trim().to_string())
            .filter(|s| !s.is_empty())
            .or_else(|| std::env::var("HOSTNAME").ok())
            .unwrap_or_else(|| "localhost".into());
        let nanos = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_nanos())
            .unwrap_or_default();
        format!("{host}:{}:{nanos:x}", std::process::id())
    })
}

/// Requests between a run's sources and sinks.
///
/// - The rewind counter: sources stamp batches with the generation they read them in; a sink
///   drops batches of older generations.
/// - The flush flag: a source that needs what it read committed now (it is caught up, or its
///   partitions are being taken away) raises it; sinks commit on their next poll while it is up.
///   With targets (partition number, next offset), a sink waits until it has received that
///   far, so that the batches still on their way make one commit rather than several.
#[derive(Debug, Default)]
pub struct Rewind {
    generation: AtomicU64,
    flush: AtomicBool,
    flush_targets: std::sync::Mutex<Vec<(u32, u64)>>,
}

impl Rewind {
    /// Raises (or lowers) the flush flag: sinks commit what they hold at once.
    pub fn request_flush(&self, on: bool) {
        self.set_targets(Vec::new());
        self.flush.store(on, Ordering::SeqCst);
    }
    /// Raises the flush flag for what was sent up to `targets` (partition number, next
    /// offset): a sink commits once it has received that much.
    pub fn request_flush_through(&self, targets: Vec<(u32, u64)>) {
        self.set_targets(targets);
        self.flush.store(true, Ordering::SeqCst);
    }
    /// What the flush waits for; empty: nothing.
    pub fn flush_targets(&self) -> Vec<(u32, u64)> {
        self.flush_targets
            .lock()
            .map(|t| t.clone())
            .unwrap_or_default()
    }
    fn set_targets(&self, targets: Vec<(u32, u64)>) {
        if let Ok(mut t) = self.flush_targets.lock() {
            *t = targets;
        }
    }
    pub fn flush_requested(&self) -> bool {
        self.flush.load(Ordering::SeqCst)
    }
    /// Asks every source to go back to the committed positions; returns the new generation.
    pub fn request(&self) -> u64 {
        self.generation.fetch_add(1, Ordering::SeqCst) + 1
    }
    pub fn current(&self) -> u64 {
        self.generation.load(Ordering::SeqCst)
    }
}

/// What a source uses to claim partitions and find committed positions: the ownership handles
/// of every sink it feeds (directly or through operators).
pub struct Coordinator {
    source: String,
    sinks: Vec<Arc<dyn Ownership>>,
    pub rewind: Arc<Rewind>,
}

impl Coordinator {
    pub fn new(source: &str, sinks: Vec<Arc<dyn Ownership>>, rewind: Arc<Rewind>) -> Self {
        Coordinator {
            source: source.to_string(),
            sinks,
            rewind,
        }
    }

    /// Claims `partitions` in every sink. A partition continues only if it continues in every
    /// sink; its committed offset is the lowest any sink has (none if one sink has none).
    pub fn claim(&self, partitions: &[String]) -> Result<HashMap<String, Claim>> {
        let mut out: HashMap<String, Claim> = HashMap::new();
        for (i, s) in self.sinks.iter().enumerate() {
            let got = s.claim(&self.source, partitions)?;
            for p in partitions {
                let c = got.get(p).copied().unwrap_or_default();
                if i == 0 {
                    out.insert(p.clone(), c);
                } else if let Some(o) = out.get_mut(p) {
                    o.continued &= c.continued;
                    o.next_offset = match (o.next_offset, c.next_offset) {
                        (Some(a), Some(b)) => Some(a.min(b)),
                        _ => None,
                    };
                }
            }
        }
        if self.sinks.is_empty() {
            for p in partitions {
                out.insert(p.clone(), Claim::default());
            }
        }
        Ok(out)
    }

    /// Committed next offsets: the lowest over the sinks, for partitions every sink has.
    pub fn committed(&self) -> Result<HashMap<String, u64>> {
        let mut out: HashMap<String, u64> = HashMap::new();
        for (i, s) in self.sinks.iter().enumerate() {
            let got = s.committed(&self.source)?;
            if i == 0 {
                out = got;
            } else {
                out.retain(|k, v| match got.get(k) {
                    Some(c) => {
                        *v = (*v).min(*c);
                        true
                    }
                    None => false,
                });
            }
        }
        Ok(out)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Mutex;

    struct Fixed(Mutex<HashMap<String, Claim>>);
    impl Ownership for Fixed {
        fn claim(&self, _: &str, _: &[String]) -> Result<HashMap<String, Claim>> {
            Ok(self.0.lock().map(|m| m.clone()).unwrap_or_default())
        }
        fn committed(&self, _: &str) -> Result<HashMap<String, u64>> {
            Ok(self
                .0
                .lock()
                .map(|m| {
                    m.iter()
                        .filter_map(|(k, c)| c.next_offset.map(|o| (k.clone(), o)))
                        .collect()
                })
                .unwrap_or_default())
        }
    }

    fn sink(entries: &[(&str, Option<u64>, bool)]) -> Arc<dyn Ownership> {
        Arc::new(Fixed(Mutex::new(
            entries
                .iter()
                .map(|(k, o, c)| {
                    (
                        k.to_string(),
                        Claim {
                            next_offset: *o,
                            continued: *c,
                        },
                    )
                })
                .collect(),
        )))
    }

    #[test]
    fn claims_combine_to_the_lowest_offset_and_continue_only_everywhere() {
        let c = Coordinator::new(
            "src",
            vec![
                sink(&[
                    ("a", Some(10), true),
                    ("b", Some(5), true),
                    ("c", None, true),
                ]),
                sink(&[
                    ("a", Some(7), true),
                    ("b", Some(9), false),
                    ("c", Some(3), true),
                ]),
            ],
            Arc::new(Rewind::default()),
        );
        let parts: Vec<String> = ["a", "b", "c"].iter().map(|s| s.to_string()).collect();
        let got = c.claim(&parts).expect("claim");
        assert_eq!(
            got["a"],
            Claim {
                next_offset: Some(7),
                continued: true
            }
        );
        assert_eq!(
            got["b"],
            Claim {
                next_offset: Some(5),
                continued: false
            }
        );
        assert_eq!(
            got["c"],
            Claim {
                next_offset: None,
                continued: true
            }
        );
        let committed = c.committed().expect("committed");
        assert_eq!(committed.get("a"), Some(&7));
        assert_eq!(committed.get("c"), None, "one sink has nothing for c");
    }

    #[test]
    fn rewinds_count_up() {
        let r = Rewind::default();
        assert_eq!(r.current(), 0);
        assert_eq!(r.request(), 1);
        assert_eq!(r.request(), 2);
        assert_eq!(r.current(), 2);
    }
}
