//! What one frontend (a node port, or a cluster IP's listener) sends its traffic to: the Service
//! port's current route, kept up to date by the proxier, the list it uses (node-port traffic
//! follows `externalTrafficPolicy`, cluster-IP traffic `internalTrafficPolicy`), and its
//! balancer.

use super::balancer::Balancer;
use super::routes::Route;
use std::net::{IpAddr, SocketAddr};
use std::sync::{Arc, Mutex};
use tokio::sync::watch;
use tokio::time::Instant;

#[derive(Clone)]
pub struct Target {
    pub route: watch::Receiver<Arc<Route>>,
    pub external: bool,
    pub balancer: Arc<Mutex<Balancer>>,
}

impl Target {
    pub fn new(route: watch::Receiver<Arc<Route>>, external: bool) -> Self {
        Target {
            route,
            external,
            balancer: Arc::default(),
        }
    }

    /// The endpoints this frontend's traffic may go to now.
    pub fn endpoints(&self) -> Vec<SocketAddr> {
        let route = self.route.borrow();
        if self.external {
            route.external.clone()
        } else {
            route.internal.clone()
        }
    }

    /// The endpoint for a new connection or flow from `client`, with the endpoints it was
    /// chosen from (to try the next when it refuses).
    pub fn pick(&self, client: IpAddr) -> Option<(SocketAddr, Vec<SocketAddr>)> {
        let endpoints = self.endpoints();
        let affinity = self.route.borrow().affinity;
        let mut balancer = self.balancer.lock().unwrap_or_else(|p| p.into_inner());
        let chosen = balancer.pick(&endpoints, client, affinity, Instant::now())?;
        Some((chosen, endpoints))
    }

    /// The Service port's name, for logs.
    pub fn name(&self) -> String {
        self.route.borrow().name()
    }
}
