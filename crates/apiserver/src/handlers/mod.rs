//! One handler per verb and per subresource. [`endpoint`] decides which serves a request, from
//! the method and the typed path alone; [`serve`] decodes the options the endpoint takes and
//! calls it.

mod binding;
mod create;
mod delete;
pub mod exec;
mod exec_spdy;
mod finalize;
mod get;
pub mod list;
pub mod log;
mod merged_log;
mod node_agent;
pub mod patch;
pub mod placement;
pub mod port_forward;
pub mod preview;
mod update;
mod upgrade;
mod watch;

use crate::error::{ApiError, ApiResult};
use crate::registry::{Registry, UpdateMode};
use crate::request::options::ListOptions;
use crate::request::{ResourceRequest, Subresource};
use axum::body::Bytes;
use axum::http::{HeaderMap, Method};
use axum::response::Response;
use std::sync::Arc;

/// What a request asks of a resource.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Endpoint<'a> {
    List,
    Watch,
    Create,
    DeleteCollection,
    /// Read one object, or its status (the same object).
    Get(&'a str),
    /// Replace one object's main part or its status.
    Update(&'a str, UpdateMode),
    /// Patch (or server-side apply) one object's main part or its status.
    Patch(&'a str, UpdateMode),
    Delete(&'a str),
    /// `pods/binding`.
    Bind(&'a str),
    /// `namespaces/finalize`.
    Finalize(&'a str),
    /// `pods/log`.
    Log(&'a str),
    /// `daemonsets/placement`.
    Placement(&'a str),
    /// `daemonsets/preview`.
    Preview(&'a str),
}

/// The endpoint for `method` on the path, or `None` when the method is not allowed there.
/// `watch` is the request's `watch` parameter, which turns a list into a watch.
pub fn endpoint<'a>(
    method: &Method,
    name: Option<&'a str>,
    subresource: Option<Subresource>,
    watch: bool,
) -> Option<Endpoint<'a>> {
    use Subresource::{Approval, Binding, Finalize, Log, Placement, Preview, Status};
    let part = |sub: Option<Subresource>| match sub {
        Some(Status) => UpdateMode::Status,
        Some(Approval) => UpdateMode::Approval,
        _ => UpdateMode::Main,
    };
    Some(match (method.as_str(), name, subresource) {
        ("GET", None, None) if watch => Endpoint::Watch,
        ("GET", None, None) => Endpoint::List,
        ("POST", None, None) => Endpoint::Create,
        ("DELETE", None, None) => Endpoint::DeleteCollection,
        ("GET", Some(n), None | Some(Status | Approval)) => Endpoint::Get(n),
        ("PUT", Some(n), sub @ (None | Some(Status | Approval))) => Endpoint::Update(n, part(sub)),
        ("PATCH", Some(n), sub @ (None | Some(Status | Approval))) => Endpoint::Patch(n, part(sub)),
        ("DELETE", Some(n), None) => Endpoint::Delete(n),
        ("POST", Some(n), Some(Binding)) => Endpoint::Bind(n),
        ("PUT", Some(n), Some(Finalize)) => Endpoint::Finalize(n),
        ("GET", Some(n), Some(Log)) => Endpoint::Log(n),
        ("GET", Some(n), Some(Placement)) => Endpoint::Placement(n),
        ("POST", Some(n), Some(Preview)) => Endpoint::Preview(n),
        _ => return None,
    })
}

/// Serves a resource request.
pub async fn serve(
    registry: &Arc<Registry>,
    method: &Method,
    request: &ResourceRequest,
    headers: &HeaderMap,
    body: Bytes,
) -> ApiResult<Response> {
    let path = &request.path;
    let query = &request.query;
    // A collection GET is a list or a watch by its options' `watch`.
    let list_options: ListOptions = if method == Method::GET && path.name.is_none() {
        query.decode()?
    } else {
        ListOptions::default()
    };
    let Some(endpoint) = endpoint(
        method,
        path.name.as_deref(),
        path.subresource,
        list_options.watch,
    ) else {
        return Err(ApiError::method_not_allowed(format!(
            "{method} is not supported on {}",
            request.raw_path
        )));
    };
    let response = match endpoint {
        Endpoint::List => list::handle(registry, path, &list_options, headers).await,
        Endpoint::Watch => watch::handle(registry, path, &list_options, headers).await,
        Endpoint::Create => create::handle(registry, path, &query.decode()?, headers, &body).await,
        Endpoint::DeleteCollection => delete::collection(registry, path, query, &body).await,
        Endpoint::Get(name) => get::handle(registry, path, name, &query.decode()?, headers).await,
        Endpoint::Update(name, mode) => {
            let target = update::Target { path, name, mode };
            update::handle(registry, &target, &query.decode()?, headers, &body).await
        }
        Endpoint::Patch(name, mode) => {
            let target = update::Target { path, name, mode };
            patch::handle(registry, &target, &query.decode()?, headers, &body).await
        }
        Endpoint::Delete(name) => delete::handle(registry, path, name, query, &body).await,
        Endpoint::Bind(name) => {
            binding::handle(registry, path, name, &query.decode()?, headers, &body).await
        }
        Endpoint::Finalize(name) => {
            finalize::handle(registry, name, &query.decode()?, headers, &body).await
        }
        Endpoint::Log(name) if path.res.id == everynode_api::registry::Kind::DaemonSet => {
            merged_log::handle(registry, path, name, query).await
        }
        Endpoint::Log(name) => log::handle(registry, path, name, &query.decode()?).await,
        Endpoint::Placement(name) => placement::handle(registry, path, name, query).await,
        Endpoint::Preview(name) => {
            preview::handle(registry, path, name, &query.decode()?, headers, &body).await
        }
    };
    match deprecation(path.res) {
        Some(warning) => response.map(|r| crate::response::with_warnings(r, &[warning.into()])),
        None => response,
    }
}

/// The warning upstream sends with every request to a deprecated resource version.
fn deprecation(res: &everynode_api::registry::Resource) -> Option<&'static str> {
    match res.id {
        everynode_api::registry::Kind::Endpoints => {
            Some("v1 Endpoints is deprecated in v1.33+; use discovery.k8s.io/v1 EndpointSlice")
        }
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn endpoints_by_method_and_path() {
        use Endpoint::*;
        let get = Method::GET;
        assert_eq!(endpoint(&get, None, None, false), Some(List));
        assert_eq!(endpoint(&get, None, None, true), Some(Watch));
        assert_eq!(endpoint(&Method::POST, None, None, false), Some(Create));
        assert_eq!(
            endpoint(&Method::DELETE, None, None, false),
            Some(DeleteCollection)
        );
        assert_eq!(endpoint(&get, Some("a"), None, true), Some(Get("a")));
        assert_eq!(
            endpoint(&get, Some("a"), Some(Subresource::Status), false),
            Some(Get("a"))
        );
        assert_eq!(
            endpoint(&Method::PUT, Some("a"), Some(Subresource::Status), false),
            Some(Update("a", UpdateMode::Status))
        );
        assert_eq!(
            endpoint(&Method::PATCH, Some("a"), None, false),
            Some(Patch("a", UpdateMode::Main))
        );
        assert_eq!(
            endpoint(&Method::POST, Some("p"), Some(Subresource::Binding), false),
            Some(Bind("p"))
        );
        assert_eq!(
            endpoint(&Method::PUT, Some("ns"), Some(Subresource::Finalize), false),
            Some(Finalize("ns"))
        );
        assert_eq!(
            endpoint(&get, Some("p"), Some(Subresource::Log), false),
            Some(Log("p"))
        );
        // Not allowed: a POST to an object, a GET of a binding, a DELETE of a status.
        assert_eq!(endpoint(&Method::POST, Some("a"), None, false), None);
        assert_eq!(
            endpoint(&get, Some("p"), Some(Subresource::Binding), false),
            None
        );
        assert_eq!(
            endpoint(&Method::DELETE, Some("a"), Some(Subresource::Status), false),
            None
        );
    }
}
