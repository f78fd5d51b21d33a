//! `everynode up`: the whole cluster on this machine. The API server and controllers run in
//! this process; each node agent is a child process with its own state directory (a hollow
//! fleet is one child), so an agent can crash or be killed like a real node's.

use crate::Error;
use crate::agent::RuntimeKind;
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
    #[command(flatten)]
    pub controllers: ControllerFlags,
}

struct Agent {
    name: String,
    child: tokio::process::Child,
}

fn spawn_agent(
    exe: &Path,
    kubeconfig: &Path,
    data_dir: &Path,
    name: &str,
    extra: &[String],
) -> Result<Agent, Error> {
    let state = data_dir.join("agents").join(name);
    crate::private_dir(&state)?;
    let log_path = data_dir.join("agents").join(format!("{name}.log"));
    let log = std::fs::File::create(&log_path).map_err(|source| Error::Read {
        path: log_path,
        source,
    })?;
    let child = tokio::process::Command::new(exe)
        .arg("agent")
        .arg("--kubeconfig")
        .arg(kubeconfig)
        .arg("--name")
        .arg(name)
        .arg("--state-dir")
        .arg(&state)
        .arg("--listen")
        .arg("127.0.0.1:0")
        .args(extra)
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::null())
        .stderr(log)
        .spawn()
        .map_err(|e| Error::Startup(format!("starting agent {name}: {e}")))?;
    Ok(Agent {
        name: name.to_owned(),
        child,
    })
}

pub async fn run(args: UpArgs) -> Result<(), Error> {
    let started = server::start(ServerArgs {
        controllers: args.controllers,
        ..ServerArgs::defaults(args.data_dir.clone(), args.listen)
    })
    .await?;
    let exe = std::env::current_exe()
        .map_err(|e| Error::Startup(format!("cannot find this executable: {e}")))?;
    let mut agents = Vec::new();
    match args.runtime {
        RuntimeKind::Process => {
            for i in 1..=args.nodes {
                agents.push(spawn_agent(
                    &exe,
                    &started.kubeconfig,
                    &args.data_dir,
                    &format!("node-{i}"),
                    &[],
                )?);
            }
        }
        RuntimeKind::Hollow if args.nodes > 0 => {
            agents.push(spawn_agent(
                &exe,
                &started.kubeconfig,
                &args.data_dir,
                "hollow",
                &[
                    "--runtime".into(),
                    "hollow".into(),
                    "--hollow-nodes".into(),
                    args.nodes.to_string(),
                ],
            )?);
        }
        RuntimeKind::Hollow => {}
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
        },
        started.kubeconfig.display(),
        started.url,
        args.data_dir.join("admin.token").display(),
        args.data_dir.join("agents").display()
    );
    for a in &agents {
        println!(
            "everynode agent {} pid {}",
            a.name,
            a.child.id().unwrap_or(0)
        );
    }
    let result = tokio::select! {
        r = started.serve() => r,
        () = crate::stop_signal() => Ok(()),
    };
    stop_agents(agents).await;
    result
}

/// SIGTERM to every agent (they stop their pods), then SIGKILL to any still running after 40 s.
async fn stop_agents(agents: Vec<Agent>) {
    for a in &agents {
        if let Some(pid) = a.child.id() {
            let _ = nix::sys::signal::kill(
                nix::unistd::Pid::from_raw(pid as i32),
                nix::sys::signal::Signal::SIGTERM,
            );
        }
    }
    for mut a in agents {
        if tokio::time::timeout(Duration::from_secs(40), a.child.wait())
            .await
            .is_err()
        {
            tracing::warn!(agent = %a.name, "agent did not stop in 40 s; killing it");
            let _ = a.child.kill().await;
        }
    }
}
