//! One error type for the engine, grouped by cause so that callers know what to do with it.

use std::fmt;

/// Where a configuration problem is: `file:line:column`.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Location {
    pub file: String,
    pub line: usize,
    pub column: usize,
}

impl fmt::Display for Location {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.line == 0 {
            write!(f, "{}", self.file)
        } else {
            write!(f, "{}:{}:{}", self.file, self.line, self.column)
        }
    }
}

/// One problem found in a topology: where, which component, what is wrong and what to do.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Problem {
    pub location: Location,
    /// The component's name (`sinks.lake`), or empty for the file as a whole.
    pub component: String,
    pub message: String,
    /// What to do about it.
    pub hint: String,
}

impl fmt::Display for Problem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: ", self.location)?;
        if !self.component.is_empty() {
            write!(f, "{}: ", self.component)?;
        }
        write!(f, "{}", self.message)?;
        if !self.hint.is_empty() {
            write!(f, "\n    help: {}", self.hint)?;
        }
        Ok(())
    }
}

/// Errors of the engine and of everything that plugs into it.
#[derive(Debug, thiserror::Error)]
pub enum EngineError {
    /// The topology or the command line is wrong; nothing ran. Every problem is listed.
    #[error("{} problem(s) in the topology:\n{}", .0.len(), render(.0))]
    Config(Vec<Problem>),
    /// Bad input data that could not be sent to dead letters.
    #[error("data error: {0}")]
    Data(String),
    /// A service or the file system failed; retrying may help.
    #[error("external error ({context}): {source}")]
    External {
        context: String,
        #[source]
        source: Box<dyn std::error::Error + Send + Sync>,
        retryable: bool,
    },
    /// Another worker has claimed a partition this worker was about to commit.
    #[error("fenced: {0}")]
    Fenced(String),
    /// A bug: an invariant did not hold.
    #[error("internal error: {0}")]
    Internal(String),
}

fn render(problems: &[Problem]) -> String {
    problems
        .iter()
        .map(|p| p.to_string())
        .collect::<Vec<_>>()
        .join("\n")
}

impl EngineError {
    /// An external failure with what was being done when it happened.
    pub fn external(
        context: impl Into<String>,
        source: impl Into<Box<dyn std::error::Error + Send + Sync>>,
    ) -> Self {
        EngineError::External {
            context: context.into(),
            source: source.into(),
            retryable: false,
        }
    }

    /// A single configuration problem that has no position in a file.
    pub fn config(message: impl Into<String>, hint: impl Into<String>) -> Self {
        EngineError::Config(vec![Problem {
            location: Location::default(),
            component: String::new(),
            message: message.into(),
            hint: hint.into(),
        }])
    }
}

pub type Result<T, E = EngineError> = std::result::Result<T, E>;

/// Adds context to foreign errors: `file.read().context("reading x")?`.
pub trait ResultExt<T> {
    fn context(self, what: impl FnOnce() -> String) -> Result<T>;
}

impl<T, E: std::error::Error + Send + Sync + 'static> ResultExt<T> for std::result::Result<T, E> {
    fn context(self, what: impl FnOnce() -> String) -> Result<T> {
        self.map_err(|e| EngineError::external(what(), e))
    }
}
