//! API server benchmarks against a real `everynode server` process on this machine:
//! pod creates per second, watch fan-out (every event to N watchers), and with `--abuse`, how
//! much clients listing every pod in a loop slow a well-behaved client's small requests
//! (issue 15: one abusive client must not raise another's p99 by more than 2x).
//!
//! `cargo build --release -p everynode -p everynode-bench && target/release/apiserver-bench`

use clap::Parser;
use futures::{StreamExt, TryStreamExt};
use k8s_openapi::api::core::v1::Pod;
use kube::api::{Api, PostParams, WatchEvent, WatchParams};
use kube::config::{KubeConfigOptions, Kubeconfig};
use kube::{Client, Config};
use serde_json::json;
use std::io::{BufRead, BufReader};
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::time::Duration;
use tokio::time::Instant;

#[derive(Parser)]
#[command(about = "Benchmarks the everynode API server: creates per second and watch fan-out.")]
struct Args {
    /// The everynode binary to start (a release build).
    #[arg(long, default_value = "target/release/everynode")]
    everynode: String,
    /// Pods to create in the create benchmark.
    #[arg(long, default_value_t = 10_000)]
    creates: usize,
    /// Concurrent creating clients.
    #[arg(long, default_value_t = 64)]
    concurrency: usize,
    /// Watchers in the fan-out benchmark.
    #[arg(long, default_value_t = 1_000)]
    watchers: usize,
    /// Events each watcher must receive in the fan-out benchmark.
    #[arg(long, default_value_t = 100)]
    events: usize,
    /// Store backend of the server.
    #[arg(long, default_value = "embedded")]
    store: String,
    /// Run only the abuse benchmark: `--creates` pods are made first, then a well-behaved
    /// client's GETs are timed alone and while this many clients list every pod in a loop.
    #[arg(long)]
    abuse: Option<usize>,
    /// Requests the well-behaved client makes in each phase of the abuse benchmark.
    #[arg(long, default_value_t = 2_000)]
    victim_requests: usize,
    /// Abuse and measure as the administrator (`system:masters`, exempt from fairness, as
    /// upstream's exempt priority level) rather than as two ordinary users with `view`.
    #[arg(long)]
    as_admin: bool,
}

/// Ordinary users of the abuse benchmark, from the server's `--token-auth-file`.
const ABUSER_TOKEN: &str = "abuser-token-0123456789";
const VICTIM_TOKEN: &str = "victim-token-0123456789";

