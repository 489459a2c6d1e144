//! Label selectors (equality- and set-based) and field selectors.

use serde_json::Value;

use crate::error::ApiError;

#[derive(Debug, Clone, PartialEq)]
enum Requirement {
    Equals(String, String),
    NotEquals(String, String),
    In(String, Vec<String>),
    NotIn(String, Vec<String>),
    Exists(String),
    NotExists(String),
    GreaterThan(String, i64),
    LessThan(String, i64),
}

/// A parsed `labelSelector`; empty selects everything.
#[derive(Debug, Clone, Default, PartialEq)]
pub(crate) struct LabelSelector(Vec<Requirement>);

impl LabelSelector {
    pub(crate) fn parse(raw: &str) -> Result<LabelSelector, ApiError> {
        let mut requirements = Vec::new();
        for term in split_terms(raw) {
            let term = term.trim();
            if term.is_empty() {
                continue;
            }
            requirements.push(parse_requirement(term).ok_or_else(|| {
                ApiError::BadRequest(format!("unable to parse requirement: invalid label selector {raw:?}"))
            })?);
        }
        Ok(LabelSelector(requirements))
    }

    /// Whether an object with these `metadata.labels` is selected.
    pub(crate) fn matches(&self, obj: &Value) -> bool {
        let labels = obj.pointer("/metadata/labels").and_then(Value::as_object);
        let label = |k: &str| labels.and_then(|l| l.get(k)).and_then(Value::as_str);
        self.0.iter().all(|r| match r {
            Requirement::Equals(k, v) => label(k) == Some(v.as_str()),
            Requirement::NotEquals(k, v) => label(k) != Some(v.as_str()),
            Requirement::In(k, vs) => label(k).is_some_and(|l| vs.iter().any(|v| v == l)),
            Requirement::NotIn(k, vs) => label(k).is_none_or(|l| vs.iter().all(|v| v != l)),
            Requirement::Exists(k) => label(k).is_some(),
            Requirement::NotExists(k) => label(k).is_none(),
            Requirement::GreaterThan(k, n) => label(k).and_then(|l| l.parse::<i64>().ok()).is_some_and(|l| l > *n),
            Requirement::LessThan(k, n) => label(k).and_then(|l| l.parse::<i64>().ok()).is_some_and(|l| l < *n),
        })
    }
}

/// Splits on commas outside parentheses (`a in (x,y),b` is two terms).
fn split_terms(raw: &str) -> Vec<&str> {
    let mut terms = Vec::new();
    let (mut depth, mut start) = (0i32, 0);
    for (i, c) in raw.char_indices() {
        match c {
            '(' => depth += 1,
            ')' => depth -= 1,
            ',' if depth == 0 => {
                terms.push(&raw[start..i]);
                start = i + 1;
            }
            _ => {}
        }
    }
    terms.push(&raw[start..]);
    terms
}

fn parse_requirement(term: &str) -> Option<Requirement> {
    if let Some(key) = term.strip_prefix('!') {
        return valid_key(key.trim()).map(Requirement::NotExists);
    }
    if let Some(open) = term.find('(') {
        let close = term.rfind(')')?;
        if close != term.len() - 1 || close < open {
            return None;
        }
        let mut head = term[..open].split_whitespace();
        let (key, op) = (valid_key(head.next()?)?, head.next()?);
        if head.next().is_some() {
            return None;
        }
        let values = term[open + 1..close].split(',').map(|v| valid_value(v.trim())).collect::<Option<Vec<_>>>()?;
        return match op {
            "in" => Some(Requirement::In(key, values)),
            "notin" => Some(Requirement::NotIn(key, values)),
            _ => None,
        };
    }
    for (op, build) in [
        ("!=", Requirement::NotEquals as fn(String, String) -> Requirement),
        ("==", Requirement::Equals),
        ("=", Requirement::Equals),
    ] {
        if let Some((k, v)) = term.split_once(op) {
            return Some(build(valid_key(k.trim())?, valid_value(v.trim())?));
        }
    }
    if let Some((k, v)) = term.split_once('>') {
        return Some(Requirement::GreaterThan(valid_key(k.trim())?, v.trim().parse().ok()?));
    }
    if let Some((k, v)) = term.split_once('<') {
        return Some(Requirement::LessThan(valid_key(k.trim())?, v.trim().parse().ok()?));
    }
    valid_key(term).map(Requirement::Exists)
}

