//! Reading a topology: YAML with positions, `--set` overrides, `${ENV}` interpolation, then
//! every check that needs no network, with all problems reported together.

use std::collections::{BTreeSet, HashMap};
use std::path::Path;

use marked_yaml::types::{MarkedMappingNode, MarkedScalarNode};
use marked_yaml::{LoaderOptions, Node, Span};

use super::{redact, NodeSpec, RuntimeConfig, Topology};
use crate::error::{Location, Problem};
use crate::registry::{Capability, Registry, Role};

/// How to read a topology.
pub struct LoadOptions<'a> {
    /// `path.to.key=value` overrides, applied in order after parsing.
    pub sets: &'a [String],
    /// Looks up environment variables for `${NAME}`.
    pub env: &'a dyn Fn(&str) -> Option<String>,
}

impl Default for LoadOptions<'_> {
    fn default() -> Self {
        LoadOptions {
            sets: &[],
            env: &|k| std::env::var(k).ok(),
        }
    }
}

const TOP_KEYS: &[&str] = &[
    "name",
    "description",
    "sources",
    "operators",
    "sinks",
    "runtime",
];

/// Reads and validates the topology in `path`.
///
/// # Errors
/// Every problem found, each with its `file:line:column`.
pub fn load_file(
    path: &Path,
    opts: &LoadOptions<'_>,
    registry: &Registry,
) -> Result<Topology, Vec<Problem>> {
    let file = path.display().to_string();
    let text = std::fs::read_to_string(path).map_err(|e| {
        vec![Problem {
            location: Location {
                file: file.clone(),
                ..Default::default()
            },
            component: String::new(),
            message: format!("cannot read the topology: {e}"),
            hint: "check the path; topologies live in topologies/".into(),
        }]
    })?;
    load_str(&file, &text, opts, registry)
}

struct Ctx<'a> {
    file: &'a str,
    problems: Vec<Problem>,
    secrets: Vec<String>,
}

impl Ctx<'_> {
    fn loc(&self, span: &Span) -> Location {
        match span.start() {
            Some(m) => Location {
                file: self.file.to_string(),
                line: m.line(),
                column: m.column(),
            },
            None => Location {
                file: format!("{} (--set)", self.file),
                line: 0,
                column: 0,
            },
        }
    }
    fn problem(&mut self, span: &Span, component: &str, message: String, hint: impl Into<String>) {
        let location = self.loc(span);
        self.problems.push(Problem {
            location,
            component: component.to_string(),
            message,
            hint: hint.into(),
        });
    }
}

