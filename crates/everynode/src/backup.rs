//! `everynode backup`, `restore` and `migrate`: a cluster's objects and credentials in one file,
//! and back; and an embedded cluster moved to etcd.
//!
//! A backup asks the running server for its snapshot (`/everynode/snapshot`: every object at one
//! revision, as the administrator) and adds the data directory's credentials (CA, service-account
//! key, admin token), since the objects depend on them (service-account tokens, the
//! `kube-root-ca.crt` ConfigMaps, node certificates). The file holds every Secret: it is written
//! with mode 0600. Restore and migrate write the objects in their revision order, so uids are kept
//! (they are in the objects) and resourceVersions keep their order.

use crate::Error;
use everynode_store::{EmbeddedStore, EtcdStore, Store};
use std::collections::BTreeMap;
use std::io::{BufRead, Write};
use std::path::{Path, PathBuf};

/// The credentials a backup carries, relative to the data directory.
const CREDENTIALS: &[(&str, u32)] = &[
    ("pki/ca.crt", 0o644),
    ("pki/ca.key", 0o600),
    ("pki/sa.key", 0o600),
    ("admin.token", 0o600),
    ("cluster-secret", 0o600),
];
const FORMAT: &str = "everynode-backup/v1";

#[derive(clap::Args, Debug)]
pub struct BackupArgs {
    /// The running server's data directory (its admin kubeconfig and credentials).
    #[arg(long, default_value = "everynode-data")]
    pub data_dir: PathBuf,
    /// Where to write the backup (mode 0600: it holds every Secret and the CA key).
    pub file: PathBuf,
}

#[derive(clap::Args, Debug)]
pub struct RestoreArgs {
    /// A file `everynode backup` wrote.
    pub file: PathBuf,
    /// A new data directory to rebuild the cluster in (its store must not exist yet).
    #[arg(long)]
    pub data_dir: PathBuf,
}

#[derive(clap::Args, Debug)]
pub struct MigrateArgs {
    /// The data directory of a stopped server on the embedded store.
    #[arg(long)]
    pub from_data_dir: PathBuf,
    /// The etcd to move the cluster to (comma-separated endpoints); it must hold no cluster yet.
    #[arg(long, value_delimiter = ',', required = true)]
    pub to_etcd: Vec<String>,
}

/// One stored object as a backup keeps it.
struct Object {
    key: String,
    mod_revision: u64,
    value: Vec<u8>,
}

fn parse_object(line: &str) -> Result<Object, Error> {
    let bad = |why: &str| Error::Usage(format!("not an everynode backup line ({why})"));
    let v: serde_json::Value = serde_json::from_str(line).map_err(|e| bad(&e.to_string()))?;
    Ok(Object {
        key: v["key"].as_str().ok_or_else(|| bad("no key"))?.to_owned(),
        mod_revision: v["modRevision"].as_u64().unwrap_or(0),
        value: serde_json::to_vec(&v["value"]).map_err(|e| bad(&e.to_string()))?,
    })
}

/// Writes `objects` into `store` in revision order; returns how many.
async fn write_all(store: &dyn Store, mut objects: Vec<Object>) -> Result<usize, Error> {
    objects.sort_by_key(|o| o.mod_revision);
    for object in &objects {
        store
            .create(&object.key, object.value.clone().into())
            .await
            .map_err(|e| Error::Startup(format!("writing {}: {e}", object.key)))?;
    }
    Ok(objects.len())
}

pub async fn backup(args: BackupArgs) -> Result<(), Error> {
    let kubeconfig = args.data_dir.join("kubeconfig");
    let client = crate::server::client_from_kubeconfig(&kubeconfig).await?;
    let request = http::Request::get("/everynode/snapshot")
        .body(Vec::new())
        .map_err(|e| Error::Startup(e.to_string()))?;
    let snapshot = client
        .request_text(request)
        .await
        .map_err(|e| Error::Startup(format!("reading the server's snapshot: {e}")))?;
    let mut lines = snapshot.lines();
    let header: serde_json::Value = lines
        .next()
        .and_then(|l| serde_json::from_str(l).ok())
        .ok_or_else(|| Error::Startup("the server's snapshot has no header".into()))?;
    let mut credentials = BTreeMap::new();
    for (name, _) in CREDENTIALS {
        if let Ok(text) = std::fs::read_to_string(args.data_dir.join(name)) {
            credentials.insert((*name).to_owned(), text);
        }
    }
    let mut out = Vec::with_capacity(snapshot.len() + 8192);
    let head = serde_json::json!({
        "format": FORMAT,
        "revision": header["revision"],
        "objects": header["objects"],
        "credentials": credentials,
    });
    writeln!(out, "{head}").map_err(|e| Error::Startup(e.to_string()))?;
    for line in lines {
        writeln!(out, "{line}").map_err(|e| Error::Startup(e.to_string()))?;
    }
    everynode_apiserver::credentials::write_file(&args.file, &out, 0o600)
        .map_err(|e| Error::Startup(e.to_string()))?;
    println!(
        "backed up {} objects at revision {} to {}",
        header["objects"],
        header["revision"],
        args.file.display()
    );
    Ok(())
}

