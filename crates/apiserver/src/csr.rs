//! The certificate signing request controllers: upstream's `csrapproving` (approves node client
//! requests whose requester may ask for them, by SubjectAccessReview) and `csrsigning` (issues
//! approved client requests with the cluster CA). Upstream runs both in the controller manager
//! with the CA key; they are here because the server holds the CA, as the root-CA publisher is.
//! This is how `everynode agent --join` turns a bootstrap token into a node's own certificate.

use crate::authn::UserInfo;
use crate::authz::attributes::Attributes;
use crate::credentials::CsrSigner;
use crate::error::ApiResult;
use crate::registry::{Registry, UpdateMode, Write};
use everynode_api::csr::{
    self as rules, APPROVED, DENIED, FAILED, KUBE_APISERVER_CLIENT_KUBELET_SIGNER,
    KUBE_APISERVER_CLIENT_SIGNER,
};
use everynode_api::registry::{self, Kind};
use everynode_api::selector::{FieldSelector, Selector};
use serde_json::{Value, json};
use std::sync::Arc;
use std::time::Duration;

/// Records who asked (upstream's strategy sets `spec.username`, `uid`, `groups` and `extra`
/// from the request's user; whatever the client sent is replaced). Writes the server makes
/// itself run outside a request and keep what they were given.
pub fn record_requestor(csr: &mut Value) {
    let Ok(user) = crate::authn::REQUEST_USER.try_with(Clone::clone) else {
        return;
    };
    let spec = &mut csr["spec"];
    spec["username"] = json!(user.name);
    spec["uid"] = json!(user.uid);
    spec["groups"] = json!(user.groups);
    if user.extra.is_empty() {
        if let Some(o) = spec.as_object_mut() {
            o.remove("extra");
        }
    } else {
        spec["extra"] = json!(user.extra);
    }
}

fn requestor(csr: &Value) -> UserInfo {
    let spec = &csr["spec"];
    let strings = |v: &Value| -> Vec<String> {
        v.as_array()
            .into_iter()
            .flatten()
            .filter_map(|s| s.as_str().map(str::to_owned))
            .collect()
    };
    UserInfo {
        name: spec["username"].as_str().unwrap_or("").to_owned(),
        uid: spec["uid"].as_str().unwrap_or("").to_owned(),
        groups: strings(&spec["groups"]),
        extra: spec["extra"]
            .as_object()
            .map(|m| m.iter().map(|(k, v)| (k.clone(), strings(v))).collect())
            .unwrap_or_default(),
    }
}

fn usages(csr: &Value) -> Vec<String> {
    csr["spec"]["usages"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|u| u.as_str().map(str::to_owned))
        .collect()
}

fn request_pem(csr: &Value) -> Option<String> {
    use base64::Engine;
    let b64 = csr["spec"]["request"].as_str()?;
    let bytes = base64::engine::general_purpose::STANDARD.decode(b64).ok()?;
    String::from_utf8(bytes).ok()
}

/// Whom the request asks a certificate for, when it parses and its signature holds.
fn requested_identity(csr: &Value) -> Option<rules::RequestedIdentity> {
    let pem = request_pem(csr)?;
    everynode_api::validation::csr::parse_request(pem.as_bytes()).ok()
}

/// What the approver does with a request: upstream approves only kubelet client requests,
/// and only for a requester allowed `create` on `certificatesigningrequests/nodeclient`
/// (any node name) or, when it asks for its own name, `.../selfnodeclient`.
#[derive(Debug, PartialEq, Eq)]
enum Approval {
    Approve,
    Leave,
}