struct Server {
    child: Child,
    dir: tempfile::TempDir,
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn start(args: &Args) -> Result<Server, String> {
    let dir = tempfile::tempdir().map_err(|e| e.to_string())?;
    let tokens = dir.path().join("tokens.csv");
    std::fs::write(
        &tokens,
        format!("{ABUSER_TOKEN},abuser,abuser-uid\n{VICTIM_TOKEN},victim,victim-uid\n"),
    )
    .map_err(|e| e.to_string())?;
    let mut child = Command::new(&args.everynode)
        .args([
            "server",
            "--listen",
            "127.0.0.1:0",
            "--store",
            &args.store,
            "--data-dir",
        ])
        .arg(dir.path())
        .arg("--token-auth-file")
        .arg(&tokens)
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .map_err(|e| format!("cannot start {}: {e}", args.everynode))?;
    let stdout = child.stdout.take().ok_or("no stdout")?;
    let mut line = String::new();
    BufReader::new(stdout)
        .read_line(&mut line)
        .map_err(|e| e.to_string())?;
    if !line.contains("listening on") {
        return Err(format!("server did not start: {line}"));
    }
    Ok(Server { child, dir })
}

async fn client(server: &Server) -> Result<Client, String> {
    let kc =
        Kubeconfig::read_from(server.dir.path().join("kubeconfig")).map_err(|e| e.to_string())?;
    let config = Config::from_custom_kubeconfig(kc, &KubeConfigOptions::default())
        .await
        .map_err(|e| e.to_string())?;
    Client::try_from(config).map_err(|e| e.to_string())
}

fn pod(name: &str, labels: serde_json::Value) -> Result<Pod, String> {
    serde_json::from_value(json!({
        "metadata": {"name": name, "labels": labels},
        "spec": {"containers": [{"name": "agent", "image": "fluentd:v1.16", "resources": {"requests": {"cpu": "100m", "memory": "200Mi"}}}]}
    }))
    .map_err(|e| e.to_string())
}

fn percentile(sorted: &[Duration], p: f64) -> Duration {
    if sorted.is_empty() {
        return Duration::ZERO;
    }
    let idx = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[idx.min(sorted.len() - 1)]
}

fn ms(d: Duration) -> String {
    format!("{:.2} ms", d.as_secs_f64() * 1000.0)
}

async fn creates(client: &Client, args: &Args) -> Result<(), String> {
    let pods: Api<Pod> = Api::namespaced(client.clone(), "default");
    let next = Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let started = Instant::now();
    let mut tasks = Vec::new();
    for _ in 0..args.concurrency {
        let (pods, next, total) = (pods.clone(), Arc::clone(&next), args.creates);
        tasks.push(tokio::spawn(async move {
            let mut latencies = Vec::new();
            loop {
                let i = next.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                if i >= total {
                    return Ok::<_, String>(latencies);
                }
                let p = pod(&format!("create-{i}"), json!({"bench": "create"}))?;
                let t = Instant::now();
                pods.create(&PostParams::default(), &p)
                    .await
                    .map_err(|e| e.to_string())?;
                latencies.push(t.elapsed());
            }
        }));
    }
    let mut latencies = Vec::new();
    for t in tasks {
        latencies.extend(t.await.map_err(|e| e.to_string())??);
    }
    let elapsed = started.elapsed();
    latencies.sort();
    println!(
        "creates: {} pods, {} clients: {:.1} s, {:.0} creates/s; latency p50 {} p99 {} max {}",
        args.creates,
        args.concurrency,
        elapsed.as_secs_f64(),
        args.creates as f64 / elapsed.as_secs_f64(),
        ms(percentile(&latencies, 0.5)),
        ms(percentile(&latencies, 0.99)),
        ms(latencies.last().copied().unwrap_or_default()),
    );
    Ok(())
}

async fn fan_out(client: &Client, args: &Args) -> Result<(), String> {
    let pods: Api<Pod> = Api::namespaced(client.clone(), "default");
    let start_rv = pods
        .list(&kube::api::ListParams::default().limit(1))
        .await
        .map_err(|e| e.to_string())?
        .metadata
        .resource_version
        .unwrap_or_default();
    let params = WatchParams::default().labels("bench=fanout").timeout(290);
    let mut watchers = Vec::new();
    let (ready_tx, mut ready_rx) = tokio::sync::mpsc::channel::<()>(args.watchers);
    for _ in 0..args.watchers {
        let (pods, params, rv, events, ready) = (
            pods.clone(),
            params.clone(),
            start_rv.clone(),
            args.events,
            ready_tx.clone(),
        );
        watchers.push(tokio::spawn(async move {
            let mut stream = pods
                .watch(&params, &rv)
                .await
                .map_err(|e| e.to_string())?
                .boxed();
            let _ = ready.send(()).await;
            let mut received = Vec::with_capacity(events);
            while received.len() < events {
                match stream.try_next().await.map_err(|e| e.to_string())? {
                    Some(WatchEvent::Added(p)) => {
                        received.push((p.metadata.name.unwrap_or_default(), Instant::now()))
                    }
                    Some(_) => {}
                    None => return Err("watch ended early".to_owned()),
                }
            }
            Ok::<_, String>(received)
        }));
    }
    for _ in 0..args.watchers {
        ready_rx.recv().await.ok_or("watchers did not start")?;
    }
    let started = Instant::now();
    let mut acked = std::collections::HashMap::new();
    for i in 0..args.events {
        let name = format!("fanout-{i}");
        pods.create(
            &PostParams::default(),
            &pod(&name, json!({"bench": "fanout"}))?,
        )
        .await
        .map_err(|e| e.to_string())?;
        acked.insert(name, Instant::now());
    }
    let mut delays = Vec::with_capacity(args.watchers * args.events);
    let mut last = started;
    for w in watchers {
        for (name, at) in w.await.map_err(|e| e.to_string())?? {
            let sent = acked.get(&name).copied().unwrap_or(started);
            delays.push(at.saturating_duration_since(sent));
            last = last.max(at);
        }
    }
    delays.sort();
    let total = last.duration_since(started);
    println!(
        "fan-out: {} watchers x {} events = {} deliveries in {:.2} s ({:.0} deliveries/s); create-ack to receipt p50 {} p99 {} max {}",
        args.watchers,
        args.events,
        delays.len(),
        total.as_secs_f64(),
        delays.len() as f64 / total.as_secs_f64(),
        ms(percentile(&delays, 0.5)),
        ms(percentile(&delays, 0.99)),
        ms(delays.last().copied().unwrap_or_default()),
    );
    Ok(())
}

/// One well-behaved client's sequential GETs of one pod: their latencies, sorted.
async fn victim(client: &Client, requests: usize) -> Result<Vec<Duration>, String> {
    let pods: Api<Pod> = Api::namespaced(client.clone(), "default");
    let mut latencies = Vec::with_capacity(requests);
    for _ in 0..requests {
        let t = Instant::now();
        pods.get("create-0").await.map_err(|e| e.to_string())?;
        latencies.push(t.elapsed());
    }
    latencies.sort();
    Ok(latencies)
}

/// The well-behaved client on a runtime and connection of its own, so that what it measures is
/// the server, not the abusers' parsing in this process.
fn victim_apart(kubeconfig: std::path::PathBuf, requests: usize) -> Result<Vec<Duration>, String> {
    std::thread::spawn(move || {
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .map_err(|e| e.to_string())?;
        runtime.block_on(async {
            let kc = Kubeconfig::read_from(&kubeconfig).map_err(|e| e.to_string())?;
            let config = Config::from_custom_kubeconfig(kc, &KubeConfigOptions::default())
                .await
                .map_err(|e| e.to_string())?;
            let client = Client::try_from(config).map_err(|e| e.to_string())?;
            victim(&client, requests).await
        })
    })
    .join()
    .map_err(|_| "the victim's thread panicked".to_owned())?
}

/// A kubeconfig like the administrator's, for the user of `token` (the abuse benchmark's
/// ordinary users), or the administrator's own with `--as-admin`.
fn kubeconfig_as(server: &Server, token: Option<&str>) -> Result<std::path::PathBuf, String> {
    let admin = server.dir.path().join("kubeconfig");
    let Some(token) = token else {
        return Ok(admin);
    };
    let admin_token = std::fs::read_to_string(server.dir.path().join("admin.token"))
        .map_err(|e| e.to_string())?;
    let text = std::fs::read_to_string(&admin).map_err(|e| e.to_string())?;
    let path = server
        .dir
        .path()
        .join(format!("{}.kubeconfig", &token[..6]));
    std::fs::write(&path, text.replace(admin_token.trim(), token)).map_err(|e| e.to_string())?;
    Ok(path)
}

/// Lets the abuse benchmark's users read everything (the `view` ClusterRole).
async fn grant_view(client: &Client) -> Result<(), String> {
    let bindings: Api<k8s_openapi::api::rbac::v1::ClusterRoleBinding> = Api::all(client.clone());
    let binding = serde_json::from_value(json!({
        "metadata": {"name": "abuse-bench-view"},
        "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "ClusterRole", "name": "view"},
        "subjects": [
            {"apiGroup": "rbac.authorization.k8s.io", "kind": "User", "name": "abuser"},
            {"apiGroup": "rbac.authorization.k8s.io", "kind": "User", "name": "victim"},
        ],
    }))
    .map_err(|e| e.to_string())?;
    bindings
        .create(&kube::api::PostParams::default(), &binding)
        .await
        .map_err(|e| e.to_string())?;
    // The authorizer's policy follows the watch cache; give it a moment.
    tokio::time::sleep(Duration::from_secs(1)).await;
    Ok(())
}

async fn abuse(
    server: &Server,
    client: &Client,
    args: &Args,
    abusers: usize,
) -> Result<(), String> {
    let (kubeconfig, abuser) = if args.as_admin {
        (kubeconfig_as(server, None)?, client.clone())
    } else {
        grant_view(client).await?;
        let kc = Kubeconfig::read_from(kubeconfig_as(server, Some(ABUSER_TOKEN))?)
            .map_err(|e| e.to_string())?;
        let config = Config::from_custom_kubeconfig(kc, &KubeConfigOptions::default())
            .await
            .map_err(|e| e.to_string())?;
        (
            kubeconfig_as(server, Some(VICTIM_TOKEN))?,
            Client::try_from(config).map_err(|e| e.to_string())?,
        )
    };
    let requests = args.victim_requests;
    let alone = {
        let kubeconfig = kubeconfig.clone();
        tokio::task::spawn_blocking(move || victim_apart(kubeconfig, requests))
            .await
            .map_err(|e| e.to_string())??
    };
    let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let mut tasks = Vec::new();
    for _ in 0..abusers {
        // One request at a time per abuser; concurrent ones go over separate connections. The
        // body is read, not parsed: the abusers' own CPU is not the server's.
        let client = abuser.clone();
        let stop = Arc::clone(&stop);
        tasks.push(tokio::spawn(async move {
            let mut lists = 0usize;
            while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                let request = http::Request::get("/api/v1/namespaces/default/pods")
                    .body(Vec::new())
                    .map_err(|e| e.to_string());
                if let Ok(request) = request
                    && client.request_text(request).await.is_ok()
                {
                    lists += 1;
                }
            }
            lists
        }));
    }
    // Let the abusers get going before timing.
    tokio::time::sleep(Duration::from_secs(2)).await;
    let started = Instant::now();
    let abused = tokio::task::spawn_blocking(move || victim_apart(kubeconfig, requests))
        .await
        .map_err(|e| e.to_string())??;
    let elapsed = started.elapsed();
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    let mut lists = 0;
    for t in tasks {
        lists += t.await.map_err(|e| e.to_string())?;
    }
    let (p50, p99) = (percentile(&alone, 0.5), percentile(&alone, 0.99));
    let (a50, a99) = (percentile(&abused, 0.5), percentile(&abused, 0.99));
    println!(
        "abuse ({}): GET of one pod, {} requests: alone p50 {} p99 {}; with {abusers} clients listing all {} pods in a loop p50 {} p99 {} max {} (p99 x{:.1}); {:.1} lists/s",
        if args.as_admin {
            "as the administrator"
        } else {
            "as two users with view"
        },
        args.victim_requests,
        ms(p50),
        ms(p99),
        args.creates,
        ms(a50),
        ms(a99),
        ms(abused.last().copied().unwrap_or_default()),
        a99.as_secs_f64() / p99.as_secs_f64().max(1e-9),
        lists as f64 / (elapsed.as_secs_f64() + 2.0),
    );
    Ok(())
}

#[tokio::main]
async fn main() -> Result<(), String> {
    let args = Args::parse();
    let server = start(&args)?;
    let client = client(&server).await?;
    creates(&client, &args).await?;
    if let Some(abusers) = args.abuse {
        return abuse(&server, &client, &args, abusers).await;
    }
    fan_out(&client, &args).await?;
    Ok(())
}
