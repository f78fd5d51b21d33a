//! ServiceAccounts as upstream runs them: a `default` ServiceAccount in every namespace (the
//! service-account controller), the `ServiceAccount` admission plugin (a pod names an existing
//! account and gets the projected `kube-api-access-*` volume with a bound token, `ca.crt` and
//! `namespace`, unless `automountServiceAccountToken` says no), and the TokenRequest API.

use crate::authn::UserInfo;
use crate::authz::node::node_of;
use crate::body;
use crate::error::{ApiError, ApiResult};
use crate::registry::Registry;
use crate::response::json as respond;
use crate::service_account_token::{
    Claims, DEFAULT_EXPIRATION_SECONDS, ISSUER, KubernetesClaims, MIN_EXPIRATION_SECONDS,
    ObjectRef, user_name,
};
use axum::body::Bytes;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use everynode_api::field::{FieldError, Path as FieldPath};
use everynode_api::registry::{self, Kind, Resource};
use everynode_clock::format_time;
use serde_json::{Value, json};
use std::sync::Arc;
use std::time::Duration;

/// Where the token, `ca.crt` and `namespace` are mounted in every container.
pub const MOUNT_PATH: &str = "/var/run/secrets/kubernetes.io/serviceaccount";
/// The token lifetime kubelet asks for (an hour and seven seconds, as upstream's admission
/// writes it).
const PROJECTED_EXPIRATION_SECONDS: i64 = 3607;

/// Keeps a `default` ServiceAccount in every namespace that is not being deleted.
pub async fn run_default_accounts(api: Arc<Registry>) {
    let sa_res = registry::by_kind(Kind::ServiceAccount);
    let mut changes = crate::namespaces::Changes::new(
        Arc::clone(&api),
        vec![
            (Kind::Namespace, None),
            (Kind::ServiceAccount, Some("default")),
        ],
    );
    loop {
        let namespaces = crate::namespaces::active(&api);
        for ns in namespaces {
            if api
                .cache
                .object(Kind::ServiceAccount, Some(&ns), "default")
                .is_none()
            {
                let sa = json!({"apiVersion": "v1", "kind": "ServiceAccount", "metadata": {"name": "default", "namespace": ns}});
                if let Err(e) = api.create(sa_res, Some(&ns), sa, false, None).await
                    && e.code != StatusCode::CONFLICT
                {
                    tracing::debug!(namespace = %ns, error = %e.message, "could not create the default ServiceAccount");
                }
            }
        }
        changes.next(Duration::from_secs(10)).await;
    }
}

/// The `ServiceAccount` admission plugin for a pod being created.
pub async fn admit_pod(api: &Registry, pods: &'static Resource, pod: &mut Value) -> ApiResult<()> {
    let namespace = pod["metadata"]["namespace"]
        .as_str()
        .unwrap_or("")
        .to_owned();
    let pod_name = pod["metadata"]["name"].as_str().unwrap_or("").to_owned();
    let account = pod["spec"]["serviceAccountName"]
        .as_str()
        .filter(|s| !s.is_empty())
        .unwrap_or("default")
        .to_owned();
    // Mirror pods of static manifests are left as written, as upstream does.
    if pod["metadata"]["annotations"]
        .get(crate::authz::node::MIRROR_ANNOTATION)
        .is_some()
    {
        return Ok(());
    }
    // The controller makes `default` moments after the namespace; give it a second.
    let mut sa = api
        .cache
        .object(Kind::ServiceAccount, Some(&namespace), &account);
    if sa.is_none() && account == "default" {
        for _ in 0..20 {
            tokio::time::sleep(Duration::from_millis(50)).await;
            sa = api
                .cache
                .object(Kind::ServiceAccount, Some(&namespace), &account);
            if sa.is_some() {
                break;
            }
        }
    }
    let Some(sa) = sa else {
        return Err(ApiError::forbidden(
            pods,
            &pod_name,
            &format!(
                "error looking up service account {namespace}/{account}: serviceaccount \"{account}\" not found"
            ),
        ));
    };
    if let Some(spec) = pod["spec"].as_object_mut() {
        spec.insert("serviceAccountName".into(), json!(account));
        spec.insert("serviceAccount".into(), json!(account));
    }
    let automount = pod["spec"]["automountServiceAccountToken"]
        .as_bool()
        .or_else(|| sa["automountServiceAccountToken"].as_bool())
        .unwrap_or(true);
    if automount {
        mount_token(pod);
    }
    Ok(())
}