fn valid_key(k: &str) -> Option<String> {
    let ok = !k.is_empty() && k.chars().all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.' | '/'));
    ok.then(|| k.to_string())
}

fn valid_value(v: &str) -> Option<String> {
    let ok = v.chars().all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'));
    ok.then(|| v.to_string())
}

/// A parsed `fieldSelector`: `path=value`, `path==value`, `path!=value`
/// terms over any dotted path of the object (a real server accepts only a
/// few paths per kind).
#[derive(Debug, Clone, Default, PartialEq)]
pub(crate) struct FieldSelector(Vec<(Vec<String>, bool, String)>);

impl FieldSelector {
    pub(crate) fn parse(raw: &str) -> Result<FieldSelector, ApiError> {
        let mut terms = Vec::new();
        for term in raw.split(',').map(str::trim).filter(|t| !t.is_empty()) {
            let (path, equal, value) = if let Some((p, v)) = term.split_once("!=") {
                (p, false, v)
            } else if let Some((p, v)) = term.split_once("==") {
                (p, true, v)
            } else if let Some((p, v)) = term.split_once('=') {
                (p, true, v)
            } else {
                return Err(ApiError::BadRequest(format!("invalid field selector {raw:?}: {term:?} has no operator")));
            };
            let path: Vec<String> = path.trim().split('.').map(str::to_string).collect();
            if path.iter().any(String::is_empty) {
                return Err(ApiError::BadRequest(format!("invalid field selector {raw:?}")));
            }
            terms.push((path, equal, value.trim().to_string()));
        }
        Ok(FieldSelector(terms))
    }

    pub(crate) fn matches(&self, obj: &Value) -> bool {
        self.0.iter().all(|(path, equal, value)| {
            let mut current = Some(obj);
            for seg in path {
                current = current.and_then(|v| v.get(seg));
            }
            let actual = match current {
                Some(Value::String(s)) => s.clone(),
                Some(Value::Null) | None => String::new(),
                Some(other) => other.to_string(),
            };
            (actual == *value) == *equal
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn obj(labels: Value) -> Value {
        json!({"metadata": {"name": "n", "namespace": "ns", "labels": labels}})
    }

    #[test]
    fn equality_set_and_existence() {
        let o = obj(json!({"app": "web", "tier": "front", "n": "5"}));
        let sel = |s: &str| LabelSelector::parse(s).expect("parses").matches(&o);
        assert!(sel(""));
        assert!(sel("app=web"));
        assert!(sel("app==web,tier=front"));
        assert!(!sel("app!=web"));
        assert!(sel("app in (web, db),tier"));
        assert!(!sel("app notin (web)"));
        assert!(sel("!missing"));
        assert!(!sel("missing"));
        assert!(sel("missing notin (x)"));
        assert!(sel("n>4,n<6"));
    }

    #[test]
    fn bad_selectors_are_errors() {
        for bad in ["app in (web", "app=we b", "=x", "a in x", "a foo (x)", "!"] {
            assert!(LabelSelector::parse(bad).is_err(), "{bad}");
        }
        assert!(FieldSelector::parse("metadata.name").is_err());
    }

    #[test]
    fn field_selector() {
        let o = obj(json!({}));
        assert!(FieldSelector::parse("metadata.name=n,metadata.namespace==ns").expect("parses").matches(&o));
        assert!(!FieldSelector::parse("metadata.name!=n").expect("parses").matches(&o));
    }
}
