//! `kubectl everynode ...` (beyond.md §7.4): this binary, run under the name
//! `kubectl-everynode` (`everynode kubectl-plugin install DIR` makes the link), answers kubectl's
//! plugin calls with kubectl's conventions: `-n/--namespace`, `--kubeconfig`, `--context`,
//! `KUBECONFIG`, `-o json|yaml`.

use crate::Error;
use clap::{Parser, Subcommand, ValueEnum};
use kube::config::{KubeConfigOptions, Kubeconfig};
use serde_json::{Value, json};
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

/// The name kubectl finds a plugin by.
pub const PLUGIN_NAME: &str = "kubectl-everynode";

#[derive(Parser)]
#[command(
    name = "kubectl everynode",
    about = "everynode's DaemonSet views and rollout controls, as a kubectl plugin."
)]
pub struct PluginCli {
    /// The namespace (default: the context's, else "default").
    #[arg(short, long, global = true)]
    namespace: Option<String>,
    /// The kubeconfig file (default: KUBECONFIG, else ~/.kube/config).
    #[arg(long, global = true)]
    kubeconfig: Option<PathBuf>,
    /// The kubeconfig context to use.
    #[arg(long, global = true)]
    context: Option<String>,
    /// Print the API's answer as JSON or YAML instead of a table.
    #[arg(short, long, global = true, value_enum)]
    output: Option<Output>,
    #[command(subcommand)]
    command: PluginCommand,
}

#[derive(Clone, Copy, ValueEnum)]
enum Output {
    Json,
    Yaml,
}

#[derive(Subcommand)]
enum PluginCommand {
    /// Why nodes have no available pod of the DaemonSet, grouped by reason; with NODE, that
    /// node's full answer.
    Why {
        daemonset: String,
        node: Option<String>,
    },
    /// What applying FILE (a DaemonSet) would do to each node, and the rollout's batches.
    Preview {
        #[arg(short, long)]
        filename: PathBuf,
    },
    /// The logs of all the DaemonSet's pods as one stream, each line prefixed
    /// `[node/pod/container]`; with -f, pods that appear are joined.
    Logs {
        daemonset: String,
        #[arg(short, long)]
        follow: bool,
        #[arg(short, long)]
        container: Option<String>,
        /// Only pods on this node (repeatable).
        #[arg(long)]
        node: Vec<String>,
        /// Lines from the end of each container's log.
        #[arg(long)]
        tail: Option<i64>,
    },
    /// Pause the DaemonSet's rollout (everynode.dev/paused).
    Pause { daemonset: String },
    /// Resume a paused rollout.
    Resume { daemonset: String },
    /// Roll out to every node: remove the partition and the canary selector.
    Promote { daemonset: String },
    /// Wait for the rollout like `kubectl rollout status`, with a progress bar; exit 1 when
    /// its progress deadline is exceeded.
    Status {
        daemonset: String,
        /// Give up after this many seconds (0: wait as long as it takes).
        #[arg(long, default_value_t = 0)]
        timeout: u64,
    },
}

