//! The one explicit list of component types: a typed trait for each kind, an erased wrapper
//! ([`TypedPlugin`]), and the [`Registry`] the application fills at start. No link-time magic.

use std::any::Any;
use std::collections::BTreeMap;
use std::marker::PhantomData;
use std::sync::Arc;

use marked_yaml::Node;
use schemars::JsonSchema;
use serde::de::DeserializeOwned;

use crate::component::{Operator, SchemaRegistry, Sink, Source};
use crate::error::{EngineError, Result};
use crate::runtime::Partitions;
use crate::stats::RunStats;

/// The three kinds of component in a topology.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Role {
    Source,
    Operator,
    Sink,
}

impl Role {
    pub fn section(self) -> &'static str {
        match self {
            Role::Source => "sources",
            Role::Operator => "operators",
            Role::Sink => "sinks",
        }
    }
}

/// What events carry after a component ran. `validate` checks that what a component requires
/// is provided on every path into it.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Capability {
    /// Names cleaned (`clean-name`).
    CleanNames,
    /// Table and columns assigned (`type-infer`).
    Columns,
    /// `mp_date` assigned (`partition-by-date`).
    Dates,
}

impl Capability {
    pub fn operator(self) -> &'static str {
        match self {
            Capability::CleanNames => "clean-name",
            Capability::Columns => "type-infer",
            Capability::Dates => "partition-by-date",
        }
    }
}

/// A problem a component finds in its own settings, without touching the network or files.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Issue {
    /// The key the problem is about, to point at its line; `None` points at the component.
    pub key: Option<String>,
    pub message: String,
    pub hint: String,
}

impl Issue {
    pub fn at(key: &str, message: impl Into<String>, hint: impl Into<String>) -> Self {
        Issue {
            key: Some(key.to_string()),
            message: message.into(),
            hint: hint.into(),
        }
    }
}

/// What building a component may use.
pub struct BuildContext {
    pub name: String,
    /// The schema registry of the dataset this component feeds (for `type-infer`).
    pub schema_registry: Option<Arc<dyn SchemaRegistry>>,
    pub partitions: Arc<Partitions>,
    pub stats: Arc<RunStats>,
}

/// A component's parsed settings: validates itself, says what it needs, builds the runtime
/// object.
pub trait Component: Send + Sync + Any {
    /// Pure checks beyond what the types express.
    fn validate(&self) -> Vec<Issue> {
        Vec::new()
    }
    fn provides(&self) -> &'static [Capability] {
        &[]
    }
    fn requires(&self) -> &'static [Capability] {
        &[]
    }
    /// One line for `sluice graph`.
    fn describe(&self) -> String {
        String::new()
    }
    /// For sources: the decoder that turns raw lines into events, and its settings.
    fn format(&self) -> Option<(&str, crate::format::DecoderSettings)> {
        None
    }
    /// For sinks that own a dataset: its identity (for checks) ...
    fn dataset(&self) -> Option<String> {
        None
    }
    /// ... and its schema registry (opens the catalog).
    fn open_schema_registry(&self) -> Option<Result<Arc<dyn SchemaRegistry>>> {
        None
    }
    /// For operators that assign columns and need a dataset's registry.
    fn needs_schema_registry(&self) -> bool {
        false
    }
    /// `sluice validate --online`: reach what the component would use (brokers, buckets,
    /// catalogs, roles) without moving data, and say what is missing.
    fn check_online(&self) -> Vec<OnlineCheck> {
        Vec::new()
    }
    fn build_source(&self, _cx: &BuildContext) -> Result<Box<dyn Source>> {
        Err(EngineError::Internal("not a source".into()))
    }
    fn build_operator(&self, _cx: &BuildContext) -> Result<Box<dyn Operator>> {
        Err(EngineError::Internal("not an operator".into()))
    }
    fn build_sink(&self, _cx: &BuildContext) -> Result<Box<dyn Sink>> {
        Err(EngineError::Internal("not a sink".into()))
    }
    fn as_any(&self) -> &dyn Any;
}

/// One thing `validate --online` tried, and how it went.
#[derive(Clone, Debug)]
pub struct OnlineCheck {
    /// What was tried, e.g. `s3:PutObject on lake/exports/`.
    pub what: String,
    /// Why it failed; `None` when it worked.
    pub error: Option<String>,
    /// When permission was refused: the policy statement that would allow it, as JSON, and
    /// where it goes.
    pub missing: Option<String>,
}

