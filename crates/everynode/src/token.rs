//! `everynode token create|list|delete`: bootstrap tokens for joining nodes, in upstream's
//! form (kubeadm's `token` commands): the Secret `kube-system/bootstrap-token-<id>` of type
//! `bootstrap.kubernetes.io/token`, usable for authentication only, in the group the default
//! policy lets ask for (and have approved) a node client certificate. Everything goes through
//! the API with the administrator's kubeconfig of the data directory.

use crate::server::parse_go_duration;
use crate::user::{cluster_of, random};
use crate::{Error, kubeconfig_path};
use everynode_apiserver::bootstrap_token::{
    NAMESPACE, NODE_TOKEN_GROUP, SECRET_PREFIX, SECRET_TYPE,
};
use k8s_openapi::api::core::v1::Secret;
use kube::api::{Api, DeleteParams, ListParams, ObjectMeta, PostParams};
use std::collections::BTreeMap;
use std::path::PathBuf;
use std::time::Duration;

#[derive(clap::Subcommand)]
pub enum TokenCommand {
    /// Make a bootstrap token and print it, with the `everynode agent --join` command that
    /// spends it (the server's URL and the hash of its CA).
    Create {
        #[arg(long, default_value = "everynode-data")]
        data_dir: PathBuf,
        /// How long the token works, as a Go duration (`24h`, `90m`); `0s` never expires.
        #[arg(long, default_value = "24h", value_parser = parse_go_duration)]
        ttl: Duration,
        /// A note kept with the token.
        #[arg(long)]
        description: Option<String>,
    },
    /// List bootstrap tokens with their expiry.
    List {
        #[arg(long, default_value = "everynode-data")]
        data_dir: PathBuf,
    },
    /// Delete a bootstrap token (by id or whole token): it stops working at once. Nodes that
    /// joined with it keep their own credentials.
    Delete {
        token: String,
        #[arg(long, default_value = "everynode-data")]
        data_dir: PathBuf,
    },
}

pub async fn run(command: TokenCommand) -> Result<(), Error> {
    match command {
        TokenCommand::Create {
            data_dir,
            ttl,
            description,
        } => create(&data_dir, ttl, description).await,
        TokenCommand::List { data_dir } => list(&data_dir).await,
        TokenCommand::Delete { token, data_dir } => delete(&data_dir, &token).await,
    }
}

fn api_error(what: &str) -> impl Fn(kube::Error) -> Error + '_ {
    move |e| Error::Api(format!("{what}: {e}"))
}

async fn secrets(data_dir: &std::path::Path) -> Result<Api<Secret>, Error> {
    let client = crate::server::client_from_kubeconfig(&kubeconfig_path(data_dir)).await?;
    Ok(Api::namespaced(client, NAMESPACE))
}

async fn create(
    data_dir: &std::path::Path,
    ttl: Duration,
    description: Option<String>,
) -> Result<(), Error> {
    let (server, ca) = cluster_of(data_dir)?;
    let ca = ca.ok_or_else(|| {
        Error::Usage(
            "the server serves plain HTTP: nodes join only over HTTPS, so start it without --insecure-plain-http".into(),
        )
    })?;
    let hash = everynode_apiserver::credentials::ca_cert_hash(&ca)
        .ok_or_else(|| Error::Usage("the kubeconfig's CA does not parse".into()))?;
    let (id, secret) = (random(6), random(16));
    let mut data = BTreeMap::from([
        ("token-id".to_owned(), id.clone()),
        ("token-secret".to_owned(), secret.clone()),
        (
            "usage-bootstrap-authentication".to_owned(),
            "true".to_owned(),
        ),
        ("auth-extra-groups".to_owned(), NODE_TOKEN_GROUP.to_owned()),
    ]);
    if !ttl.is_zero() {
        let ttl = jiff::SignedDuration::try_from(ttl)
            .map_err(|_| Error::Usage("--ttl is too long".into()))?;
        let expires = everynode_clock::system()
            .now()
            .checked_add(ttl)
            .map_err(|_| Error::Usage("--ttl is too long".into()))?;
        data.insert(
            "expiration".to_owned(),
            expires
                .round(jiff::Unit::Second)
                .unwrap_or(expires)
                .to_string(),
        );
    }
    if let Some(d) = description {
        data.insert("description".to_owned(), d);
    }
    let secret_obj = Secret {
        metadata: ObjectMeta {
            name: Some(format!("{SECRET_PREFIX}{id}")),
            namespace: Some(NAMESPACE.to_owned()),
            ..ObjectMeta::default()
        },
        type_: Some(SECRET_TYPE.to_owned()),
        string_data: Some(data),
        ..Secret::default()
    };
    secrets(data_dir)
        .await?
        .create(&PostParams::default(), &secret_obj)
        .await
        .map_err(api_error("creating the token"))?;
    println!("{id}.{secret}");
    eprintln!(
        "join a node with:\n  everynode agent --join {server} --token {id}.{secret} --ca-cert-hash {hash} --name NAME"
    );
    Ok(())
}

fn field(secret: &Secret, key: &str) -> String {
    secret
        .data
        .as_ref()
        .and_then(|d| d.get(key))
        .and_then(|b| String::from_utf8(b.0.clone()).ok())
        .unwrap_or_default()
}

async fn list(data_dir: &std::path::Path) -> Result<(), Error> {
    let all = secrets(data_dir)
        .await?
        .list(&ListParams::default().fields(&format!("type={SECRET_TYPE}")))
        .await
        .map_err(api_error("listing tokens"))?;
    println!("{:<8} {:<22} {:<40} DESCRIPTION", "ID", "EXPIRES", "GROUPS");
    for s in &all.items {
        let expires = field(s, "expiration");
        println!(
            "{:<8} {:<22} {:<40} {}",
            field(s, "token-id"),
            if expires.is_empty() {
                "<forever>".to_owned()
            } else {
                expires
            },
            field(s, "auth-extra-groups"),
            field(s, "description"),
        );
    }
    Ok(())
}

async fn delete(data_dir: &std::path::Path, token: &str) -> Result<(), Error> {
    let id = token.split('.').next().unwrap_or(token);
    secrets(data_dir)
        .await?
        .delete(&format!("{SECRET_PREFIX}{id}"), &DeleteParams::default())
        .await
        .map_err(api_error("deleting the token"))?;
    println!("bootstrap token {id:?} deleted");
    Ok(())
}
