//! Renders the chart's templates the way `helm template` does, for the
//! subset of Go templates and Sprig the chart uses: actions with `{{-`/`-}}`
//! trimming, comments, variables, `if`/`else if`/`else`, `with`, `range`,
//! `define`/`include`, and the functions listed in [`call`]. Values are
//! `values.yaml` deep-merged with the caller's overrides, numbers as float64
//! (as Helm reads them), and validated against nothing: the JSON schema is
//! Helm's to enforce (`.ci/chart-tests`).
//!
//! No Helm binary exists for this machine's CI (no Go toolchain, no
//! `template` entry point in the Python wheel `.ci/helm-lint` uses), so the
//! RBAC test and the promtool step (`examples/render_chart.rs`) render
//! through this. Anything it does not understand is an error, never a
//! silently different output.

#![allow(dead_code)]

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use serde_json::{Map, Value};

#[derive(Debug, Clone)]
enum Node {
    Text(String),
    Action(Pipe),
    If(Pipe, Vec<Node>, Vec<Node>),
    With(Pipe, Vec<Node>, Vec<Node>),
    Range(Vec<String>, Pipe, Vec<Node>, Vec<Node>),
}

#[derive(Debug, Clone)]
struct Pipe {
    /// `$x :=` (declare) or `$x =` (assign).
    decl: Option<(String, bool)>,
    cmds: Vec<Vec<Arg>>,
}

#[derive(Debug, Clone)]
enum Arg {
    Str(String),
    Num(f64),
    Bool(bool),
    Nil,
    /// `.a.b` (empty for `.`).
    Field(Vec<String>),
    /// `$x.a.b` (`$` for the root).
    Var(String, Vec<String>),
    Ident(String),
    Sub(Pipe),
}

/// One `{{ }}` or text piece.
enum Tok {
    Text(String),
    Action(String),
}

fn lex(src: &str) -> Result<Vec<Tok>, String> {
    let mut toks = Vec::new();
    let mut rest = src;
    let mut trim_next = false;
    while let Some(at) = rest.find("{{") {
        let mut text = &rest[..at];
        if trim_next {
            text = text.trim_start();
        }
        let mut body = &rest[at + 2..];
        let trim_left = body.starts_with("- ") || body.starts_with("-\n");
        if trim_left {
            text = text.trim_end();
            body = &body[1..];
        }
        toks.push(Tok::Text(text.to_string()));
        // The action ends at the first `}}` outside a string or comment.
        let bytes = body.as_bytes();
        let mut i = 0;
        let end = loop {
            if i >= bytes.len() {
                return Err("an unclosed action".into());
            }
            match bytes[i] {
                b'"' => {
                    i += 1;
                    while i < bytes.len() && bytes[i] != b'"' {
                        if bytes[i] == b'\\' {
                            i += 1;
                        }
                        i += 1;
                    }
                }
                b'`' => {
                    i += 1;
                    while i < bytes.len() && bytes[i] != b'`' {
                        i += 1;
                    }
                }
                b'/' if body[i..].starts_with("/*") => {
                    i += body[i..].find("*/").ok_or("an unclosed comment")? + 1;
                }
                b'}' if body[i..].starts_with("}}") => break i,
                _ => {}
            }
            i += 1;
        };
        let mut inner = &body[..end];
        trim_next = inner.ends_with(" -") || inner.ends_with("\n-");
        if trim_next {
            inner = &inner[..inner.len() - 1];
        }
        toks.push(Tok::Action(inner.trim().to_string()));
        rest = &body[end + 2..];
    }
    toks.push(Tok::Text(if trim_next { rest.trim_start().to_string() } else { rest.to_string() }));
    Ok(toks)
}