/// Reads and validates a topology held in a string; `file` names it in messages.
///
/// # Errors
/// Every problem found, each with its `file:line:column`.
pub fn load_str(
    file: &str,
    text: &str,
    opts: &LoadOptions<'_>,
    registry: &Registry,
) -> Result<Topology, Vec<Problem>> {
    let mut cx = Ctx {
        file,
        problems: Vec::new(),
        secrets: Vec::new(),
    };
    let options = LoaderOptions::default().error_on_duplicate_keys(true);
    let mut root = match marked_yaml::parse_yaml_with_options(0, text, options) {
        Ok(n) => n,
        Err(e) => {
            let (line, column) = load_error_position(&e);
            let msg = e.to_string();
            let msg = msg
                .split_once(": ")
                .map(|(_, m)| m.to_string())
                .unwrap_or(msg);
            return Err(vec![Problem {
                location: Location {
                    file: file.into(),
                    line,
                    column,
                },
                component: String::new(),
                message: format!("not valid YAML: {msg}"),
                hint: "a topology is a YAML mapping with `sources`, `operators` and `sinks`".into(),
            }]);
        }
    };
    for set in opts.sets {
        if let Err(msg) = apply_set(&mut root, set) {
            cx.problems.push(Problem {
                location: Location {
                    file: "--set".into(),
                    ..Default::default()
                },
                component: String::new(),
                message: msg,
                hint: "write --set path.to.key=value, e.g. --set sinks.lake.store.path=/data/lake"
                    .into(),
            });
        }
    }
    interpolate(&mut root, opts.env, &mut cx);

    let Some(top) = root.as_mapping() else {
        cx.problem(
            root.span(),
            "",
            "the topology must be a mapping".into(),
            "start with `sources:`",
        );
        return Err(cx.problems);
    };
    for (k, _) in top.iter() {
        if !TOP_KEYS.contains(&k.as_str()) {
            cx.problem(
                k.span(),
                "",
                format!("unknown top-level key `{}`", k.as_str()),
                format!("expected one of: {}", TOP_KEYS.join(", ")),
            );
        }
    }

    let mut nodes = Vec::new();
    // Components whose settings did not parse: their name and inputs still count in the graph
    // checks, so one mistake does not cascade into others.
    let mut broken: Vec<(String, Role, Vec<String>)> = Vec::new();
    let mut input_spans: HashMap<(String, usize), Span> = HashMap::new();
    for role in [Role::Source, Role::Operator, Role::Sink] {
        let section = role.section();
        let Some(sec) = top.get_node(section) else {
            if role != Role::Operator {
                cx.problem(
                    top.span(),
                    "",
                    format!("no `{section}` section"),
                    format!("add `{section}:` with at least one component"),
                );
            }
            continue;
        };
        let Some(sec) = sec.as_mapping() else {
            cx.problem(
                sec.span(),
                section,
                format!("`{section}` must be a mapping of names to components"),
                format!("write `{section}:` then `  my_name:` then `    type: ...`"),
            );
            continue;
        };
        for (name, body) in sec.iter() {
            let cname = format!("{section}.{}", name.as_str());
            let parsed = parse_component(
                &mut cx,
                registry,
                role,
                name,
                body,
                &cname,
                &mut input_spans,
            );
            if let Err(inputs) = &parsed {
                broken.push((name.as_str().to_string(), role, inputs.clone()));
            }
            if let Ok(spec) = parsed {
                if nodes.iter().any(|n: &NodeSpec| n.name == spec.name) {
                    cx.problem(
                        name.span(),
                        &cname,
                        format!("the name `{}` is used twice", spec.name),
                        "give each source, operator and sink its own name",
                    );
                    continue;
                }
                nodes.push(spec);
            }
        }
    }

    let runtime = match top.get_node("runtime") {
        None => RuntimeConfig::default(),
        Some(n) => match marked_yaml::from_node::<RuntimeConfig>(n) {
            Ok(r) => {
                match crate::units::parse_bytes(&r.memory_budget) {
                    Ok(b) if b >= 16 << 20 => {}
                    Ok(_) => cx.problem(
                        n.span(),
                        "runtime",
                        format!("memory_budget `{}` is below 16MiB", r.memory_budget),
                        "write e.g. 1GiB",
                    ),
                    Err(m) => cx.problem(n.span(), "runtime", m, "write e.g. 1GiB or 512MiB"),
                }
                r
            }
            Err(e) => {
                let span = e
                    .start_mark()
                    .map(Span::new_start)
                    .unwrap_or_else(|| *n.span());
                cx.problem(
                    &span,
                    "runtime",
                    e.to_string(),
                    "see `sluice schema` for the settings",
                );
                RuntimeConfig::default()
            }
        },
    };
    let name = top.get_scalar("name").map(|s| s.as_str().to_string());

    check_graph(&mut cx, &nodes, &broken, &input_spans);

    if cx.problems.is_empty() {
        Ok(Topology {
            file: file.to_string(),
            name,
            nodes,
            runtime,
            secrets: cx.secrets,
        })
    } else {
        let secrets = cx.secrets.clone();
        for p in &mut cx.problems {
            p.message = redact(&p.message, &secrets);
        }
        cx.problems.sort_by(|a, b| {
            (a.location.line, a.location.column).cmp(&(b.location.line, b.location.column))
        });
        Err(cx.problems)
    }
}

fn load_error_position(e: &marked_yaml::LoadError) -> (usize, usize) {
    use marked_yaml::LoadError::*;
    let m = match e {
        TopLevelMustBeMapping(m)
        | TopLevelMustBeSequence(m)
        | UnexpectedAnchor(m)
        | MappingKeyMustBeScalar(m)
        | UnexpectedTag(m)
        | ScanError(m, _) => Some(*m),
        DuplicateKey(inner) => inner.key.span().start().copied(),
    };
    m.map(|m| (m.line(), m.column())).unwrap_or((0, 0))
}

