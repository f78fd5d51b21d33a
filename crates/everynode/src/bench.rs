//! `everynode bench`: the scale benchmark (issue 7). Starts an API server and a hollow fleet of
//! N nodes as child processes of this one (so their memory and CPU are measured apart from the
//! benchmark's own), then measures, stage by stage: all nodes Ready; a DaemonSet's N pods Ready;
//! a rolling update with maxUnavailable 10 %; one with maxSurge 10 %. During the pod stages a
//! probe patches a ConfigMap every 50 ms to measure mutating-API latency as a client sees it.
//! Last, the floor: the store alone, durably writing as many objects as each pod stage wrote
//! (its store revision delta), in concurrent batches that share fsyncs.

use crate::Error;

mod endpoint_slices;
mod visibility;
use everynode_clock::Clock;
use everynode_store::{EmbeddedStore, Store};
use futures::{StreamExt, TryStreamExt};
use k8s_openapi::api::apps::v1::DaemonSet;
use k8s_openapi::api::core::v1::{ConfigMap, Namespace, Node};
use kube::api::{Api, ListParams, Patch, PatchParams, PostParams};
use kube::runtime::watcher;
use kube::{Client, ResourceExt};
use serde_json::json;
use std::collections::HashMap;
use std::io::{IsTerminal, Write};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::io::AsyncBufReadExt;
use tokio::time::Instant;

#[derive(clap::Args, Clone, Debug)]
pub struct BenchArgs {
    /// Hollow nodes to start.
    #[arg(long, default_value_t = 1000)]
    pub nodes: usize,
    /// Working directory for the server's data and the logs (default: a new temporary
    /// directory, removed at the end).
    #[arg(long)]
    pub data_dir: Option<PathBuf>,
    /// Give up when a stage has not finished after this many seconds.
    #[arg(long, default_value_t = 900)]
    pub stage_timeout: u64,
    /// How long a hollow container takes to be Running and Ready.
    #[arg(long, default_value_t = 500)]
    pub hollow_start_delay_ms: u64,
    /// One more argument for the bench's `everynode server` (repeat it for several), to
    /// measure a server setting apart, e.g. `--server-arg=--no-audit-log`.
    #[arg(long = "server-arg", allow_hyphen_values = true)]
    pub server_args: Vec<String>,
    /// The server's store: `embedded` (its own file), or `etcd`: a one-member etcd (Debian's
    /// etcd-server) started in the working directory, or the one at `--etcd-servers`. The
    /// floor is measured on the same store.
    #[arg(long, value_enum, default_value_t = BenchStore::Embedded)]
    pub store: BenchStore,
    /// With `--store etcd`: an etcd already running (comma-separated client URLs), used
    /// instead of starting one. The floor writes under `/everynode-bench-floor/` and removes
    /// what it wrote.
    #[arg(long, value_delimiter = ',')]
    pub etcd_servers: Vec<String>,
    /// After the rollouts, follow the merged log of every pod (each hollow container writing a
    /// line a second) for this many seconds, sampling the server's memory; 0 skips it.
    #[arg(long, default_value_t = 0)]
    pub log_follow_seconds: u64,
}

/// Which store the bench's server runs on.
#[derive(clap::ValueEnum, Clone, Copy, Debug, PartialEq, Eq)]
pub enum BenchStore {
    Embedded,
    Etcd,
}

/// Where the floor is measured: the embedded store in a fresh file, or etcd.
enum FloorStore {
    Embedded(PathBuf),
    Etcd(Vec<String>),
}

/// A child process measured through /proc.
struct Child {
    name: &'static str,
    child: tokio::process::Child,
    pid: u32,
}

impl Child {
    fn status_kb(&self, field: &str) -> u64 {
        std::fs::read_to_string(format!("/proc/{}/status", self.pid))
            .ok()
            .and_then(|s| {
                s.lines()
                    .find(|l| l.starts_with(field))
                    .and_then(|l| l.split_whitespace().nth(1))
                    .and_then(|v| v.parse().ok())
            })
            .unwrap_or(0)
    }