fn words(action: &str) -> Result<Vec<String>, String> {
    let mut out = Vec::new();
    let chars: Vec<char> = action.chars().collect();
    let mut i = 0;
    while i < chars.len() {
        let c = chars[i];
        if c.is_whitespace() {
            i += 1;
        } else if c == '"' || c == '`' {
            let start = i;
            i += 1;
            while i < chars.len() && chars[i] != c {
                if c == '"' && chars[i] == '\\' {
                    i += 1;
                }
                i += 1;
            }
            i += 1;
            out.push(chars[start..i.min(chars.len())].iter().collect());
        } else if "()|,".contains(c) {
            out.push(c.to_string());
            i += 1;
        } else if c == ':' && chars.get(i + 1) == Some(&'=') {
            out.push(":=".into());
            i += 2;
        } else {
            let start = i;
            while i < chars.len() && !chars[i].is_whitespace() && !"()|,\"`".contains(chars[i]) {
                if chars[i] == ':' && chars.get(i + 1) == Some(&'=') {
                    break;
                }
                i += 1;
            }
            out.push(chars[start..i].iter().collect());
        }
    }
    Ok(out)
}

fn unquote(w: &str) -> Result<String, String> {
    if let Some(raw) = w.strip_prefix('`') {
        return Ok(raw.trim_end_matches('`').to_string());
    }
    serde_json::from_str::<String>(w).map_err(|e| format!("string {w}: {e}"))
}

fn path(s: &str) -> Vec<String> {
    s.split('.').filter(|p| !p.is_empty()).map(str::to_string).collect()
}

fn parse_pipe(ws: &[String]) -> Result<Pipe, String> {
    let mut ws = ws;
    let mut decl = None;
    if ws.len() >= 2 && ws[0].starts_with('$') && (ws[1] == ":=" || ws[1] == "=") {
        decl = Some((ws[0].clone(), ws[1] == ":="));
        ws = &ws[2..];
    }
    let mut cmds = vec![Vec::new()];
    let mut i = 0;
    while i < ws.len() {
        let w = &ws[i];
        let arg = match w.as_str() {
            "|" => {
                cmds.push(Vec::new());
                i += 1;
                continue;
            }
            "(" => {
                let mut depth = 0;
                let start = i + 1;
                loop {
                    match ws.get(i).map(String::as_str) {
                        Some("(") => depth += 1,
                        Some(")") => {
                            depth -= 1;
                            if depth == 0 {
                                break;
                            }
                        }
                        None => return Err("unbalanced parentheses".into()),
                        _ => {}
                    }
                    i += 1;
                }
                Arg::Sub(parse_pipe(&ws[start..i])?)
            }
            "true" => Arg::Bool(true),
            "false" => Arg::Bool(false),
            "nil" => Arg::Nil,
            _ if w.starts_with('"') || w.starts_with('`') => Arg::Str(unquote(w)?),
            _ if w.starts_with('.') => Arg::Field(path(w)),
            _ if w.starts_with('$') => {
                let (var, rest) = w.split_once('.').map_or((w.as_str(), ""), |(a, b)| (a, b));
                Arg::Var(var.to_string(), path(rest))
            }
            _ if w.starts_with(|c: char| c.is_ascii_digit() || c == '-') => {
                Arg::Num(w.parse().map_err(|_| format!("number {w}"))?)
            }
            _ => Arg::Ident(w.clone()),
        };
        cmds.last_mut().expect("one").push(arg);
        i += 1;
    }
    if cmds.iter().any(Vec::is_empty) {
        return Err(format!("an empty command in {ws:?}"));
    }
    Ok(Pipe { decl, cmds })
}

/// Parses until `{{ end }}` or `{{ else ... }}`; returns the nodes and the
/// closing action's words.
fn parse_list(
    toks: &mut std::iter::Peekable<std::vec::IntoIter<Tok>>,
    defines: &mut BTreeMap<String, Vec<Node>>,
) -> Result<(Vec<Node>, Option<Vec<String>>), String> {
    let mut nodes = Vec::new();
    while let Some(tok) = toks.next() {
        let action = match tok {
            Tok::Text(t) => {
                nodes.push(Node::Text(t));
                continue;
            }
            Tok::Action(a) => a,
        };
        if action.starts_with("/*") {
            continue;
        }
        let ws = words(&action)?;
        let Some(first) = ws.first() else { return Err("an empty action".into()) };
        match first.as_str() {
            "end" | "else" => return Ok((nodes, Some(ws))),
            "if" | "with" | "range" => {
                let node = parse_block(first, &ws[1..], toks, defines)?;
                nodes.push(node);
            }
            "define" => {
                let name = unquote(ws.get(1).ok_or("define without a name")?)?;
                let (body, close) = parse_list(toks, defines)?;
                if close.as_ref().map(|c| c[0].as_str()) != Some("end") {
                    return Err(format!("define {name} not closed by end"));
                }
                defines.insert(name, body);
            }
            "template" | "block" => return Err(format!("{first} is not supported")),
            _ => nodes.push(Node::Action(parse_pipe(&ws)?)),
        }
    }
    Ok((nodes, None))
}

