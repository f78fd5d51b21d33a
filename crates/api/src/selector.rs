//! Label selectors (string syntax and `metav1.LabelSelector`) and field selectors: parsing,
//! validation with upstream's messages, and matching.

use crate::field::{ErrorList, FieldError, Path};
use crate::names;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::LabelSelector;
use std::collections::BTreeMap;
use std::fmt;

/// Why a label or field selector does not parse. Not retryable: the same text always fails the
/// same way. Each message is upstream's, so clients that match on it keep working.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum SelectorError {
    /// A key that is not a qualified name.
    #[error("invalid label key {key:?}: {reason}")]
    InvalidKey { key: String, reason: String },
    /// A value that is not a label value.
    #[error("invalid label value: {value:?}: at key: {reason}")]
    InvalidValue { value: String, reason: String },
    /// `in`/`notin` without parentheses around the values.
    #[error("found '{found}', expected: '(' and ')' around the set")]
    UnbracketedSet { found: String },
    /// `>`/`<` against something that is not an integer.
    #[error("for 'Gt', 'Lt' operators, the value must be an integer: {value:?}")]
    NotAnInteger { value: String },
    /// A `matchExpressions` operator that does not exist.
    #[error("{operator:?} is not a valid label selector operator")]
    InvalidOperator { operator: String },
    /// `In`/`NotIn` with no values.
    #[error("for 'in', 'notin' operators, values set can't be empty")]
    EmptySet,
    /// A field selector escape other than `\\`, `\,` or `\=`.
    #[error("invalid escape sequence: \\{0}")]
    InvalidEscape(char),
    /// A field selector ending in a lone backslash.
    #[error("invalid trailing escape sequence")]
    TrailingEscape,
    /// A field selector term with no operator.
    #[error("invalid selector: '{selector}'; can't understand '{term}'")]
    UnknownTerm { selector: String, term: String },
}

/// A selector operator.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Op {
    Equals,
    NotEquals,
    In,
    NotIn,
    Exists,
    DoesNotExist,
    GreaterThan,
    LessThan,
}

/// One requirement of a label selector.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Requirement {
    pub key: String,
    pub op: Op,
    pub values: Vec<String>,
}

impl Requirement {
    fn matches(&self, labels: &BTreeMap<String, String>) -> bool {
        let value = labels.get(&self.key);
        match self.op {
            Op::Equals | Op::In => value.is_some_and(|v| self.values.contains(v)),
            Op::NotEquals | Op::NotIn => value.is_none_or(|v| !self.values.contains(v)),
            Op::Exists => value.is_some(),
            Op::DoesNotExist => value.is_none(),
            Op::GreaterThan | Op::LessThan => {
                let (Some(have), Some(want)) = (
                    value.and_then(|v| v.parse::<i64>().ok()),
                    self.values.first().and_then(|v| v.parse::<i64>().ok()),
                ) else {
                    return false;
                };
                if self.op == Op::GreaterThan {
                    have > want
                } else {
                    have < want
                }
            }
        }
    }
}

/// A parsed label selector. `Nothing` matches no object (a null selector); an empty `Requirements`
/// matches every object.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Selector {
    Nothing,
    Requirements(Vec<Requirement>),
}

impl Selector {
    /// The selector that matches everything.
    pub fn everything() -> Self {
        Selector::Requirements(Vec::new())
    }
    /// Whether the selector matches these labels.
    pub fn matches(&self, labels: &BTreeMap<String, String>) -> bool {
        match self {
            Selector::Nothing => false,
            Selector::Requirements(reqs) => reqs.iter().all(|r| r.matches(labels)),
        }
    }
    /// True when the selector matches every object.
    pub fn is_everything(&self) -> bool {
        matches!(self, Selector::Requirements(r) if r.is_empty())
    }
    /// The value a requirement `key=value` pins, if any (used to pick an index).
    pub fn equality_value(&self, key: &str) -> Option<&str> {
        match self {
            Selector::Requirements(reqs) => reqs
                .iter()
                .find(|r| r.key == key && matches!(r.op, Op::Equals) && r.values.len() == 1)
                .map(|r| r.values[0].as_str()),
            Selector::Nothing => None,
        }
    }
}

