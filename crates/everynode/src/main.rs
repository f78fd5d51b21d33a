//! everynode: one binary that speaks the Kubernetes API and runs one copy of a pod on every
//! eligible node. Roles are subcommands.

mod agent;
mod backup;
mod bench;
mod console;
mod containerd;
mod etcd_cluster;
mod failover;
mod join;
mod plugin;
mod server;
mod shared_credentials;
mod token;
mod up;
mod user;

use clap::{Parser, Subcommand};
use std::path::PathBuf;

/// mimalloc instead of glibc malloc: the server allocates and frees millions of small objects
/// (decoded pods, JSON buffers) across many threads, where glibc's per-thread arenas kept
/// freed memory and fragmented (see bench/RESULTS.md for the measured difference).
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

#[derive(Parser)]
#[command(
    name = "everynode",
    version,
    about = "Kubernetes DaemonSets as a product: one binary that speaks the Kubernetes API."
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Run a whole cluster on this machine: API server, controllers, scheduler and N node
    /// agents, with the embedded store, and the web console at /ui. Ctrl-C stops it all.
    Up(Box<up::UpArgs>),
    /// Run the API server and the web console at /ui (with the controllers and scheduler,
    /// unless disabled).
    Server(Box<server::ServerArgs>),
    /// Run the controllers (DaemonSet, scheduler, garbage collectors, node lifecycle) against an
    /// API server, with leader election: of several copies, one runs them at a time.
    Controllers(Box<ControllersArgs>),
    /// Run a node agent: register a Node and run the pods bound to it.
    Agent(Box<agent::AgentArgs>),
    /// Measure at scale: start a server and N hollow nodes, then time nodes Ready, a
    /// DaemonSet's pods Ready and two rolling updates, with API latency, memory, CPU and the
    /// store's floor. Prints a Markdown table for bench/RESULTS.md.
    Bench(Box<bench::BenchArgs>),
    /// Back up a running cluster: every object at one revision, with the data directory's
    /// credentials, into one file (mode 0600).
    Backup(Box<backup::BackupArgs>),
    /// Rebuild a cluster from a backup into a new data directory (the embedded store).
    Restore(Box<backup::RestoreArgs>),
    /// Move a stopped cluster from the embedded store to an empty etcd, keeping uids and the
    /// order of resourceVersions.
    Migrate(Box<backup::MigrateArgs>),
    /// Serve the web console alone, for the cluster a kubeconfig names (everynode's or any
    /// other); users sign in with their own bearer token.
    Console(Box<console::ConsoleArgs>),
    /// Work with the container images of `up --runtime cri`'s nodes.
    #[command(subcommand)]
    Image(ImageCommand),
    /// Manage users: their tokens, kubeconfigs and role bindings.
    #[command(subcommand)]
    User(user::UserCommand),
    /// Manage bootstrap tokens, with which nodes join (`everynode agent --join`).
    #[command(subcommand)]
    Token(token::TokenCommand),
    /// The kubectl plugin (`kubectl everynode why|preview|pause|resume|promote|status`).
    #[command(name = "kubectl-plugin", subcommand)]
    KubectlPlugin(KubectlPluginCommand),
    /// Print the admin kubeconfig of a data directory.
    Kubeconfig {
        #[arg(long, default_value = "everynode-data")]
        data_dir: PathBuf,
    },
    /// Container shim used by the process runtime (started by the agent, not by hand).
    #[command(hide = true)]
    Shim { dir: PathBuf },
}

#[derive(Subcommand)]
enum KubectlPluginCommand {
    /// Link DIR/kubectl-everynode to this binary; with DIR on PATH, `kubectl everynode` works.
    Install { dir: PathBuf },
}

#[derive(Subcommand)]
enum ImageCommand {
    /// Load an OCI or docker image archive (e.g. from `docker save`) into every local node's
    /// containerd, for machines that reach no registry.
    Import {
        /// The archive.
        file: PathBuf,
        #[arg(long, default_value = "everynode-data")]
        data_dir: PathBuf,
        /// A containerd socket to import into instead of the data directory's nodes
        /// (repeatable).
        #[arg(long)]
        address: Vec<PathBuf>,
    },
}

