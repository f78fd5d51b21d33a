//! Each verb's options, decoded from the query as upstream's `metav1` options are: `ListOptions`
//! (which also serves a watch), `GetOptions`, `CreateOptions`, `UpdateOptions`, `PatchOptions`,
//! `DeleteOptions` (query and body) and `PodLogOptions`.

use super::query::Query;
use crate::error::{ApiError, ApiResult};
use everynode_api::registry::Resource;
use everynode_api::selector::{self, FieldSelector, Selector};
use serde::Deserialize;
use serde::de::{self, Deserializer};
use std::time::Duration;

/// The longest a watch may be asked to last; longer asks are cut to this, so a huge
/// `timeoutSeconds` cannot overflow a deadline.
const MAX_WATCH_TIMEOUT: Duration = Duration::from_secs(365 * 24 * 3600);

/// The most characters of a field manager's name, as upstream allows.
const MAX_FIELD_MANAGER: usize = 128;

/// A boolean parameter, converted as upstream converts one: only `0` and `false` (in any case)
/// are false; any other value, the empty one included, is true.
fn flag<'de, D: Deserializer<'de>>(d: D) -> Result<bool, D::Error> {
    let v = String::deserialize(d)?;
    Ok(!(v == "0" || v.eq_ignore_ascii_case("false")))
}

/// An integer parameter; an empty value counts as absent.
fn integer<'de, D: Deserializer<'de>>(d: D) -> Result<Option<i64>, D::Error> {
    let v = String::deserialize(d)?;
    if v.is_empty() {
        return Ok(None);
    }
    v.parse::<i64>()
        .map(Some)
        .map_err(|_| de::Error::custom(format!("{v:?} is not an integer")))
}

/// A string parameter; an empty value counts as absent.
fn text<'de, D: Deserializer<'de>>(d: D) -> Result<Option<String>, D::Error> {
    let v = String::deserialize(d)?;
    Ok((!v.is_empty()).then_some(v))
}

/// `dryRun`: every value must be `All`.
fn dry_run<'de, D: Deserializer<'de>>(d: D) -> Result<bool, D::Error> {
    let values = Vec::<String>::deserialize(d)?;
    for v in &values {
        if v != "All" {
            return Err(de::Error::custom(format!(
                "Invalid dry run value: unsupported dry run value {v:?}, supported values: \"All\""
            )));
        }
    }
    Ok(!values.is_empty())
}

/// Deserializes one of a parameter's accepted words; the empty value is the default.
fn one_of<'de, D: Deserializer<'de>, T: Copy + Default>(
    d: D,
    words: &[(&str, T)],
) -> Result<T, D::Error> {
    let v = String::deserialize(d)?;
    if v.is_empty() {
        return Ok(T::default());
    }
    words
        .iter()
        .find(|(word, _)| *word == v)
        .map(|(_, t)| *t)
        .ok_or_else(|| {
            let accepted: Vec<&str> = words.iter().map(|(w, _)| *w).collect();
            de::Error::custom(format!("{v:?} is not one of {}", accepted.join(", ")))
        })
}

/// `resourceVersionMatch`: how a list's `resourceVersion` is read.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum ResourceVersionMatch {
    /// Unset: upstream's legacy meaning (at least the given version, or any for "0").
    #[default]
    Unset,
    /// At least as new as the given version.
    NotOlderThan,
    /// Exactly the given version.
    Exact,
}

impl<'de> Deserialize<'de> for ResourceVersionMatch {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        use ResourceVersionMatch::*;
        one_of(d, &[("NotOlderThan", NotOlderThan), ("Exact", Exact)])
    }
}

/// `fieldValidation`: what a write does with fields the schema does not declare or repeats.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum FieldValidation {
    Ignore,
    /// Upstream's default since v1.23.
    #[default]
    Warn,
    Strict,
}

impl<'de> Deserialize<'de> for FieldValidation {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        use FieldValidation::*;
        one_of(d, &[("Ignore", Ignore), ("Warn", Warn), ("Strict", Strict)])
    }
}