    /// User plus system CPU time so far.
    fn cpu(&self) -> Duration {
        let ticks = std::fs::read_to_string(format!("/proc/{}/stat", self.pid))
            .ok()
            .and_then(|s| {
                // Fields after the command name (which may hold spaces) start at `state`;
                // utime and stime are the 12th and 13th of them.
                let rest = s.rsplit_once(')')?.1;
                let f: Vec<&str> = rest.split_whitespace().collect();
                Some(f.get(11)?.parse::<u64>().ok()? + f.get(12)?.parse::<u64>().ok()?)
            })
            .unwrap_or(0);
        // USER_HZ is 100 on every Linux ABI this binary is built for.
        Duration::from_millis(ticks * 10)
    }

    async fn stop(mut self) {
        if let Some(pid) = self.child.id() {
            let _ = nix::sys::signal::kill(
                nix::unistd::Pid::from_raw(pid as i32),
                nix::sys::signal::Signal::SIGTERM,
            );
        }
        if tokio::time::timeout(Duration::from_secs(40), self.child.wait())
            .await
            .is_err()
        {
            tracing::warn!(process = self.name, "did not stop in 40 s; killing it");
            let _ = self.child.kill().await;
        }
    }
}

fn log_file(dir: &Path, name: &str) -> Result<std::fs::File, Error> {
    let path = dir.join(name);
    std::fs::File::create(&path).map_err(|source| Error::Read { path, source })
}

/// A one-member etcd for `--store etcd`, in `<dir>/etcd`, on free loopback ports, with room
/// for a 5,000-node run's history (8 GiB backend quota).
async fn start_etcd(dir: &Path) -> Result<(Vec<String>, Vec<tokio::process::Child>), Error> {
    crate::etcd_cluster::check_installed("everynode bench --store etcd")?;
    let free_port = || {
        std::net::TcpListener::bind("127.0.0.1:0")
            .and_then(|l| l.local_addr())
            .map(|a| a.port())
            .map_err(|e| Error::Startup(format!("finding a free port for etcd: {e}")))
    };
    let member = crate::etcd_cluster::Member {
        name: "bench".into(),
        client_url: format!("http://127.0.0.1:{}", free_port()?),
        peer_url: format!("http://127.0.0.1:{}", free_port()?),
        data_dir: dir.join("etcd"),
    };
    let members = [member];
    let children = crate::etcd_cluster::start(&members, &["--quota-backend-bytes", "8589934592"])?;
    if let Err(e) = crate::etcd_cluster::wait_ready(&members).await {
        crate::etcd_cluster::stop(children).await;
        return Err(e);
    }
    Ok((crate::etcd_cluster::client_urls(&members), children))
}

async fn start_server(exe: &Path, dir: &Path, extra: &[String]) -> Result<Child, Error> {
    let mut child = tokio::process::Command::new(exe)
        .args(["server", "--listen", "127.0.0.1:0", "--data-dir"])
        .arg(dir.join("server"))
        .args(extra)
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::piped())
        .stderr(log_file(dir, "server.log")?)
        .kill_on_drop(true)
        .spawn()
        .map_err(|e| Error::Startup(format!("starting the server: {e}")))?;
    let pid = child.id().unwrap_or(0);
    let stdout = child
        .stdout
        .take()
        .ok_or_else(|| Error::Startup("the server has no stdout".into()))?;
    let mut lines = tokio::io::BufReader::new(stdout).lines();
    let listening = tokio::time::timeout(Duration::from_secs(60), async {
        while let Ok(Some(line)) = lines.next_line().await {
            if line.contains("listening on") {
                return true;
            }
        }
        false
    })
    .await;
    if listening != Ok(true) {
        return Err(Error::Startup(format!(
            "the server did not start; see {}",
            dir.join("server.log").display()
        )));
    }
    // Keep draining stdout so the server never blocks on a full pipe.
    tokio::spawn(async move { while let Ok(Some(_)) = lines.next_line().await {} });
    Ok(Child {
        name: "server",
        child,
        pid,
    })
}

