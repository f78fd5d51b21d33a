//! The cluster's credentials shared through etcd, so servers on one etcd are one cluster: the
//! first server stores its CA, service-account signing key and admin token in etcd, encrypted
//! with a cluster secret; a later server started with the same secret (`--cluster-secret-file`)
//! and a fresh data directory takes them from there, as k3s's servers join with a token. Each
//! server still issues its own serving certificate from the shared CA.
//!
//! The bundle is AES-256-GCM (ring) under a key derived from the secret with SHA-256; a wrong
//! secret fails to decrypt and the server does not start.

use crate::Error;
use base64::Engine;
use everynode_store::EtcdStore;
use ring::aead::{AES_256_GCM, Aad, LessSafeKey, NONCE_LEN, Nonce, UnboundKey};
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

/// Where the bundle lives in etcd: beside, not under, the cluster's objects (`/registry/`).
const KEY: &str = "/everynode/cluster-credentials";
/// The files shared, relative to the data directory, with their modes.
const FILES: &[(&str, u32)] = &[
    ("pki/ca.crt", 0o644),
    ("pki/ca.key", 0o600),
    ("pki/sa.key", 0o600),
    ("admin.token", 0o600),
];

/// The secret's file when none is given: written by the first server.
pub fn default_secret_file(data_dir: &Path) -> PathBuf {
    data_dir.join("cluster-secret")
}

fn cipher(secret: &[u8]) -> Result<LessSafeKey, Error> {
    let digest = ring::digest::digest(
        &ring::digest::SHA256,
        &[b"everynode cluster credentials\0".as_slice(), secret].concat(),
    );
    UnboundKey::new(&AES_256_GCM, digest.as_ref())
        .map(LessSafeKey::new)
        .map_err(|_| Error::Startup("cannot derive the credentials key".into()))
}

fn seal(secret: &[u8], plain: &[u8]) -> Result<Vec<u8>, Error> {
    use rand::Rng;
    let nonce_bytes: [u8; NONCE_LEN] = rand::rng().random();
    let mut data = plain.to_vec();
    cipher(secret)?
        .seal_in_place_append_tag(
            Nonce::assume_unique_for_key(nonce_bytes),
            Aad::empty(),
            &mut data,
        )
        .map_err(|_| Error::Startup("cannot encrypt the cluster's credentials".into()))?;
    let b64 = base64::engine::general_purpose::STANDARD;
    Ok(serde_json::to_vec(&serde_json::json!({
        "version": 1,
        "nonce": b64.encode(nonce_bytes),
        "sealed": b64.encode(data),
    }))
    .unwrap_or_default())
}

fn open(secret: &[u8], stored: &[u8]) -> Result<Vec<u8>, Error> {
    let unusable = || {
        Error::Startup(
            "the cluster's credentials in etcd do not open with this cluster secret: give the first server's secret with --cluster-secret-file".into(),
        )
    };
    let b64 = base64::engine::general_purpose::STANDARD;
    let envelope: serde_json::Value = serde_json::from_slice(stored).map_err(|_| unusable())?;
    let nonce: [u8; NONCE_LEN] = envelope["nonce"]
        .as_str()
        .and_then(|n| b64.decode(n).ok())
        .and_then(|n| n.try_into().ok())
        .ok_or_else(unusable)?;
    let mut data = envelope["sealed"]
        .as_str()
        .and_then(|d| b64.decode(d).ok())
        .ok_or_else(unusable)?;
    let plain = cipher(secret)?
        .open_in_place(Nonce::assume_unique_for_key(nonce), Aad::empty(), &mut data)
        .map_err(|_| unusable())?;
    Ok(plain.to_vec())
}

/// The cluster secret: `file` when given, else the data directory's, made on first use.
fn secret(data_dir: &Path, file: Option<&Path>) -> Result<Vec<u8>, Error> {
    let path = file.map_or_else(|| default_secret_file(data_dir), Path::to_path_buf);
    match std::fs::read_to_string(&path) {
        Ok(text) if !text.trim().is_empty() => Ok(text.trim().as_bytes().to_vec()),
        Ok(_) => Err(Error::Usage(format!("{} is empty", path.display()))),
        Err(e) if file.is_some() => Err(Error::Usage(format!(
            "--cluster-secret-file {}: {e}",
            path.display()
        ))),
        Err(_) => {
            use rand::Rng;
            let bytes: [u8; 32] = rand::rng().random();
            let text: String = bytes.iter().map(|b| format!("{b:02x}")).collect();
            everynode_apiserver::credentials::write_file(&path, text.as_bytes(), 0o600)
                .map_err(|e| Error::Startup(e.to_string()))?;
            Ok(text.into_bytes())
        }
    }
}

/// Makes the data directory hold the cluster's shared credentials: those in etcd when a server
/// stored them, else this directory's own (made if missing), which are then stored.
pub async fn share(
    store: &EtcdStore,
    data_dir: &Path,
    secret_file: Option<&Path>,
    hosts: &[String],
) -> Result<(), Error> {
    let secret = secret(data_dir, secret_file)?;
    let etcd_error = |e: everynode_store::Error| Error::Startup(format!("etcd: {e}"));
    if let Some(stored) = store.get_raw(KEY).await.map_err(etcd_error)? {
        let files: BTreeMap<String, String> = serde_json::from_slice(&open(&secret, &stored)?)
            .map_err(|e| Error::Startup(format!("the cluster's credentials: {e}")))?;
        for (name, mode) in FILES {
            let Some(contents) = files.get(*name) else {
                continue;
            };
            let path = data_dir.join(name);
            match std::fs::read_to_string(&path) {
                Ok(local) if local.trim() == contents.trim() => {}
                Ok(_) => {
                    return Err(Error::Startup(format!(
                        "{} belongs to another cluster than the one in etcd: start this server with a fresh --data-dir",
                        path.display()
                    )));
                }
                Err(_) => {
                    everynode_apiserver::credentials::write_file(&path, contents.as_bytes(), *mode)
                        .map_err(|e| Error::Startup(e.to_string()))?
                }
            }
        }
        return Ok(());
    }
    // The first server: its own credentials become the cluster's.
    everynode_apiserver::credentials::ensure(data_dir, hosts)
        .map_err(|e| Error::Startup(e.to_string()))?;
    everynode_apiserver::service_account_token::TokenIssuer::load_or_create(data_dir)
        .map_err(|e| Error::Startup(e.to_string()))?;
    let mut files = BTreeMap::new();
    for (name, _) in FILES {
        let path = data_dir.join(name);
        let contents = std::fs::read_to_string(&path).map_err(|source| Error::Read {
            path: path.clone(),
            source,
        })?;
        files.insert((*name).to_owned(), contents);
    }
    let plain = serde_json::to_vec(&files).unwrap_or_default();
    if !store
        .create_raw(KEY, seal(&secret, &plain)?)
        .await
        .map_err(etcd_error)?
    {
        return Err(Error::Startup(
            "another server stored the cluster's credentials at the same moment: start this one again".into(),
        ));
    }
    tracing::info!(
        "stored the cluster's credentials in etcd; start further servers with --etcd-servers and --cluster-secret-file {}",
        secret_file
            .map_or_else(|| default_secret_file(data_dir), Path::to_path_buf)
            .display()
    );
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_sealed_bundle_opens_only_with_its_secret() {
        let sealed = seal(b"right", b"the credentials").expect("sealed");
        assert_eq!(open(b"right", &sealed).expect("opens"), b"the credentials");
        assert!(open(b"wrong", &sealed).is_err());
        assert!(!String::from_utf8_lossy(&sealed).contains("credentials"));
    }
}