/// `includeObject`: what each row of a Table carries.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum IncludeObjectPolicy {
    None,
    #[default]
    Metadata,
    Object,
}

impl<'de> Deserialize<'de> for IncludeObjectPolicy {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        use IncludeObjectPolicy::*;
        one_of(
            d,
            &[("None", None), ("Metadata", Metadata), ("Object", Object)],
        )
    }
}

/// The options of a list or a watch (upstream's `ListOptions` serves both).
#[derive(Clone, Debug, Default, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ListOptions {
    #[serde(default, deserialize_with = "text")]
    pub label_selector: Option<String>,
    #[serde(default, deserialize_with = "text")]
    pub field_selector: Option<String>,
    #[serde(default, deserialize_with = "flag")]
    pub watch: bool,
    #[serde(default, deserialize_with = "flag")]
    pub allow_watch_bookmarks: bool,
    #[serde(default, deserialize_with = "text")]
    pub resource_version: Option<String>,
    #[serde(default)]
    pub resource_version_match: ResourceVersionMatch,
    #[serde(default, deserialize_with = "integer")]
    pub timeout_seconds: Option<i64>,
    #[serde(default, deserialize_with = "integer")]
    pub limit: Option<i64>,
    #[serde(default, rename = "continue", deserialize_with = "text")]
    pub continue_token: Option<String>,
    #[serde(default, deserialize_with = "flag")]
    pub send_initial_events: bool,
    #[serde(default)]
    pub include_object: IncludeObjectPolicy,
}

impl ListOptions {
    /// The label selector; an unparsable one is a 400 with upstream's wording.
    pub fn labels(&self) -> ApiResult<Selector> {
        selector::parse_label_selector(self.label_selector.as_deref().unwrap_or(""))
            .map_err(|e| ApiError::bad_request(format!("unable to parse requirement: {e}")))
    }

    /// The field selector, checked against what `res` can be selected by.
    pub fn fields(&self, res: &Resource) -> ApiResult<FieldSelector> {
        let f = selector::parse_field_selector(self.field_selector.as_deref().unwrap_or(""))
            .map_err(|e| ApiError::bad_request(e.to_string()))?;
        res.check_field_labels(&f)
            .map_err(|e| ApiError::bad_request(e.to_string()))?;
        Ok(f)
    }

    /// How long a watch lasts: `timeoutSeconds` when positive, at most a year.
    pub fn watch_timeout(&self) -> Option<Duration> {
        self.timeout_seconds
            .filter(|t| *t > 0)
            .map(|t| Duration::from_secs(t as u64).min(MAX_WATCH_TIMEOUT))
    }
}

/// The options of a get.
#[derive(Clone, Debug, Default, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct GetOptions {
    #[serde(default, deserialize_with = "text")]
    pub resource_version: Option<String>,
    #[serde(default)]
    pub include_object: IncludeObjectPolicy,
}

impl GetOptions {
    /// `resourceVersion=0`: any cached version will do.
    pub fn any_version(&self) -> bool {
        self.resource_version.as_deref() == Some("0")
    }
}

/// The options of a create or an update (upstream's `CreateOptions` and `UpdateOptions` carry
/// the same fields).
#[derive(Clone, Debug, Default, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct WriteOptions {
    #[serde(default, deserialize_with = "dry_run")]
    pub dry_run: bool,
    #[serde(default, deserialize_with = "text")]
    pub field_manager: Option<String>,
    #[serde(default)]
    pub field_validation: FieldValidation,
}

/// `CreateOptions`.
pub type CreateOptions = WriteOptions;
/// `UpdateOptions`.
pub type UpdateOptions = WriteOptions;

impl WriteOptions {
    /// The `fieldManager` asked for, when given: at most 128 characters.
    pub fn requested_manager(&self) -> ApiResult<Option<&str>> {
        match self.field_manager.as_deref() {
            Some(m) if m.len() > MAX_FIELD_MANAGER => Err(ApiError::bad_request(format!(
                "invalid fieldManager: may not be more than {MAX_FIELD_MANAGER} characters, got {}",
                m.len()
            ))),
            other => Ok(other),
        }
    }

