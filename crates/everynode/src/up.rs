//! `everynode up`: the whole cluster on this machine. The API server and controllers run in
//! this process; each node agent is a child process with its own state directory (a hollow
//! fleet is one child), so an agent can crash or be killed like a real node's.

use crate::Error;
use crate::agent::RuntimeKind;
use crate::containerd;
use crate::server::{self, ControllerFlags, ServerArgs};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

#[derive(clap::Args, Clone, Debug)]
pub struct UpArgs {
    /// Where data, credentials, the kubeconfig and agent state live.
    #[arg(long, default_value = "everynode-data")]
    pub data_dir: PathBuf,
    /// Address of the API server (HTTPS); the web console is served at /ui on it.
    #[arg(long, default_value = "127.0.0.1:6443")]
    pub listen: SocketAddr,
    /// Number of nodes to run on this machine.
    #[arg(long, default_value_t = 1)]
    pub nodes: usize,
    /// How the nodes run pods.
    #[arg(long, value_enum, default_value_t = RuntimeKind::Process)]
    pub runtime: RuntimeKind,
    /// With --runtime cri: the pod network, a /16; node N gets its N-th /24.
    #[arg(long, default_value = "10.244.0.0/16")]
    pub pod_network_cidr: String,
    /// With --runtime cri: the image of each pod's sandbox (its "pause" container). These
    /// machines reach no registry: load it first with `everynode image import`.
    #[arg(long, default_value = "registry.k8s.io/pause:3.6")]
    pub pod_infra_image: String,
    /// With --runtime cri: where each node's cluster DNS sends names outside the cluster
    /// (`IP` or `IP:port`, comma-separated; default: this host's /etc/resolv.conf).
    #[arg(long, value_delimiter = ',')]
    pub dns_upstream: Vec<String>,
    /// High availability, for trying it on one machine: a 3-member etcd cluster (Debian's
    /// etcd-server; clients on the --listen port P+10..12, peers on P+20..22), two API servers
    /// on it (P and P+1, sharing the cluster's credentials through etcd), and agents that fail
    /// over between them. The kubeconfig has a context per server.
    #[arg(long)]
    pub ha: bool,
    #[command(flatten)]
    pub controllers: ControllerFlags,
}

/// How one agent is started: its name and extra arguments.
#[derive(Clone)]
struct AgentSpec {
    name: String,
    /// The agent endpoint's address: on the node's own address, where the API server looks.
    listen: String,
    extra: Vec<String>,
}

/// Restarts of a crashed agent wait 1 s, doubling to 30 s; an agent that ran a minute starts
/// over at 1 s.
const RESTART_FIRST: Duration = Duration::from_secs(1);
const RESTART_MAX: Duration = Duration::from_secs(30);
const RAN_LONG_ENOUGH: Duration = Duration::from_secs(60);

/// Where `up` keeps what it knows of one agent.
struct AgentFiles {
    state: PathBuf,
    log: PathBuf,
    pid: PathBuf,
}

fn files(data_dir: &Path, name: &str) -> AgentFiles {
    let agents = data_dir.join("agents");
    AgentFiles {
        state: agents.join(name),
        log: agents.join(format!("{name}.log")),
        pid: agents.join(format!("{name}.pid")),
    }
}

/// An agent of an earlier `up` that is still running (after a kill -9 of `up`, before the
/// kernel's parent-death signal existed, or from an older version): found by its pid file and
/// checked by its command line, so a reused pid is never touched.
fn leftover(files: &AgentFiles) -> Option<nix::unistd::Pid> {
    let pid: i32 = std::fs::read_to_string(&files.pid)
        .ok()?
        .trim()
        .parse()
        .ok()?;
    let cmdline = std::fs::read(format!("/proc/{pid}/cmdline")).ok()?;
    let args: Vec<&[u8]> = cmdline.split(|b| *b == 0).collect();
    let state = files.state.as_os_str().as_encoded_bytes();
    let is_ours = args.iter().any(|a| *a == b"agent") && args.contains(&state);
    is_ours.then(|| nix::unistd::Pid::from_raw(pid))
}