/// Runs the plugin with this process's arguments.
pub fn main() -> ExitCode {
    let cli = PluginCli::parse();
    let runtime = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(r) => r,
        Err(e) => {
            eprintln!("error: cannot start the runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    match runtime.block_on(run(cli)) {
        Ok(code) => code,
        Err(e) => {
            eprintln!("error: {e}");
            ExitCode::FAILURE
        }
    }
}

struct Api {
    client: kube::Client,
    namespace: String,
}

impl Api {
    fn path(&self, name: &str, sub: &str) -> String {
        let base = format!(
            "/apis/apps/v1/namespaces/{}/daemonsets/{name}",
            self.namespace
        );
        if sub.is_empty() {
            base
        } else {
            format!("{base}/{sub}")
        }
    }

    async fn call(&self, request: http::Request<Vec<u8>>) -> Result<Value, Error> {
        self.client
            .request::<Value>(request)
            .await
            .map_err(|e| match e {
                kube::Error::Api(status) => Error::Api(format!(
                    "Error from server ({}): {}",
                    status.reason, status.message
                )),
                other => Error::Api(other.to_string()),
            })
    }

    async fn get(&self, path: &str) -> Result<Value, Error> {
        let request = http::Request::get(path)
            .body(Vec::new())
            .map_err(|e| Error::Usage(e.to_string()))?;
        self.call(request).await
    }

    async fn send(
        &self,
        method: &str,
        path: &str,
        content_type: &str,
        body: &Value,
    ) -> Result<Value, Error> {
        let request = http::Request::builder()
            .method(method)
            .uri(path)
            .header(http::header::CONTENT_TYPE, content_type)
            .body(serde_json::to_vec(body).unwrap_or_default())
            .map_err(|e| Error::Usage(e.to_string()))?;
        self.call(request).await
    }
}

async fn connect(cli: &PluginCli) -> Result<Api, Error> {
    let options = KubeConfigOptions {
        context: cli.context.clone(),
        ..KubeConfigOptions::default()
    };
    let config = match &cli.kubeconfig {
        Some(path) => {
            let kc = Kubeconfig::read_from(path)
                .map_err(|e| Error::Usage(format!("{}: {e}", path.display())))?;
            kube::Config::from_custom_kubeconfig(kc, &options).await
        }
        None => kube::Config::from_kubeconfig(&options).await,
    }
    .map_err(|e| Error::Usage(format!("no usable kubeconfig: {e}")))?;
    let namespace = cli
        .namespace
        .clone()
        .unwrap_or_else(|| config.default_namespace.clone());
    let client = kube::Client::try_from(config).map_err(|e| Error::Startup(e.to_string()))?;
    Ok(Api { client, namespace })
}

fn print_as(output: Output, v: &Value) {
    match output {
        Output::Json => println!("{}", serde_json::to_string_pretty(v).unwrap_or_default()),
        Output::Yaml => print!("{}", serde_yaml_ng::to_string(v).unwrap_or_default()),
    }
}

async fn run(cli: PluginCli) -> Result<ExitCode, Error> {
    let api = connect(&cli).await?;
    match &cli.command {
        PluginCommand::Why { daemonset, node } => {
            let mut path = api.path(daemonset, "placement");
            if let Some(n) = node {
                path.push_str(&format!("?node={n}"));
            }
            let placement = api.get(&path).await?;
            match cli.output {
                Some(o) => print_as(o, &placement),
                None => match node {
                    Some(n) => print_node(&placement, n)?,
                    None => print_why(daemonset, &placement),
                },
            }
            Ok(ExitCode::SUCCESS)
        }
        PluginCommand::Preview { filename } => {
            let text = std::fs::read_to_string(filename).map_err(|source| Error::Read {
                path: filename.clone(),
                source,
            })?;
            let ds: Value = serde_yaml_ng::from_str(&text)
                .map_err(|e| Error::Usage(format!("{}: {e}", filename.display())))?;
            let name = ds["metadata"]["name"]
                .as_str()
                .unwrap_or_default()
                .to_owned();
            if name.is_empty() {
                return Err(Error::Usage(format!(
                    "{}: metadata.name is required",
                    filename.display()
                )));
            }
            let api = match ds["metadata"]["namespace"].as_str() {
                Some(ns) if cli.namespace.is_none() => Api {
                    client: api.client.clone(),
                    namespace: ns.to_owned(),
                },
                _ => api,
            };
            let preview = api
                .send("POST", &api.path(&name, "preview"), "application/json", &ds)
                .await?;
            match cli.output {
                Some(o) => print_as(o, &preview),
                None => print_preview(&name, &preview),
            }
            Ok(ExitCode::SUCCESS)
        }
        PluginCommand::Pause { daemonset } => {
            annotate(
                &api,
                daemonset,
                json!({"everynode.dev/paused": "true"}),
                "paused",
            )
            .await
        }
        PluginCommand::Resume { daemonset } => {
            annotate(
                &api,
                daemonset,
                json!({"everynode.dev/paused": null}),
                "resumed",
            )
            .await
        }
        PluginCommand::Promote { daemonset } => {
            let controls = json!({"everynode.dev/partition": null, "everynode.dev/canary-node-selector": null});
            annotate(&api, daemonset, controls, "promoted").await
        }
        PluginCommand::Status { daemonset, timeout } => status(&api, daemonset, *timeout).await,
        PluginCommand::Logs {
            daemonset,
            follow,
            container,
            node,
            tail,
        } => {
            let mut query: Vec<(&str, String)> = Vec::new();
            if *follow {
                query.push(("follow", "true".into()));
            }
            if let Some(c) = container {
                query.push(("container", c.clone()));
            }
            if let Some(t) = tail {
                query.push(("tailLines", t.to_string()));
            }
            for n in node {
                query.push(("node", n.clone()));
            }
            let mut path = api.path(daemonset, "log");
            if !query.is_empty() {
                path.push('?');
                path.push_str(
                    &query
                        .iter()
                        .map(|(k, v)| format!("{k}={}", urlencode(v)))
                        .collect::<Vec<_>>()
                        .join("&"),
                );
            }
            let request = http::Request::get(&path)
                .body(Vec::new())
                .map_err(|e| Error::Usage(e.to_string()))?;
            let stream = api
                .client
                .request_stream(request)
                .await
                .map_err(|e| match e {
                    kube::Error::Api(s) => {
                        Error::Api(format!("Error from server ({}): {}", s.reason, s.message))
                    }
                    other => Error::Api(other.to_string()),
                })?;
            let mut stream = Box::pin(stream);
            let mut buf = vec![0u8; 64 * 1024];
            loop {
                let n = futures::AsyncReadExt::read(&mut stream, &mut buf)
                    .await
                    .map_err(|e| Error::Api(format!("reading the log: {e}")))?;
                if n == 0 {
                    return Ok(ExitCode::SUCCESS);
                }
                let mut out = std::io::stdout().lock();
                // A closed stdout (`| head`) ends the command quietly.
                if std::io::Write::write_all(&mut out, &buf[..n]).is_err()
                    || std::io::Write::flush(&mut out).is_err()
                {
                    return Ok(ExitCode::SUCCESS);
                }
            }
        }
    }
}

async fn annotate(
    api: &Api,
    name: &str,
    annotations: Value,
    done: &str,
) -> Result<ExitCode, Error> {
    let patch = json!({"metadata": {"annotations": annotations}});
    api.send(
        "PATCH",
        &api.path(name, ""),
        "application/merge-patch+json",
        &patch,
    )
    .await?;
    println!("daemonset.apps/{name} {done}");
    Ok(ExitCode::SUCCESS)
}

fn urlencode(v: &str) -> String {
    v.bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'.' | b'_' | b'~' => {
                char::from(b).to_string()
            }
            _ => format!("%{b:02X}"),
        })
        .collect()
}

