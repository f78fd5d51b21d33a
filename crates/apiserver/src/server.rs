//! Building and serving the API server: store, cache, background tasks, HTTP(S).

use crate::auth::Tokens;
use crate::cache::WatchCache;
use crate::error::ApiError;
use crate::registry::{Options, Registry};
use crate::{http, namespaces};
use everynode_clock::Clock;
use everynode_store::Store;
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use hyper_util::server::conn::auto::Builder;
use hyper_util::service::TowerToHyperService;
use std::sync::Arc;
use std::time::Duration;
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
    if let Some(ca) = api.options.root_ca_pem.clone() {
        tokio::spawn(crate::root_ca::run(Arc::clone(&api), ca));
    }
    let router = http::router(Arc::clone(&api), Tokens(Arc::new(tokens)));
    Ok((api, router))
}

/// How long a client has to complete its TLS handshake.
const TLS_HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);
/// How long an HTTP/1 connection may take to send a request's headers, counted from when the
/// server starts waiting for them, so it also ends idle keep-alive connections.
const HEADER_READ_TIMEOUT: Duration = Duration::from_secs(30);

/// A connection builder with the timeouts above; `protocol` pins HTTP/1 or HTTP/2 where TLS's
/// ALPN has already chosen, so no version sniffing waits on a silent client.
fn connection_builder(protocol: Option<&[u8]>) -> Builder<TokioExecutor> {
    let mut builder = Builder::new(TokioExecutor::new());
    builder
        .http1()
        .timer(TokioTimer::new())
        .header_read_timeout(HEADER_READ_TIMEOUT);
    // No HTTP/2 pings, as upstream's server sends none: a hollow fleet of 10,000 nodes shares
    // one connection, and under load a late ping answer (over 20 s) dropped it with every
    // request and watch on it (create → Ready went from 50 s to over 220 s).
    builder.http2().timer(TokioTimer::new());
    match protocol {
        Some(b"h2") => builder.http2_only(),
        Some(_) => builder.http1_only(),
        None => builder,
    }
}

/// Serves `router` on `listener`, with TLS when `tls` is given, until the process ends. A client
/// that does not finish its TLS handshake in 10 s, or its request headers in 30 s, is dropped, so
/// silent connections cannot pile up.
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
            let result = match acceptor {
                Some(acceptor) => {
                    match tokio::time::timeout(TLS_HANDSHAKE_TIMEOUT, acceptor.accept(tcp)).await {
                        Ok(Ok(stream)) => {
                            let protocol = stream.get_ref().1.alpn_protocol().map(<[u8]>::to_vec);
                            connection_builder(Some(protocol.as_deref().unwrap_or(b"http/1.1")))
                                .serve_connection_with_upgrades(TokioIo::new(stream), service)
                                .await
                        }
                        Ok(Err(e)) => {
                            tracing::debug!(%peer, error = %e, "TLS handshake failed");
                            return;
                        }
                        Err(_) => {
                            tracing::debug!(%peer, "TLS handshake timed out");
                            return;
                        }
                    }
                }
                None => {
                    connection_builder(None)
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