fn parse_block(
    kind: &str,
    ws: &[String],
    toks: &mut std::iter::Peekable<std::vec::IntoIter<Tok>>,
    defines: &mut BTreeMap<String, Vec<Node>>,
) -> Result<Node, String> {
    let (mut vars, mut ws) = (Vec::new(), ws);
    if kind == "range"
        && let Some(at) = ws.iter().position(|w| w == ":=")
    {
        vars = ws[..at].iter().filter(|w| *w != ",").cloned().collect();
        ws = &ws[at + 1..];
    }
    let pipe = parse_pipe(ws)?;
    let (body, close) = parse_list(toks, defines)?;
    let close = close.ok_or_else(|| format!("{kind} not closed"))?;
    let otherwise = if close[0] == "else" {
        if close.len() > 1 {
            // `else if ...` / `else with ...`: one nested block that shares
            // this block's `end`.
            vec![parse_block(&close[1], &close[2..], toks, defines)?]
        } else {
            let (e, c) = parse_list(toks, defines)?;
            if c.as_ref().map(|c| c[0].as_str()) != Some("end") {
                return Err(format!("{kind}'s else not closed by end"));
            }
            e
        }
    } else {
        Vec::new()
    };
    Ok(match kind {
        "if" => Node::If(pipe, body, otherwise),
        "with" => Node::With(pipe, body, otherwise),
        _ => Node::Range(vars, pipe, body, otherwise),
    })
}

fn truthy(v: &Value) -> bool {
    match v {
        Value::Null => false,
        Value::Bool(b) => *b,
        Value::Number(n) => n.as_f64().is_some_and(|x| x != 0.0),
        Value::String(s) => !s.is_empty(),
        Value::Array(a) => !a.is_empty(),
        Value::Object(o) => !o.is_empty(),
    }
}

/// Go's `%v` of a value (float64 numbers, as Helm reads values).
fn show(v: &Value) -> String {
    match v {
        Value::Null => String::new(),
        Value::String(s) => s.clone(),
        Value::Bool(b) => b.to_string(),
        Value::Number(n) => {
            let x = n.as_f64().unwrap_or(0.0);
            if x.fract() == 0.0 && x.abs() < 1e21 { format!("{}", x as i64) } else { format!("{x}") }
        }
        other => other.to_string(),
    }
}

fn num(x: f64) -> Value {
    serde_json::Number::from_f64(x).map_or(Value::Null, Value::Number)
}

/// Numbers as float64, the way Helm reads values.
fn floats(v: Value) -> Value {
    match v {
        Value::Number(n) => num(n.as_f64().unwrap_or(0.0)),
        Value::Array(a) => Value::Array(a.into_iter().map(floats).collect()),
        Value::Object(o) => Value::Object(o.into_iter().map(|(k, v)| (k, floats(v))).collect()),
        other => other,
    }
}

fn merge(base: &mut Value, over: Value) {
    match (base, over) {
        (Value::Object(b), Value::Object(o)) => {
            for (k, v) in o {
                match b.get_mut(&k) {
                    Some(slot) if slot.is_object() && v.is_object() => merge(slot, v),
                    _ => {
                        b.insert(k, v);
                    }
                }
            }
        }
        (slot, v) => *slot = v,
    }
}

fn field(mut v: &Value, path: &[String]) -> Value {
    for p in path {
        match v.get(p) {
            Some(next) => v = next,
            None => return Value::Null,
        }
    }
    v.clone()
}

