//! `filter`: the `events` whitelist and a `where` predicate on properties (SPEC §10.1).
//!
//! The predicate language is a small subset of Mixpanel's selector expressions:
//!
//! ```text
//! properties["plan"] == "pro" and (properties["seats"] >= 10 or not defined(properties["trial"]))
//! event in ["Purchase", "Refund"]
//! ```
//!
//! Comparisons are `== != < <= > >= in`; `and`, `or`, `not` and parentheses combine them;
//! `defined(properties["x"])` tests presence (a JSON null counts as absent). Values compare only
//! within a type: `1 == "1"` is false, and ordering across types is false.

use std::any::Any;

use schemars::JsonSchema;
use serde::Deserialize;

use sluice_engine::batch::{Batch, EventRef, Text, ValueRef};
use sluice_engine::component::Operator;
use sluice_engine::registry::{BuildContext, Component, Issue};
use sluice_engine::{EngineError, Result};

/// Keeps the events whose name is in `events` (when given) and for which `where` holds (when
/// given). Dropped events are counted as filtered, not as dead letters.
#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct FilterConfig {
    /// Original event names to keep; all events when absent.
    #[serde(default)]
    pub events: Option<Vec<String>>,
    /// A predicate on the event, e.g. `properties["plan"] == "pro"`.
    #[serde(default, rename = "where")]
    pub predicate: Option<String>,
}

impl Component for FilterConfig {
    fn validate(&self) -> Vec<Issue> {
        let mut out = Vec::new();
        if let Some(w) = &self.predicate {
            if let Err(e) = parse(w) {
                out.push(Issue::at(
                    "where",
                    format!("`where` at character {}: {}", e.at + 1, e.message),
                    r#"write e.g. properties["plan"] == "pro" and not defined(properties["test"])"#,
                ));
            }
        }
        if self.events.as_ref().is_some_and(|e| e.is_empty()) {
            out.push(Issue::at(
                "events",
                "`events` is empty: nothing would pass",
                "list event names, or remove `events`",
            ));
        }
        out
    }
    fn describe(&self) -> String {
        let mut parts = Vec::new();
        if let Some(e) = &self.events {
            parts.push(format!("{} event name(s)", e.len()));
        }
        if let Some(w) = &self.predicate {
            parts.push(format!("where {w}"));
        }
        parts.join(", ")
    }
    fn build_operator(&self, _cx: &BuildContext) -> Result<Box<dyn Operator>> {
        let predicate = match &self.predicate {
            Some(w) => Some(parse(w).map_err(|e| {
                EngineError::config(
                    format!("bad `where`: {}", e.message),
                    "see `sluice validate`",
                )
            })?),
            None => None,
        };
        Ok(Box::new(Filter {
            events: self.events.clone(),
            predicate,
        }))
    }
    fn as_any(&self) -> &dyn Any {
        self
    }
}

#[derive(Clone)]
pub struct Filter {
    events: Option<Vec<String>>,
    predicate: Option<Expr>,
}

impl Filter {
    pub fn keeps(&self, e: &EventRef<'_>) -> bool {
        if let Some(names) = &self.events {
            if !names.iter().any(|n| n == e.name().raw()) {
                return false;
            }
        }
        match &self.predicate {
            Some(p) => p.eval(e).truthy(),
            None => true,
        }
    }
}

impl Operator for Filter {
    fn process(&mut self, batch: &mut Batch) -> Result<()> {
        let keep: Vec<bool> = batch.events.iter().map(|e| self.keeps(&e)).collect();
        batch.filtered += batch.events.retain(&keep) as u64;
        Ok(())
    }
    fn fork(&self) -> Option<Box<dyn Operator>> {
        Some(Box::new(self.clone()))
    }
}

/// A parsed predicate.
#[derive(Clone, Debug, PartialEq)]
pub enum Expr {
    Lit(Lit),
    List(Vec<Lit>),
    Prop(String),
    EventName,
    Defined(String),
    Not(Box<Expr>),
    And(Box<Expr>, Box<Expr>),
    Or(Box<Expr>, Box<Expr>),
    Cmp(Box<Expr>, Op, Box<Expr>),
}

