//! `everynode user add|list|remove`: credentials for people, and the bindings that say what
//! they may do. A user's token is `<id>.<secret>`; the server keeps only the secret's SHA-256,
//! in the Secret `kube-system/everynode-user-token-<id>` of type `everynode.io/user-token`, so
//! removing the user (deleting that Secret) ends the token at once. Everything goes through the
//! API with the administrator's kubeconfig of the data directory.

use crate::{Error, kubeconfig_path};
use everynode_apiserver::authn::{
    USER_TOKEN_NAMESPACE, USER_TOKEN_SECRET_PREFIX, USER_TOKEN_TYPE, token_hash,
};
use everynode_apiserver::credentials;
use k8s_openapi::api::core::v1::Secret;
use k8s_openapi::api::rbac::v1::{ClusterRoleBinding, RoleBinding};
use kube::api::{Api, DeleteParams, ListParams, ObjectMeta, PostParams};
use rand::Rng;
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

/// The label every object of a user carries.
const USER_LABEL: &str = "everynode.io/user";

#[derive(clap::Subcommand)]
pub enum UserCommand {
    /// Create a user: a token, the binding of a role, and a kubeconfig written to
    /// `<data-dir>/users/NAME.kubeconfig` (mode 0600), whose path is printed.
    Add(AddArgs),
    /// List users and what they are bound to.
    List {
        #[arg(long, default_value = "everynode-data")]
        data_dir: PathBuf,
    },
    /// Remove a user: the token stops working at once, and the user's bindings go.
    Remove {
        name: String,
        #[arg(long, default_value = "everynode-data")]
        data_dir: PathBuf,
    },
}

#[derive(Clone, Copy, Debug, clap::ValueEnum)]
pub enum NamespaceRole {
    View,
    Edit,
    Admin,
}

#[derive(clap::Args)]
pub struct AddArgs {
    /// The user name (lower-case letters, digits, '-', '.' and '_'; at most 63 characters).
    name: String,
    #[arg(long, default_value = "everynode-data")]
    data_dir: PathBuf,
    /// The namespace `--role` applies in (also the kubeconfig's default namespace).
    #[arg(long, requires = "role")]
    namespace: Option<String>,
    /// Bind this role in `--namespace` (upstream's `view`, `edit` or `admin` ClusterRole).
    #[arg(long, value_enum, requires = "namespace")]
    role: Option<NamespaceRole>,
    /// Bind this ClusterRole cluster-wide (e.g. `view`, `cluster-admin`).
    #[arg(long)]
    cluster_role: Option<String>,
}

pub async fn run(command: UserCommand) -> Result<(), Error> {
    match command {
        UserCommand::Add(args) => add(args).await,
        UserCommand::List { data_dir } => list(&data_dir).await,
        UserCommand::Remove { name, data_dir } => remove(&name, &data_dir).await,
    }
}

/// A user name also serves as a label value and a file name, so it is kept to what both allow.
fn check_name(name: &str) -> Result<(), Error> {
    let ok_char = |c: char| c.is_ascii_lowercase() || c.is_ascii_digit() || "-._".contains(c);
    let edges = |c: Option<char>| c.is_some_and(|c| c.is_ascii_lowercase() || c.is_ascii_digit());
    if name.len() > 63
        || !name.chars().all(ok_char)
        || !edges(name.chars().next())
        || !edges(name.chars().last())
    {
        return Err(Error::Usage(format!(
            "user name {name:?}: use lower-case letters, digits, '-', '.' and '_', starting and ending with a letter or digit, at most 63 characters"
        )));
    }
    Ok(())
}

pub(crate) fn random(n: usize) -> String {
    const ALPHABET: &[u8] = b"abcdefghijklmnopqrstuvwxyz0123456789";
    let mut rng = rand::rng();
    (0..n)
        .map(|_| char::from(ALPHABET[rng.random_range(0..ALPHABET.len())]))
        .collect()
}

fn api_error(what: &str) -> impl Fn(kube::Error) -> Error + '_ {
    move |e| Error::Api(format!("{what}: {e}"))
}

fn labelled(name: &str) -> ListParams {
    ListParams::default().labels(&format!("{USER_LABEL}={name}"))
}

fn meta(name: &str, namespace: Option<&str>, user: &str) -> ObjectMeta {
    ObjectMeta {
        name: Some(name.to_owned()),
        namespace: namespace.map(str::to_owned),
        labels: Some(BTreeMap::from([(USER_LABEL.to_owned(), user.to_owned())])),
        ..ObjectMeta::default()
    }
}

