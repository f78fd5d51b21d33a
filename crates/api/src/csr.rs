//! CertificateSigningRequests (`certificates.k8s.io/v1`): the registry's rules for their status
//! and approval subresources, and the checks the built-in signers make on a request. The rules
//! are upstream's (`pkg/registry/certificates/certificates/strategy.go`,
//! `pkg/apis/certificates/v1/helpers.go`), written here from their documented behaviour.

use serde_json::{Value, json};

/// Signs client certificates for the API server (any user a requester may name).
pub const KUBE_APISERVER_CLIENT_SIGNER: &str = "kubernetes.io/kube-apiserver-client";
/// Signs node client certificates (`system:node:<name>` in `system:nodes`).
pub const KUBE_APISERVER_CLIENT_KUBELET_SIGNER: &str =
    "kubernetes.io/kube-apiserver-client-kubelet";

/// The key usages a request may ask for (upstream's `KeyUsage` values).
pub const KEY_USAGES: &[&str] = &[
    "signing",
    "digital signature",
    "content commitment",
    "key encipherment",
    "key agreement",
    "data encipherment",
    "cert sign",
    "crl sign",
    "encipher only",
    "decipher only",
    "any",
    "server auth",
    "client auth",
    "code signing",
    "email protection",
    "s/mime",
    "ipsec end system",
    "ipsec tunnel",
    "ipsec user",
    "timestamping",
    "ocsp signing",
    "microsoft sgc",
    "netscape sgc",
];

/// The conditions a request's approval is made of; `Failed` is the signer's.
pub const APPROVED: &str = "Approved";
pub const DENIED: &str = "Denied";
pub const FAILED: &str = "Failed";

fn conditions(csr: &Value) -> Vec<Value> {
    csr["status"]["conditions"]
        .as_array()
        .cloned()
        .unwrap_or_default()
}

/// Whether the request carries a condition of `kind` with status True.
pub fn has_condition(csr: &Value, kind: &str) -> bool {
    conditions(csr)
        .iter()
        .any(|c| c["type"] == kind && c["status"] == "True")
}

/// Keeps exactly the old conditions of `kind` in `new`, where they were (upstream's
/// `preserveConditionInstances`): the subresource being written may not touch them.
fn preserve_conditions(new: &mut Value, old: &Value, kind: &str) {
    let mut kept: Vec<Value> = conditions(new)
        .into_iter()
        .filter(|c| c["type"] != kind)
        .collect();
    kept.extend(conditions(old).into_iter().filter(|c| c["type"] == kind));
    set_conditions(new, kept);
}

fn set_conditions(csr: &mut Value, list: Vec<Value>) {
    if !csr["status"].is_object() {
        csr["status"] = json!({});
    }
    if list.is_empty() {
        if let Some(status) = csr["status"].as_object_mut() {
            status.remove("conditions");
        }
    } else {
        csr["status"]["conditions"] = Value::Array(list);
    }
}

/// Fills unset condition times: `lastUpdateTime` is now; `lastTransitionTime` is the old one
/// of the same type and status when there is one, else now.
fn populate_condition_times(new: &mut Value, old: &Value, now: &str) {
    let old_conditions = conditions(old);
    let mut list = conditions(new);
    for c in &mut list {
        let unset = |v: &Value| v.as_str().is_none_or(str::is_empty);
        if unset(&c["lastUpdateTime"]) {
            c["lastUpdateTime"] = json!(now);
        }
        if unset(&c["lastTransitionTime"]) {
            let earlier = old_conditions
                .iter()
                .find(|o| o["type"] == c["type"] && o["status"] == c["status"])
                .and_then(|o| o["lastTransitionTime"].as_str())
                .filter(|t| !t.is_empty());
            c["lastTransitionTime"] = json!(earlier.unwrap_or(now));
        }
    }
    if !list.is_empty() {
        set_conditions(new, list);
    }
}

/// A create: status is the server's (no request arrives approved).
pub fn prepare_for_create(csr: &mut Value) {
    if let Some(o) = csr.as_object_mut() {
        o.remove("status");
    }
}

/// An update of the main resource changes metadata only.
pub fn prepare_for_update(new: &mut Value, old: &Value) {
    new["spec"] = old["spec"].clone();
    match old.get("status") {
        Some(s) => new["status"] = s.clone(),
        None => {
            if let Some(o) = new.as_object_mut() {
                o.remove("status");
            }
        }
    }
}

/// `/status` (the signer's): the certificate and conditions other than Approved and Denied.
pub fn prepare_for_status_update(new: &mut Value, old: &Value, now: &str) {
    new["spec"] = old["spec"].clone();
    preserve_conditions(new, old, APPROVED);
    preserve_conditions(new, old, DENIED);
    populate_condition_times(new, old, now);
}

/// `/approval` (the approver's): conditions only; the certificate and Failed stay.
pub fn prepare_for_approval_update(new: &mut Value, old: &Value, now: &str) {
    new["spec"] = old["spec"].clone();
    if !new["status"].is_object() {
        new["status"] = json!({});
    }
    match old["status"].get("certificate") {
        Some(cert) => new["status"]["certificate"] = cert.clone(),
        None => {
            if let Some(status) = new["status"].as_object_mut() {
                status.remove("certificate");
            }
        }
    }
    preserve_conditions(new, old, FAILED);
    populate_condition_times(new, old, now);
}

