//! The agent's HTTPS endpoint, kubelet's port: `/containerLogs` (`logs`) and `/metrics/resource`
//! (`resource_metrics`). Callers must present a client certificate signed by the cluster CA
//! (`endpoint_tls`): only the API server reads from it.

use hyper_util::rt::{TokioExecutor, TokioIo};
use hyper_util::server::conn::auto::Builder;
use hyper_util::service::TowerToHyperService;
use std::sync::Arc;
use std::time::Duration;
use tokio::net::TcpListener;
use tokio_rustls::TlsAcceptor;

/// Every route of the endpoint.
pub fn router(
    logs: crate::logs::LogServer,
    resources: crate::resource_metrics::ResourceServer,
) -> axum::Router {
    crate::logs::routes(logs).merge(
        axum::Router::new()
            .route(
                "/metrics/resource",
                axum::routing::get(crate::resource_metrics::serve),
            )
            .with_state(resources),
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
                    .serve_connection(TokioIo::new(stream), service)
                    .await;
            }
        });
    }
}