fn count(v: &Value) -> u64 {
    v.as_u64().unwrap_or(0)
}

fn print_why(name: &str, p: &Value) {
    let s = &p["summary"];
    println!(
        "daemonset.apps/{name}: {} nodes, {} should run, {} scheduled, {} ready, {} available, {} updated",
        count(&s["nodes"]),
        count(&s["shouldRun"]),
        count(&s["scheduled"]),
        count(&s["ready"]),
        count(&s["available"]),
        count(&s["updated"]),
    );
    let rows = p["nodes"].as_array().cloned().unwrap_or_default();
    let mut groups: std::collections::BTreeMap<String, Vec<&Value>> = Default::default();
    for row in &rows {
        if let Some(reason) = row["reason"].as_str() {
            groups.entry(reason.to_owned()).or_default().push(row);
        }
    }
    if groups.is_empty() {
        println!("every node that should run a pod runs an available one of the current template");
        return;
    }
    println!(
        "{:<22} {:>6}  {:<32} MESSAGE",
        "REASON", "NODES", "FIRST NODES"
    );
    for (reason, members) in &groups {
        let mut names: Vec<&str> = members
            .iter()
            .filter_map(|r| r["node"].as_str())
            .take(3)
            .collect();
        let more = members.len().saturating_sub(names.len());
        let mut first = names.join(",");
        if more > 0 {
            names.clear();
            first.push_str(&format!(" +{more}"));
        }
        let message = members
            .first()
            .and_then(|r| r["message"].as_str())
            .unwrap_or("");
        println!("{reason:<22} {:>6}  {first:<32} {message}", members.len());
    }
}

fn print_node(p: &Value, node: &str) -> Result<(), Error> {
    let row = p["nodes"]
        .as_array()
        .and_then(|rows| rows.iter().find(|r| r["node"] == node))
        .ok_or_else(|| Error::Usage(format!("node {node:?} not found")))?;
    let yes = |v: &Value| {
        if v.as_bool() == Some(true) {
            "yes"
        } else {
            "no"
        }
    };
    println!("node:        {node}");
    println!("should run:  {}", yes(&row["shouldRun"]));
    match row["pod"].as_str() {
        Some(pod) => println!(
            "pod:         {pod} ({}; ready: {}, available: {}, current template: {})",
            row["phase"].as_str().unwrap_or("Unknown"),
            yes(&row["ready"]),
            yes(&row["available"]),
            yes(&row["updated"]),
        ),
        None => println!("pod:         none"),
    }
    match row["reason"].as_str() {
        Some(reason) => {
            println!("reason:      {reason}");
            println!("message:     {}", row["message"].as_str().unwrap_or(""));
        }
        None => {
            println!("reason:      none: the node runs an available pod of the current template")
        }
    }
    Ok(())
}

