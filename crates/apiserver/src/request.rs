//! Parsing of resource paths and query parameters.

use crate::error::{ApiError, ApiResult};
use everynode_api::registry::{self, Resource};
use everynode_api::selector::{self, FieldSelector, Selector};

/// A request path resolved to a resource.
#[derive(Debug, Clone)]
pub struct ResourcePath {
    pub res: &'static Resource,
    pub namespace: Option<String>,
    pub name: Option<String>,
    pub subresource: Option<String>,
}

/// Resolves `/api/v1/...` or `/apis/{group}/{version}/...`. `None` when the path names no resource.
pub fn parse_path(path: &str) -> Option<ResourcePath> {
    let segs: Vec<&str> = path
        .trim_matches('/')
        .split('/')
        .filter(|s| !s.is_empty())
        .collect();
    let (group, version, rest) = match segs.as_slice() {
        ["api", version, rest @ ..] => ("", *version, rest),
        ["apis", group, version, rest @ ..] => (*group, *version, rest),
        _ => return None,
    };
    let namespaced_here =
        |plural: &str| registry::find(group, version, plural).filter(|r| r.namespaced);
    let (namespace, rest) = match rest {
        ["namespaces", ns, plural, tail @ ..] if namespaced_here(plural).is_some() => {
            (Some((*ns).to_owned()), {
                let mut v = vec![*plural];
                v.extend_from_slice(tail);
                v
            })
        }
        other => (None, other.to_vec()),
    };
    let (plural, name, sub) = match rest.as_slice() {
        [plural] => (*plural, None, None),
        [plural, name] => (*plural, Some(*name), None),
        [plural, name, sub] => (*plural, Some(*name), Some(*sub)),
        _ => return None,
    };
    let res = registry::find(group, version, plural)?;
    if let Some(s) = sub
        && !res.has_subresource(s)
    {
        return None;
    }
    Some(ResourcePath {
        res,
        namespace,
        name: name.map(str::to_owned),
        subresource: sub.map(str::to_owned),
    })
}

/// Query parameters of a resource request.
#[derive(Debug, Default, Clone)]
pub struct Query(Vec<(String, String)>);

impl Query {
    /// Parses a raw query string.
    pub fn parse(raw: Option<&str>) -> ApiResult<Query> {
        let pairs: Vec<(String, String)> = serde_urlencoded::from_str(raw.unwrap_or(""))
            .map_err(|e| ApiError::bad_request(format!("invalid query string: {e}")))?;
        Ok(Query(pairs))
    }

    /// The last value of a parameter.
    pub fn get(&self, key: &str) -> Option<&str> {
        self.0
            .iter()
            .rev()
            .find(|(k, _)| k == key)
            .map(|(_, v)| v.as_str())
    }

    /// A boolean parameter ("true" or "1").
    pub fn flag(&self, key: &str) -> bool {
        matches!(self.get(key), Some("true" | "1"))
    }

    /// A number parameter, with a 400 naming it when it is not a number.
    pub fn number(&self, key: &str) -> ApiResult<Option<i64>> {
        self.get(key)
            .filter(|v| !v.is_empty())
            .map(|v| {
                v.parse::<i64>().map_err(|_| {
                    ApiError::bad_request(format!(
                        "invalid value {v:?} for query parameter {key}: not an integer"
                    ))
                })
            })
            .transpose()
    }

    /// `dryRun=All`; any other value is refused as upstream does.
    pub fn dry_run(&self) -> ApiResult<bool> {
        let mut dry = false;
        for (k, v) in &self.0 {
            if k == "dryRun" {
                if v != "All" {
                    return Err(ApiError::bad_request(format!(
                        "Invalid dry run value: unsupported dry run value {v:?}, supported values: \"All\""
                    )));
                }
                dry = true;
            }
        }
        Ok(dry)
    }

    /// The label selector.
    pub fn label_selector(&self) -> ApiResult<Selector> {
        selector::parse_label_selector(self.get("labelSelector").unwrap_or(""))
            .map_err(|e| ApiError::bad_request(format!("unable to parse requirement: {e}")))
    }

    /// The field selector, checked against what `res` supports.
    pub fn field_selector(&self, res: &Resource) -> ApiResult<FieldSelector> {
        let f = selector::parse_field_selector(self.get("fieldSelector").unwrap_or(""))
            .map_err(|e| ApiError::bad_request(e.to_string()))?;
        res.check_field_labels(&f)
            .map_err(|e| ApiError::bad_request(e.to_string()))?;
        Ok(f)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn paths() {
        let p = parse_path("/apis/apps/v1/namespaces/default/daemonsets/foo/status")
            .expect("ds status");
        assert_eq!(
            (
                p.res.plural,
                p.namespace.as_deref(),
                p.name.as_deref(),
                p.subresource.as_deref()
            ),
            ("daemonsets", Some("default"), Some("foo"), Some("status"))
        );
        let p = parse_path("/api/v1/namespaces/kube-system").expect("namespace");
        assert_eq!(
            (p.res.plural, p.name.as_deref()),
            ("namespaces", Some("kube-system"))
        );
        let p = parse_path("/api/v1/namespaces/foo/status").expect("namespace status");
        assert_eq!(
            (p.res.plural, p.name.as_deref(), p.subresource.as_deref()),
            ("namespaces", Some("foo"), Some("status"))
        );
        let p = parse_path("/api/v1/namespaces/foo/pods").expect("pods in ns");
        assert_eq!(
            (p.res.plural, p.namespace.as_deref(), p.name),
            ("pods", Some("foo"), None)
        );
        let p = parse_path("/api/v1/pods").expect("all pods");
        assert!(p.namespace.is_none());
        assert!(parse_path("/api/v1/pods/x/bogus").is_none());
        assert!(parse_path("/apis/apps/v2/daemonsets").is_none());
    }

    #[test]
    fn queries() {
        let q = Query::parse(Some(
            "labelSelector=app%3Dweb&limit=5&watch=true&dryRun=All",
        ))
        .expect("parses");
        assert!(q.flag("watch"));
        assert_eq!(q.number("limit").expect("number"), Some(5));
        assert!(q.dry_run().expect("dry"));
        assert!(
            Query::parse(Some("dryRun=Some"))
                .expect("parses")
                .dry_run()
                .is_err()
        );
        assert!(
            Query::parse(Some("limit=x"))
                .expect("parses")
                .number("limit")
                .is_err()
        );
    }
}