fn approval(authz: &crate::authz::Authorizer, csr: &Value) -> Approval {
    let decided = rules::has_condition(csr, APPROVED) || rules::has_condition(csr, DENIED);
    if decided || csr["spec"]["signerName"] != KUBE_APISERVER_CLIENT_KUBELET_SIGNER {
        return Approval::Leave;
    }
    let Some(identity) = requested_identity(csr) else {
        return Approval::Leave;
    };
    if rules::kubelet_client_problem(&identity, &usages(csr)).is_some() {
        return Approval::Leave;
    }
    let user = requestor(csr);
    let may = |sub: &str| {
        let a = Attributes::resource(
            "create",
            "certificates.k8s.io",
            "certificatesigningrequests",
            sub,
            "",
            "",
        );
        authz.authorize(&user, &a).allowed()
    };
    let own = user.name == identity.common_name;
    if (own && may("selfnodeclient")) || may("nodeclient") {
        Approval::Approve
    } else {
        Approval::Leave
    }
}

async fn approve(api: &Registry, name: &str) -> ApiResult<Value> {
    let res = registry::by_kind(Kind::CertificateSigningRequest);
    let write = Write {
        res,
        namespace: None,
        name,
        mode: UpdateMode::Approval,
        dry_run: false,
        manager: Some("kube-controller-manager"),
    };
    api.update_with(&write, &|current| {
        let mut new = current.clone();
        let mut list = current["status"]["conditions"]
            .as_array()
            .cloned()
            .unwrap_or_default();
        list.push(json!({
            "type": APPROVED,
            "status": "True",
            "reason": "AutoApproved",
            "message": "Auto approving kubelet client certificate after SubjectAccessReview.",
        }));
        new["status"]["conditions"] = json!(list);
        Ok(new)
    })
    .await
}