impl fmt::Display for Selector {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let Selector::Requirements(reqs) = self else {
            return Ok(());
        };
        let parts: Vec<String> = reqs
            .iter()
            .map(|r| match r.op {
                Op::Equals => format!("{}={}", r.key, r.values.join(",")),
                Op::NotEquals => format!("{}!={}", r.key, r.values.join(",")),
                Op::In => format!("{} in ({})", r.key, r.values.join(",")),
                Op::NotIn => format!("{} notin ({})", r.key, r.values.join(",")),
                Op::Exists => r.key.clone(),
                Op::DoesNotExist => format!("!{}", r.key),
                Op::GreaterThan => format!("{}>{}", r.key, r.values.join(",")),
                Op::LessThan => format!("{}<{}", r.key, r.values.join(",")),
            })
            .collect();
        f.write_str(&parts.join(","))
    }
}

/// Splits on commas that are not inside parentheses.
fn split_top_level(s: &str) -> Vec<&str> {
    let mut parts = Vec::new();
    let mut depth = 0i32;
    let mut start = 0;
    for (i, c) in s.char_indices() {
        match c {
            '(' => depth += 1,
            ')' => depth -= 1,
            ',' if depth == 0 => {
                parts.push(&s[start..i]);
                start = i + 1;
            }
            _ => {}
        }
    }
    parts.push(&s[start..]);
    parts
}

fn check_key(key: &str) -> Result<(), SelectorError> {
    match names::qualified_name(key).first() {
        Some(m) => Err(SelectorError::InvalidKey {
            key: key.to_owned(),
            reason: m.clone(),
        }),
        None => Ok(()),
    }
}

fn check_value(value: &str) -> Result<(), SelectorError> {
    match names::label_value(value).first() {
        Some(m) => Err(SelectorError::InvalidValue {
            value: value.to_owned(),
            reason: m.clone(),
        }),
        None => Ok(()),
    }
}

fn parse_set(rest: &str) -> Result<Vec<String>, SelectorError> {
    let rest = rest.trim();
    let inner = rest
        .strip_prefix('(')
        .and_then(|r| r.strip_suffix(')'))
        .ok_or_else(|| SelectorError::UnbracketedSet {
            found: rest.to_owned(),
        })?;
    if inner.trim().is_empty() {
        return Err(SelectorError::EmptySet);
    }
    let values: Vec<String> = inner.split(',').map(|v| v.trim().to_owned()).collect();
    for v in &values {
        check_value(v)?;
    }
    Ok(values)
}

fn parse_requirement(part: &str) -> Result<Requirement, SelectorError> {
    let part = part.trim();
    if let Some(key) = part.strip_prefix('!') {
        let key = key.trim();
        check_key(key)?;
        return Ok(Requirement {
            key: key.to_owned(),
            op: Op::DoesNotExist,
            values: vec![],
        });
    }
    for (word, op) in [(" notin ", Op::NotIn), (" in ", Op::In)] {
        if let Some(at) = part.find(word) {
            let key = part[..at].trim();
            check_key(key)?;
            let values = parse_set(&part[at + word.len()..])?;
            return Ok(Requirement {
                key: key.to_owned(),
                op,
                values,
            });
        }
    }
    for (sym, op) in [
        ("!=", Op::NotEquals),
        ("==", Op::Equals),
        ("=", Op::Equals),
        (">", Op::GreaterThan),
        ("<", Op::LessThan),
    ] {
        if let Some((key, value)) = part.split_once(sym) {
            let (key, value) = (key.trim(), value.trim());
            check_key(key)?;
            if matches!(op, Op::GreaterThan | Op::LessThan) {
                value
                    .parse::<i64>()
                    .map_err(|_| SelectorError::NotAnInteger {
                        value: value.to_owned(),
                    })?;
            } else {
                check_value(value)?;
            }
            return Ok(Requirement {
                key: key.to_owned(),
                op,
                values: vec![value.to_owned()],
            });
        }
    }
    check_key(part)?;
    Ok(Requirement {
        key: part.to_owned(),
        op: Op::Exists,
        values: vec![],
    })
}

/// Parses the string syntax of `?labelSelector=`: `a=b,c!=d,e in (f,g),!h,i`.
pub fn parse_label_selector(s: &str) -> Result<Selector, SelectorError> {
    if s.trim().is_empty() {
        return Ok(Selector::everything());
    }
    split_top_level(s)
        .into_iter()
        .map(parse_requirement)
        .collect::<Result<Vec<_>, _>>()
        .map(Selector::Requirements)
}

