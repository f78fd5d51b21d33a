//! Image references and kubelet's pull decision, as pure functions: what a container's image
//! name must look like (the distribution reference grammar that kubelet parses with), and
//! whether `imagePullPolicy` asks for a pull given what the node has.

use super::PullPolicy;

/// What to do about a container's image before it starts.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Plan {
    /// The image is on the node and the policy does not ask for a fresh pull.
    UsePresent,
    Pull,
    /// `Never`, and the image is not on the node: `ErrImageNeverPull`.
    NeverPullMissing,
}

/// kubelet's `shouldPullImage`.
pub fn plan(policy: PullPolicy, present: bool) -> Plan {
    match (policy, present) {
        (PullPolicy::Always, _) => Plan::Pull,
        (PullPolicy::IfNotPresent, true) | (PullPolicy::Never, true) => Plan::UsePresent,
        (PullPolicy::IfNotPresent, false) => Plan::Pull,
        (PullPolicy::Never, false) => Plan::NeverPullMissing,
    }
}

/// Checks `image` against the reference grammar (`[domain[:port]/]path[:tag][@digest]`, path
/// components lowercase), returning kubelet's `InvalidImageName` message when it fails.
pub fn validate(image: &str) -> Result<(), String> {
    let fail = |why: &str| {
        Err(format!(
            "Failed to apply default image tag \"{image}\": couldn't parse image name \"{image}\": {why}"
        ))
    };
    if image.is_empty() {
        return fail("invalid reference format");
    }
    if image.len() > 255 + 128 + 80 {
        return fail("invalid reference format");
    }
    let (rest, digest) = match image.split_once('@') {
        Some((r, d)) => (r, Some(d)),
        None => (image, None),
    };
    if let Some(digest) = digest {
        let Some((algorithm, hex)) = digest.split_once(':') else {
            return fail("invalid reference format");
        };
        let algorithm_ok = !algorithm.is_empty()
            && algorithm
                .chars()
                .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || "+._-".contains(c));
        if !algorithm_ok || hex.len() < 32 || !hex.chars().all(|c| c.is_ascii_hexdigit()) {
            return fail("invalid reference format");
        }
    }
    // A tag follows the last ':' that comes after the last '/' (a ':' before it is a port).
    let last_slash = rest.rfind('/').map_or(0, |i| i + 1);
    let (name, tag) = match rest[last_slash..].rfind(':') {
        Some(i) => (&rest[..last_slash + i], Some(&rest[last_slash + i + 1..])),
        None => (rest, None),
    };
    if let Some(tag) = tag {
        let mut chars = tag.chars();
        let first_ok = chars
            .next()
            .is_some_and(|c| c.is_ascii_alphanumeric() || c == '_');
        if !first_ok
            || tag.len() > 128
            || !chars.all(|c| c.is_ascii_alphanumeric() || "_.-".contains(c))
        {
            return fail("invalid reference format");
        }
    }
    if name.len() > 255 {
        return fail("invalid reference format");
    }
    let mut components: Vec<&str> = name.split('/').collect();
    // The first component is a domain when it has a '.' or ':' or is "localhost".
    if components.len() > 1 {
        let first = components[0];
        if first.contains('.') || first.contains(':') || first == "localhost" {
            if !valid_domain(first) {
                return fail("invalid reference format");
            }
            components.remove(0);
        }
    }
    for component in components {
        if component.chars().any(|c| c.is_ascii_uppercase()) {
            return fail("invalid reference format: repository name must be lowercase");
        }
        if !valid_path_component(component) {
            return fail("invalid reference format");
        }
    }
    Ok(())
}

/// `[a-z0-9]+` joined by `.`, `_`, `__` or runs of `-`.
fn valid_path_component(component: &str) -> bool {
    let bytes = component.as_bytes();
    let alnum = |b: u8| b.is_ascii_lowercase() || b.is_ascii_digit();
    if bytes.is_empty() || !alnum(bytes[0]) || !alnum(bytes[bytes.len() - 1]) {
        return false;
    }
    let mut i = 0;
    while i < bytes.len() {
        if alnum(bytes[i]) {
            i += 1;
            continue;
        }
        let start = i;
        while i < bytes.len() && !alnum(bytes[i]) {
            i += 1;
        }
        let separator = &component[start..i];
        let ok = matches!(separator, "." | "_" | "__") || separator.bytes().all(|b| b == b'-');
        if !ok {
            return false;
        }
    }
    true
}

/// A host name (labels of letters, digits and inner '-', joined by '.') with an optional port.
fn valid_domain(domain: &str) -> bool {
    let (host, port) = match domain.rsplit_once(':') {
        Some((h, p)) => (h, Some(p)),
        None => (domain, None),
    };
    if let Some(port) = port
        && (port.is_empty() || !port.chars().all(|c| c.is_ascii_digit()))
    {
        return false;
    }
    !host.is_empty()
        && host.split('.').all(|label| {
            !label.is_empty()
                && !label.starts_with('-')
                && !label.ends_with('-')
                && label.chars().all(|c| c.is_ascii_alphanumeric() || c == '-')
        })
}

