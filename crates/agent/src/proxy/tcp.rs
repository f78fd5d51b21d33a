//! A TCP frontend: accepts connections and relays each to an endpoint of its Service port,
//! trying the next endpoint when one refuses. A connection with nowhere to go is reset, as
//! kube-proxy rejects traffic for a Service without endpoints.

use super::balancer::Balancer;
use super::target::Target;
use std::net::SocketAddr;
use std::os::fd::AsFd;
use std::time::Duration;
use tokio::net::{TcpListener, TcpSocket, TcpStream};

/// How long a connection to an endpoint may take before the next is tried.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);

/// A listener on `address`; with `freebind` the address need not exist yet (a pod bridge's
/// gateway address appears with the node's first pod).
pub fn listen(address: SocketAddr, freebind: bool) -> std::io::Result<TcpListener> {
    let socket = match address {
        SocketAddr::V4(_) => TcpSocket::new_v4()?,
        SocketAddr::V6(_) => TcpSocket::new_v6()?,
    };
    socket.set_reuseaddr(true)?;
    if freebind {
        rustix::net::sockopt::set_ip_freebind(socket.as_fd(), true)?;
    }
    socket.bind(address)?;
    socket.listen(1024)
}

/// Accepts connections until the task is aborted; each is relayed on a task of its own, so
/// connections outlive a frontend that goes (as conntrack entries outlive kube-proxy's rules).
pub async fn serve(listener: TcpListener, target: Target) {
    loop {
        match listener.accept().await {
            Ok((inbound, peer)) => {
                tokio::spawn(relay(inbound, peer, target.clone()));
            }
            Err(e) => {
                // Out of descriptors, most likely: wait rather than spin.
                tracing::warn!(service = %target.name(), error = %e, "proxy cannot accept");
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
        }
    }
}

async fn relay(mut inbound: TcpStream, peer: SocketAddr, target: Target) {
    let Some((mut endpoint, endpoints)) = target.pick(peer.ip()) else {
        reset(inbound);
        return;
    };
    for _ in 0..endpoints.len() {
        match tokio::time::timeout(CONNECT_TIMEOUT, TcpStream::connect(endpoint)).await {
            Ok(Ok(mut outbound)) => {
                // Either side closing or failing ends the relay; there is no one to tell.
                let _ = tokio::io::copy_bidirectional(&mut inbound, &mut outbound).await;
                return;
            }
            Ok(Err(e)) => {
                tracing::debug!(service = %target.name(), %endpoint, error = %e, "endpoint refused");
            }
            Err(_) => {
                tracing::debug!(service = %target.name(), %endpoint, "endpoint did not answer");
            }
        }
        match Balancer::after(&endpoints, endpoint) {
            Some(next) => endpoint = next,
            None => break,
        }
    }
    reset(inbound);
}

/// Closes with a reset, so the client sees its connection refused rather than an empty answer.
fn reset(stream: TcpStream) {
    let _ = stream.set_zero_linger();
    drop(stream);
}