fn parse_component(
    cx: &mut Ctx<'_>,
    registry: &Registry,
    role: Role,
    name: &MarkedScalarNode,
    body: &Node,
    cname: &str,
    input_spans: &mut HashMap<(String, usize), Span>,
) -> Result<NodeSpec, Vec<String>> {
    let Some(map) = body.as_mapping() else {
        cx.problem(
            body.span(),
            cname,
            "a component must be a mapping with a `type`".into(),
            "write `type: ...` under the name",
        );
        return Err(Vec::new());
    };
    let declared_inputs: Vec<String> = match map.get_node("inputs") {
        Some(Node::Sequence(seq)) => seq
            .iter()
            .filter_map(|n| n.as_scalar())
            .map(|s| s.as_str().to_string())
            .collect(),
        Some(Node::Scalar(s)) => vec![s.as_str().to_string()],
        _ => Vec::new(),
    };
    let types = registry.types(role);
    let Some(type_node) = map.get_scalar("type") else {
        cx.problem(
            name.span(),
            cname,
            "no `type`".into(),
            format!("add `type:` with one of: {}", types.join(", ")),
        );
        return Err(declared_inputs);
    };
    let type_name = type_node.as_str();
    let Some(plugin) = registry.plugin(role, type_name) else {
        cx.problem(
            type_node.span(),
            cname,
            format!("unknown {} type `{type_name}`", role_word(role)),
            format!("use one of: {}", types.join(", ")),
        );
        return Err(declared_inputs);
    };

    let mut inputs = Vec::new();
    match (role, map.get_node("inputs")) {
        (Role::Source, Some(n)) => cx.problem(
            n.span(),
            cname,
            "a source takes no `inputs`".into(),
            "remove `inputs` from the source",
        ),
        (Role::Source, None) => {}
        (_, None) => cx.problem(
            name.span(),
            cname,
            "no `inputs`".into(),
            "add `inputs: [name]` naming the source or operator this reads from",
        ),
        (_, Some(n)) => match n {
            Node::Sequence(seq) if !seq.is_empty() => {
                for item in seq.iter() {
                    match item.as_scalar() {
                        Some(s) => {
                            input_spans
                                .insert((name.as_str().to_string(), inputs.len()), *s.span());
                            inputs.push(s.as_str().to_string());
                        }
                        None => cx.problem(
                            item.span(),
                            cname,
                            "each input must be a name".into(),
                            "write `inputs: [a, b]`",
                        ),
                    }
                }
            }
            Node::Scalar(s) => {
                input_spans.insert((name.as_str().to_string(), 0), *s.span());
                inputs.push(s.as_str().to_string());
            }
            other => cx.problem(
                other.span(),
                cname,
                "`inputs` must list at least one name".into(),
                "write `inputs: [a, b]`",
            ),
        },
    }

    // The plugin's settings are everything but `type` and `inputs`.
    let mut settings = MarkedMappingNode::new_empty(*map.span());
    for (k, v) in map.iter() {
        if k.as_str() != "type" && k.as_str() != "inputs" {
            settings.insert(k.clone(), v.clone());
        }
    }
    let settings = Node::Mapping(settings);
    let component = match plugin.parse(&settings) {
        Ok(c) => c,
        Err(e) => {
            let location = if e.line > 0 {
                Location {
                    file: cx.file.to_string(),
                    line: e.line,
                    column: e.column,
                }
            } else {
                cx.loc(name.span())
            };
            cx.problems.push(Problem {
                location,
                component: cname.to_string(),
                message: e.message,
                hint: format!(
                    "see `sluice schema` for the settings of `{}`",
                    plugin.type_name()
                ),
            });
            return Err(declared_inputs);
        }
    };
    for issue in component.validate() {
        let span = issue
            .key
            .as_deref()
            .and_then(|k| lookup_span(&settings, k))
            .unwrap_or_else(|| *name.span());
        // The setting is named: a value given by `--set` has no line to point at.
        let message = match &issue.key {
            Some(k) => format!("{k}: {}", issue.message),
            None => issue.message,
        };
        cx.problem(&span, cname, message, issue.hint);
    }
    Ok(NodeSpec {
        name: name.as_str().to_string(),
        role,
        type_name: type_name.to_string(),
        inputs,
        component,
        location: cx.loc(name.span()),
    })
}