/// What the signer does with a request.
#[derive(Debug, PartialEq, Eq)]
enum Signing {
    /// Issue, valid for this long.
    Issue(Duration),
    /// Mark it Failed for this reason.
    Fail(&'static str),
    Leave,
}

fn signing(csr: &Value, max_duration: Duration) -> Signing {
    let signer = csr["spec"]["signerName"].as_str().unwrap_or("");
    let done = csr["status"]
        .get("certificate")
        .and_then(Value::as_str)
        .is_some_and(|c| !c.is_empty())
        || rules::has_condition(csr, FAILED);
    if done || !rules::has_condition(csr, APPROVED) {
        return Signing::Leave;
    }
    let problem = match signer {
        KUBE_APISERVER_CLIENT_KUBELET_SIGNER => match requested_identity(csr) {
            Some(identity) => rules::kubelet_client_problem(&identity, &usages(csr)),
            None => Some("the request does not parse"),
        },
        KUBE_APISERVER_CLIENT_SIGNER => rules::kube_apiserver_client_problem(&usages(csr)),
        // Another signer's request: not ours to sign or fail.
        _ => return Signing::Leave,
    };
    if let Some(why) = problem {
        return Signing::Fail(why);
    }
    let asked = csr["spec"]["expirationSeconds"]
        .as_u64()
        .map_or(max_duration, Duration::from_secs);
    Signing::Issue(asked.min(max_duration))
}

async fn write_status(
    api: &Registry,
    name: &str,
    change: &(dyn Fn(&mut Value) + Send + Sync),
) -> ApiResult<Value> {
    let res = registry::by_kind(Kind::CertificateSigningRequest);
    let write = Write {
        res,
        namespace: None,
        name,
        mode: UpdateMode::Status,
        dry_run: false,
        manager: Some("kube-controller-manager"),
    };
    api.update_with(&write, &|current| {
        let mut new = current.clone();
        if !new["status"].is_object() {
            new["status"] = json!({});
        }
        change(&mut new);
        Ok(new)
    })
    .await
}

async fn sign(api: &Registry, signer: &CsrSigner, csr: &Value, valid_for: Duration) {
    let name = csr["metadata"]["name"].as_str().unwrap_or("");
    let now = api.clock.now();
    let result = request_pem(csr)
        .ok_or_else(|| "the request is not PEM".to_owned())
        .and_then(|pem| {
            signer
                .sign(&pem, &usages(csr), now, valid_for)
                .map_err(|e| e.to_string())
        });
    let written = match result {
        Ok(cert) => {
            use base64::Engine;
            let b64 = base64::engine::general_purpose::STANDARD.encode(cert);
            write_status(api, name, &|new| new["status"]["certificate"] = json!(b64)).await
        }
        Err(why) => fail(api, name, &why).await,
    };
    if let Err(e) = written {
        tracing::debug!(csr = name, error = %e, "could not record the signed certificate");
    }
}

async fn fail(api: &Registry, name: &str, why: &str) -> ApiResult<Value> {
    write_status(api, name, &|new| {
        let mut list = new["status"]["conditions"]
            .as_array()
            .cloned()
            .unwrap_or_default();
        list.push(json!({"type": FAILED, "status": "True",
            "reason": "SignerValidationFailure", "message": why}));
        new["status"]["conditions"] = json!(list);
    })
    .await
}

fn all_requests(api: &Registry) -> Vec<Value> {
    let res = registry::by_kind(Kind::CertificateSigningRequest);
    let filter = Registry::filter(res, None, Selector::everything(), FieldSelector::default());
    api.cache
        .list(&filter, None, 0)
        .items
        .into_iter()
        .filter_map(|o| serde_json::from_slice(&o.json).ok())
        .collect()
}

/// Approves and signs forever: at once when a request changes, and every ten seconds.
pub async fn run(api: Arc<Registry>, signer: Arc<CsrSigner>, max_duration: Duration) {
    let mut changes = crate::namespaces::Changes::new(
        Arc::clone(&api),
        vec![(Kind::CertificateSigningRequest, None)],
    );
    loop {
        for csr in all_requests(&api) {
            let name = csr["metadata"]["name"].as_str().unwrap_or("").to_owned();
            if approval(&api.authz, &csr) == Approval::Approve {
                if let Err(e) = approve(&api, &name).await {
                    tracing::debug!(csr = name, error = %e, "could not approve");
                }
                // The approved request comes back through the watch and is signed then.
                continue;
            }
            match signing(&csr, max_duration) {
                Signing::Issue(valid_for) => sign(&api, &signer, &csr, valid_for).await,
                Signing::Fail(why) => {
                    if let Err(e) = fail(&api, &name, why).await {
                        tracing::debug!(csr = name, error = %e, "could not mark failed");
                    }
                }
                Signing::Leave => {}
            }
        }
        changes.next(Duration::from_secs(10)).await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn approved(signer: &str, usages: Value) -> Value {
        json!({"spec": {"signerName": signer, "usages": usages, "request": ""},
               "status": {"conditions": [{"type": "Approved", "status": "True"}]}})
    }

    #[test]
    fn the_signer_honours_the_shorter_of_its_limit_and_the_request() {
        let year = Duration::from_secs(365 * 86_400);
        let mut csr = approved(
            KUBE_APISERVER_CLIENT_SIGNER,
            json!(["client auth", "digital signature"]),
        );
        assert_eq!(signing(&csr, year), Signing::Issue(year));
        csr["spec"]["expirationSeconds"] = json!(3600);
        assert_eq!(
            signing(&csr, year),
            Signing::Issue(Duration::from_secs(3600))
        );
        let server = approved(KUBE_APISERVER_CLIENT_SIGNER, json!(["server auth"]));
        assert_eq!(
            signing(&server, year),
            Signing::Fail("invalid usage for client certificate")
        );
        let other = approved("example.com/mine", json!(["client auth"]));
        assert_eq!(signing(&other, year), Signing::Leave);
        let mut pending = csr.clone();
        pending["status"] = json!({});
        assert_eq!(signing(&pending, year), Signing::Leave);
        let mut issued = csr;
        issued["status"]["certificate"] = json!("Q0VSVA==");
        assert_eq!(signing(&issued, year), Signing::Leave);
    }
}