#[derive(Clone, Debug, PartialEq)]
pub enum Lit {
    Null,
    Bool(bool),
    Num(f64),
    Str(Text),
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Op {
    Eq,
    Ne,
    Lt,
    Le,
    Gt,
    Ge,
    In,
}

impl Lit {
    fn truthy(&self) -> bool {
        match self {
            Lit::Null => false,
            Lit::Bool(b) => *b,
            Lit::Num(n) => *n != 0.0,
            Lit::Str(s) => !s.is_empty(),
        }
    }
}

fn value_lit(v: ValueRef<'_>) -> Lit {
    match v {
        ValueRef::Bool(b) => Lit::Bool(b),
        ValueRef::Num(n) => Lit::Num(n),
        ValueRef::Str(s) | ValueRef::Json(s) => Lit::Str(Text::from(s)),
    }
}

fn compare(a: &Lit, op: Op, b: &Lit) -> bool {
    use std::cmp::Ordering;
    let ord = match (a, b) {
        (Lit::Num(x), Lit::Num(y)) => x.partial_cmp(y),
        (Lit::Str(x), Lit::Str(y)) => Some(x.cmp(y)),
        (Lit::Bool(x), Lit::Bool(y)) => Some(x.cmp(y)),
        (Lit::Null, Lit::Null) => Some(Ordering::Equal),
        _ => None,
    };
    match op {
        Op::Eq => ord == Some(Ordering::Equal),
        Op::Ne => ord != Some(Ordering::Equal),
        Op::Lt => ord == Some(Ordering::Less) && !matches!(a, Lit::Null),
        Op::Le => matches!(ord, Some(Ordering::Less | Ordering::Equal)) && !matches!(a, Lit::Null),
        Op::Gt => ord == Some(Ordering::Greater) && !matches!(a, Lit::Null),
        Op::Ge => {
            matches!(ord, Some(Ordering::Greater | Ordering::Equal)) && !matches!(a, Lit::Null)
        }
        Op::In => false,
    }
}

enum Val {
    One(Lit),
    Many(Vec<Lit>),
}

impl Val {
    fn truthy(&self) -> bool {
        match self {
            Val::One(l) => l.truthy(),
            Val::Many(v) => !v.is_empty(),
        }
    }
}

impl Expr {
    fn eval(&self, e: &EventRef<'_>) -> Val {
        let prop = |name: &str| e.prop(name).map(value_lit).unwrap_or(Lit::Null);
        match self {
            Expr::Lit(l) => Val::One(l.clone()),
            Expr::List(v) => Val::Many(v.clone()),
            Expr::Prop(name) => Val::One(match name.as_str() {
                "distinct_id" => e
                    .distinct_id()
                    .map(|d| Lit::Str(d.into()))
                    .unwrap_or(Lit::Null),
                "time" => Lit::Num((e.time_us() / 1_000_000) as f64),
                _ => prop(name),
            }),
            Expr::EventName => Val::One(Lit::Str(e.name().raw().into())),
            Expr::Defined(name) => Val::One(Lit::Bool(match name.as_str() {
                "distinct_id" => e.distinct_id().is_some(),
                "time" => true,
                _ => prop(name) != Lit::Null,
            })),
            Expr::Not(x) => Val::One(Lit::Bool(!x.eval(e).truthy())),
            Expr::And(a, b) => Val::One(Lit::Bool(a.eval(e).truthy() && b.eval(e).truthy())),
            Expr::Or(a, b) => Val::One(Lit::Bool(a.eval(e).truthy() || b.eval(e).truthy())),
            Expr::Cmp(a, op, b) => {
                let (a, b) = (a.eval(e), b.eval(e));
                Val::One(Lit::Bool(match (a, *op, b) {
                    (Val::One(x), Op::In, Val::Many(list)) => {
                        list.iter().any(|y| compare(&x, Op::Eq, y))
                    }
                    (Val::One(x), op, Val::One(y)) => compare(&x, op, &y),
                    _ => false,
                }))
            }
        }
    }
}

/// A parse error at a character position.
#[derive(Debug, PartialEq)]
pub struct ParseError {
    pub at: usize,
    pub message: String,
}

#[derive(Clone, Debug, PartialEq)]
enum Tok {
    Ident(String),
    Str(String),
    Num(f64),
    Sym(&'static str),
}

fn lex(s: &str) -> std::result::Result<Vec<(usize, Tok)>, ParseError> {
    let chars: Vec<char> = s.chars().collect();
    let mut out = Vec::new();
    let mut i = 0;
    while i < chars.len() {
        let c = chars[i];
        if c.is_whitespace() {
            i += 1;
            continue;
        }
        let start = i;
        if c == '"' || c == '\'' {
            let quote = c;
            let mut text = String::new();
            i += 1;
            loop {
                match chars.get(i) {
                    None => {
                        return Err(ParseError {
                            at: start,
                            message: "unclosed string".into(),
                        })
                    }
                    Some('\\') => {
                        match chars.get(i + 1) {
                            Some(&n) => text.push(n),
                            None => {
                                return Err(ParseError {
                                    at: i,
                                    message: "unclosed string".into(),
                                })
                            }
                        }
                        i += 2;
                    }
                    Some(&q) if q == quote => {
                        i += 1;
                        break;
                    }
                    Some(&ch) => {
                        text.push(ch);
                        i += 1;
                    }
                }
            }
            out.push((start, Tok::Str(text)));
        } else if c.is_ascii_digit()
            || (c == '-' && chars.get(i + 1).is_some_and(|d| d.is_ascii_digit()))
        {
            i += 1;
            while i < chars.len()
                && (chars[i].is_ascii_digit() || matches!(chars[i], '.' | 'e' | 'E' | '+' | '-'))
            {
                i += 1;
            }
            let text: String = chars[start..i].iter().collect();
            let n = text.parse().map_err(|_| ParseError {
                at: start,
                message: format!("`{text}` is not a number"),
            })?;
            out.push((start, Tok::Num(n)));
        } else if c.is_alphabetic() || c == '_' || c == '$' {
            while i < chars.len()
                && (chars[i].is_alphanumeric() || chars[i] == '_' || chars[i] == '$')
            {
                i += 1;
            }
            out.push((start, Tok::Ident(chars[start..i].iter().collect())));
        } else {
            let two: String = chars[i..(i + 2).min(chars.len())].iter().collect();
            let sym = ["==", "!=", "<=", ">="].into_iter().find(|s| *s == two);
            let sym = match sym {
                Some(s) => {
                    i += 2;
                    s
                }
                None => {
                    i += 1;
                    match c {
                        '<' => "<",
                        '>' => ">",
                        '(' => "(",
                        ')' => ")",
                        '[' => "[",
                        ']' => "]",
                        ',' => ",",
                        _ => {
                            return Err(ParseError {
                                at: start,
                                message: format!("unexpected `{c}`"),
                            })
                        }
                    }
                }
            };
            out.push((start, Tok::Sym(sym)));
        }
    }
    Ok(out)
}

struct Parser {
    toks: Vec<(usize, Tok)>,
    pos: usize,
    end: usize,
}

impl Parser {
    fn peek(&self) -> Option<&Tok> {
        self.toks.get(self.pos).map(|(_, t)| t)
    }
    fn at(&self) -> usize {
        self.toks.get(self.pos).map(|(a, _)| *a).unwrap_or(self.end)
    }
    fn err<T>(&self, message: impl Into<String>) -> std::result::Result<T, ParseError> {
        Err(ParseError {
            at: self.at(),
            message: message.into(),
        })
    }
    fn keyword(&mut self, k: &str) -> bool {
        if matches!(self.peek(), Some(Tok::Ident(i)) if i == k) {
            self.pos += 1;
            true
        } else {
            false
        }
    }
    fn sym(&mut self, s: &str) -> bool {
        if matches!(self.peek(), Some(Tok::Sym(x)) if *x == s) {
            self.pos += 1;
            true
        } else {
            false
        }
    }
    fn expect(&mut self, s: &str) -> std::result::Result<(), ParseError> {
        if self.sym(s) {
            Ok(())
        } else {
            self.err(format!("expected `{s}`"))
        }
    }
    fn or(&mut self) -> std::result::Result<Expr, ParseError> {
        let mut e = self.and()?;
        while self.keyword("or") {
            e = Expr::Or(Box::new(e), Box::new(self.and()?));
        }
        Ok(e)
    }
    fn and(&mut self) -> std::result::Result<Expr, ParseError> {
        let mut e = self.not()?;
        while self.keyword("and") {
            e = Expr::And(Box::new(e), Box::new(self.not()?));
        }
        Ok(e)
    }
    fn not(&mut self) -> std::result::Result<Expr, ParseError> {
        if self.keyword("not") {
            return Ok(Expr::Not(Box::new(self.not()?)));
        }
        self.cmp()
    }
    fn cmp(&mut self) -> std::result::Result<Expr, ParseError> {
        let left = self.term()?;
        let op = match self.peek() {
            Some(Tok::Sym("==")) => Op::Eq,
            Some(Tok::Sym("!=")) => Op::Ne,
            Some(Tok::Sym("<")) => Op::Lt,
            Some(Tok::Sym("<=")) => Op::Le,
            Some(Tok::Sym(">")) => Op::Gt,
            Some(Tok::Sym(">=")) => Op::Ge,
            Some(Tok::Ident(i)) if i == "in" => Op::In,
            _ => return Ok(left),
        };
        self.pos += 1;
        let right = self.term()?;
        if op == Op::In && !matches!(right, Expr::List(_)) {
            return Err(ParseError {
                at: self.at(),
                message: "`in` needs a list like [\"a\", \"b\"]".into(),
            });
        }
        Ok(Expr::Cmp(Box::new(left), op, Box::new(right)))
    }
    fn prop(&mut self) -> std::result::Result<String, ParseError> {
        if !self.keyword("properties") {
            return self.err("expected properties[\"name\"]");
        }
        self.expect("[")?;
        let name = match self.peek() {
            Some(Tok::Str(s)) => s.clone(),
            _ => return self.err("expected a quoted property name"),
        };
        self.pos += 1;
        self.expect("]")?;
        Ok(name)
    }
    fn lit(&mut self) -> std::result::Result<Lit, ParseError> {
        let l = match self.peek() {
            Some(Tok::Str(s)) => Lit::Str(s.as_str().into()),
            Some(Tok::Num(n)) => Lit::Num(*n),
            Some(Tok::Ident(i)) if i == "true" => Lit::Bool(true),
            Some(Tok::Ident(i)) if i == "false" => Lit::Bool(false),
            Some(Tok::Ident(i)) if i == "null" => Lit::Null,
            _ => return self.err("expected a value: a string, a number, true, false or null"),
        };
        self.pos += 1;
        Ok(l)
    }
    fn term(&mut self) -> std::result::Result<Expr, ParseError> {
        if self.sym("(") {
            let e = self.or()?;
            self.expect(")")?;
            return Ok(e);
        }
        if self.sym("[") {
            let mut items = Vec::new();
            if !self.sym("]") {
                loop {
                    items.push(self.lit()?);
                    if self.sym("]") {
                        break;
                    }
                    self.expect(",")?;
                }
            }
            return Ok(Expr::List(items));
        }
        match self.peek() {
            Some(Tok::Ident(i)) if i == "properties" => Ok(Expr::Prop(self.prop()?)),
            Some(Tok::Ident(i)) if i == "event" => {
                self.pos += 1;
                Ok(Expr::EventName)
            }
            Some(Tok::Ident(i)) if i == "defined" => {
                self.pos += 1;
                self.expect("(")?;
                let p = self.prop()?;
                self.expect(")")?;
                Ok(Expr::Defined(p))
            }
            Some(Tok::Ident(i)) if !["true", "false", "null"].contains(&i.as_str()) => {
                let i = i.clone();
                self.err(format!("unknown name `{i}`; use properties[\"{i}\"]"))
            }
            _ => Ok(Expr::Lit(self.lit()?)),
        }
    }
}

/// Parses a `where` expression.
pub fn parse(s: &str) -> std::result::Result<Expr, ParseError> {
    let toks = lex(s)?;
    if toks.is_empty() {
        return Err(ParseError {
            at: 0,
            message: "the expression is empty".into(),
        });
    }
    let mut p = Parser {
        toks,
        pos: 0,
        end: s.chars().count(),
    };
    let e = p.or()?;
    if p.pos < p.toks.len() {
        return p.err("unexpected text after the expression");
    }
    Ok(e)
}

#[cfg(test)]
mod tests {
    use super::*;
    use sluice_engine::batch::{Events, FragIndex, NameRef, Position, Value};