    /// The field manager of the write: `fieldManager`, else the client's user agent up to its
    /// first `/` (upstream's default), so kubectl's `kubectl-edit`, `kubectl-label`, ... own
    /// what they set.
    pub fn manager(&self, user_agent: &str) -> ApiResult<String> {
        if let Some(m) = self.requested_manager()? {
            return Ok(m.to_owned());
        }
        let prefix: String = user_agent
            .split('/')
            .next()
            .unwrap_or("")
            .chars()
            .take(MAX_FIELD_MANAGER)
            .collect();
        Ok(if prefix.is_empty() {
            "unknown".to_owned()
        } else {
            prefix
        })
    }
}

/// The options of a patch: a write's, and `force` for server-side apply.
#[derive(Clone, Debug, Default, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct PatchOptions {
    #[serde(flatten)]
    pub write: WriteOptions,
    #[serde(default, deserialize_with = "force")]
    pub force: Option<bool>,
}

/// `force` is `true` or `false`, nothing else.
fn force<'de, D: Deserializer<'de>>(d: D) -> Result<Option<bool>, D::Error> {
    match String::deserialize(d)?.as_str() {
        "true" => Ok(Some(true)),
        "false" => Ok(Some(false)),
        other => Err(de::Error::custom(format!(
            "{other:?} is neither true nor false"
        ))),
    }
}

/// What a delete asks for, from the query and the `DeleteOptions` body.
#[derive(Clone, Debug, Default)]
pub struct DeleteOptions {
    pub grace_period_seconds: Option<i64>,
    pub propagation_policy: Option<String>,
    pub precondition_uid: Option<String>,
    pub precondition_rv: Option<String>,
    pub dry_run: bool,
}

/// The query half of a delete's options.
#[derive(Clone, Debug, Default, Deserialize)]
#[serde(rename_all = "camelCase")]
struct DeleteQuery {
    #[serde(default, deserialize_with = "dry_run")]
    dry_run: bool,
    #[serde(default, deserialize_with = "integer")]
    grace_period_seconds: Option<i64>,
    #[serde(default, deserialize_with = "text")]
    propagation_policy: Option<String>,
    #[serde(default, deserialize_with = "optional_flag")]
    orphan_dependents: Option<bool>,
}

fn optional_flag<'de, D: Deserializer<'de>>(d: D) -> Result<Option<bool>, D::Error> {
    flag(d).map(Some)
}

/// The body half: `metav1.DeleteOptions` as JSON.
#[derive(Clone, Debug, Default, Deserialize)]
#[serde(rename_all = "camelCase")]
struct DeleteBody {
    grace_period_seconds: Option<i64>,
    propagation_policy: Option<String>,
    preconditions: Option<Preconditions>,
    orphan_dependents: Option<bool>,
    #[serde(default)]
    dry_run: Vec<String>,
}

#[derive(Clone, Debug, Default, Deserialize)]
#[serde(rename_all = "camelCase")]
struct Preconditions {
    uid: Option<String>,
    resource_version: Option<String>,
}