fn print_preview(name: &str, p: &Value) {
    let s = &p["summary"];
    println!(
        "daemonset.apps/{name}: {}; {} create, {} delete, {} replace, {} keep",
        if p["newRevision"] == true {
            "new revision"
        } else {
            "same revision"
        },
        count(&s["create"]),
        count(&s["delete"]),
        count(&s["replace"]),
        count(&s["keep"]),
    );
    println!("{:<24} {:<8} REASON", "NODE", "ACTION");
    for row in p["nodes"].as_array().into_iter().flatten() {
        println!(
            "{:<24} {:<8} {}",
            row["node"].as_str().unwrap_or(""),
            row["action"].as_str().unwrap_or(""),
            row["reason"].as_str().unwrap_or("")
        );
    }
    let batches: Vec<String> = p["batches"]
        .as_array()
        .into_iter()
        .flatten()
        .map(|b| {
            let nodes: Vec<&str> = b
                .as_array()
                .into_iter()
                .flatten()
                .filter_map(Value::as_str)
                .collect();
            format!("[{}]", nodes.join(" "))
        })
        .collect();
    if !batches.is_empty() {
        println!("batches: {}", batches.join(" "));
    }
}

fn bar(done: u64, of: u64) -> String {
    const WIDTH: u64 = 20;
    let filled = (done.min(of) * WIDTH).checked_div(of).unwrap_or(WIDTH);
    format!(
        "[{}{}]",
        "#".repeat(usize::try_from(filled).unwrap_or(0)),
        "-".repeat(usize::try_from(WIDTH - filled).unwrap_or(0))
    )
}

/// Waits like `kubectl rollout status`: done when the controller has seen the latest spec and
/// every node runs an available pod of it; failed when `Progressing` says the deadline passed.
async fn status(api: &Api, name: &str, timeout: u64) -> Result<ExitCode, Error> {
    let started = tokio::time::Instant::now();
    let mut last = String::new();
    loop {
        let ds = api.get(&api.path(name, "")).await?;
        let st = &ds["status"];
        let (desired, updated, available) = (
            count(&st["desiredNumberScheduled"]),
            count(&st["updatedNumberScheduled"]),
            count(&st["numberAvailable"]),
        );
        let observed = count(&st["observedGeneration"]) >= count(&ds["metadata"]["generation"]);
        let progressing = st["conditions"]
            .as_array()
            .and_then(|c| c.iter().find(|c| c["type"] == "Progressing"))
            .cloned();
        let line = format!(
            "{} {updated}/{desired} updated, {available}/{desired} available",
            bar(updated.min(available), desired)
        );
        if line != last {
            println!("{line}");
            last = line;
        }
        if let Some(c) = &progressing
            && c["reason"] == "ProgressDeadlineExceeded"
            && observed
        {
            println!(
                "error: daemon set \"{name}\" exceeded its progress deadline: {}",
                c["message"].as_str().unwrap_or("")
            );
            return Ok(ExitCode::FAILURE);
        }
        if observed && updated == desired && available == desired {
            println!("daemon set \"{name}\" successfully rolled out");
            return Ok(ExitCode::SUCCESS);
        }
        if timeout > 0 && started.elapsed() >= Duration::from_secs(timeout) {
            println!("error: timed out waiting for the rollout of daemon set \"{name}\"");
            return Ok(ExitCode::FAILURE);
        }
        tokio::time::sleep(Duration::from_secs(1)).await;
    }
}

/// `everynode kubectl-plugin install DIR`: links DIR/kubectl-everynode to this binary.
pub fn install(dir: &std::path::Path) -> Result<(), Error> {
    let exe = std::env::current_exe()
        .map_err(|e| Error::Startup(format!("cannot find this executable: {e}")))?;
    std::fs::create_dir_all(dir).map_err(|source| Error::Read {
        path: dir.to_path_buf(),
        source,
    })?;
    let link = dir.join(PLUGIN_NAME);
    if link.symlink_metadata().is_ok() {
        std::fs::remove_file(&link).map_err(|source| Error::Read {
            path: link.clone(),
            source,
        })?;
    }
    std::os::unix::fs::symlink(&exe, &link).map_err(|source| Error::Read {
        path: link.clone(),
        source,
    })?;
    println!("{} -> {}", link.display(), exe.display());
    println!("with {} on PATH: kubectl everynode --help", dir.display());
    Ok(())
}