/// The span of the value at a dotted key path inside a mapping.
fn lookup_span(node: &Node, path: &str) -> Option<Span> {
    let mut cur = node;
    for seg in path.split('.') {
        cur = cur.as_mapping()?.get_node(seg)?;
    }
    Some(*cur.span())
}

fn role_word(role: Role) -> &'static str {
    match role {
        Role::Source => "source",
        Role::Operator => "operator",
        Role::Sink => "sink",
    }
}

fn check_graph(
    cx: &mut Ctx<'_>,
    nodes: &[NodeSpec],
    broken: &[(String, Role, Vec<String>)],
    spans: &HashMap<(String, usize), Span>,
) {
    let by_name: HashMap<&str, &NodeSpec> = nodes.iter().map(|n| (n.name.as_str(), n)).collect();
    let is_broken = |name: &str| broken.iter().any(|(b, _, _)| b == name);
    let blank = Span::new_blank();
    for n in nodes {
        let cname = format!("{}.{}", n.role.section(), n.name);
        for (i, input) in n.inputs.iter().enumerate() {
            let span = spans.get(&(n.name.clone(), i)).unwrap_or(&blank);
            match by_name.get(input.as_str()) {
                None if is_broken(input) => {}
                None => {
                    let known: Vec<&str> = nodes
                        .iter()
                        .filter(|m| m.role != Role::Sink && m.name != n.name)
                        .map(|m| m.name.as_str())
                        .collect();
                    cx.problem(
                        span,
                        &cname,
                        format!("input `{input}` does not exist"),
                        format!("name a source or operator: {}", known.join(", ")),
                    )
                }
                Some(m) if m.role == Role::Sink => cx.problem(
                    span,
                    &cname,
                    format!("input `{input}` is a sink, and sinks have no output"),
                    "name a source or an operator",
                ),
                Some(m) if m.name == n.name => cx.problem(
                    span,
                    &cname,
                    "a component cannot read its own output".into(),
                    "name another source or operator",
                ),
                Some(_) => {}
            }
        }
    }
    // Cycles: a component upstream of itself.
    for n in nodes.iter().filter(|n| n.role == Role::Operator) {
        let mut stack: Vec<&str> = n.inputs.iter().map(|s| s.as_str()).collect();
        let mut seen = BTreeSet::new();
        while let Some(x) = stack.pop() {
            if x == n.name {
                let cname = format!("operators.{}", n.name);
                let loc_span = *spans.get(&(n.name.clone(), 0)).unwrap_or(&blank);
                cx.problem(
                    &loc_span,
                    &cname,
                    "this operator is part of a cycle".into(),
                    "data must flow from sources to sinks; remove the loop in `inputs`",
                );
                break;
            }
            if seen.insert(x) {
                if let Some(m) = by_name.get(x) {
                    stack.extend(m.inputs.iter().map(|s| s.as_str()));
                }
            }
        }
    }
    // Sources and operators whose output nobody reads.
    for n in nodes.iter().filter(|n| n.role != Role::Sink) {
        if !nodes.iter().any(|m| m.inputs.contains(&n.name))
            && !broken.iter().any(|(_, _, inputs)| inputs.contains(&n.name))
        {
            let cname = format!("{}.{}", n.role.section(), n.name);
            let span = marker_span(&n.location);
            cx.problem(
                &span,
                &cname,
                format!("the output of `{}` goes nowhere", n.name),
                "name it in the `inputs` of an operator or a sink, or remove it",
            );
        }
    }
    // What each component requires must be provided on every path into it.
    if cx.problems.is_empty() {
        let mut provided: HashMap<&str, BTreeSet<Capability>> = HashMap::new();
        let mut pending: Vec<&NodeSpec> = nodes.iter().collect();
        while !pending.is_empty() {
            let before = pending.len();
            pending.retain(|n| {
                if !n.inputs.iter().all(|i| provided.contains_key(i.as_str())) {
                    return true;
                }
                let mut have: Option<BTreeSet<Capability>> = None;
                for i in &n.inputs {
                    let p = &provided[i.as_str()];
                    have = Some(match have {
                        None => p.clone(),
                        Some(h) => h.intersection(p).copied().collect(),
                    });
                }
                let have = have.unwrap_or_default();
                for req in n.component.requires() {
                    if !have.contains(req) {
                        let cname = format!("{}.{}", n.role.section(), n.name);
                        let span = marker_span(&n.location);
                        cx.problem(
                            &span,
                            &cname,
                            format!(
                                "`{}` needs `{}` upstream on every path into it",
                                n.type_name,
                                req.operator()
                            ),
                            format!(
                                "add an operator of type `{}` before `{}`",
                                req.operator(),
                                n.name
                            ),
                        );
                    }
                }
                let mut out = have;
                out.extend(n.component.provides().iter().copied());
                provided.insert(n.name.as_str(), out);
                false
            });
            if pending.len() == before {
                break;
            }
        }
    }
    // Operators that assign columns must feed exactly one dataset.
    for n in nodes.iter().filter(|n| n.component.needs_schema_registry()) {
        let mut datasets = BTreeSet::new();
        let mut stack = vec![n.name.as_str()];
        let mut seen = BTreeSet::new();
        while let Some(x) = stack.pop() {
            for m in nodes.iter().filter(|m| m.inputs.iter().any(|i| i == x)) {
                if seen.insert(m.name.as_str()) {
                    if m.role == Role::Sink {
                        if let Some(d) = m.component.dataset() {
                            datasets.insert(d);
                        }
                    } else {
                        stack.push(m.name.as_str());
                    }
                }
            }
        }
        if datasets.len() != 1 {
            let cname = format!("operators.{}", n.name);
            let span = marker_span(&n.location);
            cx.problem(
                &span,
                &cname,
                format!(
                    "`{}` must feed sinks of exactly one dataset (catalog and database), found {}",
                    n.type_name,
                    datasets.len()
                ),
                "use one type-infer per dataset: branch before it, not after",
            );
        }
    }
}

