//! One containerd per local node for `everynode up --runtime cri`: its config, CNI network and
//! process, all under `<data-dir>/cri/<node>/`, so N nodes on one machine behave like N
//! machines. Each node gets a bridge and a /24 of the pod network; the host routes between the
//! bridges, so pods on different local nodes reach each other.

use crate::Error;
use std::net::Ipv4Addr;
use std::path::{Path, PathBuf};
use std::time::Duration;

/// The Debian packages `--runtime cri` needs, named in the error when one is missing.
const PACKAGES: &str = "containerd runc containernetworking-plugins";
/// Where Debian's containernetworking-plugins put the CNI plugins.
pub const CNI_BIN_DIR: &str = "/usr/lib/cni";

/// One local node's containerd: where its files are.
#[derive(Clone, Debug)]
pub struct NodeRuntime {
    pub node: String,
    pub dir: PathBuf,
    pub pod_cidr: String,
    pub bridge: String,
    /// The node's address: `127.0.0.<i+1>` for node `i`. Every 127/8 address is the host's own
    /// loopback, so nothing needs configuring, and each node's node ports stay apart.
    pub node_ip: Ipv4Addr,
}

impl NodeRuntime {
    pub fn socket(&self) -> PathBuf {
        self.dir.join("containerd.sock")
    }

    pub fn endpoint(&self) -> String {
        format!("unix://{}", self.socket().display())
    }

    fn config_path(&self) -> PathBuf {
        self.dir.join("config.toml")
    }

    fn pid_path(&self) -> PathBuf {
        self.dir.join("containerd.pid")
    }

    pub fn cgroup_parent(&self) -> String {
        format!("/everynode/{}", self.node)
    }
}

/// The runtimes of nodes `1..=count`: node `i` gets the `i`-th /24 of `network` (a /16).
pub fn plan(data_dir: &Path, network: &str, count: usize) -> Result<Vec<NodeRuntime>, Error> {
    let base = network_base(network)?;
    // Bridge names must be unique on the host and at most 15 bytes: a short hash of the data
    // directory keeps two `up`s on one machine apart.
    let absolute = std::path::absolute(data_dir).unwrap_or_else(|_| data_dir.to_owned());
    let tag = everynode_api::fnv::fnv1a_32([absolute.as_os_str().as_encoded_bytes()]) & 0xffffff;
    if count > 254 {
        return Err(Error::Usage(
            "--runtime cri runs at most 254 local nodes (one /24 each)".into(),
        ));
    }
    Ok((1..=count)
        .map(|i| {
            let [a, b, _, _] = base.octets();
            NodeRuntime {
                node: format!("node-{i}"),
                dir: data_dir.join("cri").join(format!("node-{i}")),
                pod_cidr: format!("{a}.{b}.{i}.0/24"),
                bridge: format!("en{tag:06x}-{i}"),
                node_ip: Ipv4Addr::new(127, 0, 0, u8::try_from(i + 1).unwrap_or(u8::MAX)),
            }
        })
        .collect())
}

/// The network address of a `/16` such as `10.244.0.0/16`.
fn network_base(network: &str) -> Result<Ipv4Addr, Error> {
    let bad = || {
        Error::Usage(format!(
            "--pod-network-cidr {network:?}: want an IPv4 /16 such as 10.244.0.0/16"
        ))
    };
    let (address, prefix) = network.split_once('/').ok_or_else(bad)?;
    let address: Ipv4Addr = address.parse().map_err(|_| bad())?;
    if prefix != "16" {
        return Err(bad());
    }
    let [a, b, _, _] = address.octets();
    Ok(Ipv4Addr::new(a, b, 0, 0))
}

/// containerd's configuration for one node: every path under its directory, the CRI plugin
/// with this machine's needs (`restrict_oom_score_adj`: no CAP_SYS_RESOURCE in the sandbox),
/// network namespaces under the state directory, and the CNI configuration of this node.
pub fn config_toml(runtime: &NodeRuntime, sandbox_image: &str) -> String {
    let dir = runtime.dir.display();
    format!(
        r#"version = 2
root = "{dir}/root"
state = "{dir}/state"

[grpc]
  address = "{dir}/containerd.sock"

[ttrpc]
  address = "{dir}/containerd.sock.ttrpc"

[debug]
  address = "{dir}/debug.sock"
  level = "info"

[metrics]
  address = ""

[plugins."io.containerd.internal.v1.opt"]
  path = "{dir}/opt"

[plugins."io.containerd.grpc.v1.cri"]
  sandbox_image = "{sandbox_image}"
  restrict_oom_score_adj = true
  netns_mounts_under_state_dir = true
  stream_server_address = "127.0.0.1"
  stream_server_port = "0"
  enable_tls_streaming = false

  [plugins."io.containerd.grpc.v1.cri".containerd]
    snapshotter = "overlayfs"
    default_runtime_name = "runc"

    [plugins."io.containerd.grpc.v1.cri".containerd.runtimes.runc]
      runtime_type = "io.containerd.runc.v2"

      [plugins."io.containerd.grpc.v1.cri".containerd.runtimes.runc.options]
        Root = "{dir}/runc"

  [plugins."io.containerd.grpc.v1.cri".cni]
    bin_dir = "{CNI_BIN_DIR}"
    conf_dir = "{dir}/cni/conf"
    max_conf_num = 1
"#
    )
}