fn start_fleet(exe: &Path, dir: &Path, args: &BenchArgs) -> Result<Child, Error> {
    let state = dir.join("hollow");
    std::fs::create_dir_all(&state).map_err(|source| Error::Read {
        path: state.clone(),
        source,
    })?;
    let child = tokio::process::Command::new(exe)
        .arg("agent")
        .arg("--kubeconfig")
        .arg(dir.join("server").join("kubeconfig"))
        .args([
            "--name",
            "hollow",
            "--listen",
            "127.0.0.1:0",
            "--runtime",
            "hollow",
        ])
        .arg("--hollow-nodes")
        .arg(args.nodes.to_string())
        .arg("--hollow-start-delay-ms")
        .arg(args.hollow_start_delay_ms.to_string())
        .args(if args.log_follow_seconds > 0 {
            vec!["--hollow-log-lines"]
        } else {
            Vec::new()
        })
        .arg("--state-dir")
        .arg(&state)
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::null())
        .stderr(log_file(dir, "hollow.log")?)
        .kill_on_drop(true)
        .spawn()
        .map_err(|e| Error::Startup(format!("starting the hollow fleet: {e}")))?;
    let pid = child.id().unwrap_or(0);
    Ok(Child {
        name: "hollow fleet",
        child,
        pid,
    })
}

/// Progress on stderr: one rewritten line on a terminal, a line every few seconds otherwise.
struct Progress {
    stage: &'static str,
    total: usize,
    started: Instant,
    last_line: Instant,
    tty: bool,
}

impl Progress {
    fn new(stage: &'static str, total: usize) -> Self {
        Progress {
            stage,
            total,
            started: Instant::now(),
            last_line: Instant::now(),
            tty: std::io::stderr().is_terminal(),
        }
    }

    fn show(&mut self, done: usize) {
        let text = format!(
            "{}: {done}/{} after {:.1} s",
            self.stage,
            self.total,
            self.started.elapsed().as_secs_f64()
        );
        if self.tty {
            eprint!("\r{text}\x1b[K");
            let _ = std::io::stderr().flush();
        } else if self.last_line.elapsed() >= Duration::from_secs(5) {
            eprintln!("{text}");
            self.last_line = Instant::now();
        }
    }

    fn finish(&self) -> Duration {
        let took = self.started.elapsed();
        let (start, clear) = if self.tty { ("\r", "\x1b[K") } else { ("", "") };
        eprintln!(
            "{start}{}: {}/{} in {:.2} s{clear}",
            self.stage,
            self.total,
            self.total,
            took.as_secs_f64()
        );
        took
    }
}

fn stage_error(stage: &str, e: impl std::fmt::Display) -> Error {
    Error::Startup(format!("bench stage '{stage}': {e}"))
}

/// Counts Ready nodes from a watch until `total` are Ready.
async fn nodes_ready(client: &Client, total: usize, timeout: Duration) -> Result<Duration, Error> {
    let mut progress = Progress::new("nodes Ready", total);
    let mut ready: HashMap<String, bool> = HashMap::new();
    let stream = watcher(Api::<Node>::all(client.clone()), watcher::Config::default());
    futures::pin_mut!(stream);
    let deadline = Instant::now() + timeout;
    loop {
        let count = ready.values().filter(|r| **r).count();
        progress.show(count);
        if count >= total {
            return Ok(progress.finish());
        }
        let event = tokio::time::timeout_at(deadline, stream.try_next())
            .await
            .map_err(|_| {
                stage_error(
                    "nodes Ready",
                    format!("only {count}/{total} after {timeout:?}"),
                )
            })?
            .map_err(|e| stage_error("nodes Ready", e))?;
        let is_ready = |n: &Node| {
            n.status
                .as_ref()
                .and_then(|s| s.conditions.as_ref())
                .is_some_and(|c| c.iter().any(|c| c.type_ == "Ready" && c.status == "True"))
        };
        match event {
            Some(watcher::Event::Apply(n) | watcher::Event::InitApply(n)) => {
                ready.insert(n.name_any(), is_ready(&n));
            }
            Some(watcher::Event::Delete(n)) => {
                ready.remove(&n.name_any());
            }
            Some(watcher::Event::Init | watcher::Event::InitDone) => {}
            None => return Err(stage_error("nodes Ready", "the watch ended")),
        }
    }
}