impl OnlineCheck {
    pub fn ok(what: impl Into<String>) -> Self {
        OnlineCheck {
            what: what.into(),
            error: None,
            missing: None,
        }
    }
    pub fn failed(what: impl Into<String>, error: impl Into<String>) -> Self {
        OnlineCheck {
            what: what.into(),
            error: Some(error.into()),
            missing: None,
        }
    }
    pub fn missing(mut self, statement: impl Into<String>) -> Self {
        self.missing = Some(statement.into());
        self
    }
}

/// An error from turning YAML into settings, with where it is.
pub struct ParseError {
    pub message: String,
    pub line: usize,
    pub column: usize,
}

/// A component type, erased.
pub trait Plugin: Send + Sync {
    fn type_name(&self) -> &'static str;
    fn role(&self) -> Role;
    fn about(&self) -> &'static str;
    /// JSON Schema of the settings (without `type` and `inputs`).
    fn schema(&self) -> serde_json::Value;
    fn parse(&self, node: &Node) -> std::result::Result<Box<dyn Component>, ParseError>;
}

/// The typed side: a serde + schemars settings struct that is a [`Component`].
pub struct TypedPlugin<C> {
    type_name: &'static str,
    role: Role,
    about: &'static str,
    _c: PhantomData<fn() -> C>,
}

impl<C> TypedPlugin<C> {
    pub fn new(type_name: &'static str, role: Role, about: &'static str) -> Self {
        TypedPlugin {
            type_name,
            role,
            about,
            _c: PhantomData,
        }
    }
}

impl<C> Plugin for TypedPlugin<C>
where
    C: DeserializeOwned + JsonSchema + Component + 'static,
{
    fn type_name(&self) -> &'static str {
        self.type_name
    }
    fn role(&self) -> Role {
        self.role
    }
    fn about(&self) -> &'static str {
        self.about
    }
    fn schema(&self) -> serde_json::Value {
        serde_json::to_value(schemars::schema_for!(C)).unwrap_or(serde_json::Value::Null)
    }
    fn parse(&self, node: &Node) -> std::result::Result<Box<dyn Component>, ParseError> {
        match marked_yaml::from_node::<C>(node) {
            Ok(c) => Ok(Box::new(c)),
            Err(e) => {
                let mark = e.start_mark().or_else(|| node.span().start().copied());
                Err(ParseError {
                    message: e.to_string(),
                    line: mark.map(|m| m.line()).unwrap_or(0),
                    column: mark.map(|m| m.column()).unwrap_or(0),
                })
            }
        }
    }
}

/// Makes the decoder operator for a source format.
pub type DecoderFactory = fn(&crate::format::DecoderSettings) -> Box<dyn Operator>;

/// Every component type and decoder the application knows.
#[derive(Default)]
pub struct Registry {
    plugins: BTreeMap<(Role, &'static str), Box<dyn Plugin>>,
    decoders: BTreeMap<&'static str, DecoderFactory>,
}

impl Registry {
    pub fn add(&mut self, plugin: Box<dyn Plugin>) {
        self.plugins
            .insert((plugin.role(), plugin.type_name()), plugin);
    }
    pub fn add_decoder(&mut self, format: &'static str, f: DecoderFactory) {
        self.decoders.insert(format, f);
    }
    pub fn plugin(&self, role: Role, type_name: &str) -> Option<&dyn Plugin> {
        self.plugins
            .iter()
            .find(|((r, t), _)| *r == role && *t == type_name)
            .map(|(_, p)| p.as_ref())
    }
    pub fn types(&self, role: Role) -> Vec<&'static str> {
        self.plugins
            .keys()
            .filter(|(r, _)| *r == role)
            .map(|(_, t)| *t)
            .collect()
    }
    pub fn plugins(&self) -> impl Iterator<Item = &dyn Plugin> {
        self.plugins.values().map(|p| p.as_ref())
    }
    pub fn decoder(&self, format: &str) -> Option<DecoderFactory> {
        self.decoders.get(format).copied()
    }
    pub fn formats(&self) -> Vec<&'static str> {
        self.decoders.keys().copied().collect()
    }
}
