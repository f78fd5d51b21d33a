//! everynode: one binary that speaks the Kubernetes API and runs one copy of a pod on every
//! eligible node. Roles are subcommands.

use clap::{Parser, Subcommand};
use everynode_apiserver::api::Options;
use everynode_apiserver::clock::SystemClock;
use everynode_apiserver::credentials;
use everynode_apiserver::server::{self, CacheSizes};
use everynode_store::{EmbeddedStore, MemoryStore, Store};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;

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

#[derive(Clone, Copy, Debug, clap::ValueEnum)]
enum StoreKind {
    /// Durable embedded database in --data-dir (default).
    Embedded,
    /// In memory only: everything is lost when the process ends. For tests.
    Memory,
}

/// Which controllers the server runs in-process, as API clients of itself.
#[derive(clap::Args, Clone, Copy, Debug)]
struct ControllerFlags {
    /// Do not run the DaemonSet controller.
    #[arg(long)]
    no_daemonset_controller: bool,
    /// Do not run the scheduler.
    #[arg(long)]
    no_scheduler: bool,
    /// Do not run the garbage collector.
    #[arg(long)]
    no_garbage_collector: bool,
    /// Most pod creates (and deletes) one DaemonSet sync issues (upstream's burstReplicas).
    #[arg(long, default_value_t = 250)]
    daemonset_burst: usize,
}

impl Default for ControllerFlags {
    fn default() -> Self {
        ControllerFlags {
            no_daemonset_controller: false,
            no_scheduler: false,
            no_garbage_collector: false,
            daemonset_burst: 250,
        }
    }
}

#[derive(Subcommand)]
enum Command {
    /// Run everything on this machine with the embedded store. Today that is the API server;
    /// controllers, the scheduler and node agents join it as they are built.
    Up {
        /// Where data, credentials and the kubeconfig live.
        #[arg(long, default_value = "everynode-data")]
        data_dir: PathBuf,
        /// Address to listen on (HTTPS).
        #[arg(long, default_value = "127.0.0.1:6443")]
        listen: SocketAddr,
    },
    /// Run the API server.
    Server {
        /// Where data, credentials and the kubeconfig live.
        #[arg(long, default_value = "everynode-data")]
        data_dir: PathBuf,
        /// Address to listen on. Anything but loopback requires TLS (the default).
        #[arg(long, default_value = "127.0.0.1:6443")]
        listen: SocketAddr,
        /// Serve plain HTTP instead of HTTPS. Allowed only on a loopback address.
        #[arg(long)]
        insecure_plain_http: bool,
        /// Storage backend.
        #[arg(long, value_enum, default_value_t = StoreKind::Embedded)]
        store: StoreKind,
        /// Extra DNS names or IP addresses for the serving certificate (used when it is first generated).
        #[arg(long = "tls-san")]
        tls_sans: Vec<String>,
        /// Watch events kept in memory for watches that resume from a resourceVersion.
        #[arg(long, default_value_t = 50_000)]
        watch_history: usize,
        /// Seconds between watch bookmarks for clients that allow them.
        #[arg(long, default_value_t = 30)]
        bookmark_interval_seconds: u64,
        #[command(flatten)]
        controllers: ControllerFlags,
    },
    /// Print the admin kubeconfig of a data directory.
    Kubeconfig {
        #[arg(long, default_value = "everynode-data")]
        data_dir: PathBuf,
    },
}