/// Polls the DaemonSet until its rollout is complete as `kubectl rollout status` judges it.
async fn rolled_out(
    api: &Api<DaemonSet>,
    stage: &'static str,
    total: usize,
    timeout: Duration,
) -> Result<Duration, Error> {
    let mut progress = Progress::new(stage, total);
    let deadline = Instant::now() + timeout;
    loop {
        let ds = api
            .get("hollow-agent")
            .await
            .map_err(|e| stage_error(stage, e))?;
        let generation = ds.metadata.generation.unwrap_or(0);
        let s = ds.status.clone().unwrap_or_default();
        let updated = s.updated_number_scheduled.unwrap_or(0) as usize;
        let available = s.number_available.unwrap_or(0) as usize;
        progress.show(updated.min(available));
        if s.observed_generation.unwrap_or(0) >= generation
            && s.desired_number_scheduled as usize == total
            && updated == total
            && available == total
        {
            return Ok(progress.finish());
        }
        if Instant::now() > deadline {
            return Err(stage_error(
                stage,
                format!("{updated} updated and {available} available of {total} after {timeout:?}"),
            ));
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

/// Mutating requests issued every 50 ms while a stage runs; their latencies as a client sees them.
struct Probe {
    samples: Arc<Mutex<Vec<Duration>>>,
    task: tokio::task::JoinHandle<()>,
}

impl Probe {
    async fn start(client: &Client) -> Result<Self, Error> {
        let api: Api<ConfigMap> = Api::namespaced(client.clone(), "default");
        let cm: ConfigMap = serde_json::from_value(
            json!({"metadata": {"name": "everynode-bench-probe"}, "data": {"n": "0"}}),
        )
        .map_err(|e| stage_error("probe", e))?;
        if let Err(e) = api.create(&PostParams::default(), &cm).await
            && !matches!(&e, kube::Error::Api(s) if s.code == 409)
        {
            return Err(stage_error("probe", e));
        }
        let samples = Arc::new(Mutex::new(Vec::new()));
        let sink = Arc::clone(&samples);
        let task = tokio::spawn(async move {
            for n in 1u64.. {
                let patch = json!({"data": {"n": n.to_string()}});
                let started = Instant::now();
                let ok = api
                    .patch(
                        "everynode-bench-probe",
                        &PatchParams::default(),
                        &Patch::Merge(&patch),
                    )
                    .await
                    .is_ok();
                if ok && let Ok(mut s) = sink.lock() {
                    s.push(started.elapsed());
                }
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
        });
        Ok(Probe { samples, task })
    }

    /// The latencies since the last call.
    fn take(&self) -> Latency {
        let mut v = self
            .samples
            .lock()
            .map(|mut s| std::mem::take(&mut *s))
            .unwrap_or_default();
        v.sort();
        let at = |q: f64| {
            v.get(((v.len() as f64 * q).ceil() as usize).saturating_sub(1))
                .copied()
                .unwrap_or_default()
        };
        Latency {
            count: v.len(),
            p50: at(0.50),
            p99: at(0.99),
            max: v.last().copied().unwrap_or_default(),
        }
    }
}

impl Drop for Probe {
    fn drop(&mut self) {
        self.task.abort();
    }
}

struct Latency {
    count: usize,
    p50: Duration,
    p99: Duration,
    max: Duration,
}

impl std::fmt::Display for Latency {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let ms = |d: Duration| d.as_secs_f64() * 1000.0;
        write!(
            f,
            "p50 {:.1} ms, p99 {:.1} ms, max {:.1} ms ({} patches)",
            ms(self.p50),
            ms(self.p99),
            ms(self.max),
            self.count
        )
    }
}

/// The store's current revision, as the resourceVersion of a list.
async fn revision(client: &Client) -> u64 {
    Api::<Namespace>::all(client.clone())
        .list_metadata(&ListParams::default().limit(1))
        .await
        .ok()
        .and_then(|l| l.metadata.resource_version)
        .and_then(|rv| rv.parse().ok())
        .unwrap_or(0)
}

/// One pod stage's figures.
struct Stage {
    name: &'static str,
    took: Duration,
    writes: u64,
    latency: Latency,
    floor: Duration,
    slices: endpoint_slices::Convergence,
}

/// Writers the floor runs at once.
const FLOOR_WRITERS: usize = 64;

/// The floor for `writes` store writes of which `objects` create new keys, on the store the
/// server used: `objects` keys, each created and then updated its share of the other writes.
async fn floor(
    store: &FloorStore,
    stage: usize,
    objects: usize,
    writes: u64,
    value: &[u8],
) -> Result<Duration, Error> {
    match store {
        FloorStore::Embedded(dir) => {
            let path = dir.join(format!("floor-{stage}.redb"));
            let took =
                embedded_floor(&path, &format!("/floor/{stage}"), objects, writes, value).await;
            let _ = std::fs::remove_file(&path);
            took
        }
        FloorStore::Etcd(urls) => {
            etcd_floor(
                urls,
                &format!("/everynode-bench-floor/{stage}"),
                objects,
                writes,
                value,
            )
            .await
        }
    }
}

/// Each key's share of `writes` after its create: (updates per key, keys with one more).
fn updates_per_key(objects: usize, writes: u64) -> (u64, usize) {
    let updates = writes.saturating_sub(objects as u64);
    (
        updates / objects as u64,
        (updates % objects as u64) as usize,
    )
}

/// etcd alone: 64 clients, each its own connection, writing as the server writes — a create is
/// a transaction on the key's absence, an update one on its mod revision. Keys are outside
/// `/registry/`, so no API server watches them; they are removed afterwards.
async fn etcd_floor(
    urls: &[String],
    prefix: &str,
    objects: usize,
    writes: u64,
    value: &[u8],
) -> Result<Duration, Error> {
    use etcd_client::{Client as EtcdClient, Compare, CompareOp, DeleteOptions, Txn, TxnOp};
    let failed = |e: etcd_client::Error| Error::Startup(format!("the etcd floor: {e}"));
    let mut clients = Vec::with_capacity(FLOOR_WRITERS);
    for _ in 0..FLOOR_WRITERS {
        clients.push(EtcdClient::connect(urls, None).await.map_err(failed)?);
    }
    let objects = objects.max(1);
    let (per_key, extra) = updates_per_key(objects, writes);
    let value = value.to_vec();
    let started = Instant::now();
    futures::stream::iter(0..objects)
        .map(|i| {
            let mut client = clients[i % FLOOR_WRITERS].clone();
            let value = value.clone();
            let key = format!("{prefix}/{i}");
            async move {
                let created = client
                    .txn(
                        Txn::new()
                            .when([Compare::create_revision(key.as_str(), CompareOp::Equal, 0)])
                            .and_then([TxnOp::put(key.as_str(), value.clone(), None)]),
                    )
                    .await?;
                let mut revision = created.header().map_or(0, |h| h.revision());
                for _ in 0..per_key + u64::from(i < extra) {
                    let updated = client
                        .txn(
                            Txn::new()
                                .when([Compare::mod_revision(
                                    key.as_str(),
                                    CompareOp::Equal,
                                    revision,
                                )])
                                .and_then([TxnOp::put(key.as_str(), value.clone(), None)]),
                        )
                        .await?;
                    revision = updated.header().map_or(0, |h| h.revision());
                }
                Ok::<(), etcd_client::Error>(())
            }
        })
        .buffer_unordered(FLOOR_WRITERS)
        .try_collect::<Vec<()>>()
        .await
        .map_err(failed)?;
    let took = started.elapsed();
    if let Some(client) = clients.first_mut() {
        let _ = client
            .delete(prefix, Some(DeleteOptions::new().with_prefix()))
            .await;
    }
    Ok(took)
}

/// The embedded store alone, 64 writers at a time (so concurrent writes share an fsync, as the
/// server's do).
async fn embedded_floor(
    path: &Path,
    prefix: &str,
    objects: usize,
    writes: u64,
    value: &[u8],
) -> Result<Duration, Error> {
    let store = Arc::new(EmbeddedStore::open(path, 1000)?);
    let objects = objects.max(1);
    let (per_key, extra) = updates_per_key(objects, writes);
    let value = bytes::Bytes::copy_from_slice(value);
    let started = Instant::now();
    futures::stream::iter(0..objects)
        .map(|i| {
            let store = Arc::clone(&store);
            let value = value.clone();
            let key = format!("{prefix}/{i}");
            async move {
                let mut kv = store.create(&key, value.clone()).await?;
                let n = per_key + u64::from(i < extra);
                for _ in 0..n {
                    kv = store.update(&key, value.clone(), kv.mod_revision).await?;
                }
                Ok::<(), everynode_store::Error>(())
            }
        })
        .buffer_unordered(FLOOR_WRITERS)
        .try_collect::<Vec<()>>()
        .await?;
    Ok(started.elapsed())
}

fn machine() -> (usize, u64) {
    let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
    let mem_kb = std::fs::read_to_string("/proc/meminfo")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("MemTotal:"))
                .and_then(|l| l.split_whitespace().nth(1))
                .and_then(|v| v.parse().ok())
        })
        .unwrap_or(0);
    (cores, mem_kb)
}

