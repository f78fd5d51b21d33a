//! Building and serving the API server: store, cache, background tasks, HTTP(S).

use crate::audit::PeerAddr;
use crate::authn::{Authenticator, ClientCertificate, UserInfo};
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
    authn: AuthnConfig,
) -> Result<(Arc<Registry>, axum::Router), ApiError> {
    crate::metrics::init();
    let store: Arc<dyn Store> = Arc::new(crate::metrics::storage::Measured(store));
    let cache = WatchCache::new(sizes.history, sizes.watcher_buffer);
    tokio::spawn(Arc::clone(&cache).run(Arc::clone(&store)));
    let authz = Arc::new(crate::authz::Authorizer::new(Arc::clone(&cache)));
    let token_issuer = match authn.service_account_issuer.clone() {
        Some(issuer) => issuer,
        None => Arc::new(
            crate::service_account_token::TokenIssuer::ephemeral()
                .ok_or_else(|| ApiError::internal("cannot make a ServiceAccount token key"))?,
        ),
    };
    let api = Arc::new(Registry {
        store,
        cache,
        clock,
        options,
        authz: Arc::clone(&authz),
        token_issuer,
        watch_counts: Arc::default(),
        fair_seats: crate::fairness::FairSeats::for_this_machine(),
        usage: Arc::default(),
        decoded_nodes: Default::default(),
        decoded_pods: Default::default(),
    });
    api.fresh_cache().await?;
    namespaces::bootstrap(&api).await?;
    crate::authz::bootstrap::reconcile(&api).await?;
    tokio::spawn(crate::service_accounts::run_default_accounts(Arc::clone(
        &api,
    )));
    tokio::spawn(crate::authz::bootstrap::run_aggregation(
        Arc::clone(&api),
        Arc::clone(&authz.policy),
    ));
    // Keeps the policy's queue of RBAC events drained between requests.
    let policy = Arc::clone(&authz.policy);
    tokio::spawn(async move {
        loop {
            tokio::time::sleep(Duration::from_secs(1)).await;
            policy.refresh(false);
        }
    });
    tokio::spawn(namespaces::run(Arc::clone(&api)));
    tokio::spawn(crate::service_alloc::run_repair(Arc::clone(&api)));
    if let Some(ca) = api.options.root_ca_pem.clone() {
        tokio::spawn(crate::root_ca::run(Arc::clone(&api), ca));
    }
    if let Some(identity) = api.options.agent_client.clone() {
        tokio::spawn(crate::resource_metrics::scrape::run(
            Arc::clone(&api.cache),
            Arc::clone(&api.clock),
            identity,
            Arc::clone(&api.usage),
            api.options.metric_resolution,
        ));
    }
    if let Some((signer, max_duration)) = api.options.csr_signer.clone() {
        tokio::spawn(crate::csr::run(Arc::clone(&api), signer, max_duration));
    }
    let authenticator = Arc::new(Authenticator::new(
        Arc::clone(&api),
        authn.admin_tokens,
        authn.static_tokens,
    ));
    let audit = api
        .options
        .audit
        .clone()
        .map(|config| crate::audit::AuditLog::start(config, Arc::clone(&api.clock)));
    let router = http::router(Arc::clone(&api), authenticator, authz, audit);
    Ok((api, router))
}

/// Who may authenticate with bearer tokens, besides users' own tokens.
#[derive(Clone, Debug, Default)]
pub struct AuthnConfig {
    /// The administrator's tokens (`system:masters`).
    pub admin_tokens: Vec<String>,
    /// `--token-auth-file`.
    pub static_tokens: std::collections::HashMap<String, UserInfo>,
    /// The ServiceAccount token key (`<data-dir>/pki/sa.key`); without one, a key lives as
    /// long as the process.
    pub service_account_issuer: Option<Arc<crate::service_account_token::TokenIssuer>>,
}

impl AuthnConfig {
    /// Only the administrator, with `token`.
    pub fn admin(token: &str) -> Self {
        AuthnConfig {
            admin_tokens: vec![token.to_owned()],
            ..AuthnConfig::default()
        }
    }
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
    tls: Option<crate::credentials::TlsServing>,
) -> std::io::Result<()> {
    let acceptor = tls
        .as_ref()
        .map(|t| TlsAcceptor::from(Arc::clone(&t.config)));
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
        let router = router.clone();
        let acceptor = acceptor.clone();
        let tls = tls.clone();
        tokio::spawn(async move {
            let result = match acceptor {
                Some(acceptor) => {
                    match tokio::time::timeout(TLS_HANDSHAKE_TIMEOUT, acceptor.accept(tcp)).await {
                        Ok(Ok(stream)) => {
                            let session = stream.get_ref().1;
                            let protocol = session.alpn_protocol().map(<[u8]>::to_vec);
                            let identity = ClientCertificate(
                                tls.as_ref()
                                    .and_then(|t| t.client_user(session.peer_certificates())),
                            );
                            let service = TowerToHyperService::new(
                                tower::ServiceBuilder::new()
                                    .map_request(move |mut req: axum::extract::Request<_>| {
                                        req.extensions_mut().insert(identity.clone());
                                        req.extensions_mut().insert(PeerAddr(peer));
                                        req
                                    })
                                    .service(router),
                            );
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
                        .serve_connection_with_upgrades(
                            TokioIo::new(tcp),
                            TowerToHyperService::new(
                                tower::ServiceBuilder::new()
                                    .map_request(move |mut req: axum::extract::Request<_>| {
                                        req.extensions_mut().insert(PeerAddr(peer));
                                        req
                                    })
                                    .service(router),
                            ),
                        )
                        .await
                }
            };
            if let Err(e) = result {
                tracing::debug!(%peer, error = %e, "connection ended with an error");
            }
        });
    }
}