/// The node's CNI network: a bridge with this node's /24 from host-local IPAM (leases under
/// the node's directory), hostPort through portmap, and loopback.
pub fn cni_conflist(runtime: &NodeRuntime) -> String {
    let config = serde_json::json!({
        "cniVersion": "1.0.0",
        "name": "everynode",
        "plugins": [
            {
                "type": "bridge",
                "bridge": runtime.bridge,
                "isGateway": true,
                "ipMasq": false,
                "hairpinMode": true,
                "ipam": {
                    "type": "host-local",
                    "dataDir": runtime.dir.join("cni").join("ipam"),
                    "ranges": [[{"subnet": runtime.pod_cidr}]],
                    "routes": [{"dst": "0.0.0.0/0"}],
                },
            },
            {"type": "portmap", "capabilities": {"portMappings": true}, "snat": true},
            {"type": "loopback"},
        ],
    });
    serde_json::to_string_pretty(&config).unwrap_or_default()
}

/// Checks that containerd, runc and the CNI plugins are installed.
pub fn check_installed() -> Result<(), Error> {
    let found = |name: &str| {
        std::env::var_os("PATH")
            .is_some_and(|paths| std::env::split_paths(&paths).any(|dir| dir.join(name).is_file()))
    };
    let mut missing = Vec::new();
    for binary in ["containerd", "runc", "ctr"] {
        if !found(binary) {
            missing.push(binary.to_owned());
        }
    }
    if !Path::new(CNI_BIN_DIR).join("bridge").is_file() {
        missing.push(format!("{CNI_BIN_DIR}/bridge"));
    }
    if missing.is_empty() {
        return Ok(());
    }
    Err(Error::Startup(format!(
        "--runtime cri needs {} (not found); on Debian: apt-get install -y {PACKAGES}",
        missing.join(", ")
    )))
}

/// A containerd of an earlier `up` that is still running (found by its pid file and checked by
/// its command line), to stop before starting a new one on the same directories.
fn leftover(runtime: &NodeRuntime) -> Option<nix::unistd::Pid> {
    let pid: i32 = std::fs::read_to_string(runtime.pid_path())
        .ok()?
        .trim()
        .parse()
        .ok()?;
    let cmdline = std::fs::read(format!("/proc/{pid}/cmdline")).ok()?;
    let config = runtime.config_path();
    let ours = cmdline
        .split(|b| *b == 0)
        .any(|a| a == config.as_os_str().as_encoded_bytes());
    ours.then(|| nix::unistd::Pid::from_raw(pid))
}