fn commit() -> String {
    std::process::Command::new("git")
        .args(["rev-parse", "--short", "HEAD"])
        .output()
        .ok()
        .filter(|o| o.status.success())
        .and_then(|o| String::from_utf8(o.stdout).ok())
        .map_or_else(|| "unknown".into(), |s| s.trim().to_owned())
}

fn today() -> String {
    everynode_clock::SystemClock
        .now()
        .strftime("%Y-%m-%d")
        .to_string()
}

pub async fn run(args: BenchArgs) -> Result<(), Error> {
    let (dir, temporary) = match &args.data_dir {
        Some(d) => (d.clone(), false),
        None => (
            std::env::temp_dir().join(format!("everynode-bench-{}", std::process::id())),
            true,
        ),
    };
    std::fs::create_dir_all(&dir).map_err(|source| Error::Read {
        path: dir.clone(),
        source,
    })?;
    let exe = std::env::current_exe()
        .map_err(|e| Error::Startup(format!("cannot find this executable: {e}")))?;
    let mut server_args = args.server_args.clone();
    let mut etcd_children = Vec::new();
    let floor_store = match args.store {
        BenchStore::Embedded => FloorStore::Embedded(dir.clone()),
        BenchStore::Etcd => {
            let urls = if args.etcd_servers.is_empty() {
                let (urls, children) = start_etcd(&dir).await?;
                etcd_children = children;
                urls
            } else {
                args.etcd_servers.clone()
            };
            server_args.push(format!("--etcd-servers={}", urls.join(",")));
            FloorStore::Etcd(urls)
        }
    };
    let server = match start_server(&exe, &dir, &server_args).await {
        Ok(server) => server,
        Err(e) => {
            crate::etcd_cluster::stop(etcd_children).await;
            return Err(e);
        }
    };
    // A signal ends the measurement: dropping it kills the fleet (kill_on_drop), and the server
    // is stopped below, so an interrupted bench leaves no process behind.
    let result = tokio::select! {
        r = measure(&exe, &dir, &args, &server, &floor_store) => r,
        () = crate::stop_signal() => Err(Error::Startup(
            "bench interrupted by a signal; the server and the fleet were stopped".into(),
        )),
    };
    server.stop().await;
    crate::etcd_cluster::stop(etcd_children).await;
    if temporary {
        let _ = std::fs::remove_dir_all(&dir);
    }
    let report = result?;
    println!("{report}");
    Ok(())
}

