//! Crash points for the tests: with the `failpoints` feature and `FAILPOINTS=<name>=return`
//! (the `fail` crate's syntax, e.g. `1*off->return` for the second time), the process dies at
//! that point as abruptly as a SIGKILL would leave it: no destructor, flush or cleanup runs.
//! Without the feature the points compile to nothing.
//!
//! The points, in commit order: `lake.commit.begun` (commit record written),
//! `lake.commit.tables-published` (schema in the catalog), `lake.commit.some-objects` (the
//! epoch's first object stored), `s3.multipart.part` (one part of a multipart upload sent),
//! `lake.commit.objects-written`, `lake.commit.partitions-published` (Glue partitions
//! registered), `lake.commit.done` (positions committed, Kafka's offsets not yet copied).

/// Arms the points FAILPOINTS names. A no-op without the feature.
pub fn init() {
    #[cfg(feature = "failpoints")]
    std::mem::forget(fail::FailScenario::setup());
}

/// Dies now; typed as whatever the caller returns.
pub fn crash<T>(point: &str) -> T {
    eprintln!("failpoint {point}: crashing");
    std::process::abort()
}

/// A point where a test may crash the process.
macro_rules! crash_point {
    ($name:literal) => {
        fail::fail_point!($name, |_| $crate::failpoints::crash($name))
    };
}
pub(crate) use crash_point;