fn marker_span(loc: &Location) -> Span {
    if loc.line == 0 {
        Span::new_blank()
    } else {
        Span::new_start(marked_yaml::Marker::new(0, 0, loc.line, loc.column))
    }
}

/// Applies `a.b.c=value` to the tree, creating mappings on the way.
fn apply_set(root: &mut Node, set: &str) -> Result<(), String> {
    let (path, value) = set
        .split_once('=')
        .ok_or_else(|| format!("`--set {set}` has no `=`"))?;
    let segs: Vec<&str> = path.split('.').collect();
    if path.is_empty() || segs.iter().any(|s| s.is_empty()) {
        return Err(format!("`--set {set}`: the key path is empty"));
    }
    // The value is YAML when it parses as YAML (`[a, b]`, `{k: v}`, `42`), else a plain string
    // (`-`, `a: b`).
    let mut new = marked_yaml::parse_yaml(1, format!("v: {value}"))
        .ok()
        .and_then(|parsed| parsed.as_mapping().and_then(|m| m.get_node("v")).cloned())
        .unwrap_or_else(|| Node::Scalar(MarkedScalarNode::new(Span::new_blank(), value)));
    blank_spans(&mut new);
    let mut cur = root;
    for (i, seg) in segs.iter().enumerate() {
        let map = cur
            .as_mapping_mut()
            .ok_or_else(|| format!("`--set {set}`: `{}` is not a mapping", segs[..i].join(".")))?;
        let key = MarkedScalarNode::new(Span::new_blank(), *seg);
        if i + 1 == segs.len() {
            map.insert(key, new);
            return Ok(());
        }
        if map.get_node(seg).is_none() {
            map.insert(
                key.clone(),
                Node::Mapping(MarkedMappingNode::new_empty(Span::new_blank())),
            );
        }
        cur = map
            .get_mut(&key)
            .ok_or_else(|| format!("`--set {set}`: cannot reach `{seg}`"))?;
    }
    Ok(())
}

