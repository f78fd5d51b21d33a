//! The node's Service proxy, in the agent (docs/agent.md, "Service proxy"). It watches Services
//! and EndpointSlices, works out each Service port's endpoints for this node (`routes`), and
//! keeps one frontend per way in: a listener on the node's address for each node port, and,
//! where pods have a bridge of their own, a listener on the bridge's gateway for each cluster
//! IP and port, with an nftables rule (`nft`) sending the pods' traffic for the cluster IP
//! there. Connections are relayed in user space (`tcp`, `udp`) to an endpoint the `balancer`
//! picks. Everything it set up on the host goes when it stops.

pub mod balancer;
pub mod nft;
pub mod routes;
pub mod target;
pub mod tcp;
pub mod udp;

use crate::service_cache::ServiceCache;
use routes::{Protocol, Route};
use std::collections::{BTreeMap, BTreeSet};
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::sync::Arc;
use std::time::Duration;
use target::Target;
use tokio::sync::watch;
use tokio::task::JoinHandle;

/// Where this node's pods are, when they have a network of their own (the CRI runtime).
#[derive(Clone, Debug)]
pub struct PodNetwork {
    /// The bridge the node's pods are attached to.
    pub bridge: String,
    /// The bridge's own address, the pods' gateway.
    pub gateway: Ipv4Addr,
}

#[derive(Clone, Debug)]
pub struct ProxyConfig {
    pub node: String,
    /// The node's address: node ports are served there.
    pub node_ip: IpAddr,
    pub pod_network: Option<PodNetwork>,
}

/// A way in to a Service port.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
enum Door {
    NodePort(Protocol, u16),
    ClusterIp(Protocol, Ipv4Addr, u16),
}

struct Frontend {
    route: watch::Sender<Arc<Route>>,
    /// Where it listens.
    local: SocketAddr,
    task: JoinHandle<()>,
}

impl Drop for Frontend {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// How long after a change the proxier looks, so a burst of changes is one reconcile; and how
/// often it looks anyway, to retry a port it could not take.
const SETTLE: Duration = Duration::from_millis(100);
const RETRY: Duration = Duration::from_secs(10);

/// Runs the proxy until `stop` turns true, then removes what it set up on the host.
pub async fn run(cache: ServiceCache, config: ProxyConfig, mut stop: watch::Receiver<bool>) {
    let changed = Arc::clone(&cache.changed);
    let table = nft::table_name(&config.node);
    let mut proxier = Proxier {
        config,
        frontends: BTreeMap::new(),
        failed: BTreeSet::new(),
        applied: None,
        table: table.clone(),
    };
    loop {
        tokio::select! {
            _ = changed.notified() => tokio::time::sleep(SETTLE).await,
            _ = tokio::time::sleep(RETRY) => {}
            _ = stop.changed() => break,
        }
        if *stop.borrow() {
            break;
        }
        let routes = routes::routes(
            &proxier.config.node,
            &cache.services.state(),
            &cache.slices.state(),
        );
        proxier.reconcile(&routes).await;
    }
    proxier.frontends.clear();
    if proxier.config.pod_network.is_some()
        && let Err(e) = nft::remove(&table).await
    {
        tracing::warn!(table, error = %e, "could not remove the proxy's nftables table");
    }
}

struct Proxier {
    config: ProxyConfig,
    frontends: BTreeMap<Door, Frontend>,
    /// Doors that could not be opened (a port taken), logged once until they open.
    failed: BTreeSet<Door>,
    /// The intercepts last written to nftables.
    applied: Option<Vec<nft::Intercept>>,
    table: String,
}

impl Proxier {
    async fn reconcile(&mut self, routes: &[Route]) {
        let mut wanted: BTreeMap<Door, (Arc<Route>, bool)> = BTreeMap::new();
        for route in routes {
            let route = Arc::new(route.clone());
            if let Some(port) = route.node_port {
                wanted.insert(
                    Door::NodePort(route.protocol, port),
                    (Arc::clone(&route), true),
                );
            }
            if self.config.pod_network.is_some() {
                for ip in &route.cluster_ips {
                    if let IpAddr::V4(ip) = ip {
                        let door = Door::ClusterIp(route.protocol, *ip, route.port);
                        wanted.insert(door, (Arc::clone(&route), false));
                    }
                }
            }
        }
        self.frontends.retain(|door, _| wanted.contains_key(door));
        self.failed.retain(|door| wanted.contains_key(door));
        for (door, (route, external)) in wanted {
            if let Some(frontend) = self.frontends.get(&door) {
                frontend.route.send_if_modified(|current| {
                    let changed = **current != *route;
                    if changed {
                        *current = Arc::clone(&route);
                    }
                    changed
                });
                continue;
            }
            match self.open(door, route, external) {
                Ok(frontend) => {
                    self.failed.remove(&door);
                    self.frontends.insert(door, frontend);
                }
                Err(e) => {
                    if self.failed.insert(door) {
                        tracing::warn!(?door, error = %e, "the proxy cannot open a port");
                    }
                }
            }
        }
        self.write_intercepts().await;
    }

    fn open(&self, door: Door, route: Arc<Route>, external: bool) -> std::io::Result<Frontend> {
        let (address, freebind, protocol) = match door {
            Door::NodePort(protocol, port) => {
                (SocketAddr::new(self.config.node_ip, port), false, protocol)
            }
            Door::ClusterIp(protocol, _, _) => {
                let gateway = self
                    .config
                    .pod_network
                    .as_ref()
                    .map_or(Ipv4Addr::LOCALHOST, |n| n.gateway);
                (SocketAddr::from((gateway, 0)), true, protocol)
            }
        };
        let (route_tx, route_rx) = watch::channel(route);
        let target = Target::new(route_rx, external);
        let (local, task) = match protocol {
            Protocol::Tcp => {
                let listener = tcp::listen(address, freebind)?;
                (
                    listener.local_addr()?,
                    tokio::spawn(tcp::serve(listener, target)),
                )
            }
            Protocol::Udp => {
                let socket = udp::bind(address, freebind)?;
                (
                    socket.local_addr()?,
                    tokio::spawn(udp::serve(socket, target)),
                )
            }
        };
        Ok(Frontend {
            route: route_tx,
            local,
            task,
        })
    }

    /// Rewrites the node's nftables table when the cluster-IP listeners changed.
    async fn write_intercepts(&mut self) {
        let Some(network) = self.config.pod_network.as_ref() else {
            return;
        };
        let intercepts: Vec<nft::Intercept> = self
            .frontends
            .iter()
            .filter_map(|(door, frontend)| match door {
                Door::ClusterIp(protocol, ip, port) => Some(nft::Intercept {
                    protocol: *protocol,
                    cluster_ip: *ip,
                    port: *port,
                    to: frontend.local,
                }),
                Door::NodePort(..) => None,
            })
            .collect();
        if self.applied.as_ref() == Some(&intercepts) {
            return;
        }
        match nft::apply(&self.table, &network.bridge, &intercepts).await {
            Ok(()) => self.applied = Some(intercepts),
            Err(e) => {
                tracing::warn!(table = %self.table, error = %e, "the proxy's rules were not written; retrying")
            }
        }
    }
}