async fn measure(
    exe: &Path,
    dir: &Path,
    args: &BenchArgs,
    server: &Child,
    floor_store: &FloorStore,
) -> Result<String, Error> {
    let n = args.nodes;
    let timeout = Duration::from_secs(args.stage_timeout);
    let client =
        crate::server::client_from_kubeconfig(&dir.join("server").join("kubeconfig")).await?;
    let fleet = start_fleet(exe, dir, args)?;
    let outcome = stages(&client, n, timeout, (server, &fleet), floor_store).await;
    let outcome = match outcome {
        // The pod stages' figures stand even when a visibility request fails.
        Ok(report) => Ok(
            match visibility::measure(
                &client,
                n,
                server,
                Duration::from_secs(args.log_follow_seconds),
            )
            .await
            {
                Ok(rows) => add_rows(report, &rows),
                Err(e) => add_rows(report, &format!("| visibility stage | failed: {e} |\n")),
            },
        ),
        Err(e) => Err(e),
    };
    fleet.stop().await;
    outcome
}

/// `report` with `rows` added at the end of its table.
fn add_rows(report: String, rows: &str) -> String {
    let table = report.find("|---|").unwrap_or(0);
    match report[table..].find("\n\n") {
        Some(end) => {
            let end = table + end;
            format!("{}\n{}{}", &report[..end], rows.trim_end(), &report[end..])
        }
        None => report + rows,
    }
}