/// Adds `kube-api-access-<random>` and mounts it in every container that does not already
/// mount something at [`MOUNT_PATH`].
fn mount_token(pod: &mut Value) {
    let name = crate::registry::generate_name("kube-api-access-");
    let volume = json!({
        "name": name,
        "projected": {
            "defaultMode": 420,
            "sources": [
                {"serviceAccountToken": {"expirationSeconds": PROJECTED_EXPIRATION_SECONDS, "path": "token"}},
                {"configMap": {"name": crate::root_ca::CONFIG_MAP, "items": [{"key": "ca.crt", "path": "ca.crt"}]}},
                {"downwardAPI": {"items": [{"path": "namespace", "fieldRef": {"apiVersion": "v1", "fieldPath": "metadata.namespace"}}]}},
            ],
        },
    });
    let Some(spec) = pod["spec"].as_object_mut() else {
        return;
    };
    let mut mounted = false;
    for list in ["initContainers", "containers"] {
        for container in spec
            .get_mut(list)
            .and_then(Value::as_array_mut)
            .into_iter()
            .flatten()
        {
            let mounts = container
                .as_object_mut()
                .map(|c| c.entry("volumeMounts").or_insert(json!([])));
            let Some(mounts) = mounts.and_then(Value::as_array_mut) else {
                continue;
            };
            if mounts.iter().any(|m| m["mountPath"] == MOUNT_PATH) {
                continue;
            }
            mounts.push(json!({"name": name, "readOnly": true, "mountPath": MOUNT_PATH}));
            mounted = true;
        }
    }
    if mounted && let Some(volumes) = spec.entry("volumes").or_insert(json!([])).as_array_mut() {
        volumes.push(volume);
    }
}

fn token_request_invalid(name: &str, errors: &[FieldError]) -> ApiError {
    ApiError::invalid_kind("authentication.k8s.io", "TokenRequest", name, errors)
}

