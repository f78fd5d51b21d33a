//! A local etcd cluster for `everynode up --ha`: three members of Debian's `etcd-server`, run as
//! children of `up` on loopback ports derived from the API server's (so a restart of `up`
//! finds the same members with their data), each with its own data directory. They die with
//! `up` (util-linux's `setpriv --pdeathsig`), and are stopped with SIGTERM when `up` stops.

use crate::Error;
use std::path::{Path, PathBuf};
use std::time::Duration;

/// Members of the cluster `up --ha` runs.
pub const MEMBERS: u16 = 3;

/// One member: its name, client and peer URLs, and data directory.
#[derive(Clone, Debug)]
pub struct Member {
    pub name: String,
    pub client_url: String,
    pub peer_url: String,
    pub data_dir: PathBuf,
}

/// The members for an API server on `port`: clients on port+10.., peers on port+20...
pub fn plan(data_dir: &Path, port: u16) -> Result<Vec<Member>, Error> {
    let base = port
        .checked_add(20 + MEMBERS)
        .map(|_| port)
        .ok_or_else(|| {
            Error::Usage(format!(
                "--listen port {port} leaves no room for etcd's ports (port+10 to port+{})",
                20 + MEMBERS
            ))
        })?;
    Ok((1..=MEMBERS)
        .map(|i| Member {
            name: format!("etcd-{i}"),
            client_url: format!("http://127.0.0.1:{}", base + 9 + i),
            peer_url: format!("http://127.0.0.1:{}", base + 19 + i),
            data_dir: data_dir.join("etcd").join(format!("etcd-{i}")),
        })
        .collect())
}

/// The client URLs of `members`, for `--etcd-servers`.
pub fn client_urls(members: &[Member]) -> Vec<String> {
    members.iter().map(|m| m.client_url.clone()).collect()
}

/// A clear error when `etcd` is not installed, naming the `command` that needs it.
pub fn check_installed(command: &str) -> Result<(), Error> {
    let found = std::process::Command::new("etcd")
        .arg("--version")
        .output()
        .is_ok_and(|o| o.status.success());
    if found {
        Ok(())
    } else {
        Err(Error::Usage(format!(
            "`{command}` runs a local etcd, and no `etcd` was found: install Debian's etcd-server (apt-get install etcd-server)"
        )))
    }
}

/// Starts every member, each with `extra` arguments; they form (or, from their data, re-form)
/// one cluster.
pub fn start(members: &[Member], extra: &[&str]) -> Result<Vec<tokio::process::Child>, Error> {
    let cluster: Vec<String> = members
        .iter()
        .map(|m| format!("{}={}", m.name, m.peer_url))
        .collect();
    let mut children = Vec::new();
    for member in members {
        crate::private_dir(&member.data_dir)?;
        let log_path = member.data_dir.join("etcd.log");
        let log = crate::append_log(&log_path)?;
        let child = tokio::process::Command::new("setpriv")
            .args(["--pdeathsig", "KILL", "--", "etcd"])
            .args(["--name", &member.name])
            .arg("--data-dir")
            .arg(member.data_dir.join("data"))
            .args(["--listen-client-urls", &member.client_url])
            .args(["--advertise-client-urls", &member.client_url])
            .args(["--listen-peer-urls", &member.peer_url])
            .args(["--initial-advertise-peer-urls", &member.peer_url])
            .args(["--initial-cluster", &cluster.join(",")])
            .args(["--initial-cluster-token", "everynode"])
            .args(["--initial-cluster-state", "new"])
            .args(extra)
            .stdin(std::process::Stdio::null())
            .stdout(std::process::Stdio::null())
            .stderr(log)
            .spawn()
            .map_err(|e| Error::Startup(format!("starting {}: {e}", member.name)))?;
        println!(
            "etcd member {} pid {} at {}",
            member.name,
            child.id().unwrap_or(0),
            member.client_url
        );
        children.push(child);
    }
    Ok(children)
}

/// Waits until the cluster answers (a leader is elected), at most a minute.
pub async fn wait_ready(members: &[Member]) -> Result<(), Error> {
    let urls = client_urls(members);
    let deadline = tokio::time::Instant::now() + Duration::from_secs(60);
    loop {
        match everynode_store::EtcdStore::connect(&urls, None).await {
            Ok(_) => return Ok(()),
            Err(e) if tokio::time::Instant::now() >= deadline => {
                return Err(Error::Startup(format!(
                    "the local etcd cluster did not answer in a minute ({e}); see {}",
                    members
                        .first()
                        .map(|m| m.data_dir.join("etcd.log").display().to_string())
                        .unwrap_or_default()
                )));
            }
            Err(_) => tokio::time::sleep(Duration::from_millis(200)).await,
        }
    }
}

/// SIGTERM to each member, then SIGKILL after 10 s.
pub async fn stop(children: Vec<tokio::process::Child>) {
    for mut child in children {
        crate::terminate(&mut child, Duration::from_secs(10)).await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ports_follow_the_api_servers() {
        let members = plan(Path::new("/d"), 6443).expect("plan");
        assert_eq!(
            client_urls(&members),
            vec![
                "http://127.0.0.1:6453",
                "http://127.0.0.1:6454",
                "http://127.0.0.1:6455"
            ]
        );
        assert_eq!(members[2].peer_url, "http://127.0.0.1:6465");
        assert!(plan(Path::new("/d"), 65530).is_err());
    }
}
