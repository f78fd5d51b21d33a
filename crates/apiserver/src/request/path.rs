//! Resource paths: `/api/v1/...` and `/apis/{group}/{version}/...`, namespaced or not, with an
//! optional object name and subresource.

use everynode_api::registry::{self, Resource};

/// A subresource of an object. Each is one variant and one handler.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Subresource {
    /// `status`: read and write the status alone.
    Status,
    /// `pods/binding`: bind a pod to a node.
    Binding,
    /// `pods/log`: a container's log, proxied from the node's agent.
    Log,
    /// `namespaces/finalize`: the namespace's `spec.finalizers`.
    Finalize,
    /// `certificatesigningrequests/approval`: the Approved and Denied conditions.
    Approval,
    /// `daemonsets/placement`: every node and why it has no available pod (beyond.md §7.1).
    Placement,
    /// `daemonsets/preview`: what applying a DaemonSet would do (beyond.md §7.2).
    Preview,
}

impl Subresource {
    /// The subresource a path segment names, when it is one.
    pub fn from_segment(segment: &str) -> Option<Subresource> {
        match segment {
            "status" => Some(Subresource::Status),
            "binding" => Some(Subresource::Binding),
            "log" => Some(Subresource::Log),
            "finalize" => Some(Subresource::Finalize),
            "approval" => Some(Subresource::Approval),
            "placement" => Some(Subresource::Placement),
            "preview" => Some(Subresource::Preview),
            _ => None,
        }
    }

    /// Its path segment.
    pub fn segment(self) -> &'static str {
        match self {
            Subresource::Status => "status",
            Subresource::Binding => "binding",
            Subresource::Log => "log",
            Subresource::Finalize => "finalize",
            Subresource::Approval => "approval",
            Subresource::Placement => "placement",
            Subresource::Preview => "preview",
        }
    }
}

/// A request path resolved to a resource.
#[derive(Debug, Clone)]
pub struct ResourcePath {
    pub res: &'static Resource,
    pub namespace: Option<String>,
    pub name: Option<String>,
    pub subresource: Option<Subresource>,
}

impl ResourcePath {
    /// The namespace, for the functions that take it as an option.
    pub fn namespace(&self) -> Option<&str> {
        self.namespace.as_deref()
    }
}

/// Resolves `/api/v1/...` or `/apis/{group}/{version}/...`. `None` when the path names no
/// served resource, or a subresource the resource does not have.
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
    let subresource = match sub {
        None => None,
        Some(s) if res.has_subresource(s) => Some(Subresource::from_segment(s)?),
        Some(_) => return None,
    };
    Some(ResourcePath {
        res,
        namespace,
        name: name.map(str::to_owned),
        subresource,
    })
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
                p.subresource
            ),
            (
                "daemonsets",
                Some("default"),
                Some("foo"),
                Some(Subresource::Status)
            )
        );
        let p = parse_path("/api/v1/namespaces/kube-system").expect("namespace");
        assert_eq!(
            (p.res.plural, p.name.as_deref()),
            ("namespaces", Some("kube-system"))
        );
        let p = parse_path("/api/v1/namespaces/foo/status").expect("namespace status");
        assert_eq!(
            (p.res.plural, p.name.as_deref(), p.subresource),
            ("namespaces", Some("foo"), Some(Subresource::Status))
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
        // A subresource another resource has is not this one's.
        assert!(parse_path("/apis/apps/v1/namespaces/d/daemonsets/x/binding").is_none());
    }

    #[test]
    fn every_served_subresource_has_a_variant() {
        for res in everynode_api::registry::RESOURCES {
            for sub in res.subresources {
                let variant = Subresource::from_segment(sub)
                    .unwrap_or_else(|| panic!("{}/{sub} has no Subresource variant", res.plural));
                assert_eq!(variant.segment(), *sub);
            }
        }
    }
}
