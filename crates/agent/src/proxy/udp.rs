//! A UDP frontend: each client address is a flow with its own socket connected to the endpoint
//! chosen for it; replies go back from the frontend's address. A flow silent for
//! [`FLOW_IDLE`] is forgotten (conntrack's UDP timeout), so a client's next datagram may
//! take another endpoint.

use super::target::Target;
use std::collections::HashMap;
use std::net::SocketAddr;
use std::os::fd::{AsFd, OwnedFd};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;
use tokio::net::UdpSocket;
use tokio::time::Instant;

pub const FLOW_IDLE: Duration = Duration::from_secs(30);
/// Most flows one frontend keeps; a new client beyond them is dropped until some go idle.
const MAX_FLOWS: usize = 4096;

struct Flow {
    upstream: Arc<UdpSocket>,
    last: Instant,
}

type Flows = Arc<Mutex<HashMap<SocketAddr, Flow>>>;

fn lock(flows: &Flows) -> MutexGuard<'_, HashMap<SocketAddr, Flow>> {
    flows.lock().unwrap_or_else(|p| p.into_inner())
}

/// A socket bound to `address`; with `freebind` the address need not exist yet.
pub fn bind(address: SocketAddr, freebind: bool) -> std::io::Result<UdpSocket> {
    use rustix::net::{AddressFamily, SocketType, socket};
    let family = match address {
        SocketAddr::V4(_) => AddressFamily::INET,
        SocketAddr::V6(_) => AddressFamily::INET6,
    };
    let fd: OwnedFd = socket(family, SocketType::DGRAM, None)?;
    rustix::net::sockopt::set_socket_reuseaddr(fd.as_fd(), true)?;
    if freebind {
        rustix::net::sockopt::set_ip_freebind(fd.as_fd(), true)?;
    }
    rustix::net::bind(fd.as_fd(), &address)?;
    let socket = std::net::UdpSocket::from(fd);
    socket.set_nonblocking(true)?;
    UdpSocket::from_std(socket)
}

/// Relays datagrams until the task is aborted.
pub async fn serve(socket: UdpSocket, target: Target) {
    let socket = Arc::new(socket);
    let flows: Flows = Arc::default();
    let mut buf = vec![0u8; 65_536];
    loop {
        let (n, client) = match socket.recv_from(&mut buf).await {
            Ok(received) => received,
            Err(e) => {
                tracing::debug!(service = %target.name(), error = %e, "proxy cannot receive");
                tokio::time::sleep(Duration::from_millis(10)).await;
                continue;
            }
        };
        let upstream = match flow(&socket, &flows, &target, client).await {
            Some(upstream) => upstream,
            None => continue,
        };
        // A datagram lost here is lost as on any network; the client retries.
        let _ = upstream.send(&buf[..n]).await;
    }
}

/// The client's flow, made on its first datagram.
async fn flow(
    socket: &Arc<UdpSocket>,
    flows: &Flows,
    target: &Target,
    client: SocketAddr,
) -> Option<Arc<UdpSocket>> {
    if let Some(f) = lock(flows).get_mut(&client) {
        f.last = Instant::now();
        return Some(Arc::clone(&f.upstream));
    }
    if lock(flows).len() >= MAX_FLOWS {
        return None;
    }
    let (endpoint, _) = target.pick(client.ip())?;
    let local: SocketAddr = match endpoint {
        SocketAddr::V4(_) => SocketAddr::from(([0, 0, 0, 0], 0)),
        SocketAddr::V6(_) => SocketAddr::from(([0u16; 8], 0)),
    };
    let upstream = UdpSocket::bind(local).await.ok()?;
    upstream.connect(endpoint).await.ok()?;
    let upstream = Arc::new(upstream);
    lock(flows).insert(
        client,
        Flow {
            upstream: Arc::clone(&upstream),
            last: Instant::now(),
        },
    );
    tokio::spawn(replies(
        Arc::clone(socket),
        Arc::clone(flows),
        Arc::clone(&upstream),
        client,
    ));
    Some(upstream)
}

/// Sends the endpoint's replies back to the client until the flow goes idle.
async fn replies(
    socket: Arc<UdpSocket>,
    flows: Flows,
    upstream: Arc<UdpSocket>,
    client: SocketAddr,
) {
    let mut buf = vec![0u8; 65_536];
    loop {
        match tokio::time::timeout(FLOW_IDLE, upstream.recv(&mut buf)).await {
            Ok(Ok(n)) => {
                if let Some(f) = lock(&flows).get_mut(&client) {
                    f.last = Instant::now();
                }
                let _ = socket.send_to(&buf[..n], client).await;
            }
            // An ICMP error from the endpoint (nothing listening): keep the flow until idle.
            Ok(Err(_)) => tokio::time::sleep(Duration::from_millis(10)).await,
            Err(_) => {
                let mut all = lock(&flows);
                let idle = all
                    .get(&client)
                    .is_none_or(|f| f.last.elapsed() >= FLOW_IDLE);
                if idle {
                    all.remove(&client);
                    return;
                }
            }
        }
    }
}
