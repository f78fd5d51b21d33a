//! `everynode console`: the web console on its own, pointed at any cluster's API server by a
//! kubeconfig, as Headlamp runs against any cluster.

use crate::{Error, stop_signal};
use everynode_console::client::Backend;
use std::net::SocketAddr;
use std::path::PathBuf;

#[derive(clap::Args, Clone, Debug)]
pub struct ConsoleArgs {
    /// kubeconfig naming the cluster: its server address and CA. Users sign in with their own
    /// bearer token, which is the credential every request carries.
    #[arg(long)]
    pub kubeconfig: PathBuf,
    /// Where to serve the console (plain HTTP, so a loopback address only).
    #[arg(long, default_value = "127.0.0.1:8080")]
    pub listen: SocketAddr,
}

pub async fn run(args: ConsoleArgs) -> Result<(), Error> {
    if !args.listen.ip().is_loopback() {
        return Err(Error::Usage(format!(
            "the console serves plain HTTP and carries users' tokens, so it listens on loopback only; {} is not (put it behind a TLS proxy on this host instead)",
            args.listen
        )));
    }
    let config = crate::server::config_from_kubeconfig(&args.kubeconfig).await?;
    let cluster = config.cluster_url.to_string();
    let app =
        everynode_console::standalone(Backend::Remote(Box::new(config)), everynode_clock::system());
    let (listener, addr) = crate::bind(args.listen).await?;
    println!("everynode console listening on http://{addr}/ui for {cluster}");
    axum::serve(listener, app)
        .with_graceful_shutdown(stop_signal())
        .await
        .map_err(|source| Error::Listen { addr, source })
}