/// Converts an API `LabelSelector` (`LabelSelectorAsSelector`): `None` matches nothing, `{}` everything.
pub fn from_label_selector(sel: Option<&LabelSelector>) -> Result<Selector, SelectorError> {
    let Some(sel) = sel else {
        return Ok(Selector::Nothing);
    };
    let mut reqs = Vec::new();
    for (k, v) in sel.match_labels.iter().flatten() {
        reqs.push(Requirement {
            key: k.clone(),
            op: Op::Equals,
            values: vec![v.clone()],
        });
    }
    for expr in sel.match_expressions.iter().flatten() {
        let values = expr.values.clone().unwrap_or_default();
        let op = match expr.operator.as_str() {
            "In" => Op::In,
            "NotIn" => Op::NotIn,
            "Exists" => Op::Exists,
            "DoesNotExist" => Op::DoesNotExist,
            other => {
                return Err(SelectorError::InvalidOperator {
                    operator: other.to_owned(),
                });
            }
        };
        if matches!(op, Op::In | Op::NotIn) && values.is_empty() {
            return Err(SelectorError::EmptySet);
        }
        reqs.push(Requirement {
            key: expr.key.clone(),
            op,
            values,
        });
    }
    Ok(Selector::Requirements(reqs))
}

/// `ValidateLabelSelector` from apimachinery, with its field paths and messages.
pub fn validate_label_selector(sel: &LabelSelector, path: &Path) -> ErrorList {
    let mut errs = names::validate_labels(
        &sel.match_labels.clone().unwrap_or_default(),
        &path.child("matchLabels"),
    );
    for (i, expr) in sel.match_expressions.iter().flatten().enumerate() {
        let p = path.child("matchExpressions").index(i);
        let has_values = expr.values.as_ref().is_some_and(|v| !v.is_empty());
        match expr.operator.as_str() {
            "In" | "NotIn" if !has_values => errs.push(FieldError::required(
                &p.child("values"),
                "must be specified when `operator` is 'In' or 'NotIn'",
            )),
            "Exists" | "DoesNotExist" if has_values => errs.push(FieldError::forbidden(
                &p.child("values"),
                "may not be specified when `operator` is 'Exists' or 'DoesNotExist'",
            )),
            "In" | "NotIn" | "Exists" | "DoesNotExist" => {}
            other => errs.push(FieldError::invalid(
                &p.child("operator"),
                other,
                "not a valid selector operator",
            )),
        }
        for m in names::qualified_name(&expr.key) {
            errs.push(FieldError::invalid(&p.child("key"), &expr.key, m));
        }
        for v in expr.values.iter().flatten() {
            for m in names::label_value(v) {
                errs.push(FieldError::invalid(&p.child("values"), v, m));
            }
        }
    }
    errs
}

/// One term of a field selector.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct FieldTerm {
    pub field: String,
    pub negated: bool,
    pub value: String,
}

/// A parsed field selector (`metadata.name=x,spec.nodeName!=y`); empty matches everything.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct FieldSelector(pub Vec<FieldTerm>);

impl FieldSelector {
    /// Whether the object's field set satisfies every term. A field the set lacks counts as "".
    pub fn matches(&self, fields: &BTreeMap<&'static str, String>) -> bool {
        self.0.iter().all(|t| {
            let have = fields.get(t.field.as_str()).map_or("", String::as_str);
            (have == t.value) != t.negated
        })
    }
    /// The value an equality term pins for `field`, if any.
    pub fn equality_value(&self, field: &str) -> Option<&str> {
        self.0
            .iter()
            .find(|t| t.field == field && !t.negated)
            .map(|t| t.value.as_str())
    }
}

fn unescape_field_value(s: &str) -> Result<String, SelectorError> {
    let mut out = String::new();
    let mut chars = s.chars();
    while let Some(c) = chars.next() {
        if c == '\\' {
            match chars.next() {
                Some(e @ ('\\' | ',' | '=')) => out.push(e),
                Some(e) => return Err(SelectorError::InvalidEscape(e)),
                None => return Err(SelectorError::TrailingEscape),
            }
        } else {
            out.push(c);
        }
    }
    Ok(out)
}

/// Splits on commas not preceded by a backslash escape.
fn split_unescaped(s: &str) -> Vec<String> {
    let mut parts = vec![String::new()];
    let mut escaped = false;
    for c in s.chars() {
        if escaped {
            if let Some(last) = parts.last_mut() {
                last.push('\\');
                last.push(c);
            }
            escaped = false;
        } else if c == '\\' {
            escaped = true;
        } else if c == ',' {
            parts.push(String::new());
        } else if let Some(last) = parts.last_mut() {
            last.push(c);
        }
    }
    parts
}