fn to_yaml(v: &Value) -> Result<String, String> {
    if v.is_null() {
        return Ok("null".into());
    }
    let s = serde_saphyr::to_string(v).map_err(|e| format!("toYaml: {e}"))?;
    Ok(s.trim_end_matches('\n').to_string())
}

fn indent(n: usize, s: &str) -> String {
    let pad = " ".repeat(n);
    s.split('\n').map(|l| format!("{pad}{l}")).collect::<Vec<_>>().join("\n")
}

struct Scope<'a> {
    vars: Vec<(String, Value)>,
    defines: &'a BTreeMap<String, Vec<Node>>,
}

impl Scope<'_> {
    fn var(&self, name: &str) -> Result<Value, String> {
        self.vars.iter().rev().find(|(n, _)| n == name).map(|(_, v)| v.clone()).ok_or(format!("undefined {name}"))
    }

    fn arg(&mut self, a: &Arg, dot: &Value) -> Result<Value, String> {
        Ok(match a {
            Arg::Str(s) => Value::String(s.clone()),
            Arg::Num(x) => num(*x),
            Arg::Bool(b) => Value::Bool(*b),
            Arg::Nil => Value::Null,
            Arg::Field(p) => field(dot, p),
            Arg::Var(v, p) => field(&self.var(v)?, p),
            Arg::Sub(p) => self.pipe(p, dot)?,
            Arg::Ident(i) => self.call(i, &[], dot)?,
        })
    }

    fn pipe(&mut self, p: &Pipe, dot: &Value) -> Result<Value, String> {
        let mut last: Option<Value> = None;
        for cmd in &p.cmds {
            let value = match &cmd[0] {
                Arg::Ident(f) => {
                    let mut args = Vec::new();
                    for a in &cmd[1..] {
                        args.push(self.arg(a, dot)?);
                    }
                    args.extend(last.take());
                    self.call(f, &args, dot)?
                }
                a if cmd.len() == 1 && last.is_none() => self.arg(a, dot)?,
                _ => return Err(format!("cannot call {:?}", cmd[0])),
            };
            last = Some(value);
        }
        let value = last.unwrap_or(Value::Null);
        if let Some((name, declare)) = &p.decl {
            if *declare {
                self.vars.push((name.clone(), value));
            } else {
                let slot = self.vars.iter_mut().rev().find(|(n, _)| n == name).ok_or(format!("undefined {name}"))?;
                slot.1 = value;
            }
            return Ok(Value::String(String::new()));
        }
        Ok(value)
    }

    fn call(&mut self, f: &str, a: &[Value], _dot: &Value) -> Result<Value, String> {
        let s = |i: usize| a.get(i).map(show).unwrap_or_default();
        let n = |i: usize| a.get(i).and_then(Value::as_f64).unwrap_or(0.0);
        let want =
            |k: usize| if a.len() == k { Ok(()) } else { Err(format!("{f} takes {k} arguments, got {}", a.len())) };
        Ok(match f {
            "include" => {
                want(2)?;
                let name = s(0);
                let body = self.defines.get(&name).ok_or(format!("no template {name}"))?;
                let mut inner = Scope { vars: vec![("$".into(), a[1].clone())], defines: self.defines };
                Value::String(inner.render(body, &a[1])?)
            }
            "nindent" => Value::String(format!("\n{}", indent(n(0) as usize, &s(1)))),
            "indent" => Value::String(indent(n(0) as usize, &s(1))),
            "toYaml" => Value::String(to_yaml(a.first().unwrap_or(&Value::Null))?),
            "fromYaml" => serde_saphyr::from_str(&s(0)).map(floats).unwrap_or(Value::Null),
            "trimSuffix" => Value::String(s(1).strip_suffix(&s(0)).map_or(s(1), str::to_string)),
            "trunc" => Value::String(s(1).chars().take(n(0) as usize).collect()),
            "contains" => Value::Bool(s(1).contains(&s(0))),
            "replace" => Value::String(s(2).replace(&s(0), &s(1))),
            "toString" => Value::String(s(0)),
            "quote" => {
                Value::String(a.iter().map(|v| Value::String(show(v)).to_string()).collect::<Vec<_>>().join(" "))
            }
            "printf" => {
                let fmt = s(0);
                let mut out = String::new();
                let mut args = a[1..].iter();
                let mut chars = fmt.chars();
                while let Some(c) = chars.next() {
                    if c != '%' {
                        out.push(c);
                        continue;
                    }
                    match chars.next() {
                        Some('%') => out.push('%'),
                        Some('s' | 'v' | 'd') => out.push_str(&args.next().map(show).unwrap_or_default()),
                        other => return Err(format!("printf verb {other:?}")),
                    }
                }
                Value::String(out)
            }
            "list" => Value::Array(a.to_vec()),
            "append" => {
                let mut l = a.first().and_then(Value::as_array).cloned().unwrap_or_default();
                l.extend(a.get(1).cloned());
                Value::Array(l)
            }
            "dict" => {
                let mut m = Map::new();
                for kv in a.chunks(2) {
                    m.insert(show(&kv[0]), kv.get(1).cloned().unwrap_or(Value::Null));
                }
                Value::Object(m)
            }
            "sortAlpha" => {
                let mut l: Vec<String> = a.first().and_then(Value::as_array).into_iter().flatten().map(show).collect();
                l.sort();
                Value::Array(l.into_iter().map(Value::String).collect())
            }
            "join" => Value::String(
                a.get(1).and_then(Value::as_array).into_iter().flatten().map(show).collect::<Vec<_>>().join(&s(0)),
            ),
            "default" => {
                want(2)?;
                if truthy(&a[1]) { a[1].clone() } else { a[0].clone() }
            }
            "ternary" => {
                want(3)?;
                if truthy(&a[2]) { a[0].clone() } else { a[1].clone() }
            }
            "eq" => Value::Bool(a.len() == 2 && show(&a[0]) == show(&a[1]) && a[0].is_string() == a[1].is_string()),
            "ne" => Value::Bool(!(a.len() == 2 && show(&a[0]) == show(&a[1]))),
            "not" => Value::Bool(!truthy(a.first().unwrap_or(&Value::Null))),
            "and" => a.iter().find(|v| !truthy(v)).or(a.last()).cloned().unwrap_or(Value::Null),
            "or" => a.iter().find(|v| truthy(v)).or(a.last()).cloned().unwrap_or(Value::Null),
            "empty" => Value::Bool(!truthy(a.first().unwrap_or(&Value::Null))),
            "kindIs" => {
                let kind = match a.get(1).unwrap_or(&Value::Null) {
                    Value::Null => "invalid",
                    Value::Bool(_) => "bool",
                    Value::Number(_) => "float64",
                    Value::String(_) => "string",
                    Value::Array(_) => "slice",
                    Value::Object(_) => "map",
                };
                Value::Bool(kind == s(0))
            }
            "required" => {
                if truthy(a.get(1).unwrap_or(&Value::Null)) {
                    a[1].clone()
                } else {
                    return Err(s(0));
                }
            }
            "fail" => return Err(s(0)),
            other => return Err(format!("function {other} is not supported")),
        })
    }

    fn render(&mut self, nodes: &[Node], dot: &Value) -> Result<String, String> {
        let mut out = String::new();
        let depth = self.vars.len();
        for node in nodes {
            match node {
                Node::Text(t) => out.push_str(t),
                Node::Action(p) => out.push_str(&show(&self.pipe(p, dot)?)),
                Node::If(p, then, otherwise) => {
                    let cond = self.pipe(p, dot)?;
                    out.push_str(&self.render(if truthy(&cond) { then } else { otherwise }, dot)?);
                }
                Node::With(p, then, otherwise) => {
                    let v = self.pipe(p, dot)?;
                    if truthy(&v) {
                        out.push_str(&self.render(then, &v)?);
                    } else {
                        out.push_str(&self.render(otherwise, dot)?);
                    }
                }
                Node::Range(vars, p, body, otherwise) => {
                    let items: Vec<(Value, Value)> = match self.pipe(p, dot)? {
                        Value::Array(l) => l.into_iter().enumerate().map(|(i, v)| (num(i as f64), v)).collect(),
                        Value::Object(m) => m.into_iter().map(|(k, v)| (Value::String(k), v)).collect(),
                        Value::Null => Vec::new(),
                        other => return Err(format!("range over {other}")),
                    };
                    if items.is_empty() {
                        out.push_str(&self.render(otherwise, dot)?);
                    }
                    for (k, v) in items {
                        let mark = self.vars.len();
                        match vars.as_slice() {
                            [] => {}
                            [one] => self.vars.push((one.clone(), v.clone())),
                            [key, val] => {
                                self.vars.push((key.clone(), k));
                                self.vars.push((val.clone(), v.clone()));
                            }
                            _ => return Err("range with more than two variables".into()),
                        }
                        out.push_str(&self.render(body, &v)?);
                        self.vars.truncate(mark);
                    }
                }
            }
        }
        self.vars.truncate(depth);
        Ok(out)
    }
}