pub async fn restore(args: RestoreArgs) -> Result<(), Error> {
    let file = std::fs::File::open(&args.file).map_err(|source| Error::Read {
        path: args.file.clone(),
        source,
    })?;
    let mut lines = std::io::BufReader::new(file).lines();
    let head: serde_json::Value = lines
        .next()
        .and_then(Result::ok)
        .and_then(|l| serde_json::from_str(&l).ok())
        .filter(|h: &serde_json::Value| h["format"] == FORMAT)
        .ok_or_else(|| {
            Error::Usage(format!(
                "{} is not a backup `everynode backup` wrote",
                args.file.display()
            ))
        })?;
    let store_path = args.data_dir.join("everynode.redb");
    if store_path.exists() {
        return Err(Error::Usage(format!(
            "{} already holds a cluster: restore into a new --data-dir",
            args.data_dir.display()
        )));
    }
    crate::private_dir(&args.data_dir)?;
    write_credentials(&args.data_dir, &head["credentials"])?;
    let mut objects = Vec::new();
    for line in lines {
        let line = line.map_err(|source| Error::Read {
            path: args.file.clone(),
            source,
        })?;
        if !line.trim().is_empty() {
            objects.push(parse_object(&line)?);
        }
    }
    let store = EmbeddedStore::open(&store_path, 1000)?;
    let count = write_all(&store, objects).await?;
    println!(
        "restored {count} objects into {}; start it with: everynode server --data-dir {}",
        args.data_dir.display(),
        args.data_dir.display()
    );
    Ok(())
}

fn write_credentials(data_dir: &Path, credentials: &serde_json::Value) -> Result<(), Error> {
    for (name, mode) in CREDENTIALS {
        if let Some(text) = credentials[*name].as_str() {
            everynode_apiserver::credentials::write_file(
                &data_dir.join(name),
                text.as_bytes(),
                *mode,
            )
            .map_err(|e| Error::Startup(e.to_string()))?;
        }
    }
    Ok(())
}

pub async fn migrate(args: MigrateArgs) -> Result<(), Error> {
    let store_path = args.from_data_dir.join("everynode.redb");
    let embedded = EmbeddedStore::open(&store_path, 1000).map_err(|e| {
        Error::Startup(format!(
            "opening {} (stop its server first): {e}",
            store_path.display()
        ))
    })?;
    let page = embedded
        .list("/", None, 0)
        .await
        .map_err(|e| Error::Startup(e.to_string()))?;
    let etcd = EtcdStore::connect(&args.to_etcd, None)
        .await
        .map_err(|e| Error::Startup(format!("cannot reach etcd: {e}")))?;
    let existing = etcd
        .list("/", None, 1)
        .await
        .map_err(|e| Error::Startup(e.to_string()))?;
    if !existing.items.is_empty() {
        return Err(Error::Usage(
            "that etcd already holds a cluster (keys under /registry/): migrate into an empty one"
                .into(),
        ));
    }
    let objects = page
        .items
        .into_iter()
        .map(|kv| Object {
            key: kv.key,
            mod_revision: kv.mod_revision,
            value: kv.value.to_vec(),
        })
        .collect();
    let count = write_all(&etcd, objects).await?;
    // The data directory's credentials become the cluster's, for further servers.
    crate::shared_credentials::share(&etcd, &args.from_data_dir, None, &[]).await?;
    println!(
        "moved {count} objects to etcd; start the server with: everynode server --data-dir {} --etcd-servers {}",
        args.from_data_dir.display(),
        args.to_etcd.join(",")
    );
    Ok(())
}
