//! `everynode agent --join URL --token T --ca-cert-hash sha256:H`: TLS bootstrapping as
//! kubeadm and kubelet do it. The agent reads `kube-public/cluster-info` without credentials,
//! trusts the CA in it only if its public key hashes to `--ca-cert-hash`, then, over a
//! connection verified with that CA, spends the bootstrap token on a CertificateSigningRequest
//! for `system:node:<name>`. The server approves and signs it; the agent keeps the certificate
//! and its key as `<state-dir>/kubeconfig` (mode 0600) and runs with that identity from then on.
//! A restarted agent that already holds a kubeconfig there uses it and spends no token.

use crate::Error;
use base64::Engine;
use everynode_api::csr::KUBE_APISERVER_CLIENT_KUBELET_SIGNER;
use everynode_apiserver::credentials;
use k8s_openapi::api::certificates::v1::{
    CertificateSigningRequest, CertificateSigningRequestSpec,
};
use kube::api::{Api, ObjectMeta, PostParams};
use std::path::{Path, PathBuf};
use std::time::Duration;

/// How long the agent waits for its request to be approved and signed.
const ISSUE_TIMEOUT: Duration = Duration::from_secs(300);

/// What a join needs.
pub struct Join<'a> {
    pub url: &'a str,
    pub token: &'a str,
    pub ca_cert_hash: &'a str,
    pub node_name: &'a str,
    pub state_dir: &'a Path,
}

/// The node's kubeconfig: made by joining the first time, reused after.
pub async fn kubeconfig(join: &Join<'_>) -> Result<PathBuf, Error> {
    let path = join.state_dir.join("kubeconfig");
    if path.exists() {
        tracing::info!(kubeconfig = %path.display(), "already joined; using the node's own credential");
        return Ok(path);
    }
    let ca = discover_ca(join).await?;
    let (cert, key) = request_certificate(join, &ca).await?;
    let user = format!("system:node:{}", join.node_name);
    let text = credentials::kubeconfig_with_certificate(join.url, Some(&ca), &user, &cert, &key);
    credentials::write_file(&path, text.as_bytes(), 0o600)?;
    tracing::info!(node = join.node_name, kubeconfig = %path.display(), "joined the cluster");
    Ok(path)
}

/// The cluster CA from `cluster-info`, if it is the one `--ca-cert-hash` pins.
async fn discover_ca(join: &Join<'_>) -> Result<String, Error> {
    let want = join.ca_cert_hash.trim().to_ascii_lowercase();
    if !want.starts_with("sha256:") || want.len() != "sha256:".len() + 64 {
        return Err(Error::Usage(format!(
            "--ca-cert-hash {:?}: want sha256: and 64 hex digits, as `everynode token create` prints",
            join.ca_cert_hash
        )));
    }
    // Unverified on purpose: nothing secret is sent, and what comes back is trusted only if
    // it matches the pin.
    let insecure = reqwest::Client::builder()
        .danger_accept_invalid_certs(true)
        .timeout(Duration::from_secs(30))
        .build()
        .map_err(|e| Error::Startup(format!("cannot make an HTTP client: {e}")))?;
    let url = format!(
        "{}{}",
        join.url.trim_end_matches('/'),
        everynode_apiserver::authn::CLUSTER_INFO_PATH
    );
    let response = insecure
        .get(&url)
        .send()
        .await
        .map_err(|e| Error::Startup(format!("reading cluster-info from {url}: {e}")))?;
    if !response.status().is_success() {
        return Err(Error::Startup(format!(
            "reading cluster-info from {url}: HTTP {}",
            response.status()
        )));
    }
    let body = response
        .bytes()
        .await
        .map_err(|e| Error::Startup(format!("reading cluster-info from {url}: {e}")))?;
    let cm: serde_json::Value = serde_json::from_slice(&body)
        .map_err(|e| Error::Startup(format!("cluster-info is not JSON: {e}")))?;
    let kubeconfig = cm["data"]["kubeconfig"].as_str().unwrap_or_default();
    let parsed = kube::config::Kubeconfig::from_yaml(kubeconfig)
        .map_err(|e| Error::Startup(format!("cluster-info holds no kubeconfig: {e}")))?;
    let ca = parsed
        .clusters
        .first()
        .and_then(|c| c.cluster.as_ref())
        .and_then(|c| c.certificate_authority_data.as_deref())
        .and_then(|b64| {
            base64::engine::general_purpose::STANDARD
                .decode(b64.trim())
                .ok()
        })
        .and_then(|bytes| String::from_utf8(bytes).ok())
        .ok_or_else(|| Error::Startup("cluster-info names no CA".into()))?;
    let got = credentials::ca_cert_hash(&ca)
        .ok_or_else(|| Error::Startup("the CA in cluster-info does not parse".into()))?;
    if got != want {
        return Err(Error::Startup(format!(
            "the cluster's CA has public key hash {got}, not the {want} given with --ca-cert-hash; the token was not sent"
        )));
    }
    Ok(ca)
}

