//! Dialling a pod's port for `kubectl port-forward`: on localhost, in the node's network or
//! inside the pod's network namespace, as kubelet's runtimes do (so a server listening only on
//! the pod's loopback is reached too).

use std::net::{Ipv4Addr, Ipv6Addr, SocketAddr};
use std::path::PathBuf;
use tokio::net::TcpStream;

/// Dials `port` on localhost, IPv4 first, then IPv6.
pub async fn connect_localhost(port: u16) -> Result<TcpStream, String> {
    let v4 = SocketAddr::from((Ipv4Addr::LOCALHOST, port));
    let v6 = SocketAddr::from((Ipv6Addr::LOCALHOST, port));
    let e4 = match TcpStream::connect(v4).await {
        Ok(stream) => return Ok(stream),
        Err(e) => e,
    };
    match TcpStream::connect(v6).await {
        Ok(stream) => Ok(stream),
        Err(e6) => Err(format!(
            "failed to connect to localhost:{port}: IPv4: dial {v4}: {e4}; IPv6: dial {v6}: {e6}"
        )),
    }
}

/// Dials `port` on localhost inside the network namespace at `netns` (`/proc/<pid>/ns/net`).
pub async fn connect_in_namespace(netns: PathBuf, port: u16) -> Result<TcpStream, String> {
    let (tx, rx) = tokio::sync::oneshot::channel();
    // A thread of its own enters the namespace and ends with the dial: a namespace entered by
    // a pooled thread would stay with whatever ran on it next. The socket keeps the namespace
    // it was made in.
    std::thread::spawn(move || {
        let _ = tx.send(dial_in(&netns, port));
    });
    let stream = rx
        .await
        .map_err(|_| "the dialling thread ended".to_owned())??;
    stream
        .set_nonblocking(true)
        .and_then(|()| TcpStream::from_std(stream))
        .map_err(|e| e.to_string())
}

fn dial_in(netns: &std::path::Path, port: u16) -> Result<std::net::TcpStream, String> {
    let file = std::fs::File::open(netns).map_err(|e| {
        format!(
            "cannot open the pod's network namespace {}: {e}",
            netns.display()
        )
    })?;
    nix::sched::setns(&file, nix::sched::CloneFlags::CLONE_NEWNET).map_err(|e| {
        format!(
            "cannot enter the pod's network namespace {}: {e}",
            netns.display()
        )
    })?;
    let v4 = SocketAddr::from((Ipv4Addr::LOCALHOST, port));
    let v6 = SocketAddr::from((Ipv6Addr::LOCALHOST, port));
    std::net::TcpStream::connect(v4)
        .or_else(|e4| {
            std::net::TcpStream::connect(v6).map_err(|e6| {
                format!(
                    "failed to connect to localhost:{port} inside namespace {}: IPv4: dial {v4}: {e4}; IPv6: dial {v6}: {e6}",
                    netns.display()
                )
            })
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn a_closed_port_names_both_addresses() {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("in the test");
        let port = listener.local_addr().expect("in the test").port();
        drop(listener);
        let e = connect_localhost(port).await.expect_err("an error");
        assert!(e.contains(&format!("127.0.0.1:{port}")), "{e}");
        assert!(e.contains(&format!("[::1]:{port}")), "{e}");
    }

    #[tokio::test]
    async fn the_own_namespace_reaches_a_local_listener() {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("in the test");
        let port = listener.local_addr().expect("in the test").port();
        let netns = PathBuf::from(format!("/proc/{}/ns/net", std::process::id()));
        let dialled = connect_in_namespace(netns, port).await;
        if let Err(e) = &dialled
            && e.contains("cannot enter")
            && std::env::var("CI").as_deref() != Ok("true")
        {
            // setns needs CAP_SYS_ADMIN, which CI (root) has; elsewhere the dial is not tested.
            eprintln!("skipped: {e}");
            return;
        }
        assert!(dialled.is_ok(), "{dialled:?}");
        assert!(listener.accept().await.is_ok());
    }
}
