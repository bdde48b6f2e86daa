//! The `sluice` application: the one explicit registry of every component type, and the
//! commands of the CLI.

pub mod cli;
pub mod gen;

use sluice_engine::registry::Registry;

/// Every source, operator, sink and decoder sluice knows.
pub fn registry() -> Registry {
    let mut r = Registry::default();
    sluice_operators::register(&mut r);
    sluice_connectors::register(&mut r);
    r
}
