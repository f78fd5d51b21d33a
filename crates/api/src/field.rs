//! Field errors in the exact wording of Kubernetes' `field.Error`, so that clients and users see
//! the messages they know (`spec.selector: Invalid value: ...: empty selector is invalid for daemonset`).

use std::fmt;

/// A path to a field, rendered as `spec.template.spec.containers[0].image`.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Path(String);

impl Path {
    /// The root of an object.
    pub fn root(name: &str) -> Self {
        Path(name.to_owned())
    }
    /// `self.name`
    #[must_use]
    pub fn child(&self, name: &str) -> Self {
        if self.0.is_empty() {
            Path(name.to_owned())
        } else {
            Path(format!("{}.{}", self.0, name))
        }
    }
    /// `self[i]`
    #[must_use]
    pub fn index(&self, i: usize) -> Self {
        Path(format!("{}[{}]", self.0, i))
    }
    /// `self[key]`, for map entries.
    #[must_use]
    pub fn key(&self, key: &str) -> Self {
        Path(format!("{}[{}]", self.0, key))
    }
    /// The rendered path.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for Path {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// The kinds of field error upstream defines, with their `StatusCause` reasons.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ErrorType {
    NotFound,
    Required,
    Duplicate,
    Invalid,
    NotSupported,
    Forbidden,
    TooLong,
    TooMany,
}

impl ErrorType {
    /// The words upstream prints for this type.
    pub fn words(self) -> &'static str {
        match self {
            ErrorType::NotFound => "Not found",
            ErrorType::Required => "Required value",
            ErrorType::Duplicate => "Duplicate value",
            ErrorType::Invalid => "Invalid value",
            ErrorType::NotSupported => "Unsupported value",
            ErrorType::Forbidden => "Forbidden",
            ErrorType::TooLong => "Too long",
            ErrorType::TooMany => "Too many",
        }
    }
    /// The `details.causes[].reason` upstream uses.
    pub fn cause_reason(self) -> &'static str {
        match self {
            ErrorType::NotFound => "FieldValueNotFound",
            ErrorType::Required => "FieldValueRequired",
            ErrorType::Duplicate => "FieldValueDuplicate",
            ErrorType::Invalid => "FieldValueInvalid",
            ErrorType::NotSupported => "FieldValueNotSupported",
            ErrorType::Forbidden => "FieldValueForbidden",
            ErrorType::TooLong => "FieldValueTooLong",
            ErrorType::TooMany => "FieldValueTooMany",
        }
    }
}

/// The offending value as upstream prints it: strings quoted, numbers bare, anything else pre-rendered.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum BadValue {
    None,
    Str(String),
    Int(i64),
    Raw(String),
}

impl fmt::Display for BadValue {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            BadValue::None => Ok(()),
            BadValue::Str(s) => write!(f, "{s:?}"),
            BadValue::Int(i) => write!(f, "{i}"),
            BadValue::Raw(s) => f.write_str(s),
        }
    }
}

impl From<&str> for BadValue {
    fn from(s: &str) -> Self {
        BadValue::Str(s.to_owned())
    }
}
impl From<&String> for BadValue {
    fn from(s: &String) -> Self {
        BadValue::Str(s.clone())
    }
}
impl From<i64> for BadValue {
    fn from(i: i64) -> Self {
        BadValue::Int(i)
    }
}
impl From<i32> for BadValue {
    fn from(i: i32) -> Self {
        BadValue::Int(i64::from(i))
    }
}

/// Renders a string map the way Go's `%#v` does, which is what upstream prints for label maps.
pub fn go_string_map<'a>(map: impl IntoIterator<Item = (&'a String, &'a String)>) -> BadValue {
    let entries: Vec<String> = map
        .into_iter()
        .map(|(k, v)| format!("{k:?}:{v:?}"))
        .collect();
    BadValue::Raw(format!("map[string]string{{{}}}", entries.join(", ")))
}

/// One field error.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct FieldError {
    pub kind: ErrorType,
    pub field: Path,
    pub value: BadValue,
    pub detail: String,
}

impl FieldError {
    fn new(kind: ErrorType, field: &Path, value: BadValue, detail: impl Into<String>) -> Self {
        FieldError {
            kind,
            field: field.clone(),
            value,
            detail: detail.into(),
        }
    }
    pub fn invalid(field: &Path, value: impl Into<BadValue>, detail: impl Into<String>) -> Self {
        Self::new(ErrorType::Invalid, field, value.into(), detail)
    }
    pub fn required(field: &Path, detail: impl Into<String>) -> Self {
        Self::new(ErrorType::Required, field, BadValue::None, detail)
    }
    pub fn forbidden(field: &Path, detail: impl Into<String>) -> Self {
        Self::new(ErrorType::Forbidden, field, BadValue::None, detail)
    }
    pub fn duplicate(field: &Path, value: impl Into<BadValue>) -> Self {
        Self::new(ErrorType::Duplicate, field, value.into(), "")
    }
    pub fn not_found(field: &Path, value: impl Into<BadValue>) -> Self {
        Self::new(ErrorType::NotFound, field, value.into(), "")
    }
    pub fn too_long(field: &Path, max: usize) -> Self {
        Self::new(
            ErrorType::TooLong,
            field,
            BadValue::None,
            format!("must have at most {max} bytes"),
        )
    }
    /// `Unsupported value: "x": supported values: "a", "b"`
    pub fn not_supported(field: &Path, value: impl Into<BadValue>, supported: &[&str]) -> Self {
        let list: Vec<String> = supported.iter().map(|s| format!("{s:?}")).collect();
        Self::new(
            ErrorType::NotSupported,
            field,
            value.into(),
            format!("supported values: {}", list.join(", ")),
        )
    }

    /// Everything after the field path: what `details.causes[].message` carries.
    pub fn body(&self) -> String {
        let mut s = match (self.kind, &self.value) {
            (ErrorType::Required | ErrorType::Forbidden | ErrorType::TooLong, _)
            | (_, BadValue::None) => self.kind.words().to_owned(),
            (kind, value) => format!("{}: {}", kind.words(), value),
        };
        if !self.detail.is_empty() {
            s.push_str(": ");
            s.push_str(&self.detail);
        }
        s
    }
}

impl fmt::Display for FieldError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.field, self.body())
    }
}

/// A list of field errors; empty means valid.
pub type ErrorList = Vec<FieldError>;

/// Upstream's aggregate rendering: one error bare, several in brackets.
pub fn aggregate_message(errors: &[FieldError]) -> String {
    match errors {
        [one] => one.to_string(),
        many => format!(
            "[{}]",
            many.iter()
                .map(ToString::to_string)
                .collect::<Vec<_>>()
                .join(", ")
        ),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn renders_like_upstream() {
        let p = Path::root("spec")
            .child("template")
            .child("spec")
            .child("restartPolicy");
        let e = FieldError::not_supported(&p, "OnFailure", &["Always"]);
        assert_eq!(
            e.to_string(),
            "spec.template.spec.restartPolicy: Unsupported value: \"OnFailure\": supported values: \"Always\""
        );
        let r = FieldError::required(&Path::root("spec").child("containers"), "");
        assert_eq!(r.to_string(), "spec.containers: Required value");
        assert_eq!(
            aggregate_message(&[r.clone(), r.clone()]),
            format!("[{r}, {r}]")
        );
        assert_eq!(Path::root("a").index(0).key("x").as_str(), "a[0][x]");
    }
}