fn subject(user: &str) -> k8s_openapi::api::rbac::v1::Subject {
    k8s_openapi::api::rbac::v1::Subject {
        api_group: Some("rbac.authorization.k8s.io".into()),
        kind: "User".into(),
        name: user.to_owned(),
        namespace: None,
    }
}

fn cluster_role_ref(name: &str) -> k8s_openapi::api::rbac::v1::RoleRef {
    k8s_openapi::api::rbac::v1::RoleRef {
        api_group: "rbac.authorization.k8s.io".into(),
        kind: "ClusterRole".into(),
        name: name.to_owned(),
    }
}

/// The server URL and CA of the administrator's kubeconfig.
pub(crate) fn cluster_of(data_dir: &Path) -> Result<(String, Option<String>), Error> {
    let path = kubeconfig_path(data_dir);
    let config = kube::config::Kubeconfig::read_from(&path).map_err(|e| {
        Error::Usage(format!(
            "{}: {e} (is the server running here?)",
            path.display()
        ))
    })?;
    let cluster = config
        .clusters
        .first()
        .and_then(|c| c.cluster.clone())
        .ok_or_else(|| Error::Usage(format!("{} names no cluster", path.display())))?;
    let server = cluster.server.unwrap_or_default();
    let ca = cluster.certificate_authority_data.and_then(|b64| {
        use base64::Engine as _;
        let bytes = base64::engine::general_purpose::STANDARD.decode(b64).ok()?;
        String::from_utf8(bytes).ok()
    });
    Ok((server, ca))
}

async fn add(args: AddArgs) -> Result<(), Error> {
    check_name(&args.name)?;
    if args.role.is_none() && args.cluster_role.is_none() {
        return Err(Error::Usage(
            "give the user something to do: --namespace NS --role view|edit|admin, or --cluster-role ROLE".into(),
        ));
    }
    let client = crate::server::client_from_kubeconfig(&kubeconfig_path(&args.data_dir)).await?;
    let secrets: Api<Secret> = Api::namespaced(client.clone(), USER_TOKEN_NAMESPACE);
    let existing = secrets
        .list(&labelled(&args.name))
        .await
        .map_err(api_error("listing users"))?;
    if !existing.items.is_empty() {
        return Err(Error::Usage(format!(
            "user {:?} already exists; `everynode user remove {}` first",
            args.name, args.name
        )));
    }
    let (id, secret) = (random(6), random(16));
    let data = BTreeMap::from([
        ("user-name".to_owned(), args.name.clone()),
        ("token-secret-sha256".to_owned(), token_hash(&secret)),
        ("groups".to_owned(), String::new()),
    ]);
    let token_secret = Secret {
        metadata: meta(
            &format!("{USER_TOKEN_SECRET_PREFIX}{id}"),
            Some(USER_TOKEN_NAMESPACE),
            &args.name,
        ),
        type_: Some(USER_TOKEN_TYPE.into()),
        string_data: Some(data),
        ..Secret::default()
    };
    secrets
        .create(&PostParams::default(), &token_secret)
        .await
        .map_err(api_error("creating the user's token"))?;
    let mut bound = Vec::new();
    if let (Some(ns), Some(role)) = (&args.namespace, args.role) {
        let role = format!("{role:?}").to_lowercase();
        let binding = RoleBinding {
            metadata: meta(
                &format!("everynode-user-{}-{role}", args.name),
                Some(ns),
                &args.name,
            ),
            role_ref: cluster_role_ref(&role),
            subjects: Some(vec![subject(&args.name)]),
        };
        Api::<RoleBinding>::namespaced(client.clone(), ns)
            .create(&PostParams::default(), &binding)
            .await
            .map_err(api_error("binding the role"))?;
        bound.push(format!("ClusterRole/{role} in namespace {ns}"));
    }
    if let Some(role) = &args.cluster_role {
        let binding = ClusterRoleBinding {
            metadata: meta(
                &format!("everynode-user-{}-{role}", args.name),
                None,
                &args.name,
            ),
            role_ref: cluster_role_ref(role),
            subjects: Some(vec![subject(&args.name)]),
        };
        Api::<ClusterRoleBinding>::all(client.clone())
            .create(&PostParams::default(), &binding)
            .await
            .map_err(api_error("binding the cluster role"))?;
        bound.push(format!("ClusterRole/{role} cluster-wide"));
    }
    let (server, ca) = cluster_of(&args.data_dir)?;
    let path = args
        .data_dir
        .join("users")
        .join(format!("{}.kubeconfig", args.name));
    crate::private_dir(&args.data_dir.join("users"))?;
    let kubeconfig = credentials::kubeconfig_for(
        &server,
        ca.as_deref(),
        &args.name,
        &format!("{id}.{secret}"),
        args.namespace.as_deref().unwrap_or("default"),
    );
    credentials::write_file(&path, kubeconfig.as_bytes(), 0o600)?;
    eprintln!("user {} created: {}", args.name, bound.join("; "));
    println!("{}", path.display());
    Ok(())
}

