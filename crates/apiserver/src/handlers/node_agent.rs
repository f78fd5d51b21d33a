//! The agent of a pod's node, as the streaming subresources (exec, attach, port-forward) reach
//! it: its address and the certificate its Node publishes, over the mutually authenticated
//! agent channel.

use super::log::agent_address;
use crate::agent_client::{AgentSocket, WebSocketRefusal};
use crate::error::{ApiError, ApiResult};
use crate::registry::Registry;
use axum::http::StatusCode;
use everynode_api::node_endpoint::CERTIFICATE_ANNOTATION;
use everynode_api::registry;
use std::sync::Arc;

pub struct NodeAgent {
    api: Arc<Registry>,
    pub node: String,
    pin: String,
    address: String,
}

impl NodeAgent {
    /// The agent of `node_name`; `action` names what the client asked for, for the error.
    pub async fn of_node(api: Arc<Registry>, node_name: &str, action: &str) -> ApiResult<Self> {
        let node = match registry::find("", "v1", "nodes") {
            Some(nodes) => api.get(nodes, None, node_name, false).await?,
            None => return Err(ApiError::no_route()),
        };
        let (Some(address), Some(pin)) = (
            agent_address(&node),
            node["metadata"]["annotations"][CERTIFICATE_ANNOTATION].as_str(),
        ) else {
            return Err(ApiError::bad_request(format!(
                "node \"{node_name}\" has no agent endpoint to {action} through"
            )));
        };
        if api.options.agent_client.is_none() {
            return Err(ApiError::internal(
                "this server has no client certificate for node agents",
            ));
        }
        Ok(NodeAgent {
            pin: pin.to_owned(),
            address,
            node: node_name.to_owned(),
            api,
        })
    }

    /// A WebSocket to `path_and_query` on the agent, asking for `protocol`.
    pub async fn websocket(
        &self,
        path_and_query: &str,
        protocol: &str,
    ) -> Result<AgentSocket, WebSocketRefusal> {
        let Some(identity) = self.api.options.agent_client.as_ref() else {
            return Err(WebSocketRefusal::Unreachable(
                "this server has no client certificate for node agents".into(),
            ));
        };
        identity
            .websocket(&self.pin, &self.address, path_and_query, protocol)
            .await
    }

    /// The error a client gets when the agent refused or could not be reached.
    pub fn refusal(&self, refusal: WebSocketRefusal) -> ApiError {
        match refusal {
            WebSocketRefusal::Refused { status, text } => {
                let mut e = ApiError::bad_request(text);
                if status == 404 {
                    e.code = StatusCode::NOT_FOUND;
                    e.reason = "NotFound";
                }
                e
            }
            WebSocketRefusal::Unreachable(why) => ApiError::internal(format!(
                "cannot reach the agent of node \"{}\": {why}",
                self.node
            )),
        }
    }
}