/// Stops an agent of an earlier `up` with SIGKILL: its containers keep running, and the agent
/// started next adopts them (SIGTERM would stop its pods).
async fn stop_leftover(name: &str, files: &AgentFiles) {
    let Some(pid) = leftover(files) else { return };
    tracing::warn!(
        agent = name,
        pid = pid.as_raw(),
        "an agent of an earlier `everynode up` is still running; stopping it so only one agent serves the node"
    );
    let _ = nix::sys::signal::kill(pid, nix::sys::signal::Signal::SIGKILL);
    for _ in 0..100 {
        if leftover(files).is_none() {
            return;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// How long a node credential made by `up` is valid; `up` makes a new one at every start.
const NODE_CREDENTIAL_DAYS: i64 = 365;

/// Writes `<data-dir>/agents/<node>/kubeconfig` (mode 0600): a client certificate of the
/// cluster CA for `system:node:<node>` in group `system:nodes`.
fn node_kubeconfig(
    data_dir: &Path,
    url: &str,
    node: &str,
    files: &AgentFiles,
) -> Result<PathBuf, Error> {
    use everynode_apiserver::credentials;
    crate::private_dir(&files.state)?;
    let user = format!("system:node:{node}");
    let (cert, key) = credentials::issue_client_certificate(
        data_dir,
        &user,
        Some("system:nodes"),
        NODE_CREDENTIAL_DAYS,
        everynode_clock::system().now(),
    )?;
    let ca = std::fs::read_to_string(data_dir.join("pki").join("ca.crt")).ok();
    let path = files.state.join("kubeconfig");
    let text = credentials::kubeconfig_with_certificate(url, ca.as_deref(), &user, &cert, &key);
    credentials::write_file(&path, text.as_bytes(), 0o600)?;
    Ok(path)
}

fn spawn_agent(
    exe: &Path,
    kubeconfig: &Path,
    files: &AgentFiles,
    spec: &AgentSpec,
    clock: &dyn everynode_clock::Clock,
) -> Result<tokio::process::Child, Error> {
    crate::private_dir(&files.state)?;
    // Appended, with a marker per start, so an earlier run's log is kept.
    let mut log = crate::append_log(&files.log)?;
    let child = tokio::process::Command::new(exe)
        .arg("agent")
        .arg("--kubeconfig")
        .arg(kubeconfig)
        .arg("--name")
        .arg(&spec.name)
        .arg("--state-dir")
        .arg(&files.state)
        .arg("--listen")
        .arg(&spec.listen)
        .arg("--exit-with-parent")
        .args(&spec.extra)
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::null())
        .stderr(log.try_clone().map_err(|source| Error::Read {
            path: files.log.clone(),
            source,
        })?)
        .spawn()
        .map_err(|e| Error::Startup(format!("starting agent {}: {e}", spec.name)))?;
    let pid = child.id().unwrap_or(0);
    use std::io::Write;
    let _ = writeln!(
        log,
        "--- everynode up started agent {} (pid {pid}) at {} ---",
        spec.name,
        everynode_clock::format_time(clock.now())
    );
    let _ = std::fs::write(&files.pid, format!("{pid}\n"));
    println!("everynode agent {} pid {pid}", spec.name);
    Ok(child)
}

/// Runs one agent until `stop` fires: restarts it with back-off when it exits on its own
/// (reaping it), and on stop sends SIGTERM (it stops its pods), then SIGKILL after 40 s.
async fn supervise(
    exe: PathBuf,
    kubeconfig: PathBuf,
    files: AgentFiles,
    spec: AgentSpec,
    mut stop: tokio::sync::watch::Receiver<bool>,
) {
    let clock = everynode_clock::system();
    let mut delay = RESTART_FIRST;
    loop {
        let mut child = match spawn_agent(&exe, &kubeconfig, &files, &spec, clock.as_ref()) {
            Ok(c) => c,
            Err(e) => {
                tracing::error!(agent = %spec.name, error = %e, "cannot start the agent; retrying");
                tokio::select! {
                    () = tokio::time::sleep(delay) => {}
                    _ = stop.changed() => return,
                }
                delay = (delay * 2).min(RESTART_MAX);
                continue;
            }
        };
        let started = tokio::time::Instant::now();
        tokio::select! {
            status = child.wait() => {
                let ran = started.elapsed();
                if ran >= RAN_LONG_ENOUGH {
                    delay = RESTART_FIRST;
                }
                tracing::warn!(agent = %spec.name, status = ?status.ok(), restart_in = ?delay, "the agent exited; restarting it");
                tokio::select! {
                    () = tokio::time::sleep(delay) => {}
                    _ = stop.changed() => return,
                }
                delay = (delay * 2).min(RESTART_MAX);
            }
            _ = stop.changed() => {
                stop_agent(&spec.name, &mut child).await;
                let _ = std::fs::remove_file(&files.pid);
                return;
            }
        }
    }
}

/// SIGTERM (the agent stops its pods), then SIGKILL if it is still running after 40 s.
async fn stop_agent(name: &str, child: &mut tokio::process::Child) {
    if crate::terminate(child, Duration::from_secs(40)).await {
        tracing::warn!(agent = name, "agent did not stop in 40 s; killed it");
    }
}

pub async fn run(args: UpArgs) -> Result<(), Error> {
    let node_runtimes = if args.runtime == RuntimeKind::Cri {
        containerd::check_installed()?;
        containerd::plan(&args.data_dir, &args.pod_network_cidr, args.nodes)?
    } else {
        Vec::new()
    };
    let exe = std::env::current_exe()
        .map_err(|e| Error::Startup(format!("cannot find this executable: {e}")))?;
    let (etcd_members, mut etcd_children) = if args.ha {
        crate::etcd_cluster::check_installed("everynode up --ha")?;
        crate::private_dir(&args.data_dir)?;
        let members = crate::etcd_cluster::plan(&args.data_dir, args.listen.port())?;
        let children = crate::etcd_cluster::start(&members, &[])?;
        if let Err(e) = crate::etcd_cluster::wait_ready(&members).await {
            crate::etcd_cluster::stop(children).await;
            return Err(e);
        }
        (members, children)
    } else {
        (Vec::new(), Vec::new())
    };
    let etcd_servers = crate::etcd_cluster::client_urls(&etcd_members);
    let mut started = match server::start(ServerArgs {
        controllers: args.controllers,
        etcd_servers: etcd_servers.clone(),
        ..ServerArgs::defaults(args.data_dir.clone(), args.listen)
    })
    .await
    {
        Ok(started) => started,
        Err(e) => {
            crate::etcd_cluster::stop(std::mem::take(&mut etcd_children)).await;
            return Err(e);
        }
    };
    let mut second = None;
    let mut server_urls = vec![started.url.clone()];
    if args.ha {
        match start_second_server(&exe, &args, &etcd_servers).await {
            Ok((child, url)) => {
                server_urls.push(url);
                second = Some(child);
            }
            Err(e) => {
                crate::etcd_cluster::stop(std::mem::take(&mut etcd_children)).await;
                return Err(e);
            }
        }
        write_ha_kubeconfig(&args.data_dir, &started.kubeconfig, &server_urls)?;
    }
    let dns_upstream: Vec<String> = if args.dns_upstream.is_empty() {
        Vec::new()
    } else {
        vec!["--dns-upstream".into(), args.dns_upstream.join(",")]
    };
    let specs: Vec<AgentSpec> = match args.runtime {
        RuntimeKind::Process => (1..=args.nodes)
            .map(|i| AgentSpec {
                name: format!("node-{i}"),
                listen: "127.0.0.1:0".into(),
                extra: Vec::new(),
            })
            .collect(),
        RuntimeKind::Hollow if args.nodes > 0 => vec![AgentSpec {
            name: "hollow".into(),
            listen: "127.0.0.1:0".into(),
            extra: vec![
                "--runtime".into(),
                "hollow".into(),
                "--hollow-nodes".into(),
                args.nodes.to_string(),
            ],
        }],
        RuntimeKind::Hollow => Vec::new(),
        RuntimeKind::Cri => node_runtimes
            .iter()
            .map(|r| AgentSpec {
                name: r.node.clone(),
                listen: format!("{}:0", r.node_ip),
                extra: dns_upstream
                    .iter()
                    .cloned()
                    .chain(vec![
                        "--runtime".into(),
                        "cri".into(),
                        "--container-runtime-endpoint".into(),
                        r.endpoint(),
                        "--pod-cidr".into(),
                        r.pod_cidr.clone(),
                        "--pod-bridge".into(),
                        r.bridge.clone(),
                        // Each local node has an address of its own, as on separate machines, so
                        // each serves its node ports.
                        "--node-ip".into(),
                        r.node_ip.to_string(),
                        "--cgroup-parent".into(),
                        r.cgroup_parent(),
                    ])
                    .collect(),
            })
            .collect(),
    };
    let host_before = containerd::host_before();
    let mut containerds = Vec::new();
    for runtime in &node_runtimes {
        match containerd::start(runtime, &args.pod_infra_image).await {
            Ok(child) => containerds.push((runtime.clone(), child)),
            Err(e) => {
                for (runtime, mut child) in containerds {
                    containerd::stop(&runtime, &mut child).await;
                }
                containerd::restore_host(&host_before).await;
                return Err(e);
            }
        }
    }
    let (stop_tx, stop_rx) = tokio::sync::watch::channel(false);
    let mut agents = tokio::task::JoinSet::new();
    for spec in specs {
        let files = files(&args.data_dir, &spec.name);
        stop_leftover(&spec.name, &files).await;
        // Each real node acts as itself (`system:node:<name>`), so the node authorizer keeps it
        // to its own Node, pods and their Secrets. The hollow agent stands for many nodes at
        // once and keeps the administrator's credential.
        let kubeconfig = if args.runtime == RuntimeKind::Hollow {
            started.kubeconfig.clone()
        } else {
            node_kubeconfig(&args.data_dir, &started.url, &spec.name, &files)?
        };
        let mut spec = spec;
        if server_urls.len() > 1 {
            spec.extra.push("--server".into());
            spec.extra.push(server_urls.join(","));
        }
        agents.spawn(supervise(
            exe.clone(),
            kubeconfig,
            files,
            spec,
            stop_rx.clone(),
        ));
    }
    if args.ha {
        eprintln!(
            "\nHigh availability: API servers {} on etcd {}; `kubectl config use-context everynode-2` talks to the second.",
            server_urls.join(" and "),
            etcd_servers.join(",")
        );
    }
    eprintln!(
        "\neverynode is up: API server {} with {} {} node(s).\n\
         Use kubectl with:\n  export KUBECONFIG={}\n  kubectl get nodes\n\
         Web console: {}/ui (sign in with the token in {}).\n\
         Agent logs are in {}. Ctrl-C stops everything.",
        started.url,
        args.nodes,
        match args.runtime {
            RuntimeKind::Process => "process",
            RuntimeKind::Hollow => "hollow",
            RuntimeKind::Cri => "CRI (containerd)",
        },
        started.kubeconfig.display(),
        started.url,
        args.data_dir.join("admin.token").display(),
        args.data_dir.join("agents").display()
    );
    let controllers = started.take_controllers();
    let result = tokio::select! {
        r = started.serve() => r,
        () = crate::stop_signal() => Ok(()),
    };
    tracing::info!("stopping: agents (and their pods), then the controllers and the API server");
    let _ = stop_tx.send(true);
    while agents.join_next().await.is_some() {}
    let had_runtimes = !containerds.is_empty();
    for (runtime, mut child) in containerds {
        containerd::stop(&runtime, &mut child).await;
    }
    if had_runtimes {
        containerd::restore_host(&host_before).await;
    }
    if let Some(mut child) = second {
        stop_child(&mut child).await;
    }
    if let Some(controllers) = controllers {
        controllers.stop().await;
    }
    crate::etcd_cluster::stop(etcd_children).await;
    tracing::info!("stopped");
    result
}

/// The second API server of `--ha`, as a child (dying with `up`) on the port after the
/// first's, with a data directory of its own and the cluster's credentials from etcd.
async fn start_second_server(
    exe: &Path,
    args: &UpArgs,
    etcd_servers: &[String],
) -> Result<(tokio::process::Child, String), Error> {
    use tokio::io::AsyncBufReadExt;
    let mut listen = args.listen;
    listen.set_port(args.listen.port().wrapping_add(1));
    let data_dir = args.data_dir.join("server-2");
    crate::private_dir(&data_dir)?;
    let log_path = data_dir.join("server.log");
    let log = crate::append_log(&log_path)?;
    let mut child = tokio::process::Command::new("setpriv")
        .args(["--pdeathsig", "KILL", "--"])
        .arg(exe)
        .arg("server")
        .arg("--data-dir")
        .arg(&data_dir)
        .arg("--listen")
        .arg(listen.to_string())
        .arg("--etcd-servers")
        .arg(etcd_servers.join(","))
        .arg("--cluster-secret-file")
        .arg(crate::shared_credentials::default_secret_file(
            &args.data_dir,
        ))
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::piped())
        .stderr(log)
        .spawn()
        .map_err(|e| Error::Startup(format!("starting the second API server: {e}")))?;
    let stdout = child
        .stdout
        .take()
        .ok_or_else(|| Error::Startup("the second API server's output".into()))?;
    let mut lines = tokio::io::BufReader::new(stdout).lines();
    let found = tokio::time::timeout(Duration::from_secs(60), async {
        while let Ok(Some(line)) = lines.next_line().await {
            if let Some(rest) = line.split("listening on ").nth(1) {
                return rest.split_whitespace().next().map(str::to_owned);
            }
        }
        None
    })
    .await;
    match found {
        Ok(Some(url)) => {
            // Its output is not read further: drain it so it never blocks on a full pipe.
            tokio::spawn(async move { while let Ok(Some(_)) = lines.next_line().await {} });
            println!(
                "everynode server 2 pid {} at {url}",
                child.id().unwrap_or(0)
            );
            Ok((child, url))
        }
        _ => {
            stop_child(&mut child).await;
            let log = std::fs::read_to_string(&log_path).unwrap_or_default();
            let tail: Vec<&str> = log.lines().rev().take(5).collect();
            Err(Error::Startup(format!(
                "the second API server did not start ({}): {}",
                log_path.display(),
                tail.into_iter().rev().collect::<Vec<_>>().join(" / ")
            )))
        }
    }
}

/// The admin kubeconfig of `--ha`: one cluster and context per server, `everynode-1` current.
fn write_ha_kubeconfig(data_dir: &Path, path: &Path, urls: &[String]) -> Result<(), Error> {
    use base64::Engine;
    let token_path = data_dir.join("admin.token");
    let token = std::fs::read_to_string(&token_path)
        .map_err(|source| Error::Read {
            path: token_path,
            source,
        })?
        .trim()
        .to_owned();
    let ca = std::fs::read_to_string(data_dir.join("pki").join("ca.crt")).unwrap_or_default();
    let ca = base64::engine::general_purpose::STANDARD.encode(ca);
    let mut text = String::from("apiVersion: v1\nkind: Config\nclusters:\n");
    for (i, url) in urls.iter().enumerate() {
        text.push_str(&format!(
            "- name: everynode-{n}\n  cluster:\n    server: {url}\n    certificate-authority-data: {ca}\n",
            n = i + 1
        ));
    }
    text.push_str(&format!(
        "users:\n- name: everynode-admin\n  user:\n    token: {token}\ncontexts:\n"
    ));
    for i in 1..=urls.len() {
        text.push_str(&format!(
            "- name: everynode-{i}\n  context:\n    cluster: everynode-{i}\n    user: everynode-admin\n    namespace: default\n"
        ));
    }
    text.push_str("current-context: everynode-1\n");
    everynode_apiserver::credentials::write_file(path, text.as_bytes(), 0o600)
        .map_err(|e| Error::Startup(e.to_string()))
}

/// SIGTERM, then SIGKILL after 30 s.
async fn stop_child(child: &mut tokio::process::Child) {
    crate::terminate(child, Duration::from_secs(30)).await;
}