async fn list(data_dir: &Path) -> Result<(), Error> {
    let client = crate::server::client_from_kubeconfig(&kubeconfig_path(data_dir)).await?;
    let secrets: Api<Secret> = Api::namespaced(client.clone(), USER_TOKEN_NAMESPACE);
    let all = ListParams::default().labels(USER_LABEL);
    let mut users: BTreeMap<String, Vec<String>> = BTreeMap::new();
    for s in secrets
        .list(&all)
        .await
        .map_err(api_error("listing users"))?
    {
        if s.type_.as_deref() == Some(USER_TOKEN_TYPE)
            && let Some(user) = s.metadata.labels.and_then(|l| l.get(USER_LABEL).cloned())
        {
            users.entry(user).or_default();
        }
    }
    for b in Api::<RoleBinding>::all(client.clone())
        .list(&all)
        .await
        .map_err(api_error("listing role bindings"))?
    {
        if let Some(user) = b.metadata.labels.and_then(|l| l.get(USER_LABEL).cloned())
            && let Some(entry) = users.get_mut(&user)
        {
            let ns = b.metadata.namespace.unwrap_or_default();
            entry.push(format!("{}/{} in {ns}", b.role_ref.kind, b.role_ref.name));
        }
    }
    for b in Api::<ClusterRoleBinding>::all(client)
        .list(&all)
        .await
        .map_err(api_error("listing cluster role bindings"))?
    {
        if let Some(user) = b.metadata.labels.and_then(|l| l.get(USER_LABEL).cloned())
            && let Some(entry) = users.get_mut(&user)
        {
            entry.push(format!(
                "{}/{} cluster-wide",
                b.role_ref.kind, b.role_ref.name
            ));
        }
    }
    println!("{:<24} ROLES", "NAME");
    for (user, roles) in users {
        println!("{user:<24} {}", roles.join(", "));
    }
    Ok(())
}

async fn remove(name: &str, data_dir: &Path) -> Result<(), Error> {
    check_name(name)?;
    let client = crate::server::client_from_kubeconfig(&kubeconfig_path(data_dir)).await?;
    let secrets: Api<Secret> = Api::namespaced(client.clone(), USER_TOKEN_NAMESPACE);
    let tokens = secrets
        .list(&labelled(name))
        .await
        .map_err(api_error("listing users"))?;
    if tokens.items.is_empty() {
        return Err(Error::Usage(format!("no user {name:?}")));
    }
    for s in tokens {
        let secret_name = s.metadata.name.unwrap_or_default();
        secrets
            .delete(&secret_name, &DeleteParams::default())
            .await
            .map_err(api_error("deleting the user's token"))?;
    }
    for b in Api::<RoleBinding>::all(client.clone())
        .list(&labelled(name))
        .await
        .map_err(api_error("listing role bindings"))?
    {
        let ns = b.metadata.namespace.unwrap_or_default();
        Api::<RoleBinding>::namespaced(client.clone(), &ns)
            .delete(
                &b.metadata.name.unwrap_or_default(),
                &DeleteParams::default(),
            )
            .await
            .map_err(api_error("deleting a role binding"))?;
    }
    let cluster: Api<ClusterRoleBinding> = Api::all(client);
    for b in cluster
        .list(&labelled(name))
        .await
        .map_err(api_error("listing cluster role bindings"))?
    {
        cluster
            .delete(
                &b.metadata.name.unwrap_or_default(),
                &DeleteParams::default(),
            )
            .await
            .map_err(api_error("deleting a cluster role binding"))?;
    }
    let path = data_dir.join("users").join(format!("{name}.kubeconfig"));
    let _ = std::fs::remove_file(&path);
    eprintln!("user {name} removed");
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn user_names_fit_labels_and_file_names() {
        assert!(check_name("alice").is_ok() && check_name("team-a.ops_1").is_ok());
        for bad in ["", "Alice", "-a", "a/b", "../x", &"a".repeat(64)] {
            assert!(check_name(bad).is_err(), "{bad}");
        }
        assert_eq!(random(6).len(), 6);
    }
}