/// A key made here and a certificate for it, both PEM.
async fn request_certificate(join: &Join<'_>, ca: &str) -> Result<(String, String), Error> {
    let url: http::Uri = join
        .url
        .parse()
        .map_err(|e| Error::Usage(format!("invalid --join {:?}: {e}", join.url)))?;
    let mut config = kube::Config::new(url);
    config.auth_info.token = Some(join.token.to_owned().into());
    config.root_cert = Some(
        rustls_pemfile::certs(&mut ca.as_bytes())
            .filter_map(Result::ok)
            .map(|c| c.to_vec())
            .collect(),
    );
    let client = kube::Client::try_from(config).map_err(|e| Error::Startup(e.to_string()))?;
    let key = rcgen::KeyPair::generate()
        .map_err(|e| Error::Startup(format!("cannot make a key: {e}")))?;
    let mut params = rcgen::CertificateParams::new(Vec::<String>::new())
        .map_err(|e| Error::Startup(e.to_string()))?;
    params.distinguished_name.push(
        rcgen::DnType::CommonName,
        format!("system:node:{}", join.node_name),
    );
    params
        .distinguished_name
        .push(rcgen::DnType::OrganizationName, "system:nodes");
    let request = params
        .serialize_request(&key)
        .and_then(|r| r.pem())
        .map_err(|e| Error::Startup(format!("cannot make the request: {e}")))?;
    let csrs: Api<CertificateSigningRequest> = Api::all(client);
    let csr = CertificateSigningRequest {
        metadata: ObjectMeta {
            generate_name: Some("node-csr-".into()),
            ..ObjectMeta::default()
        },
        spec: CertificateSigningRequestSpec {
            request: k8s_openapi::ByteString(request.into_bytes()),
            signer_name: KUBE_APISERVER_CLIENT_KUBELET_SIGNER.into(),
            usages: Some(vec!["digital signature".into(), "client auth".into()]),
            ..CertificateSigningRequestSpec::default()
        },
        status: None,
    };
    let created = csrs
        .create(&PostParams::default(), &csr)
        .await
        .map_err(|e| {
            Error::Startup(format!(
                "the server refused the node's certificate request (is the token valid?): {e}"
            ))
        })?;
    let name = created.metadata.name.unwrap_or_default();
    tracing::info!(csr = %name, "asked for the node's certificate");
    let deadline = tokio::time::Instant::now() + ISSUE_TIMEOUT;
    loop {
        let current = csrs
            .get(&name)
            .await
            .map_err(|e| Error::Startup(format!("reading {name}: {e}")))?;
        let status = current.status.unwrap_or_default();
        if let Some(cert) = status.certificate.filter(|c| !c.0.is_empty()) {
            let cert = String::from_utf8(cert.0)
                .map_err(|_| Error::Startup(format!("{name}: the certificate is not PEM")))?;
            return Ok((cert, key.serialize_pem()));
        }
        if let Some(c) = status
            .conditions
            .into_iter()
            .flatten()
            .find(|c| (c.type_ == "Denied" || c.type_ == "Failed") && c.status == "True")
        {
            return Err(Error::Startup(format!(
                "{name} was {}: {}",
                c.type_.to_lowercase(),
                c.message.unwrap_or_default()
            )));
        }
        if tokio::time::Instant::now() >= deadline {
            return Err(Error::Startup(format!(
                "{name} was not signed within {}s; see `kubectl get csr {name}`",
                ISSUE_TIMEOUT.as_secs()
            )));
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
}