/// Parses `?fieldSelector=`.
pub fn parse_field_selector(s: &str) -> Result<FieldSelector, SelectorError> {
    let mut terms = Vec::new();
    if s.trim().is_empty() {
        return Ok(FieldSelector::default());
    }
    for part in split_unescaped(s) {
        let (field, negated, raw) = if let Some((f, v)) = part.split_once("!=") {
            (f, true, v)
        } else if let Some((f, v)) = part.split_once("==") {
            (f, false, v)
        } else if let Some((f, v)) = part.split_once('=') {
            (f, false, v)
        } else {
            return Err(SelectorError::UnknownTerm {
                selector: s.to_owned(),
                term: part.clone(),
            });
        };
        terms.push(FieldTerm {
            field: field.trim().to_owned(),
            negated,
            value: unescape_field_value(raw)?,
        });
    }
    Ok(FieldSelector(terms))
}

#[cfg(test)]
mod tests {
    use super::*;
    use k8s_openapi::apimachinery::pkg::apis::meta::v1::LabelSelectorRequirement;

    fn labels(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
        pairs
            .iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
            .collect()
    }

    #[test]
    fn string_selectors() {
        let s =
            parse_label_selector("app=web, tier in (a,b),!canary,env,env!=prod").expect("parses");
        assert!(s.matches(&labels(&[("app", "web"), ("tier", "a"), ("env", "dev")])));
        assert!(!s.matches(&labels(&[("app", "web"), ("tier", "c"), ("env", "dev")])));
        assert!(!s.matches(&labels(&[
            ("app", "web"),
            ("tier", "a"),
            ("env", "dev"),
            ("canary", "1")
        ])));
        assert!(parse_label_selector("a in b").is_err());
        assert_eq!(
            parse_label_selector("a notin ()"),
            Err(SelectorError::EmptySet),
            "an empty set selects nothing and is refused, as upstream"
        );
        assert!(parse_label_selector("-bad=x").is_err());
        assert!(parse_label_selector("").expect("empty").is_everything());
        let g = parse_label_selector("rank>3").expect("gt");
        assert!(g.matches(&labels(&[("rank", "4")])) && !g.matches(&labels(&[("rank", "3")])));
    }

    #[test]
    fn api_selectors() {
        assert!(
            !from_label_selector(None)
                .expect("nil")
                .matches(&labels(&[]))
        );
        assert!(
            from_label_selector(Some(&LabelSelector::default()))
                .expect("empty")
                .matches(&labels(&[("a", "b")]))
        );
        let sel = LabelSelector {
            match_labels: Some([("app".to_owned(), "x".to_owned())].into()),
            match_expressions: Some(vec![LabelSelectorRequirement {
                key: "zone".into(),
                operator: "NotIn".into(),
                values: Some(vec!["a".into()]),
            }]),
        };
        let s = from_label_selector(Some(&sel)).expect("valid");
        assert!(s.matches(&labels(&[("app", "x")])));
        assert!(!s.matches(&labels(&[("app", "x"), ("zone", "a")])));
        let bad = LabelSelector {
            match_expressions: Some(vec![LabelSelectorRequirement {
                key: "k".into(),
                operator: "In".into(),
                values: None,
            }]),
            ..Default::default()
        };
        let errs = validate_label_selector(&bad, &Path::root("spec").child("selector"));
        assert_eq!(
            errs[0].field.as_str(),
            "spec.selector.matchExpressions[0].values"
        );
    }

    #[test]
    fn field_selectors() {
        let f = parse_field_selector("spec.nodeName=node-1,status.phase!=Failed").expect("parses");
        let mut set = BTreeMap::new();
        set.insert("spec.nodeName", "node-1".to_owned());
        set.insert("status.phase", "Running".to_owned());
        assert!(f.matches(&set));
        set.insert("status.phase", "Failed".to_owned());
        assert!(!f.matches(&set));
        assert_eq!(f.equality_value("spec.nodeName"), Some("node-1"));
        let e = parse_field_selector(r"metadata.name=a\,b").expect("escape");
        assert_eq!(e.0[0].value, "a,b");
        assert!(parse_field_selector("nonsense").is_err());
    }
}