#[derive(clap::Args, Clone, Debug)]
struct ControllersArgs {
    /// kubeconfig of the API server.
    #[arg(long)]
    kubeconfig: PathBuf,
    /// API servers to use instead of the kubeconfig's (comma-separated; servers sharing one
    /// etcd): the controllers fail over to the next when one cannot be reached.
    #[arg(long, value_delimiter = ',')]
    server: Vec<String>,
    /// Candidate identity in the leader lease (default: host name and process id).
    #[arg(long)]
    identity: Option<String>,
    #[command(flatten)]
    controllers: server::ControllerFlags,
    #[command(flatten)]
    leader: server::LeaderFlags,
}

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("{0}")]
    Usage(String),
    #[error(transparent)]
    Credentials(#[from] everynode_apiserver::credentials::CredentialsError),
    #[error("storage: {0}")]
    Store(#[from] everynode_store::Error),
    #[error("cannot listen on {addr}: {source}")]
    Listen {
        addr: std::net::SocketAddr,
        source: std::io::Error,
    },
    #[error("startup: {0}")]
    Startup(String),
    /// The API server refused or failed a request a command made (`everynode user ...`); the
    /// message names the step and carries the server's own.
    #[error("{0}")]
    Api(String),
    #[error("cannot read {path}: {source}")]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
}

fn main() -> std::process::ExitCode {
    // Run as `kubectl-everynode`, this binary is the kubectl plugin.
    let invoked_as = std::env::args_os()
        .next()
        .map(PathBuf::from)
        .and_then(|p| p.file_name().map(|n| n.to_string_lossy().into_owned()));
    if invoked_as.as_deref() == Some(plugin::PLUGIN_NAME) {
        return plugin::main();
    }
    let cli = Cli::parse();
    if let Command::Shim { dir } = &cli.command {
        // The shim is single-threaded and must not start a runtime: it enters a mount namespace.
        return everynode_agent::runtime::shim::run(dir);
    }
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| "info".into()),
        )
        .with_writer(std::io::stderr)
        // Colour only for a terminal: agent logs and redirected output are files people grep.
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .init();
    raise_open_file_limit();
    // Nothing the server or an agent writes is for other users of the host: the store, keys,
    // agent state and pods' volumes are 0600/0700 unless made otherwise on purpose.
    nix::sys::stat::umask(nix::sys::stat::Mode::from_bits_truncate(0o077));
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(r) => r,
        Err(e) => {
            eprintln!("error: cannot start the runtime: {e}");
            return std::process::ExitCode::FAILURE;
        }
    };
    match runtime.block_on(run(cli)) {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e}");
            std::process::ExitCode::FAILURE
        }
    }
}

/// Raises the soft limit on open files to the hard one, as servers do: at the usual 1024, about
/// a thousand idle connections were enough to block `accept` for everyone. A host that refuses
/// keeps the limit it has, said once on stderr.
fn raise_open_file_limit() {
    use nix::sys::resource::{Resource, getrlimit, setrlimit};
    match getrlimit(Resource::RLIMIT_NOFILE) {
        Ok((soft, hard)) if soft < hard => {
            if let Err(e) = setrlimit(Resource::RLIMIT_NOFILE, hard, hard) {
                tracing::warn!(soft, hard, error = %e, "could not raise the open file limit");
            }
        }
        Ok(_) => {}
        Err(e) => tracing::warn!(error = %e, "could not read the open file limit"),
    }
}

/// Creates `dir` if needed and makes it private to this user (0700), whatever an earlier version
/// left: it holds the store, keys, agent state or pods' volumes.
/// Opens a child's log for appending, so an earlier run's lines are kept.
pub fn append_log(path: &std::path::Path) -> Result<std::fs::File, Error> {
    std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(path)
        .map_err(|source| Error::Read {
            path: path.to_path_buf(),
            source,
        })
}

