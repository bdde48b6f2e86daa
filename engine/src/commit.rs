//! The commit protocol's recovery decisions, as pure functions.
//!
//! A sink commits a unit of work (an *epoch*: every window it holds, with the offset range it
//! covers) in steps, each recorded in its manifest before the next starts:
//!
//! 1. `Planned`: the manifest lists the object keys and the positions the epoch ends at.
//! 2. `ObjectsWritten`: every object is in place.
//! 3. `CatalogUpdated`: partitions are registered.
//! 4. `Done`: the positions are committed; the next epoch starts after them.
//!
//! After a crash, a manifest that is not `Done` is resolved by [`decide`] alone, from what
//! the store and the catalog show; the caller carries the decision out. Keeping this free of
//! I/O is what lets every interleaving be tested.

/// How far an interrupted commit got.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub enum CommitStage {
    Planned,
    ObjectsWritten,
    CatalogUpdated,
    Done,
}

impl CommitStage {
    pub fn as_str(self) -> &'static str {
        match self {
            CommitStage::Planned => "planned",
            CommitStage::ObjectsWritten => "objects_written",
            CommitStage::CatalogUpdated => "catalog_updated",
            CommitStage::Done => "done",
        }
    }
    pub fn parse(s: &str) -> Option<Self> {
        Some(match s {
            "planned" => CommitStage::Planned,
            "objects_written" => CommitStage::ObjectsWritten,
            "catalog_updated" => CommitStage::CatalogUpdated,
            "done" => CommitStage::Done,
            _ => return None,
        })
    }
}

/// What recovery finds about one manifest.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Observed {
    pub stage: CommitStage,
    /// Objects listed in the manifest that exist.
    pub present: Vec<String>,
    /// Objects listed in the manifest that do not exist.
    pub missing: Vec<String>,
    /// Whether this worker still owns the manifest's partitions (its generation is current).
    pub owner: bool,
}

/// What to do about an interrupted commit.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Recovery {
    /// Committed, or nothing was written: nothing to do.
    Nothing,
    /// Nothing is registered and no position moved: delete the objects that were written and
    /// read the range again.
    RollBack { delete: Vec<String> },
    /// The catalog already points at the objects and all of them exist: finish by committing
    /// the positions.
    RollForward,
    /// Another worker owns the partitions now: leave the manifest to it.
    Fenced,
    /// The state cannot arise from the protocol (objects missing behind a registered
    /// partition): stop and say so rather than guess.
    Inconsistent { reason: String },
}

/// Decides how to resolve one manifest found at start.
pub fn decide(o: &Observed) -> Recovery {
    if !o.owner {
        return Recovery::Fenced;
    }
    match o.stage {
        CommitStage::Done => Recovery::Nothing,
        CommitStage::Planned | CommitStage::ObjectsWritten => {
            if o.present.is_empty() {
                Recovery::Nothing
            } else {
                Recovery::RollBack {
                    delete: o.present.clone(),
                }
            }
        }
        CommitStage::CatalogUpdated => {
            if o.missing.is_empty() {
                Recovery::RollForward
            } else {
                Recovery::Inconsistent {
                    reason: format!(
                        "partitions are registered but {} object(s) are missing, e.g. {}",
                        o.missing.len(),
                        o.missing[0]
                    ),
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn obs(stage: CommitStage, present: &[&str], missing: &[&str]) -> Observed {
        Observed {
            stage,
            present: present.iter().map(|s| s.to_string()).collect(),
            missing: missing.iter().map(|s| s.to_string()).collect(),
            owner: true,
        }
    }

    #[test]
    fn planned_with_nothing_written_needs_nothing() {
        assert_eq!(
            decide(&obs(CommitStage::Planned, &[], &["a", "b"])),
            Recovery::Nothing
        );
    }

    #[test]
    fn partial_objects_are_rolled_back() {
        assert_eq!(
            decide(&obs(CommitStage::Planned, &["a"], &["b"])),
            Recovery::RollBack {
                delete: vec!["a".into()]
            }
        );
        assert_eq!(
            decide(&obs(CommitStage::ObjectsWritten, &["a", "b"], &[])),
            Recovery::RollBack {
                delete: vec!["a".into(), "b".into()]
            }
        );
    }

    #[test]
    fn registered_partitions_roll_forward() {
        assert_eq!(
            decide(&obs(CommitStage::CatalogUpdated, &["a", "b"], &[])),
            Recovery::RollForward
        );
    }

    #[test]
    fn registered_but_missing_objects_is_reported() {
        assert!(matches!(
            decide(&obs(CommitStage::CatalogUpdated, &["a"], &["b"])),
            Recovery::Inconsistent { .. }
        ));
    }

    #[test]
    fn done_needs_nothing() {
        assert_eq!(
            decide(&obs(CommitStage::Done, &["a"], &[])),
            Recovery::Nothing
        );
    }

    #[test]
    fn a_fenced_worker_leaves_the_manifest_alone() {
        let mut o = obs(CommitStage::Planned, &["a"], &[]);
        o.owner = false;
        assert_eq!(decide(&o), Recovery::Fenced);
    }
}