/// A chart on disk, with its named templates parsed.
pub struct Chart {
    root: PathBuf,
    defines: BTreeMap<String, Vec<Node>>,
    templates: BTreeMap<String, Vec<Node>>,
    values: Value,
    meta: Value,
}

impl Chart {
    pub fn load(root: &Path) -> Result<Chart, String> {
        let read = |p: &str| std::fs::read_to_string(root.join(p)).map_err(|e| format!("{p}: {e}"));
        let meta: Value = serde_saphyr::from_str(&read("Chart.yaml")?).map_err(|e| format!("Chart.yaml: {e}"))?;
        let values: Value = serde_saphyr::from_str(&read("values.yaml")?).map_err(|e| format!("values.yaml: {e}"))?;
        let mut defines = BTreeMap::new();
        let mut templates = BTreeMap::new();
        let mut names: Vec<_> = std::fs::read_dir(root.join("templates"))
            .map_err(|e| e.to_string())?
            .filter_map(|e| e.ok().map(|e| e.file_name().to_string_lossy().into_owned()))
            .collect();
        names.sort();
        for name in names {
            let path = format!("templates/{name}");
            let toks = lex(&read(&path)?).map_err(|e| format!("{path}: {e}"))?;
            let (nodes, close) =
                parse_list(&mut toks.into_iter().peekable(), &mut defines).map_err(|e| format!("{path}: {e}"))?;
            if close.is_some() {
                return Err(format!("{path}: an end or else without a block"));
            }
            if !name.starts_with('_') && (name.ends_with(".yaml") || name.ends_with(".yml")) {
                templates.insert(path, nodes);
            }
        }
        Ok(Chart { root: root.to_path_buf(), defines, templates, values: floats(values), meta })
    }