/// What a parsed request asks to be certified, for the signers' checks.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct RequestedIdentity {
    pub common_name: String,
    pub organizations: Vec<String>,
    pub dns_names: Vec<String>,
    pub ip_addresses: Vec<String>,
    pub email_addresses: Vec<String>,
    pub uris: Vec<String>,
}

/// Why a request cannot be signed by the kubelet client signer.
pub fn kubelet_client_problem(
    identity: &RequestedIdentity,
    usages: &[String],
) -> Option<&'static str> {
    if identity.organizations != ["system:nodes"] {
        return Some("subject organization is not system:nodes");
    }
    if !identity.common_name.starts_with("system:node:") {
        return Some("subject common name does not begin with system:node:");
    }
    if !identity.dns_names.is_empty()
        || !identity.ip_addresses.is_empty()
        || !identity.email_addresses.is_empty()
        || !identity.uris.is_empty()
    {
        return Some("DNS, IP, email and URI subjectAltNames are not allowed");
    }
    // Upstream allows exactly these usage sets: RSA keys need key encipherment, ECDSA and
    // Ed25519 keys do not.
    let mut sorted: Vec<&str> = usages.iter().map(String::as_str).collect();
    sorted.sort_unstable();
    sorted.dedup();
    let allowed: [&[&str]; 2] = [
        &["client auth", "digital signature", "key encipherment"],
        &["client auth", "digital signature"],
    ];
    if !allowed.contains(&sorted.as_slice()) {
        return Some(
            "usages did not match [digital signature client auth] or [digital signature key encipherment client auth]",
        );
    }
    None
}

/// Why a request cannot be signed by the API-server client signer.
pub fn kube_apiserver_client_problem(usages: &[String]) -> Option<&'static str> {
    let ok = |u: &String| {
        matches!(
            u.as_str(),
            "client auth" | "digital signature" | "key encipherment"
        )
    };
    if !usages.iter().any(|u| u == "client auth") || !usages.iter().all(ok) {
        return Some("invalid usage for client certificate");
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    fn csr(conditions: Value) -> Value {
        json!({"spec": {"request": "UEVN", "signerName": KUBE_APISERVER_CLIENT_SIGNER},
               "status": {"conditions": conditions, "certificate": "Q0VSVA=="}})
    }

    #[test]
    fn the_signer_cannot_approve_and_the_approver_cannot_issue() {
        let old = csr(json!([]));
        let mut by_signer = csr(json!([{"type": "Approved", "status": "True"}]));
        by_signer["spec"]["signerName"] = json!("someone/else");
        prepare_for_status_update(&mut by_signer, &old, "T");
        assert!(!has_condition(&by_signer, APPROVED));
        assert_eq!(
            by_signer["spec"]["signerName"],
            KUBE_APISERVER_CLIENT_SIGNER
        );

        let old = json!({"spec": {}, "status": {}});
        let mut by_approver = csr(json!([{"type": "Approved", "status": "True"},
                                         {"type": "Failed", "status": "True"}]));
        prepare_for_approval_update(&mut by_approver, &old, "T");
        assert!(has_condition(&by_approver, APPROVED));
        assert!(!has_condition(&by_approver, FAILED));
        assert!(by_approver["status"].get("certificate").is_none());
        let c = &by_approver["status"]["conditions"][0];
        assert_eq!(
            (
                c["lastUpdateTime"].as_str(),
                c["lastTransitionTime"].as_str()
            ),
            (Some("T"), Some("T"))
        );
    }

    #[test]
    fn a_kept_condition_keeps_its_transition_time() {
        let old =
            csr(json!([{"type": "Approved", "status": "True", "lastTransitionTime": "EARLY"}]));
        let mut new = csr(json!([{"type": "Approved", "status": "True"}]));
        prepare_for_approval_update(&mut new, &old, "NOW");
        assert_eq!(
            new["status"]["conditions"][0]["lastTransitionTime"],
            "EARLY"
        );
        assert_eq!(new["status"]["conditions"][0]["lastUpdateTime"], "NOW");
    }

    #[test]
    fn kubelet_client_requests_name_one_node_and_nothing_else() {
        let node = RequestedIdentity {
            common_name: "system:node:n1".into(),
            organizations: vec!["system:nodes".into()],
            ..RequestedIdentity::default()
        };
        let usages = |u: &[&str]| u.iter().map(|s| s.to_string()).collect::<Vec<_>>();
        assert_eq!(
            kubelet_client_problem(&node, &usages(&["digital signature", "client auth"])),
            None
        );
        assert_eq!(
            kubelet_client_problem(
                &node,
                &usages(&["key encipherment", "digital signature", "client auth"])
            ),
            None
        );
        assert!(
            kubelet_client_problem(
                &node,
                &usages(&["client auth", "server auth", "digital signature"])
            )
            .is_some()
        );
        let admin = RequestedIdentity {
            organizations: vec!["system:masters".into()],
            ..node.clone()
        };
        assert_eq!(
            kubelet_client_problem(&admin, &usages(&["digital signature", "client auth"])),
            Some("subject organization is not system:nodes")
        );
        let with_san = RequestedIdentity {
            dns_names: vec!["evil".into()],
            ..node
        };
        assert!(
            kubelet_client_problem(&with_san, &usages(&["digital signature", "client auth"]))
                .is_some()
        );
    }
}