async fn stages(
    client: &Client,
    n: usize,
    timeout: Duration,
    (server, fleet): (&Child, &Child),
    floor_store: &FloorStore,
) -> Result<String, Error> {
    let started_cpu = (server.cpu(), fleet.cpu());
    let wall = Instant::now();
    let nodes_took = nodes_ready(client, n, timeout).await?;
    let idle_fleet_kb = fleet.status_kb("VmRSS:");
    let probe = Probe::start(client).await?;
    let api: Api<DaemonSet> = Api::namespaced(client.clone(), "default");
    let ds: DaemonSet = serde_json::from_value(json!({
        "metadata": {"name": "hollow-agent"},
        "spec": {"selector": {"matchLabels": {"name": "hollow-agent"}},
            "updateStrategy": {"type": "RollingUpdate", "rollingUpdate": {"maxUnavailable": "10%"}},
            "template": {"metadata": {"labels": {"name": "hollow-agent"}},
                "spec": {"containers": [{"name": "agent", "image": "registry.example/hollow-agent:1"}]}}}}))
    .map_err(|e| stage_error("create", e))?;
    let mut stages = Vec::new();
    // A Service selecting the DaemonSet's pods: its EndpointSlices follow every stage.
    let slice_watch = endpoint_slices::SliceWatch::start(client).await?;
    let before = revision(client).await;
    probe.take();
    api.create(&PostParams::default(), &ds)
        .await
        .map_err(|e| stage_error("create", e))?;
    let name = "DaemonSet create → all pods Ready";
    let took = rolled_out(&api, "DaemonSet pods Ready", n, timeout).await?;
    let writes = revision(client).await.saturating_sub(before);
    let latency = probe.take();
    stages.push(Stage {
        name,
        took,
        writes,
        latency,
        floor: Duration::ZERO,
        slices: slice_watch.converged(client, name, n, timeout).await?,
    });
    let busy_fleet_kb = fleet.status_kb("VmRSS:");
    for (name, strategy, image) in [
        (
            "rolling update, maxUnavailable 10%",
            json!({"type": "RollingUpdate", "rollingUpdate": {"maxUnavailable": "10%", "maxSurge": 0}}),
            "registry.example/hollow-agent:2",
        ),
        (
            "rolling update, maxSurge 10%",
            json!({"type": "RollingUpdate", "rollingUpdate": {"maxUnavailable": 0, "maxSurge": "10%"}}),
            "registry.example/hollow-agent:3",
        ),
    ] {
        let before = revision(client).await;
        probe.take();
        let patch = json!({"spec": {"updateStrategy": strategy,
            "template": {"spec": {"containers": [{"name": "agent", "image": image}]}}}});
        api.patch(
            "hollow-agent",
            &PatchParams::default(),
            &Patch::Strategic(&patch),
        )
        .await
        .map_err(|e| stage_error(name, e))?;
        let took = rolled_out(&api, name, n, timeout).await?;
        let writes = revision(client).await.saturating_sub(before);
        let latency = probe.take();
        stages.push(Stage {
            name,
            took,
            writes,
            latency,
            floor: Duration::ZERO,
            slices: slice_watch.converged(client, name, n, timeout).await?,
        });
    }
    drop(probe);
    let elapsed = wall.elapsed();
    let cpu = (
        server.cpu().saturating_sub(started_cpu.0),
        fleet.cpu().saturating_sub(started_cpu.1),
    );
    let server_peak_kb = server.status_kb("VmHWM:");
    let fleet_peak_kb = fleet.status_kb("VmHWM:");
    // A real pod as the server stores it, for the floor's values.
    let sample = Api::<k8s_openapi::api::core::v1::Pod>::namespaced(client.clone(), "default")
        .list(&ListParams::default().limit(1))
        .await
        .ok()
        .and_then(|l| l.items.into_iter().next())
        .and_then(|p| serde_json::to_vec(&p).ok())
        .unwrap_or_else(|| vec![b'x'; 2048]);
    eprintln!("floor: the store alone writes what each stage wrote");
    for (i, stage) in stages.iter_mut().enumerate() {
        stage.floor = floor(floor_store, i, n, stage.writes, &sample).await?;
    }
    Ok(report(
        floor_store,
        n,
        nodes_took,
        &stages,
        (server_peak_kb, fleet_peak_kb, idle_fleet_kb, busy_fleet_kb),
        (cpu.0, cpu.1, elapsed),
        sample.len(),
    ))
}