fn blank_spans(node: &mut Node) {
    *node.span_mut() = Span::new_blank();
    match node {
        Node::Scalar(_) => {}
        Node::Sequence(s) => s.iter_mut().for_each(blank_spans),
        Node::Mapping(m) => m.values_mut().for_each(blank_spans),
    }
}

/// Replaces `${NAME}` and `${NAME:-default}` in every scalar; `$${` stays a literal `${`.
fn interpolate(node: &mut Node, env: &dyn Fn(&str) -> Option<String>, cx: &mut Ctx<'_>) {
    match node {
        Node::Sequence(s) => s.iter_mut().for_each(|n| interpolate(n, env, cx)),
        Node::Mapping(m) => m.values_mut().for_each(|n| interpolate(n, env, cx)),
        Node::Scalar(s) => {
            if !s.as_str().contains("${") {
                return;
            }
            match expand(s.as_str(), env) {
                Ok((text, values)) => {
                    cx.secrets
                        .extend(values.into_iter().filter(|v| !v.is_empty()));
                    let span = *s.span();
                    *s = MarkedScalarNode::new(span, text);
                }
                Err(msg) => {
                    let span = *s.span();
                    cx.problem(
                        &span,
                        "",
                        msg,
                        "export the variable, or give a default with ${NAME:-default}",
                    );
                }
            }
        }
    }
}

/// Expands one string; returns the text and the substituted values.
pub(crate) fn expand(
    s: &str,
    env: &dyn Fn(&str) -> Option<String>,
) -> Result<(String, Vec<String>), String> {
    let mut out = String::new();
    let mut values = Vec::new();
    let mut rest = s;
    while let Some(i) = rest.find('$') {
        out.push_str(&rest[..i]);
        let tail = &rest[i..];
        if let Some(t) = tail.strip_prefix("$${") {
            out.push_str("${");
            rest = t;
        } else if let Some(t) = tail.strip_prefix("${") {
            let end = t
                .find('}')
                .ok_or_else(|| format!("unclosed `${{` in `{s}`"))?;
            let expr = &t[..end];
            let (var, default) = match expr.split_once(":-") {
                Some((v, d)) => (v, Some(d)),
                None => (expr, None),
            };
            if var.is_empty() || !var.chars().all(|c| c.is_ascii_alphanumeric() || c == '_') {
                return Err(format!("`${{{expr}}}` is not a variable name"));
            }
            match (env(var), default) {
                (Some(v), _) => {
                    values.push(v.clone());
                    out.push_str(&v);
                }
                (None, Some(d)) => out.push_str(d),
                (None, None) => return Err(format!("environment variable `{var}` is not set")),
            }
            rest = &t[end + 1..];
        } else {
            out.push('$');
            rest = &tail[1..];
        }
    }
    out.push_str(rest);
    Ok((out, values))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn expands_variables_and_defaults() {
        let env = |k: &str| (k == "TOKEN").then(|| "s3cr3t".to_string());
        assert_eq!(
            expand("a-${TOKEN}-b", &env).unwrap(),
            ("a-s3cr3t-b".to_string(), vec!["s3cr3t".to_string()])
        );
        assert_eq!(expand("${NOPE:-x}", &env).unwrap().0, "x");
        assert_eq!(expand("$${TOKEN}", &env).unwrap().0, "${TOKEN}");
        assert_eq!(expand("$5", &env).unwrap().0, "$5");
        assert!(expand("${NOPE}", &env).is_err());
        assert!(expand("${TOKEN", &env).is_err());
    }

    #[test]
    fn set_creates_and_replaces() {
        let mut root = marked_yaml::parse_yaml(0, "a:\n  b: 1\n").unwrap();
        apply_set(&mut root, "a.b=2").unwrap();
        apply_set(&mut root, "a.c.d=hello").unwrap();
        let a = root.as_mapping().unwrap().get_mapping("a").unwrap();
        assert_eq!(a.get_scalar("b").unwrap().as_str(), "2");
        assert_eq!(
            a.get_mapping("c")
                .unwrap()
                .get_scalar("d")
                .unwrap()
                .as_str(),
            "hello"
        );
        assert!(apply_set(&mut root, "a.b.x=1").is_err());
        assert!(apply_set(&mut root, "novalue").is_err());
    }
}
