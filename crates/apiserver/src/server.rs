//! Building and serving the API server: store, cache, background tasks, HTTP(S).

use crate::auth::Tokens;
use crate::cache::WatchCache;
use crate::error::ApiError;
use crate::registry::{Options, Registry};
use crate::{http, namespaces};
use everynode_clock::Clock;
use everynode_store::Store;
use hyper_util::rt::{TokioExecutor, TokioIo};
use hyper_util::server::conn::auto::Builder;
use hyper_util::service::TowerToHyperService;
use std::sync::Arc;
use tokio::net::TcpListener;
use tokio_rustls::TlsAcceptor;

/// Watch cache sizes.
#[derive(Clone, Debug)]
pub struct CacheSizes {
    pub history: usize,
    pub watcher_buffer: usize,
}

impl Default for CacheSizes {
    fn default() -> Self {
        CacheSizes {
            history: 50_000,
            watcher_buffer: 4096,
        }
    }
}

/// Starts the cache and background tasks over `store`, bootstraps system objects, and returns
/// the API and its router.
pub async fn start(
    store: Arc<dyn Store>,
    clock: Arc<dyn Clock>,
    options: Options,
    sizes: CacheSizes,
    tokens: Vec<String>,
) -> Result<(Arc<Registry>, axum::Router), ApiError> {
    let cache = WatchCache::new(sizes.history, sizes.watcher_buffer);
    tokio::spawn(Arc::clone(&cache).run(Arc::clone(&store)));
    let api = Arc::new(Registry {
        store,
        cache,
        clock,
        options,
    });
    api.fresh_cache().await?;
    namespaces::bootstrap(&api).await?;
    tokio::spawn(namespaces::run(Arc::clone(&api)));
    let router = http::router(Arc::clone(&api), Tokens(Arc::new(tokens)));
    Ok((api, router))
}

/// Serves `router` on `listener`, with TLS when `tls` is given, until the process ends.
pub async fn serve(
    listener: TcpListener,
    router: axum::Router,
    tls: Option<Arc<rustls::ServerConfig>>,
) -> std::io::Result<()> {
    let acceptor = tls.map(TlsAcceptor::from);
    loop {
        let (tcp, peer) = match listener.accept().await {
            Ok(c) => c,
            Err(e) => {
                // Out of file descriptors and the like: keep serving the connections we have.
                tracing::warn!(error = %e, "accept failed");
                tokio::time::sleep(std::time::Duration::from_millis(50)).await;
                continue;
            }
        };
        let _ = tcp.set_nodelay(true);
        let service = TowerToHyperService::new(router.clone());
        let acceptor = acceptor.clone();
        tokio::spawn(async move {
            let builder = Builder::new(TokioExecutor::new());
            let result = match acceptor {
                Some(acceptor) => match acceptor.accept(tcp).await {
                    Ok(stream) => {
                        builder
                            .serve_connection_with_upgrades(TokioIo::new(stream), service)
                            .await
                    }
                    Err(e) => {
                        tracing::debug!(%peer, error = %e, "TLS handshake failed");
                        return;
                    }
                },
                None => {
                    builder
                        .serve_connection_with_upgrades(TokioIo::new(tcp), service)
                        .await
                }
            };
            if let Err(e) = result {
                tracing::debug!(%peer, error = %e, "connection ended with an error");
            }
        });
    }
}
