//! `clean-name`: cleans event and property names (SPEC §3), once per distinct name.

use std::any::Any;

use schemars::JsonSchema;
use serde::Deserialize;

use sluice_engine::batch::Batch;
use sluice_engine::component::Operator;
use sluice_engine::registry::{BuildContext, Capability, Component};
use sluice_engine::Result;

use crate::naming::clean;

/// Cleans every event and property name into a legal SQL identifier: `$` becomes `mp_`,
/// lowercase, special characters `_`, 128 characters at most, reserved words get `res_`.
/// Collisions between cleaned names are numbered later, per table, by `type-infer`.
#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct CleanNameConfig {}

impl Component for CleanNameConfig {
    fn provides(&self) -> &'static [Capability] {
        &[Capability::CleanNames]
    }
    fn describe(&self) -> String {
        "names -> SQL identifiers".into()
    }
    fn build_operator(&self, _cx: &BuildContext) -> Result<Box<dyn Operator>> {
        Ok(Box::new(CleanName))
    }
    fn as_any(&self) -> &dyn Any {
        self
    }
}

/// The operator. Names are shared [`sluice_engine::Name`]s, so each distinct name is cleaned
/// once and every later event finds it done.
pub struct CleanName;

impl Operator for CleanName {
    fn process(&mut self, batch: &mut Batch) -> Result<()> {
        // Once per event name and per fragment (a name and class), not per value.
        let mut last = None;
        for n in &batch.events.name {
            if last != Some(*n) {
                n.clean_with(clean);
                last = Some(*n);
            }
        }
        for f in &batch.events.props {
            f.name.clean_with(clean);
        }
        Ok(())
    }
    fn fork(&self) -> Option<Box<dyn Operator>> {
        Some(Box::new(CleanName))
    }
}