    /// Events of these names and properties, in one batch.
    fn events(list: &[(&str, &[(&str, Value)])]) -> Events {
        let mut ev = Events::default();
        let mut index = FragIndex::default();
        for (i, (name, props)) in list.iter().enumerate() {
            let props: Vec<_> = props
                .iter()
                .map(|(k, v)| (NameRef::intern(k), v.clone()))
                .collect();
            ev.push_event(
                &mut index,
                NameRef::intern(name),
                1_700_000_000_000_000,
                Position {
                    partition: 0,
                    offset: i as u64,
                },
                Some("u1"),
                &props,
            );
        }
        ev
    }

    fn holds(expr: &str, e: &Events) -> bool {
        Filter {
            events: None,
            predicate: Some(parse(expr).unwrap()),
        }
        .keeps(&e.get(0))
    }

    #[test]
    fn predicates() {
        let e = events(&[(
            "Purchase",
            &[
                ("plan", Value::String("pro".into())),
                ("seats", Value::Number(12.0)),
                ("trial", Value::Null),
                ("$os", Value::String("iOS".into())),
            ],
        )]);
        let cases = [
            (r#"properties["plan"] == "pro""#, true),
            (r#"properties["plan"] != "pro""#, false),
            (
                r#"properties["seats"] >= 10 and properties["seats"] < 20"#,
                true,
            ),
            (r#"properties["seats"] == "12""#, false),
            (r#"properties["missing"] > 1"#, false),
            (r#"not defined(properties["trial"])"#, true),
            (
                r#"defined(properties["$os"]) and properties["$os"] in ["iOS", "Android"]"#,
                true,
            ),
            (r#"event == "Purchase" or properties["seats"] > 100"#, true),
            (
                r#"(event == "Refund" or properties["seats"] > 100) and true"#,
                false,
            ),
            (r#"properties["distinct_id"] == "u1""#, true),
            (r#"event in []"#, false),
        ];
        for (expr, want) in cases {
            assert_eq!(holds(expr, &e), want, "{expr}");
        }
    }

    #[test]
    fn errors_say_where() {
        assert_eq!(parse(r#"properties["a"] =="#).unwrap_err().at, 18);
        assert!(parse("plan == 1")
            .unwrap_err()
            .message
            .contains("properties[\"plan\"]"));
        assert!(parse(r#"properties["a"] in "x""#).is_err());
        assert!(parse(r#"properties["a"] == "x" extra"#).is_err());
        assert!(parse(r#""unclosed"#).is_err());
        assert!(parse("").is_err());
    }

    #[test]
    fn whitelist_and_counts() {
        let mut f = Filter {
            events: Some(vec!["A".into()]),
            predicate: None,
        };
        let mut b = Batch {
            events: events(&[
                ("A", &[]),
                ("B", &[("x", Value::Number(1.0))]),
                ("A", &[("x", Value::Number(2.0))]),
            ]),
            ..Default::default()
        };
        f.process(&mut b).unwrap();
        assert_eq!(b.events.len(), 2);
        assert_eq!(b.filtered, 1);
        // The kept events keep their own values and positions.
        assert_eq!(b.events.get(1).prop("x"), Some(ValueRef::Num(2.0)));
        assert_eq!(b.events.get(1).pos().offset, 2);
        assert_eq!(b.events.get(0).prop("x"), None);
    }
}