impl DeleteOptions {
    /// Reads the options from the query and the body (which may be empty); the query wins where
    /// both say something, and `orphanDependents` maps to a propagation policy.
    pub fn from_request(query: &Query, body: &[u8]) -> ApiResult<DeleteOptions> {
        let q: DeleteQuery = query.decode()?;
        let b: DeleteBody = if body.starts_with(everynode_apimachinery::protobuf::MAGIC) {
            // client-go sends DeleteOptions as protobuf when it speaks protobuf (Helm does).
            let decoded = everynode_apimachinery::protobuf::decode(body).map_err(|e| {
                ApiError::bad_request(format!("couldn't decode DeleteOptions: {e}"))
            })?;
            serde_json::from_value(decoded)
                .map_err(|e| ApiError::bad_request(format!("couldn't decode DeleteOptions: {e}")))?
        } else if body.iter().any(|c| !c.is_ascii_whitespace()) {
            serde_json::from_slice(body)
                .map_err(|e| ApiError::bad_request(format!("couldn't decode DeleteOptions: {e}")))?
        } else {
            DeleteBody::default()
        };
        let preconditions = b.preconditions.unwrap_or_default();
        let mut opts = DeleteOptions {
            grace_period_seconds: q.grace_period_seconds.or(b.grace_period_seconds),
            propagation_policy: q.propagation_policy.or(b.propagation_policy),
            precondition_uid: preconditions.uid,
            precondition_rv: preconditions.resource_version,
            dry_run: q.dry_run || b.dry_run.iter().any(|d| d == "All"),
        };
        match (
            q.orphan_dependents.or(b.orphan_dependents),
            &opts.propagation_policy,
        ) {
            (Some(_), Some(_)) => {
                return Err(ApiError::bad_request(
                    "orphanDependents and deletionPropagation cannot be both set",
                ));
            }
            (Some(true), None) => opts.propagation_policy = Some("Orphan".into()),
            (Some(false), None) => opts.propagation_policy = Some("Background".into()),
            _ => {}
        }
        Ok(opts)
    }
}

/// The options of `pods/log` (upstream's `PodLogOptions`).
#[derive(Clone, Debug, Default, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct LogOptions {
    #[serde(default, deserialize_with = "text")]
    pub container: Option<String>,
    #[serde(default, deserialize_with = "flag")]
    pub follow: bool,
    #[serde(default, deserialize_with = "flag")]
    pub previous: bool,
    #[serde(default, deserialize_with = "integer")]
    pub tail_lines: Option<i64>,
    #[serde(default, deserialize_with = "integer")]
    pub since_seconds: Option<i64>,
    #[serde(default, deserialize_with = "text")]
    pub since_time: Option<String>,
    #[serde(default, deserialize_with = "flag")]
    pub timestamps: bool,
    #[serde(default, deserialize_with = "integer")]
    pub limit_bytes: Option<i64>,
}

impl LogOptions {
    /// Upstream's checks: `tailLines` not negative, `sinceSeconds` and `limitBytes` positive.
    pub fn validate(&self) -> ApiResult<()> {
        for (key, value, zero_allowed) in [
            ("tailLines", self.tail_lines, true),
            ("sinceSeconds", self.since_seconds, false),
            ("limitBytes", self.limit_bytes, false),
        ] {
            if value.is_some_and(|n| n < 0 || (!zero_allowed && n == 0)) {
                return Err(ApiError::bad_request(format!(
                    "{key}: Invalid value: must be greater than 0"
                )));
            }
        }
        Ok(())
    }

