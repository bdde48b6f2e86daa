//! The contract every [`Catalog`] keeps, tested on each: the same calls give the same answers
//! from the embedded SQLite catalog and from the log in an object store.

use std::path::Path;
use std::sync::Arc;

use sluice_engine::component::{ColumnAssignment, ColumnRequest};
use sluice_engine::ownership::Claim;
use sluice_engine::{EngineError, TypeClass};

use super::{Catalog, LocalCatalog, LogCatalog, SourcePosition, TableStorage};
use crate::store::LocalStore;

type Opener = fn(&Path) -> Box<dyn Catalog>;

fn local(dir: &Path) -> Box<dyn Catalog> {
    Box::new(LocalCatalog::open(&dir.join("c.sqlite")).unwrap())
}

fn log(dir: &Path) -> Box<dyn Catalog> {
    let store = Arc::new(LocalStore::open(dir).unwrap());
    Box::new(LogCatalog::open(store, "1/_sluice/state/").unwrap())
}

macro_rules! on_every_catalog {
    ($($test:ident),* $(,)?) => {
        mod local_catalog {
            $(#[test] fn $test() { super::$test(super::local) })*
        }
        mod log_catalog {
            $(#[test] fn $test() { super::$test(super::log) })*
        }
    };
}

on_every_catalog!(
    columns_in_one_transaction_decide_as_one_call_per_column_would,
    an_epoch_read_before_someone_else_committed_the_partition_cannot_commit,
    a_claim_fences_the_previous_owner_and_hands_over_its_unfinished_commit,
    a_commit_claimed_away_or_resolved_takes_nothing_more,
);

/// A position of partition `p` of source `src`.
pub(super) fn pos(p: &str, expected: u64, next: u64) -> SourcePosition {
    SourcePosition {
        source: "src".into(),
        partition: p.into(),
        expected,
        next_offset: next,
    }
}

/// A table `t` with two system columns, in a new catalog.
fn catalog_with_table(open: Opener, dir: &Path) -> (Box<dyn Catalog>, i64) {
    let cat = open(dir);
    cat.ensure_database("db").unwrap();
    let storage = |n: &str| TableStorage {
        location: format!("file:///lake/{n}/"),
        format: "parquet".into(),
    };
    let def = cat
        .table(
            "db",
            &storage,
            None,
            Some("t"),
            &[
                ("time", TypeClass::Timestamp),
                ("distinct_id", TypeClass::String),
            ],
            &|_| "t".into(),
        )
        .unwrap();
    (cat, def.id)
}

fn columns_in_one_transaction_decide_as_one_call_per_column_would(open: Opener) {
    // Collisions (two raw names cleaning to one base, a type conflict) and the column
    // limit, asked of one catalog in one call and of another one column at a time.
    let propose = |first: Option<&str>, taken: &dyn Fn(&str) -> bool| {
        let base = first.map_or("ab".to_string(), |f| format!("{f}_number"));
        (0..)
            .map(|i| {
                if i == 0 {
                    base.clone()
                } else {
                    format!("{base}_{i}")
                }
            })
            .find(|n| !taken(n))
            .unwrap()
    };
    let wanted = [
        ("AB", TypeClass::String),
        ("ab", TypeClass::String),
        ("AB", TypeClass::Number),
        ("AB", TypeClass::String),
        ("a.b", TypeClass::String),
        ("late", TypeClass::Boolean),
        ("later", TypeClass::String),
    ];
    let requests: Vec<ColumnRequest<'_>> = wanted
        .iter()
        .map(|&(raw, class)| ColumnRequest {
            raw,
            class,
            propose: &propose,
        })
        .collect();
    let (one, two) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    let (batched, t1) = catalog_with_table(open, one.path());
    let (single, t2) = catalog_with_table(open, two.path());
    // Room for four properties besides the two system columns: the fifth and sixth new
    // ones overflow into `mp_properties`.
    let max = 6;
    let got = batched.columns(t1, &requests, max).unwrap();
    let expected: Vec<_> = wanted
        .iter()
        .map(|&(raw, class)| single.column(t2, raw, class, max, &propose).unwrap())
        .collect();
    assert_eq!(got, expected);
    let names: Vec<(String, bool)> = got
        .iter()
        .map(|a| match a {
            ColumnAssignment::Column(c) => (c.name.clone(), false),
            ColumnAssignment::Overflow(c) => (c.name.clone(), true),
        })
        .collect();
    let s = |n: &str, o: bool| (n.to_string(), o);
    assert_eq!(
        names,
        [
            s("ab", false),
            s("ab_1", false),
            s("ab_number", false),
            s("ab", false),
            s("ab_2", false),
            s("mp_properties", true),
            s("mp_properties", true),
        ]
    );
    assert_eq!(
        batched.table_def(t1).unwrap(),
        single.table_def(t2).unwrap()
    );
    // Asked again, in one call: nothing new, the same answers.
    assert_eq!(batched.columns(t1, &requests, max).unwrap(), expected);
    let def = batched.table_def(t1).unwrap();
    assert_eq!(def.columns.len(), 7);
    // A holder of the first `from` columns reads exactly the rest.
    for from in 0..=8 {
        let rest = def.columns.get(from..).unwrap_or_default();
        assert_eq!(
            batched.columns_from(t1, from as u32).unwrap(),
            rest,
            "from {from}"
        );
    }
}

fn an_epoch_read_before_someone_else_committed_the_partition_cannot_commit(open: Opener) {
    let dir = tempfile::tempdir().unwrap();
    let cat = open(dir.path());
    let t0 = vec!["t/0".to_string()];
    let key = [("src".to_string(), "t/0".to_string())];
    cat.claim("sink", "A", "src", &t0).unwrap();
    let m1 = cat.begin_commit("sink", "A", &key).unwrap();
    cat.finish_commit(m1, "sink", "A", &[], &[pos("t/0", 0, 10)])
        .unwrap();
    // A holds an epoch of offsets 10.. when B takes t/0 and commits up to 30.
    cat.claim("sink", "B", "src", &t0).unwrap();
    let m2 = cat.begin_commit("sink", "B", &key).unwrap();
    cat.finish_commit(m2, "sink", "B", &[], &[pos("t/0", 10, 30)])
        .unwrap();
    // A gets t/0 back: it owns it again, but its epoch started from 10.
    let (claims, _) = cat.claim("sink", "A", "src", &t0).unwrap();
    assert!(!claims["t/0"].continued);
    assert_eq!(claims["t/0"].next_offset, Some(30));
    let m3 = cat.begin_commit("sink", "A", &key).unwrap();
    let err = cat
        .finish_commit(m3, "sink", "A", &[], &[pos("t/0", 10, 25)])
        .unwrap_err();
    assert!(matches!(err, EngineError::Fenced(_)), "{err}");
    assert_eq!(
        cat.positions("sink").unwrap()[&("src".into(), "t/0".into())],
        30
    );
    // From the committed position it may.
    cat.finish_commit(m3, "sink", "A", &[], &[pos("t/0", 30, 40)])
        .unwrap();
}

fn a_claim_fences_the_previous_owner_and_hands_over_its_unfinished_commit(open: Opener) {
    let dir = tempfile::tempdir().unwrap();
    let cat = open(dir.path());
    let parts = vec!["t/0".to_string(), "t/1".to_string()];

    let (claims, orphans) = cat.claim("sink", "A", "src", &parts).unwrap();
    assert!(orphans.is_empty());
    assert_eq!(
        claims["t/0"],
        Claim {
            next_offset: None,
            continued: false
        }
    );
    let m1 = cat
        .begin_commit("sink", "A", &[("src".into(), "t/0".into())])
        .unwrap();
    cat.finish_commit(m1, "sink", "A", &[], &[pos("t/0", 0, 10)])
        .unwrap();

    // A claims again (an eager rebalance gave it the same partitions): it continues.
    let (claims, _) = cat.claim("sink", "A", "src", &parts).unwrap();
    assert_eq!(
        claims["t/0"],
        Claim {
            next_offset: Some(10),
            continued: true
        }
    );

    // A starts a commit of both partitions; B takes t/1 before A finishes.
    let m2 = cat
        .begin_commit(
            "sink",
            "A",
            &[("src".into(), "t/0".into()), ("src".into(), "t/1".into())],
        )
        .unwrap();
    cat.plan_objects(m2, &["k1".to_string()]).unwrap();
    let (claims, orphans) = cat.claim("sink", "B", "src", &["t/1".to_string()]).unwrap();
    assert_eq!(
        claims["t/1"],
        Claim {
            next_offset: None,
            continued: false
        }
    );
    assert_eq!(orphans.len(), 1, "B must resolve A's unfinished commit");
    assert_eq!(orphans[0].id, m2);
    assert_eq!(orphans[0].worker, "A");
    assert_eq!(orphans[0].objects, vec!["k1".to_string()]);

    // A's commit is refused and changes nothing.
    let err = cat
        .finish_commit(
            m2,
            "sink",
            "A",
            &[],
            &[pos("t/0", 10, 20), pos("t/1", 0, 5)],
        )
        .unwrap_err();
    assert!(matches!(err, EngineError::Fenced(_)), "{err}");
    let p = cat.positions("sink").unwrap();
    assert_eq!(p.get(&("src".into(), "t/0".into())), Some(&10));
    assert_eq!(p.get(&("src".into(), "t/1".into())), None);

    // A may still commit the partition it kept.
    let m3 = cat
        .begin_commit("sink", "A", &[("src".into(), "t/0".into())])
        .unwrap();
    cat.finish_commit(m3, "sink", "A", &[], &[pos("t/0", 10, 20)])
        .unwrap();
    // A claim by B of t/0 does not hand over A's finished commits.
    let (claims, orphans) = cat.claim("sink", "B", "src", &["t/0".to_string()]).unwrap();
    assert_eq!(claims["t/0"].next_offset, Some(20));
    assert_eq!(orphans.iter().map(|m| m.id).collect::<Vec<_>>(), vec![m2]);
}

/// Once another worker has claimed one of a commit's partitions, the commit is the claimer's
/// to resolve from what it found: the old owner may neither add objects to it nor move it on,
/// and once it is resolved nobody finishes it, even an owner that won the partition back.
fn a_commit_claimed_away_or_resolved_takes_nothing_more(open: Opener) {
    let dir = tempfile::tempdir().unwrap();
    let cat = open(dir.path());
    let t0 = vec!["t/0".to_string()];
    let key = [("src".to_string(), "t/0".to_string())];
    cat.claim("sink", "A", "src", &t0).unwrap();
    let m = cat.begin_commit("sink", "A", &key).unwrap();
    cat.plan_objects(m, &["a1".to_string()]).unwrap();
    let (_, orphans) = cat.claim("sink", "B", "src", &t0).unwrap();
    assert_eq!(orphans.len(), 1);
    let refused = [
        cat.plan_objects(m, &["a1".to_string(), "a2".to_string()]),
        cat.set_stage(m, sluice_engine::commit::CommitStage::ObjectsWritten),
    ];
    for r in refused {
        assert!(matches!(r, Err(EngineError::Fenced(_))), "{r:?}");
    }
    let still = cat.unfinished("sink").unwrap();
    assert_eq!(still.len(), 1);
    assert_eq!(
        still[0].objects,
        vec!["a1".to_string()],
        "nothing was added"
    );
    // B resolves it; A wins the partition back and tries to finish the old commit.
    cat.abandon(m).unwrap();
    cat.claim("sink", "A", "src", &t0).unwrap();
    let r = cat.finish_commit(m, "sink", "A", &[], &[pos("t/0", 0, 10)]);
    assert!(matches!(r, Err(EngineError::Fenced(_))), "{r:?}");
    assert!(cat.positions("sink").unwrap().is_empty());
}