/// The registry host an image is pulled from (`docker.io` when the name has no domain), for
/// matching `imagePullSecrets`.
pub fn registry_of(image: &str) -> &str {
    match image.split_once('/') {
        Some((first, _)) if first.contains('.') || first.contains(':') || first == "localhost" => {
            first
        }
        _ => "docker.io",
    }
}

/// The registry credentials in an image pull secret: `kubernetes.io/dockerconfigjson`
/// (`{"auths": {server: {...}}}`) or the older `kubernetes.io/dockercfg` (`{server: {...}}`).
pub fn auth_from_secret(secret: &k8s_openapi::api::core::v1::Secret) -> Vec<super::RegistryAuth> {
    let data = secret.data.clone().unwrap_or_default();
    let entries = if let Some(json) = data.get(".dockerconfigjson") {
        serde_json::from_slice::<serde_json::Value>(&json.0)
            .ok()
            .and_then(|v| v.get("auths").cloned())
    } else if let Some(json) = data.get(".dockercfg") {
        serde_json::from_slice::<serde_json::Value>(&json.0).ok()
    } else {
        None
    };
    let Some(serde_json::Value::Object(entries)) = entries else {
        return Vec::new();
    };
    entries
        .into_iter()
        .map(|(server, entry)| {
            let text = |key: &str| entry[key].as_str().unwrap_or_default().to_owned();
            super::RegistryAuth {
                server,
                username: text("username"),
                password: text("password"),
                auth: text("auth"),
            }
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pull_policy_decides_as_kubelet() {
        use PullPolicy::*;
        assert_eq!(plan(Always, true), Plan::Pull);
        assert_eq!(plan(Always, false), Plan::Pull);
        assert_eq!(plan(IfNotPresent, true), Plan::UsePresent);
        assert_eq!(plan(IfNotPresent, false), Plan::Pull);
        assert_eq!(plan(Never, true), Plan::UsePresent);
        assert_eq!(plan(Never, false), Plan::NeverPullMissing);
    }

    #[test]
    fn references_users_write_are_valid() {
        for ok in [
            "busybox",
            "busybox:1.36",
            "docker.io/local/busybox:1",
            "registry.k8s.io/pause:3.9",
            "localhost:5000/team/agent:v1.2.3-rc.1",
            "quay.io/prometheus/node-exporter@sha256:0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef",
            "fluent/fluentd-kubernetes-daemonset:v1.17-debian-elasticsearch8-1",
            "ghcr.io/a__b/c.d-e",
        ] {
            assert_eq!(validate(ok), Ok(()), "{ok}");
        }
    }

    #[test]
    fn malformed_references_get_kubelets_message() {
        for bad in [
            "",
            "Busybox",
            "busybox:",
            "busybox::1",
            "bad image",
            "-lead",
            "a//b",
            "busybox@sha256:xyz",
            "busybox:.tag",
        ] {
            let message = validate(bad).expect_err(bad);
            assert!(
                message.starts_with(&format!("Failed to apply default image tag \"{bad}\"")),
                "{message}"
            );
        }
        assert!(
            validate("Busybox")
                .expect_err("uppercase")
                .ends_with("repository name must be lowercase")
        );
    }

    #[test]
    fn pull_secrets_yield_registry_credentials() {
        let config = serde_json::json!({"auths": {"registry.example:5000": {"username": "u", "password": "p", "auth": "dTpw"}}});
        let secret: k8s_openapi::api::core::v1::Secret =
            serde_json::from_value(serde_json::json!({
                "type": "kubernetes.io/dockerconfigjson",
                "data": {".dockerconfigjson": base64_of(&config.to_string())},
            }))
            .expect("a secret");
        let auth = auth_from_secret(&secret);
        assert_eq!(auth.len(), 1);
        assert_eq!(auth[0].server, "registry.example:5000");
        assert_eq!(
            (auth[0].username.as_str(), auth[0].password.as_str()),
            ("u", "p")
        );
    }

    fn base64_of(text: &str) -> String {
        use base64::Engine;
        base64::engine::general_purpose::STANDARD.encode(text)
    }

    #[test]
    fn registry_is_the_domain_or_docker_hub() {
        assert_eq!(registry_of("busybox"), "docker.io");
        assert_eq!(registry_of("library/busybox:1"), "docker.io");
        assert_eq!(registry_of("localhost:5000/x"), "localhost:5000");
        assert_eq!(registry_of("quay.io/a/b"), "quay.io");
    }
}