    /// The parameters the agent's `/containerLogs` endpoint takes, as it reads them.
    pub fn agent_query(&self) -> Vec<(&'static str, String)> {
        let mut out = Vec::new();
        let mut flag = |key: &'static str, on: bool| {
            if on {
                out.push((key, "true".to_owned()));
            }
        };
        flag("follow", self.follow);
        flag("previous", self.previous);
        flag("timestamps", self.timestamps);
        for (key, value) in [
            ("tailLines", self.tail_lines),
            ("sinceSeconds", self.since_seconds),
            ("limitBytes", self.limit_bytes),
        ] {
            if let Some(v) = value {
                out.push((key, v.to_string()));
            }
        }
        if let Some(t) = &self.since_time {
            out.push(("sinceTime", t.clone()));
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn query(raw: &str) -> Query {
        Query::parse(Some(raw)).expect("a query string")
    }

    #[test]
    fn list_options_read_upstreams_forms() {
        let o: ListOptions = query("labelSelector=app%3Dweb&limit=5&watch=1&watch=false")
            .decode()
            .expect("decodes");
        assert_eq!(o.label_selector.as_deref(), Some("app=web"));
        assert_eq!(o.limit, Some(5));
        assert!(
            o.watch,
            "the first value counts; any value but 0 and false is true"
        );
        let o: ListOptions = query("watch=FALSE&allowWatchBookmarks=")
            .decode()
            .expect("decodes");
        assert!(!o.watch);
        assert!(
            o.allow_watch_bookmarks,
            "an empty value is true, as upstream"
        );
        let o: ListOptions = query("unknownParameter=x").decode().expect("ignored");
        assert!(!o.watch);
    }

    #[test]
    fn bad_values_name_the_parameter_and_its_form() {
        let e = query("limit=x")
            .decode::<ListOptions>()
            .expect_err("not a number");
        assert_eq!(
            e.message,
            "invalid query parameter \"limit\": \"x\" is not an integer"
        );
        let e = query("timeoutSeconds=abc")
            .decode::<ListOptions>()
            .expect_err("not a number");
        assert!(e.message.contains("\"timeoutSeconds\""), "{}", e.message);
        let e = query("resourceVersionMatch=Bogus")
            .decode::<ListOptions>()
            .expect_err("not a match rule");
        assert!(
            e.message.contains("resourceVersionMatch") && e.message.contains("Exact"),
            "{}",
            e.message
        );
        let e = query("fieldValidation=Loose")
            .decode::<WriteOptions>()
            .expect_err("not a validation level");
        assert!(e.message.contains("Strict"), "{}", e.message);
        let e = query("dryRun=All&dryRun=Some")
            .decode::<WriteOptions>()
            .expect_err("every dryRun must be All");
        assert!(
            e.message.contains("unsupported dry run value \"Some\""),
            "{}",
            e.message
        );
        assert!(
            query("force=yes").decode::<PatchOptions>().is_err(),
            "force is true or false"
        );
    }

    #[test]
    fn write_options() {
        let o: WriteOptions = query("dryRun=All&fieldManager=me&fieldValidation=Strict")
            .decode()
            .expect("decodes");
        assert!(o.dry_run);
        assert_eq!(o.field_validation, FieldValidation::Strict);
        assert_eq!(o.manager("kubectl/v1.33").expect("manager"), "me");
        let o = WriteOptions::default();
        assert_eq!(
            o.manager("kubectl-edit/v1.33 (linux)").expect("m"),
            "kubectl-edit"
        );
        assert_eq!(o.manager("").expect("m"), "unknown");
        let long = format!("fieldManager={}", "m".repeat(129));
        let o: WriteOptions = query(&long).decode().expect("decodes");
        assert!(o.manager("").is_err());
        let o: PatchOptions = query("force=true&fieldManager=x")
            .decode()
            .expect("decodes");
        assert_eq!(
            (o.force, o.write.field_manager.as_deref()),
            (Some(true), Some("x"))
        );
    }

    #[test]
    fn a_huge_watch_timeout_is_cut_to_a_year() {
        let o: ListOptions = query("timeoutSeconds=9223372036854775807")
            .decode()
            .expect("decodes");
        assert_eq!(o.watch_timeout(), Some(MAX_WATCH_TIMEOUT));
    }

    #[test]
    fn delete_options_from_query_and_body() {
        let o = DeleteOptions::from_request(
            &query("gracePeriodSeconds=5"),
            br#"{"propagationPolicy":"Foreground","preconditions":{"uid":"u"},"dryRun":["All"]}"#,
        )
        .expect("decodes");
        assert_eq!(o.grace_period_seconds, Some(5));
        assert_eq!(o.propagation_policy.as_deref(), Some("Foreground"));
        assert_eq!(o.precondition_uid.as_deref(), Some("u"));
        assert!(o.dry_run);
        let o = DeleteOptions::from_request(&query("orphanDependents=true"), b"").expect("ok");
        assert_eq!(o.propagation_policy.as_deref(), Some("Orphan"));
        assert!(
            DeleteOptions::from_request(
                &query("orphanDependents=true&propagationPolicy=Background"),
                b""
            )
            .is_err()
        );
    }
}
