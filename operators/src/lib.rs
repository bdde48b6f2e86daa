//! sluice's operators: pure transformations of batches, no I/O.
//!
//! The shaping decision: every name is a shared, interned [`sluice_engine::Name`], so what
//! depends only on a name (cleaning, column resolution) is computed once per distinct name and
//! found again by pointer, never recomputed per event × property. Operators that depend on the
//! batch alone can be forked onto every core; `type-infer`, whose answers depend on what came
//! first, runs in input order.

pub mod clean_name;
pub mod decode;
pub mod decode_records;
pub mod filter;
pub mod memory_registry;
pub mod naming;
pub mod partition_by_date;
mod scan;
pub mod stringify_nested;
pub mod type_infer;

use sluice_engine::registry::{Registry, Role, TypedPlugin};

/// Registers every operator type and the `mixpanel` decoder.
pub fn register(r: &mut Registry) {
    r.add(Box::new(TypedPlugin::<clean_name::CleanNameConfig>::new(
        "clean-name",
        Role::Operator,
        "Cleans event and property names into SQL identifiers (SPEC §3).",
    )));
    r.add(Box::new(TypedPlugin::<type_infer::TypeInferConfig>::new(
        "type-infer",
        Role::Operator,
        "Assigns tables and typed columns through the dataset's schema registry (SPEC §4).",
    )));
    r.add(Box::new(TypedPlugin::<
        stringify_nested::StringifyNestedConfig,
    >::new(
        "stringify-nested",
        Role::Operator,
        "Writes arrays and objects as compact JSON text (SPEC §5).",
    )));
    r.add(Box::new(TypedPlugin::<
        partition_by_date::PartitionByDateConfig,
    >::new(
        "partition-by-date",
        Role::Operator,
        "Assigns mp_date in the project timezone (SPEC §7.2).",
    )));
    r.add(Box::new(TypedPlugin::<filter::FilterConfig>::new(
        "filter",
        Role::Operator,
        "Keeps events by name (`events`) and by a predicate on properties (`where`).",
    )));
    r.add_decoder("mixpanel", decode::mixpanel_decoder);
    r.add_decoder("records", decode_records::records_decoder);
}