fn report(
    floor_store: &FloorStore,
    n: usize,
    nodes_took: Duration,
    stages: &[Stage],
    (server_peak_kb, fleet_peak_kb, idle_fleet_kb, busy_fleet_kb): (u64, u64, u64, u64),
    (server_cpu, fleet_cpu, elapsed): (Duration, Duration, Duration),
    pod_bytes: usize,
) -> String {
    let (cores, mem_kb) = machine();
    let secs = |d: Duration| d.as_secs_f64();
    let mb = |kb: u64| kb as f64 / 1024.0;
    let args: Vec<String> = std::env::args().skip(1).collect();
    let store = match floor_store {
        FloorStore::Etcd(_) => "etcd store (floor: etcd alone, 64 clients)",
        FloorStore::Embedded(_) => "embedded store",
    };
    let mut out = format!(
        "### {}, commit {}, {cores} cores (nproc {cores}), {:.0} GiB RAM, {store}\n\n\
         Command: `everynode {}`\n\n| measure | result |\n|---|---|\n",
        today(),
        commit(),
        mb(mem_kb) / 1024.0,
        args.join(" ")
    );
    out += &format!("| {n} hollow nodes Ready | {:.2} s |\n", secs(nodes_took));
    for s in stages {
        out += &format!(
            "| {} | {:.2} s ({:.0} pods/s); {} store writes; floor {:.2} s; **{:.1}× the floor** |\n",
            s.name,
            secs(s.took),
            n as f64 / secs(s.took).max(1e-9),
            s.writes,
            secs(s.floor),
            secs(s.took) / secs(s.floor).max(1e-9)
        );
    }
    for s in stages {
        out += &format!(
            "| mutating API latency during: {} | {} |\n",
            s.name, s.latency
        );
    }
    for s in stages {
        out += &format!(
            "| EndpointSlices of a Service over the pods, after: {} | converged {:.1} s after the last pod turned Ready, {:.2} s after the last pod change they show; {} slice writes; {} slices |\n",
            s.name,
            secs(s.slices.after_last_ready),
            secs(s.slices.after_last_pod_change),
            s.slices.writes,
            s.slices.slices
        );
    }
    out += &format!(
        "| server peak RSS (API server, store, controllers) | {:.0} MB |\n",
        mb(server_peak_kb)
    );
    out += &format!(
        "| hollow fleet RSS, idle / with pods / peak | {:.0} / {:.0} / {:.0} MB = **{:.0} KB per node** at peak |\n",
        mb(idle_fleet_kb),
        mb(busy_fleet_kb),
        mb(fleet_peak_kb),
        fleet_peak_kb as f64 / n.max(1) as f64
    );
    out += &format!(
        "| CPU over the {:.0} s run | server {:.1} s ({:.0}% of a core); fleet {:.1} s = {:.0} µs per node per second |\n",
        secs(elapsed),
        secs(server_cpu),
        100.0 * secs(server_cpu) / secs(elapsed).max(1e-9),
        secs(fleet_cpu),
        1e6 * secs(fleet_cpu) / secs(elapsed).max(1e-9) / n.max(1) as f64
    );
    let floor_writers = match floor_store {
        FloorStore::Etcd(_) => {
            "etcd alone, 64 clients of its own at a time (each write a transaction on the key's revision, as the server's)"
        }
        FloorStore::Embedded(_) => "the embedded store alone, 64 writers at a time",
    };
    out += &format!(
        "\nFloor: {floor_writers}, creating {n} pod objects ({pod_bytes} bytes each, a real pod as stored) and updating them until it has made as many writes as the stage did (its store revision delta: pods, bindings, status, events, leases).\n"
    );
    out
}