#[derive(Debug, thiserror::Error)]
enum Error {
    #[error("{0}")]
    Usage(String),
    #[error(transparent)]
    Credentials(#[from] credentials::CredentialsError),
    #[error("storage: {0}")]
    Store(#[from] everynode_store::Error),
    #[error("cannot listen on {addr}: {source}")]
    Listen {
        addr: SocketAddr,
        source: std::io::Error,
    },
    #[error("startup: {0}")]
    Startup(String),
    #[error("cannot read {path}: {source}")]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
}

fn main() -> std::process::ExitCode {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| "info".into()),
        )
        .with_writer(std::io::stderr)
        .init();
    let cli = Cli::parse();
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

/// Starts the enabled controllers as clients of this server, through its kubeconfig.
async fn start_controllers(kubeconfig: &Path, flags: ControllerFlags) -> Result<(), Error> {
    if flags.no_daemonset_controller && flags.no_scheduler && flags.no_garbage_collector {
        return Ok(());
    }
    let kc = kube::config::Kubeconfig::read_from(kubeconfig)
        .map_err(|e| Error::Startup(format!("reading {}: {e}", kubeconfig.display())))?;
    let config =
        kube::Config::from_custom_kubeconfig(kc, &kube::config::KubeConfigOptions::default())
            .await
            .map_err(|e| Error::Startup(e.to_string()))?;
    let client = kube::Client::try_from(config).map_err(|e| Error::Startup(e.to_string()))?;
    if !flags.no_daemonset_controller {
        tokio::spawn(everynode_controllers::daemonset::controller::run(
            client.clone(),
            flags.daemonset_burst,
        ));
    }
    if !flags.no_scheduler {
        tokio::spawn(everynode_controllers::scheduler::run(client.clone()));
    }
    if !flags.no_garbage_collector {
        tokio::spawn(everynode_controllers::gc::run(client));
    }
    Ok(())
}

fn kubeconfig_path(data_dir: &Path) -> PathBuf {
    data_dir.join("kubeconfig")
}

async fn run(cli: Cli) -> Result<(), Error> {
    match cli.command {
        Command::Up { data_dir, listen } => {
            let server = Command::Server {
                data_dir: data_dir.clone(),
                listen,
                insecure_plain_http: false,
                store: StoreKind::Embedded,
                tls_sans: Vec::new(),
                watch_history: 50_000,
                bookmark_interval_seconds: 30,
                controllers: ControllerFlags::default(),
            };
            let kubeconfig = kubeconfig_path(&data_dir);
            eprintln!(
                "everynode: once it is ready, use kubectl with:\n  export KUBECONFIG={}\n  kubectl get ns",
                kubeconfig.display()
            );
            Box::pin(run(Cli { command: server })).await
        }
        Command::Kubeconfig { data_dir } => {
            let path = kubeconfig_path(&data_dir);
            let text =
                std::fs::read_to_string(&path).map_err(|source| Error::Read { path, source })?;
            print!("{text}");
            Ok(())
        }
        Command::Server {
            data_dir,
            listen,
            insecure_plain_http,
            store,
            tls_sans,
            watch_history,
            bookmark_interval_seconds,
            controllers,
        } => {
            if insecure_plain_http && !listen.ip().is_loopback() {
                return Err(Error::Usage(format!(
                    "--insecure-plain-http is allowed only on a loopback address, not {listen}; drop it to serve HTTPS with the generated CA"
                )));
            }
            std::fs::create_dir_all(&data_dir).map_err(|source| Error::Read {
                path: data_dir.clone(),
                source,
            })?;
            let mut hosts = vec![
                "localhost".to_owned(),
                "127.0.0.1".to_owned(),
                "::1".to_owned(),
            ];
            if !listen.ip().is_unspecified() {
                hosts.push(listen.ip().to_string());
            }
            hosts.extend(tls_sans);
            let creds = credentials::ensure(&data_dir, &hosts)?;
            let store: Arc<dyn Store> = match store {
                StoreKind::Embedded => Arc::new(EmbeddedStore::open(
                    &data_dir.join("everynode.redb"),
                    100_000,
                )?),
                StoreKind::Memory => Arc::new(MemoryStore::new(100_000)),
            };
            let options = Options {
                bookmark_interval: std::time::Duration::from_secs(bookmark_interval_seconds.max(1)),
                ..Options::default()
            };
            let sizes = CacheSizes {
                history: watch_history,
                ..CacheSizes::default()
            };
            let (_api, router) = server::start(
                store,
                Arc::new(SystemClock),
                options,
                sizes,
                vec![creds.token.clone()],
            )
            .await
            .map_err(|e| Error::Startup(e.to_string()))?;
            let listener = tokio::net::TcpListener::bind(listen)
                .await
                .map_err(|source| Error::Listen {
                    addr: listen,
                    source,
                })?;
            let local = listener.local_addr().map_err(|source| Error::Listen {
                addr: listen,
                source,
            })?;
            let host = if local.ip().is_unspecified() {
                "127.0.0.1".to_owned()
            } else {
                local.ip().to_string()
            };
            let host = if host.contains(':') {
                format!("[{host}]")
            } else {
                host
            };
            let (scheme, tls, ca) = if insecure_plain_http {
                ("http", None, None)
            } else {
                (
                    "https",
                    Some(credentials::tls_config(&creds)?),
                    Some(creds.ca_pem.as_str()),
                )
            };
            let url = format!("{scheme}://{host}:{}", local.port());
            let kubeconfig = kubeconfig_path(&data_dir);
            credentials::write_file(
                &kubeconfig,
                credentials::kubeconfig(&url, ca, &creds.token).as_bytes(),
                0o600,
            )?;
            tracing::info!(%url, kubeconfig = %kubeconfig.display(), "everynode API server ready");
            let serving = tokio::spawn(server::serve(listener, router, tls));
            start_controllers(&kubeconfig, controllers).await?;
            // One line on stdout for scripts and tests that start the server and wait for it.
            println!(
                "everynode apiserver listening on {url} kubeconfig {}",
                kubeconfig.display()
            );
            match serving.await {
                Ok(result) => result.map_err(|source| Error::Listen {
                    addr: listen,
                    source,
                }),
                Err(e) => Err(Error::Startup(e.to_string())),
            }
        }
    }
}
