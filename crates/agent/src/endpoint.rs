//! The agent's HTTPS endpoint, kubelet's port: `/containerLogs` (`logs`), `/metrics/resource`
//! (`resource_metrics`), `/exec` and `/attach` (`exec`), and `/portForward` (`port_forward`). Callers must present a client certificate signed by the cluster CA
//! (`endpoint_tls`): only the API server reads from it.

use hyper_util::rt::{TokioExecutor, TokioIo};
use hyper_util::server::conn::auto::Builder;
use hyper_util::service::TowerToHyperService;
use std::sync::Arc;
use std::time::Duration;
use tokio::net::TcpListener;
use tokio_rustls::TlsAcceptor;

/// The containers an endpoint serves: the nodes' state directories (one, or a hollow fleet's)
/// and the runtime that runs them.
#[derive(Clone)]
pub struct Workloads {
    pub state_dirs: Arc<Vec<std::path::PathBuf>>,
    pub runtime: Arc<dyn crate::runtime::Runtime>,
}

impl Workloads {
    /// The runtime's key of a container of a pod on these nodes (the newest pod of that name).
    pub fn key(&self, namespace: &str, pod: &str, container: &str) -> Option<String> {
        let (_, uid, _) = crate::logs::pod_log_dir(&self.state_dirs, namespace, pod)?;
        Some(format!("{uid}/{container}"))
    }
}

/// Every route of the endpoint.
pub fn router(logs: crate::logs::LogServer, workloads: Workloads) -> axum::Router {
    use axum::routing::get;
    crate::logs::routes(logs).merge(
        axum::Router::new()
            .route("/metrics/resource", get(crate::resource_metrics::serve))
            .route(
                "/exec/{namespace}/{pod}/{container}",
                get(crate::exec::exec).post(crate::exec::exec),
            )
            .route(
                "/attach/{namespace}/{pod}/{container}",
                get(crate::attach::attach).post(crate::attach::attach),
            )
            .route(
                "/portForward/{namespace}/{pod}",
                get(crate::port_forward::port_forward),
            )
            .with_state(workloads),
    )
}

/// Serves `router` on `listener` over TLS until the process ends.
pub async fn serve(
    listener: TcpListener,
    router: axum::Router,
    tls: Arc<rustls::ServerConfig>,
) -> Result<(), String> {
    let acceptor = TlsAcceptor::from(tls);
    loop {
        let Ok((tcp, _)) = listener.accept().await else {
            tokio::time::sleep(Duration::from_millis(50)).await;
            continue;
        };
        let acceptor = acceptor.clone();
        let service = TowerToHyperService::new(router.clone());
        tokio::spawn(async move {
            if let Ok(stream) = acceptor.accept(tcp).await {
                let _ = Builder::new(TokioExecutor::new())
                    .serve_connection_with_upgrades(TokioIo::new(stream), service)
                    .await;
            }
        });
    }
}
