//! The nftables table that steers this node's pods' traffic for cluster IPs into the proxy: a
//! `nat` prerouting chain that, for packets entering from the node's pod bridge, rewrites each
//! Service's cluster IP and port to the proxy's listener for it. One table per node, named
//! after it, so several nodes on one host keep apart, and replaced whole in one transaction.

use super::routes::Protocol;
use std::net::{Ipv4Addr, SocketAddr};
use std::process::Stdio;
use tokio::io::AsyncWriteExt;

/// One rewrite: traffic to `cluster_ip:port` goes to the proxy at `to`.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub struct Intercept {
    pub protocol: Protocol,
    pub cluster_ip: Ipv4Addr,
    pub port: u16,
    pub to: SocketAddr,
}

/// Not retryable as such: `nft` refused or could not run; the next change tries again.
#[derive(Debug, thiserror::Error)]
pub enum NftError {
    #[error("cannot run nft: {0}")]
    Spawn(#[from] std::io::Error),
    #[error("nft refused the proxy's rules: {0}")]
    Refused(String),
}

/// The node's table name: node names are DNS subdomains, and nft names take `_` for `-`/`.`.
pub fn table_name(node: &str) -> String {
    let safe: String = node
        .chars()
        .map(|c| if c.is_ascii_alphanumeric() { c } else { '_' })
        .collect();
    format!("everynode_proxy_{safe}")
}

fn quoted(text: &str) -> String {
    format!("\"{}\"", text.replace(['"', '\\'], ""))
}

/// The script that replaces the node's table with one holding `intercepts`: creating it first
/// makes the delete safe when it does not exist, and `nft -f` applies the whole script as one
/// transaction, so traffic never sees a half-written table.
pub fn ruleset(table: &str, bridge: &str, intercepts: &[Intercept]) -> String {
    let mut script = format!("table ip {table}\ndelete table ip {table}\ntable ip {table} {{\n");
    script.push_str(
        "  chain prerouting {\n    type nat hook prerouting priority dstnat; policy accept;\n",
    );
    for i in intercepts {
        let protocol = match i.protocol {
            Protocol::Tcp => "tcp",
            Protocol::Udp => "udp",
        };
        script.push_str(&format!(
            "    iifname {} ip daddr {} {protocol} dport {} dnat to {}\n",
            quoted(bridge),
            i.cluster_ip,
            i.port,
            i.to
        ));
    }
    script.push_str("  }\n}\n");
    script
}

async fn nft(script: &str) -> Result<(), NftError> {
    let mut child = tokio::process::Command::new("nft")
        .args(["-f", "-"])
        .stdin(Stdio::piped())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .kill_on_drop(true)
        .spawn()?;
    if let Some(mut stdin) = child.stdin.take() {
        stdin.write_all(script.as_bytes()).await?;
    }
    let out = child.wait_with_output().await?;
    if out.status.success() {
        Ok(())
    } else {
        Err(NftError::Refused(
            String::from_utf8_lossy(&out.stderr).trim().to_owned(),
        ))
    }
}

/// Replaces the node's table.
pub async fn apply(table: &str, bridge: &str, intercepts: &[Intercept]) -> Result<(), NftError> {
    nft(&ruleset(table, bridge, intercepts)).await
}

/// Removes the node's table (when the agent stops).
pub async fn remove(table: &str) -> Result<(), NftError> {
    nft(&format!("table ip {table}\ndelete table ip {table}\n")).await
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_table_is_named_after_the_node_and_replaced_whole() {
        assert_eq!(
            table_name("node-1.example"),
            "everynode_proxy_node_1_example"
        );
        let script = ruleset(
            "everynode_proxy_node_1",
            "en12ab34-1",
            &[Intercept {
                protocol: Protocol::Tcp,
                cluster_ip: Ipv4Addr::new(10, 96, 0, 10),
                port: 80,
                to: "10.251.1.1:41000".parse().expect("address"),
            }],
        );
        assert_eq!(
            script,
            "table ip everynode_proxy_node_1\n\
             delete table ip everynode_proxy_node_1\n\
             table ip everynode_proxy_node_1 {\n  \
             chain prerouting {\n    type nat hook prerouting priority dstnat; policy accept;\n    \
             iifname \"en12ab34-1\" ip daddr 10.96.0.10 tcp dport 80 dnat to 10.251.1.1:41000\n  \
             }\n}\n"
        );
    }
}
