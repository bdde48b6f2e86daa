//! Property tests of name cleaning and column assignment (SPEC §3, §12 D3, D7).

use std::collections::HashMap;
use std::sync::Arc;

use proptest::prelude::*;
use sluice_engine::batch::{Batch, Events, FragIndex, NameRef, Position, Value};
use sluice_engine::component::Operator;
use sluice_operators::clean_name::CleanName;
use sluice_operators::memory_registry::MemoryRegistry;
use sluice_operators::naming::clean;
use sluice_operators::type_infer::{SchemaMode, TypeInfer};

fn legal(s: &str) -> bool {
    !s.is_empty()
        && s.len() <= 128
        && s.bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_')
}

fn raw_name() -> impl Strategy<Value = String> {
    prop_oneof![
        "\\PC{0,40}",
        "[$]{0,2}[A-Za-z0-9 ._()-]{0,20}",
        "[a-z]{120,140}",
        Just("order".to_string()),
        Just("Time".to_string()),
        Just("x_1".to_string()),
    ]
}

proptest! {
    #[test]
    fn every_cleaned_name_is_a_legal_identifier(raw in raw_name()) {
        prop_assert!(legal(&clean(&raw)), "{:?} -> {:?}", raw, clean(&raw));
    }

    #[test]
    fn cleaning_a_clean_name_changes_nothing(raw in raw_name()) {
        let once = clean(&raw);
        prop_assert_eq!(clean(&once), once);
    }

    #[test]
    fn distinct_raw_names_never_share_a_column(raws in proptest::collection::vec(raw_name(), 1..40)) {
        let reg = Arc::new(MemoryRegistry::new());
        let mut ti = TypeInfer::new(reg.clone(), SchemaMode::Monoschema, 9500);
        let mut events = Events::default();
        let mut index = FragIndex::default();
        for (i, r) in raws.iter().enumerate() {
            let pos = Position { partition: 0, offset: i as u64 };
            let props = [(NameRef::intern(r), Value::String("v".into()))];
            events.push_event(&mut index, NameRef::intern("E"), 0, pos, None, &props);
        }
        let mut b = Batch { events, ..Default::default() };
        CleanName.process(&mut b).unwrap();
        ti.process(&mut b).unwrap();
        let mut by_column: HashMap<u32, &str> = HashMap::new();
        for (e, r) in b.events.iter().zip(&raws) {
            let (frag, _, _) = e.props().next().expect("one property");
            let col = b.events.props[frag as usize].column_in(0).expect("a column").ordinal;
            if let Some(prev) = by_column.insert(col, r) {
                prop_assert_eq!(prev, r.as_str(), "two raw names share column {}", col);
            }
        }
        let t = &reg.tables()[0];
        for c in &t.columns {
            prop_assert!(legal(&c.name), "{:?}", c.name);
        }
        let mut names: Vec<&str> = t.columns.iter().map(|c| c.name.as_str()).collect();
        names.sort();
        let n = names.len();
        names.dedup();
        prop_assert_eq!(names.len(), n);
    }
}