/// Writes the node's configuration and starts its containerd (logging to
/// `<dir>/containerd.log`). Containers of an earlier run keep running under their shims and
/// are adopted by the agent.
pub async fn start(
    runtime: &NodeRuntime,
    sandbox_image: &str,
) -> Result<tokio::process::Child, Error> {
    if let Some(pid) = leftover(runtime) {
        tracing::warn!(node = %runtime.node, pid = pid.as_raw(), "a containerd of an earlier `everynode up` is still running; stopping it");
        let _ = nix::sys::signal::kill(pid, nix::sys::signal::Signal::SIGTERM);
        for _ in 0..100 {
            if leftover(runtime).is_none() {
                break;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }
    crate::private_dir(&runtime.dir)?;
    let write = |path: PathBuf, text: String| {
        std::fs::create_dir_all(path.parent().unwrap_or(Path::new(".")))
            .and_then(|()| std::fs::write(&path, text))
            .map_err(|source| Error::Read { path, source })
    };
    let socket = runtime.socket();
    if socket.as_os_str().len() + ".ttrpc".len() >= 108 {
        return Err(Error::Usage(format!(
            "the data directory's path is too long for containerd's sockets ({}); use a shorter --data-dir",
            socket.display()
        )));
    }
    write(runtime.config_path(), config_toml(runtime, sandbox_image))?;
    write(
        runtime
            .dir
            .join("cni")
            .join("conf")
            .join("10-everynode.conflist"),
        cni_conflist(runtime),
    )?;
    let log_path = runtime.dir.join("containerd.log");
    let log = crate::append_log(&log_path)?;
    let err_log = log.try_clone().map_err(|source| Error::Read {
        path: log_path.clone(),
        source,
    })?;
    // everynode runs with umask 077 (its files hold secrets); containerd must not inherit it, or
    // every snapshot's root is 0700 and no container user but root can run anything.
    let child = tokio::process::Command::new("sh")
        .args(["-c", "umask 022 && exec containerd --config \"$1\"", "sh"])
        .arg(runtime.config_path())
        .stdin(std::process::Stdio::null())
        .stdout(log)
        .stderr(err_log)
        .spawn()
        .map_err(|e| Error::Startup(format!("starting containerd for {}: {e}", runtime.node)))?;
    let _ = std::fs::write(runtime.pid_path(), format!("{}\n", child.id().unwrap_or(0)));
    let mut child = child;
    // Ready when its socket answers, so agents and `everynode image import` find it.
    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    loop {
        if tokio::net::UnixStream::connect(&socket).await.is_ok() {
            return Ok(child);
        }
        if let Ok(Some(status)) = child.try_wait() {
            return Err(Error::Startup(format!(
                "containerd for {} exited ({status}); see {}",
                runtime.node,
                log_path.display()
            )));
        }
        if tokio::time::Instant::now() >= deadline {
            let _ = child.kill().await;
            return Err(Error::Startup(format!(
                "containerd for {} did not open {} in 30 s; see {}",
                runtime.node,
                socket.display(),
                log_path.display()
            )));
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// Stops a node's runtime after its agent: removes every pod sandbox left (releasing IPs and
/// host ports through CNI), stops containerd, and deletes the bridge and the cgroups it made.
pub async fn stop(runtime: &NodeRuntime, child: &mut tokio::process::Child) {
    use everynode_agent::runtime::Runtime;
    if let Ok(cri) = everynode_agent::runtime::cri::CriRuntime::connect(
        &runtime.endpoint(),
        runtime.cgroup_parent(),
        Duration::from_secs(2),
    )
    .await
    {
        cri.remove_others(&[]).await;
    }
    crate::terminate(child, Duration::from_secs(10)).await;
    let _ = std::fs::remove_file(runtime.pid_path());
    let _ = tokio::process::Command::new("ip")
        .args(["link", "delete", &runtime.bridge])
        .stderr(std::process::Stdio::null())
        .status()
        .await;
    remove_cgroups(&runtime.cgroup_parent());
    // Directories containerd's shims and CNI's result cache create at fixed paths; removed
    // only when empty, so a system containerd's are never touched.
    for dir in [
        "/run/containerd/s",
        "/run/containerd",
        "/var/lib/cni/results",
        "/var/lib/cni",
    ] {
        let _ = std::fs::remove_dir(dir);
    }
}

/// What the host looked like before the node runtimes changed it.
pub struct HostBefore {
    ip_forward: Option<String>,
}

const IP_FORWARD: &str = "/proc/sys/net/ipv4/ip_forward";

pub fn host_before() -> HostBefore {
    HostBefore {
        ip_forward: std::fs::read_to_string(IP_FORWARD).ok(),
    }
}

/// After the last node runtime stopped: puts back what the CNI plugins changed on the host and
/// do not undo themselves — the bridge plugin's `ip_forward`, and portmap's shared NAT chains
/// once no rule of any pod is left in them (another CNI user's would keep them).
pub async fn restore_host(before: &HostBefore) {
    let iptables = |args: Vec<&str>| {
        let mut command = tokio::process::Command::new("iptables");
        command
            .args(["-w", "-t", "nat"])
            .args(args)
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::null());
        command
    };
    let dnat = iptables(vec!["-S", "CNI-HOSTPORT-DNAT"]).output().await;
    let unused = dnat.is_ok_and(|o| {
        o.status.success()
            && String::from_utf8_lossy(&o.stdout)
                .lines()
                .all(|l| l.starts_with("-N"))
    });
    if unused {
        let local_dnat = |chain: &'static str| {
            vec![
                "-D",
                chain,
                "-m",
                "addrtype",
                "--dst-type",
                "LOCAL",
                "-j",
                "CNI-HOSTPORT-DNAT",
            ]
        };
        let masquerade = vec![
            "-D",
            "POSTROUTING",
            "-m",
            "comment",
            "--comment",
            "CNI portfwd requiring masquerade",
            "-j",
            "CNI-HOSTPORT-MASQ",
        ];
        let jumps = [local_dnat("PREROUTING"), local_dnat("OUTPUT"), masquerade];
        for jump in jumps {
            let _ = iptables(jump).status().await;
        }
        for chain in [
            "CNI-HOSTPORT-DNAT",
            "CNI-HOSTPORT-MASQ",
            "CNI-HOSTPORT-SETMARK",
        ] {
            let _ = iptables(vec!["-F", chain]).status().await;
            let _ = iptables(vec!["-X", chain]).status().await;
        }
    }
    if let Some(value) = &before.ip_forward
        && std::fs::read_to_string(IP_FORWARD).ok().as_ref() != Some(value)
    {
        let _ = std::fs::write(IP_FORWARD, value);
    }
}

/// Removes the (empty) cgroup directories `parent` made in each v1 hierarchy, and their
/// parent when this was the last node in it.
fn remove_cgroups(parent: &str) {
    let Ok(hierarchies) = std::fs::read_dir("/sys/fs/cgroup") else {
        return;
    };
    let relative = parent.trim_start_matches('/');
    for hierarchy in hierarchies.flatten() {
        let dir = hierarchy.path().join(relative);
        let _ = std::fs::remove_dir(&dir);
        if let Some(up) = dir.parent() {
            let _ = std::fs::remove_dir(up);
        }
    }
}

/// `everynode image import`: loads an OCI or docker archive into containerd's `k8s.io`
/// namespace (where the CRI looks) through containerd's own `ctr`, on every local node of a
/// data directory or on the sockets given.
pub async fn import(file: &Path, data_dir: &Path, addresses: &[PathBuf]) -> Result<(), Error> {
    if !file.is_file() {
        return Err(Error::Usage(format!("{}: no such file", file.display())));
    }
    let sockets: Vec<PathBuf> = if addresses.is_empty() {
        let nodes = data_dir.join("cri");
        let mut found: Vec<PathBuf> = std::fs::read_dir(&nodes)
            .map_err(|source| Error::Read {
                path: nodes.clone(),
                source,
            })?
            .flatten()
            .map(|e| e.path().join("containerd.sock"))
            .filter(|s| s.exists())
            .collect();
        found.sort();
        found
    } else {
        addresses.to_vec()
    };
    if sockets.is_empty() {
        return Err(Error::Usage(format!(
            "no running node runtime under {} (start `everynode up --runtime cri` first, or pass --address)",
            data_dir.join("cri").display()
        )));
    }
    for socket in sockets {
        let output = tokio::process::Command::new("ctr")
            .arg("--address")
            .arg(&socket)
            .args([
                "--namespace",
                "k8s.io",
                "images",
                "import",
                "--no-unpack=false",
            ])
            .arg(file)
            .output()
            .await
            .map_err(|e| Error::Startup(format!("running ctr ({PACKAGES}): {e}")))?;
        if !output.status.success() {
            return Err(Error::Startup(format!(
                "importing {} into {}: {}",
                file.display(),
                socket.display(),
                String::from_utf8_lossy(&output.stderr).trim()
            )));
        }
        print!("{}", String::from_utf8_lossy(&output.stdout));
        println!("imported into {}", socket.display());
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_node_gets_its_own_subnet_bridge_and_directory() {
        let nodes = plan(Path::new("/d"), "10.244.0.0/16", 2).expect("a plan");
        assert_eq!(nodes[0].pod_cidr, "10.244.1.0/24");
        assert_eq!(nodes[1].pod_cidr, "10.244.2.0/24");
        assert_ne!(nodes[0].bridge, nodes[1].bridge);
        assert!(nodes.iter().all(|n| n.bridge.len() <= 15));
        assert_eq!(nodes[1].dir, Path::new("/d/cri/node-2"));
        assert_eq!(nodes[1].cgroup_parent(), "/everynode/node-2");
        assert!(plan(Path::new("/d"), "10.244.0.0/24", 1).is_err());
        assert!(plan(Path::new("/d"), "10.244.0.0/16", 255).is_err());
    }

    #[test]
    fn config_keeps_everything_under_the_node_directory() {
        let node = &plan(Path::new("/d"), "10.244.0.0/16", 1).expect("a plan")[0];
        let text = config_toml(node, "docker.io/local/pause:1");
        assert!(text.contains("restrict_oom_score_adj = true"));
        assert!(text.contains("netns_mounts_under_state_dir = true"));
        let keys = ["address", "root", "Root", "state", "path", "conf_dir"];
        let key = |l: &str| l.trim_start().split(' ').next().unwrap_or("").to_owned();
        for line in text.lines().filter(|l| keys.contains(&key(l).as_str())) {
            let value = line.split('"').nth(1).unwrap_or("");
            assert!(
                value.is_empty() || value.starts_with("/d/cri/node-1/"),
                "{line}"
            );
        }
        let cni: serde_json::Value = serde_json::from_str(&cni_conflist(node)).expect("json");
        assert_eq!(
            cni["plugins"][0]["ipam"]["ranges"][0][0]["subnet"],
            "10.244.1.0/24"
        );
        assert_eq!(
            cni["plugins"][0]["ipam"]["dataDir"],
            "/d/cri/node-1/cni/ipam"
        );
    }
}
