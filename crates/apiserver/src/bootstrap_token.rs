//! Bootstrap tokens, as upstream's authenticator reads them: `<id>.<secret>` (6 and 16
//! characters of `[a-z0-9]`), kept in the Secret `kube-system/bootstrap-token-<id>` of type
//! `bootstrap.kubernetes.io/token`. A valid token is the user `system:bootstrap:<id>` in
//! `system:bootstrappers` and the Secret's `auth-extra-groups`; deleting the Secret or passing
//! its `expiration` ends it. `everynode token create` makes them; `everynode agent --join`
//! spends one on a certificate signing request for the node's own credential.

use crate::authn::UserInfo;
use base64::Engine;
use jiff::Timestamp;
use serde_json::Value;
use std::collections::BTreeMap;

pub const NAMESPACE: &str = "kube-system";
pub const SECRET_PREFIX: &str = "bootstrap-token-";
pub const SECRET_TYPE: &str = "bootstrap.kubernetes.io/token";
pub const GROUP: &str = "system:bootstrappers";
/// The group everynode's node tokens carry, bound to the node-bootstrap roles (kubeadm's is
/// `system:bootstrappers:kubeadm:default-node-token`).
pub const NODE_TOKEN_GROUP: &str = "system:bootstrappers:everynode:default-node-token";

/// The id and secret of a token of the bootstrap form.
pub fn split(token: &str) -> Option<(&str, &str)> {
    let (id, secret) = token.split_once('.')?;
    let lower_alnum = |s: &str, len: usize| {
        s.len() == len
            && s.bytes()
                .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit())
    };
    (lower_alnum(id, 6) && lower_alnum(secret, 16)).then_some((id, secret))
}

fn valid_extra_group(g: &str) -> bool {
    // Upstream: ^system:bootstrappers:[a-z0-9:-]{0,255}[a-z0-9]$
    let Some(rest) = g.strip_prefix("system:bootstrappers:") else {
        return false;
    };
    !rest.is_empty()
        && rest.len() <= 256
        && rest
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b':' || b == b'-')
        && rest
            .bytes()
            .last()
            .is_some_and(|b| b.is_ascii_lowercase() || b.is_ascii_digit())
}

/// The user a bootstrap token stands for, given its Secret, or `None` if the Secret does not
/// make it valid now.
pub fn user_of(secret_obj: &Value, id: &str, secret: &str, now: Timestamp) -> Option<UserInfo> {
    if secret_obj["type"] != SECRET_TYPE
        || secret_obj["metadata"].get("deletionTimestamp").is_some()
    {
        return None;
    }
    let field = |k: &str| -> Option<String> {
        let b64 = secret_obj["data"].get(k)?.as_str()?;
        let bytes = base64::engine::general_purpose::STANDARD.decode(b64).ok()?;
        String::from_utf8(bytes).ok()
    };
    if field("token-id").as_deref() != Some(id)
        || field("usage-bootstrap-authentication").as_deref() != Some("true")
    {
        return None;
    }
    let kept = field("token-secret")?;
    if !crate::authn::same_secret(kept.as_bytes(), secret.as_bytes()) {
        return None;
    }
    if let Some(expiration) = field("expiration") {
        let at: Timestamp = expiration.parse().ok()?;
        if at <= now {
            return None;
        }
    }
    let mut groups = vec![GROUP.to_owned()];
    for g in field("auth-extra-groups")
        .unwrap_or_default()
        .split(',')
        .map(str::trim)
        .filter(|g| !g.is_empty())
    {
        if !valid_extra_group(g) {
            return None;
        }
        groups.push(g.to_owned());
    }
    Some(
        UserInfo {
            name: format!("system:bootstrap:{id}"),
            uid: String::new(),
            groups,
            extra: BTreeMap::new(),
        }
        .authenticated(),
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn secret(data: &[(&str, &str)]) -> Value {
        let b64 = |s: &str| base64::engine::general_purpose::STANDARD.encode(s);
        let data: serde_json::Map<String, Value> = data
            .iter()
            .map(|(k, v)| ((*k).to_owned(), json!(b64(v))))
            .collect();
        json!({"type": SECRET_TYPE, "metadata": {"name": "bootstrap-token-abcdef"}, "data": data})
    }

    const NOW: &str = "2026-11-30T12:00:00Z";

    fn now() -> Timestamp {
        NOW.parse().expect("time")
    }

    #[test]
    fn a_valid_token_is_a_bootstrapper_with_its_extra_groups() {
        assert_eq!(
            split("abcdef.0123456789abcdef"),
            Some(("abcdef", "0123456789abcdef"))
        );
        assert_eq!(split("abcdef.0123456789ABCDEF"), None);
        assert_eq!(split("abcde.0123456789abcdef"), None);
        let s = secret(&[
            ("token-id", "abcdef"),
            ("token-secret", "0123456789abcdef"),
            ("usage-bootstrap-authentication", "true"),
            ("expiration", "2026-12-01T12:00:00Z"),
            ("auth-extra-groups", NODE_TOKEN_GROUP),
        ]);
        let user = user_of(&s, "abcdef", "0123456789abcdef", now()).expect("valid");
        assert_eq!(user.name, "system:bootstrap:abcdef");
        assert_eq!(
            user.groups,
            [GROUP, NODE_TOKEN_GROUP, "system:authenticated"]
        );
        assert!(user_of(&s, "abcdef", "0123456789abcdee", now()).is_none());
        let later = "2026-12-02T00:00:00Z".parse().expect("time");
        assert!(
            user_of(&s, "abcdef", "0123456789abcdef", later).is_none(),
            "expired"
        );
    }

    #[test]
    fn a_token_not_for_authentication_or_with_foreign_groups_is_refused() {
        let base = [("token-id", "abcdef"), ("token-secret", "0123456789abcdef")];
        let signing_only = secret(&[base[0], base[1], ("usage-bootstrap-signing", "true")]);
        assert!(user_of(&signing_only, "abcdef", "0123456789abcdef", now()).is_none());
        let masters = secret(&[
            base[0],
            base[1],
            ("usage-bootstrap-authentication", "true"),
            ("auth-extra-groups", "system:masters"),
        ]);
        assert!(user_of(&masters, "abcdef", "0123456789abcdef", now()).is_none());
    }
}