/// `POST /api/v1/namespaces/{namespace}/serviceaccounts/{name}/token`: a token for the
/// account, bound to a pod when the request names one.
pub async fn token_request(
    State(api): State<Arc<Registry>>,
    Path((namespace, name)): Path<(String, String)>,
    user: Option<axum::Extension<UserInfo>>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let serve = async {
        let mut request = body::object(&headers, &body)?;
        let sa_res = registry::by_kind(Kind::ServiceAccount);
        let sa = api
            .cache
            .object(Kind::ServiceAccount, Some(&namespace), &name)
            .ok_or_else(|| ApiError::not_found(sa_res, &name))?;
        let spec = request["spec"].clone();
        let expiration = spec["expirationSeconds"]
            .as_i64()
            .unwrap_or(DEFAULT_EXPIRATION_SECONDS);
        if expiration < MIN_EXPIRATION_SECONDS {
            return Err(token_request_invalid(
                &name,
                &[FieldError::invalid(
                    &FieldPath::root("spec").child("expirationSeconds"),
                    expiration,
                    "may not specify a duration less than 10 minutes",
                )],
            ));
        }
        let audiences: Vec<String> = spec["audiences"]
            .as_array()
            .map(|a| {
                a.iter()
                    .filter_map(Value::as_str)
                    .map(str::to_owned)
                    .collect()
            })
            .filter(|a: &Vec<String>| !a.is_empty())
            .unwrap_or_else(|| vec![ISSUER.to_owned()]);
        let mut claims_k8s = KubernetesClaims {
            namespace: namespace.clone(),
            serviceaccount: ObjectRef {
                name: name.clone(),
                uid: sa["metadata"]["uid"].as_str().unwrap_or("").to_owned(),
            },
            ..KubernetesClaims::default()
        };
        let bound = &spec["boundObjectRef"];
        let bound_pod = match bound["kind"].as_str() {
            None | Some("") => None,
            Some("Pod") => {
                let pod_name = bound["name"].as_str().unwrap_or("");
                let pods = registry::by_kind(Kind::Pod);
                let pod = api
                    .cache
                    .object(Kind::Pod, Some(&namespace), pod_name)
                    .ok_or_else(|| ApiError::not_found(pods, pod_name))?;
                let uid = pod["metadata"]["uid"].as_str().unwrap_or("").to_owned();
                if let Some(want) = bound["uid"].as_str().filter(|u| !u.is_empty())
                    && want != uid
                {
                    return Err(ApiError::conflict(
                        pods,
                        pod_name,
                        &format!(
                            "the UID in the bound object reference ({want}) does not match the UID in record. The object might have been deleted and then recreated"
                        ),
                    ));
                }
                claims_k8s.pod = Some(ObjectRef {
                    name: pod_name.to_owned(),
                    uid,
                });
                if let Some(node) = pod["spec"]["nodeName"].as_str() {
                    let node_uid = api
                        .cache
                        .object(Kind::Node, None, node)
                        .and_then(|n| n["metadata"]["uid"].as_str().map(str::to_owned))
                        .unwrap_or_default();
                    claims_k8s.node = Some(ObjectRef {
                        name: node.to_owned(),
                        uid: node_uid,
                    });
                }
                Some(pod)
            }
            Some(other) => {
                return Err(token_request_invalid(
                    &name,
                    &[FieldError::not_supported(
                        &FieldPath::root("spec")
                            .child("boundObjectRef")
                            .child("kind"),
                        other,
                        &["Pod"],
                    )],
                ));
            }
        };
        // NodeRestriction: an agent asks only for tokens bound to its own pods.
        if let Some(axum::Extension(user)) = &user
            && let Some(node) = node_of(user)
        {
            let own = bound_pod
                .as_ref()
                .is_some_and(|p| p["spec"]["nodeName"].as_str() == Some(node));
            if !own {
                return Err(crate::authz::forbidden_status(
                    "",
                    "serviceaccounts",
                    &name,
                    &format!("node requested token not bound to a pod scheduled on node {node:?}"),
                ));
            }
        }
        let now = api.clock.now().as_second();
        let claims = Claims {
            iss: ISSUER.to_owned(),
            sub: user_name(&namespace, &name),
            aud: audiences.clone(),
            exp: now + expiration,
            iat: now,
            nbf: now,
            jti: uuid::Uuid::new_v4().to_string(),
            kubernetes: claims_k8s,
        };
        let token = api
            .token_issuer
            .issue(&claims)
            .ok_or_else(|| ApiError::internal("could not sign the token"))?;
        let expires = jiff::Timestamp::from_second(claims.exp)
            .map(format_time)
            .unwrap_or_default();
        request["metadata"] = json!({"name": name, "namespace": namespace, "creationTimestamp": format_time(api.clock.now())});
        request["spec"]["audiences"] = json!(audiences);
        request["spec"]["expirationSeconds"] = json!(expiration);
        request["status"] = json!({"token": token, "expirationTimestamp": expires});
        Ok::<_, ApiError>(respond(StatusCode::CREATED, &request))
    };
    serve.await.unwrap_or_else(IntoResponse::into_response)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_token_volume_is_mounted_in_every_container_once() {
        let mut pod = json!({"spec": {
            "initContainers": [{"name": "i"}],
            "containers": [{"name": "a"}, {"name": "b", "volumeMounts": [{"name": "own", "mountPath": MOUNT_PATH}]}]}});
        mount_token(&mut pod);
        let volumes = pod["spec"]["volumes"].as_array().expect("volumes");
        assert_eq!(volumes.len(), 1);
        let name = volumes[0]["name"].as_str().expect("name");
        assert!(name.starts_with("kube-api-access-") && name.len() == "kube-api-access-".len() + 5);
        assert_eq!(
            volumes[0]["projected"]["sources"][0]["serviceAccountToken"]["path"],
            "token"
        );
        assert_eq!(
            pod["spec"]["initContainers"][0]["volumeMounts"][0]["name"],
            name
        );
        assert_eq!(
            pod["spec"]["containers"][0]["volumeMounts"][0]["mountPath"],
            MOUNT_PATH
        );
        assert_eq!(
            pod["spec"]["containers"][1]["volumeMounts"]
                .as_array()
                .map(Vec::len),
            Some(1)
        );
    }
}
