//! `GET pods/{name}/log`: resolves the container and the pod's node, then proxies to the node
//! agent's `/containerLogs` endpoint over mutually authenticated HTTPS (`agent_client`), streaming the answer
//! (so `kubectl logs -f` follows). Upstream's messages for the cases kubectl users meet.

use crate::error::{ApiError, ApiResult};
use crate::registry::Registry;
use crate::request::ResourcePath;
use crate::request::options::LogOptions;
use axum::body::Body;
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use everynode_api::node_endpoint::CERTIFICATE_ANNOTATION;
use everynode_api::registry::{self};
use futures::StreamExt;
use serde_json::Value;
use std::sync::Arc;

fn names(list: &Value) -> Vec<String> {
    list.as_array()
        .into_iter()
        .flatten()
        .filter_map(|c| c["name"].as_str().map(str::to_owned))
        .collect()
}

/// Which container's log to read: the one asked for, the pod's only container, or the one the
/// `kubectl.kubernetes.io/default-container` annotation names.
pub(crate) fn pick_container(pod: &Value, asked: Option<&str>) -> ApiResult<String> {
    let name = pod["metadata"]["name"].as_str().unwrap_or_default();
    let containers = names(&pod["spec"]["containers"]);
    let init = names(&pod["spec"]["initContainers"]);
    if let Some(c) = asked.filter(|c| !c.is_empty()) {
        if containers.iter().chain(&init).any(|n| n == c) {
            return Ok(c.to_owned());
        }
        return Err(ApiError::bad_request(format!(
            "container {c} is not valid for pod {name}"
        )));
    }
    if let Some(default) =
        pod["metadata"]["annotations"]["kubectl.kubernetes.io/default-container"].as_str()
        && containers.iter().any(|n| n == default)
    {
        return Ok(default.to_owned());
    }
    match containers.as_slice() {
        [only] => Ok(only.clone()),
        _ => {
            let mut message = format!(
                "a container name must be specified for pod {name}, choose one of: [{}]",
                containers.join(" ")
            );
            if !init.is_empty() {
                message.push_str(&format!(
                    " or one of the init containers: [{}]",
                    init.join(" ")
                ));
            }
            Err(ApiError::bad_request(message))
        }
    }
}

/// The agent's address for `node`: its InternalIP (else any address) and kubelet endpoint port.
pub(crate) fn agent_address(node: &Value) -> Option<String> {
    let addresses = node["status"]["addresses"].as_array()?;
    let ip = addresses
        .iter()
        .find(|a| a["type"] == "InternalIP")
        .or_else(|| addresses.first())?["address"]
        .as_str()?;
    let port = node["status"]["daemonEndpoints"]["kubeletEndpoint"]["Port"].as_i64()?;
    let host = if ip.contains(':') {
        format!("[{ip}]")
    } else {
        ip.to_owned()
    };
    Some(format!("{host}:{port}"))
}

pub async fn handle(
    api: &Arc<Registry>,
    path: &ResourcePath,
    name: &str,
    options: &LogOptions,
) -> ApiResult<Response> {
    let namespace = path.namespace().unwrap_or("default");
    let pods = registry::find("", "v1", "pods").ok_or_else(ApiError::no_route)?;
    options.validate()?;
    let pod = api.get(pods, Some(namespace), name, false).await?;
    let container = pick_container(&pod, options.container.as_deref())?;
    let response = open(api, &pod, &container, options).await?;
    let stream = response
        .bytes_stream()
        .map(|chunk| chunk.map_err(std::io::Error::other));
    Ok((
        [(header::CONTENT_TYPE, "text/plain")],
        Body::from_stream(stream),
    )
        .into_response())
}

/// Opens one container's log at its node's agent, with `options` passed on.
pub async fn open(
    api: &Registry,
    pod: &Value,
    container: &str,
    options: &LogOptions,
) -> ApiResult<reqwest::Response> {
    let nodes = registry::find("", "v1", "nodes").ok_or_else(ApiError::no_route)?;
    let namespace = pod["metadata"]["namespace"].as_str().unwrap_or("default");
    let name = pod["metadata"]["name"].as_str().unwrap_or_default();
    let Some(node_name) = pod["spec"]["nodeName"].as_str().filter(|n| !n.is_empty()) else {
        return Err(ApiError::bad_request(format!(
            "pod \"{name}\" does not have a host assigned"
        )));
    };
    let node = api.get(nodes, None, node_name, false).await?;
    let Some(address) = agent_address(&node) else {
        return Err(ApiError::bad_request(format!(
            "node \"{node_name}\" has no agent endpoint to read logs from"
        )));
    };
    let mut url = format!("https://{address}/containerLogs/{namespace}/{name}/{container}");
    let passed = options.agent_query();
    if !passed.is_empty() {
        url.push('?');
        url.push_str(&serde_urlencoded::to_string(&passed).unwrap_or_default());
    }
    let Some(pin) = node["metadata"]["annotations"][CERTIFICATE_ANNOTATION].as_str() else {
        return Err(ApiError::bad_request(format!(
            "node \"{node_name}\" does not publish its agent's certificate ({CERTIFICATE_ANNOTATION}); logs are read only from an agent that does: restart the node's agent, which publishes it when it registers"
        )));
    };
    let identity = api.options.agent_client.as_ref().ok_or_else(|| {
        ApiError::internal("this server has no client certificate for node agents")
    })?;
    let client = identity
        .pinned_to(pin)
        .map_err(|e| ApiError::internal(e.to_string()))?;
    let response = client.get(&url).send().await.map_err(|e| {
        ApiError::internal(format!(
            "Get \"{url}\": cannot reach the agent of node \"{node_name}\": {e}"
        ))
    })?;
    let status = response.status();
    if !status.is_success() {
        let text = response.text().await.unwrap_or_default();
        let code =
            StatusCode::from_u16(status.as_u16()).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
        let mut err = ApiError::bad_request(text.trim().to_owned());
        err.code = if code == StatusCode::UNAUTHORIZED {
            StatusCode::INTERNAL_SERVER_ERROR
        } else {
            code
        };
        if err.code == StatusCode::NOT_FOUND {
            err.reason = "NotFound";
        }
        return Err(err);
    }
    Ok(response)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn container_choice_follows_upstream() {
        let pod = json!({"metadata": {"name": "p"}, "spec": {"containers": [{"name": "a"}, {"name": "b"}], "initContainers": [{"name": "i"}]}});
        assert_eq!(
            pick_container(&pod, None).map_err(|e| e.message),
            Err("a container name must be specified for pod p, choose one of: [a b] or one of the init containers: [i]".into())
        );
        assert_eq!(
            pick_container(&pod, Some("i")).map_err(|e| e.message),
            Ok("i".into())
        );
        assert_eq!(
            pick_container(&pod, Some("z")).map_err(|e| e.message),
            Err("container z is not valid for pod p".into())
        );
        let one = json!({"metadata": {"name": "p"}, "spec": {"containers": [{"name": "a"}]}});
        assert_eq!(
            pick_container(&one, None).map_err(|e| e.message),
            Ok("a".into())
        );
    }

    #[test]
    fn agent_address_uses_internal_ip_and_kubelet_port() {
        let node = json!({"status": {"addresses": [{"type": "Hostname", "address": "n1"}, {"type": "InternalIP", "address": "127.0.0.1"}],
            "daemonEndpoints": {"kubeletEndpoint": {"Port": 40001}}}});
        assert_eq!(agent_address(&node), Some("127.0.0.1:40001".into()));
    }
}