    /// Renders `template` (e.g. `templates/rbac.yaml`) for a release.
    pub fn render(&self, template: &str, release: &str, namespace: &str, overrides: Value) -> Result<String, String> {
        let nodes = self.templates.get(template).ok_or(format!("no {template}"))?;
        let mut values = self.values.clone();
        if !overrides.is_null() {
            merge(&mut values, floats(overrides));
        }
        let chart = serde_json::json!({
            "Name": self.meta["name"], "Version": self.meta["version"], "AppVersion": self.meta["appVersion"],
        });
        let top = serde_json::json!({
            "Values": values,
            "Release": {"Name": release, "Namespace": namespace, "Service": "Helm", "IsInstall": true, "IsUpgrade": false},
            "Chart": chart,
            "Template": {"Name": format!("{}/{template}", show(&self.meta["name"])), "BasePath": "templates"},
        });
        let mut scope = Scope { vars: vec![("$".into(), top.clone())], defines: &self.defines };
        scope.render(nodes, &top).map_err(|e| format!("{}: {template}: {e}", self.root.display()))
    }

    /// Renders `template` and parses its YAML documents (empty ones left out).
    pub fn objects(
        &self,
        template: &str,
        release: &str,
        namespace: &str,
        overrides: Value,
    ) -> Result<Vec<Value>, String> {
        let text = self.render(template, release, namespace, overrides)?;
        let docs: Vec<Value> = serde_saphyr::from_multiple(&text).map_err(|e| format!("{template}: {e}\n{text}"))?;
        Ok(docs.into_iter().filter(|d| !d.is_null()).collect())
    }
}
