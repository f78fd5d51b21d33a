//! Which endpoint one new connection (or UDP flow) of a Service port goes to: the next in turn,
//! or, with `sessionAffinity: ClientIP`, the one this client had while it stays an endpoint and
//! the client has not been silent longer than the affinity timeout. Pure: time is passed in.

use std::collections::HashMap;
use std::net::{IpAddr, SocketAddr};
use std::time::Duration;
use tokio::time::Instant;

/// Clients remembered for affinity beyond which the stalest are forgotten first.
const MAX_CLIENTS: usize = 65_536;

#[derive(Default)]
pub struct Balancer {
    next: usize,
    sticky: HashMap<IpAddr, (SocketAddr, Instant)>,
}

impl Balancer {
    /// The endpoint for a new connection from `client`; none when there is no endpoint.
    pub fn pick(
        &mut self,
        endpoints: &[SocketAddr],
        client: IpAddr,
        affinity: Option<Duration>,
        now: Instant,
    ) -> Option<SocketAddr> {
        if endpoints.is_empty() {
            return None;
        }
        if let Some(timeout) = affinity
            && let Some((endpoint, last)) = self.sticky.get(&client)
            && now.saturating_duration_since(*last) < timeout
            && endpoints.contains(endpoint)
        {
            let endpoint = *endpoint;
            self.sticky.insert(client, (endpoint, now));
            return Some(endpoint);
        }
        let endpoint = endpoints[self.next % endpoints.len()];
        self.next = self.next.wrapping_add(1);
        if let Some(timeout) = affinity {
            if self.sticky.len() >= MAX_CLIENTS {
                self.sticky
                    .retain(|_, (_, last)| now.saturating_duration_since(*last) < timeout);
            }
            if self.sticky.len() < MAX_CLIENTS {
                self.sticky.insert(client, (endpoint, now));
            }
        }
        Some(endpoint)
    }

    /// The endpoint to try after `failed` refused a connection: the next one in the list.
    pub fn after(endpoints: &[SocketAddr], failed: SocketAddr) -> Option<SocketAddr> {
        let at = endpoints.iter().position(|e| *e == failed)?;
        let next = endpoints[(at + 1) % endpoints.len()];
        (next != failed).then_some(next)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn endpoints() -> Vec<SocketAddr> {
        ["10.1.1.5:8080", "10.1.2.5:8080", "10.1.3.5:8080"]
            .iter()
            .map(|a| a.parse().expect("address"))
            .collect()
    }

    fn client(last: u8) -> IpAddr {
        IpAddr::from([10, 1, 9, last])
    }

    #[test]
    fn new_connections_take_turns() {
        let mut b = Balancer::default();
        let now = Instant::now();
        let picked: Vec<SocketAddr> = (0..4)
            .filter_map(|_| b.pick(&endpoints(), client(1), None, now))
            .collect();
        let e = endpoints();
        assert_eq!(picked, vec![e[0], e[1], e[2], e[0]]);
        assert_eq!(b.pick(&[], client(1), None, now), None);
    }

    #[test]
    fn a_client_keeps_its_endpoint_until_silent_past_the_timeout() {
        let mut b = Balancer::default();
        let t0 = Instant::now();
        let minute = Duration::from_secs(60);
        let first = b.pick(&endpoints(), client(1), Some(minute), t0);
        let other = b.pick(&endpoints(), client(2), Some(minute), t0);
        assert_ne!(first, other);
        let later = t0 + Duration::from_secs(50);
        assert_eq!(b.pick(&endpoints(), client(1), Some(minute), later), first);
        // Each use renews it; after a silence longer than the timeout it is chosen afresh.
        let silent = later + Duration::from_secs(61);
        let again = b.pick(&endpoints(), client(1), Some(minute), silent);
        assert!(again.is_some());
        // An endpoint that went away is not kept.
        let stuck = b
            .pick(&endpoints(), client(3), Some(minute), t0)
            .expect("endpoint");
        let remaining: Vec<SocketAddr> = endpoints().into_iter().filter(|e| *e != stuck).collect();
        let moved = b
            .pick(&remaining, client(3), Some(minute), t0)
            .expect("endpoint");
        assert_ne!(moved, stuck);
    }

    #[test]
    fn a_refused_connection_moves_to_the_next_endpoint() {
        let e = endpoints();
        assert_eq!(Balancer::after(&e, e[2]), Some(e[0]));
        assert_eq!(Balancer::after(&e[..1], e[0]), None);
    }
}