/// Asks a child to stop (SIGTERM), then kills it if it still runs after `grace`. Whether it
/// had to be killed.
pub async fn terminate(child: &mut tokio::process::Child, grace: std::time::Duration) -> bool {
    if let Some(pid) = child.id() {
        let _ = nix::sys::signal::kill(
            nix::unistd::Pid::from_raw(pid as i32),
            nix::sys::signal::Signal::SIGTERM,
        );
    }
    if tokio::time::timeout(grace, child.wait()).await.is_err() {
        let _ = child.kill().await;
        return true;
    }
    false
}

pub fn private_dir(dir: &std::path::Path) -> Result<(), Error> {
    use std::os::unix::fs::PermissionsExt;
    std::fs::create_dir_all(dir)
        .and_then(|()| std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o700)))
        .map_err(|source| Error::Read {
            path: dir.to_owned(),
            source,
        })
}

/// Binds `addr` (port 0 picks one) and says where it is listening.
pub async fn bind(
    addr: std::net::SocketAddr,
) -> Result<(tokio::net::TcpListener, std::net::SocketAddr), Error> {
    let listen_error = |source| Error::Listen { addr, source };
    let listener = tokio::net::TcpListener::bind(addr)
        .await
        .map_err(listen_error)?;
    let local = listener.local_addr().map_err(listen_error)?;
    Ok((listener, local))
}

pub fn kubeconfig_path(data_dir: &std::path::Path) -> PathBuf {
    data_dir.join("kubeconfig")
}

/// Resolves when the process is asked to stop (SIGINT or SIGTERM).
pub async fn stop_signal() {
    let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()).ok();
    tokio::select! {
        _ = tokio::signal::ctrl_c() => {}
        _ = async {
            match term.as_mut() {
                Some(t) => { t.recv().await; }
                None => std::future::pending::<()>().await,
            }
        } => {}
    }
}

async fn run(cli: Cli) -> Result<(), Error> {
    match cli.command {
        Command::Up(args) => up::run(*args).await,
        Command::Server(args) => {
            let started = server::start(*args).await?;
            started.serve().await
        }
        Command::Agent(args) => agent::run(*args).await,
        Command::Console(args) => console::run(*args).await,
        Command::Bench(args) => bench::run(*args).await,
        Command::Backup(args) => backup::backup(*args).await,
        Command::Restore(args) => backup::restore(*args).await,
        Command::Migrate(args) => backup::migrate(*args).await,
        Command::Controllers(args) => {
            let client = if args.server.is_empty() {
                server::client_from_kubeconfig(&args.kubeconfig).await?
            } else {
                let base = server::config_from_kubeconfig(&args.kubeconfig).await?;
                failover::client(&base, &args.server)?
            };
            let identity = args.identity.clone().unwrap_or_else(|| {
                let host = nix::unistd::gethostname()
                    .ok()
                    .and_then(|h| h.into_string().ok())
                    .unwrap_or_else(|| "everynode".into());
                format!("{host}_{}", std::process::id())
            });
            eprintln!("everynode controllers: candidate {identity}");
            tokio::select! {
                () = server::elected_controllers(server::ControllerClients::single(client), args.controllers, &args.leader, identity) => {}
                () = stop_signal() => {}
            }
            Ok(())
        }
        Command::Kubeconfig { data_dir } => {
            let path = kubeconfig_path(&data_dir);
            let text =
                std::fs::read_to_string(&path).map_err(|source| Error::Read { path, source })?;
            print!("{text}");
            Ok(())
        }
        Command::Image(ImageCommand::Import {
            file,
            data_dir,
            address,
        }) => containerd::import(&file, &data_dir, &address).await,
        Command::User(command) => user::run(command).await,
        Command::Token(command) => token::run(command).await,
        Command::KubectlPlugin(KubectlPluginCommand::Install { dir }) => plugin::install(&dir),
        Command::Shim { .. } => Ok(()),
    }
}
