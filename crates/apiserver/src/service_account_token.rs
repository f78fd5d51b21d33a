//! ServiceAccount tokens: JWTs signed by the server's own key (ES256, `<data-dir>/pki/sa.key`,
//! mode 0600) with upstream's claims, issued by the TokenRequest API
//! (`serviceaccounts/{name}/token`) and checked by authentication. A token bound to a pod is
//! valid only while that pod exists with the same uid, and only while its ServiceAccount does.

use crate::authn::UserInfo;
use crate::cache::WatchCache;
use crate::credentials::{CredentialsError, write_file};
use everynode_api::registry::Kind;
use jiff::Timestamp;
use jsonwebtoken::{Algorithm, DecodingKey, EncodingKey, Header, Validation};
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::path::Path;

/// Upstream's default issuer and API audience (`--service-account-issuer`, `--api-audiences`).
pub const ISSUER: &str = "https://kubernetes.default.svc.cluster.local";
/// The token's lifetime when the request names none, and the shortest allowed.
pub const DEFAULT_EXPIRATION_SECONDS: i64 = 3600;
pub const MIN_EXPIRATION_SECONDS: i64 = 600;

/// A name and uid in the `kubernetes.io` claim.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ObjectRef {
    pub name: String,
    pub uid: String,
}

#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct KubernetesClaims {
    pub namespace: String,
    pub serviceaccount: ObjectRef,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pod: Option<ObjectRef>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub node: Option<ObjectRef>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub warnafter: Option<i64>,
}

/// Upstream's bound-token claims.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Claims {
    pub iss: String,
    pub sub: String,
    pub aud: Vec<String>,
    pub exp: i64,
    pub iat: i64,
    pub nbf: i64,
    pub jti: String,
    #[serde(rename = "kubernetes.io")]
    pub kubernetes: KubernetesClaims,
}

/// Signs and checks tokens.
pub struct TokenIssuer {
    encoding: EncodingKey,
    decoding: DecodingKey,
    key_id: String,
    /// Tokens whose signature checked out, by their SHA-256: a controller or a pod sends the
    /// same token on every request, and an ECDSA verification costs far more than a lookup
    /// (upstream caches token authentication likewise). Expiry is still checked every time.
    verified: std::sync::Mutex<std::collections::HashMap<[u8; 32], Claims>>,
}

/// Verified tokens remembered at most; the memory is emptied when it fills.
const VERIFIED_CAPACITY: usize = 8192;

impl std::fmt::Debug for TokenIssuer {
    // The keys stay out of logs.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TokenIssuer")
            .field("key_id", &self.key_id)
            .finish_non_exhaustive()
    }
}

impl TokenIssuer {
    /// Loads the signing key in `dir` (`pki/sa.key`), making one the first time.
    pub fn load_or_create(dir: &Path) -> Result<Self, CredentialsError> {
        let path = dir.join("pki").join("sa.key");
        let pem = match std::fs::read_to_string(&path) {
            Ok(pem) => pem,
            Err(_) => {
                let key = rcgen::KeyPair::generate()?;
                let pem = key.serialize_pem();
                write_file(&path, pem.as_bytes(), 0o600)?;
                pem
            }
        };
        Self::from_pem(&pem).ok_or(CredentialsError::Unusable {
            path,
            what: "ECDSA P-256 key",
        })
    }

    /// A key of its own that is kept nowhere: tokens end with the process (tests, and servers
    /// started without a data directory).
    pub fn ephemeral() -> Option<Self> {
        Self::from_pem(&rcgen::KeyPair::generate().ok()?.serialize_pem())
    }

    /// From a PKCS#8 ECDSA P-256 private key.
    pub fn from_pem(pem: &str) -> Option<Self> {
        let key = rcgen::KeyPair::from_pem(pem).ok()?;
        let public = key.public_key_pem();
        let encoding = EncodingKey::from_ec_pem(pem.as_bytes()).ok()?;
        let decoding = DecodingKey::from_ec_pem(public.as_bytes()).ok()?;
        // Upstream's key id: the unpadded base64url SHA-256 of the public key (DER).
        let digest = ring::digest::digest(
            &ring::digest::SHA256,
            rcgen::PublicKeyData::subject_public_key_info(&key).as_slice(),
        );
        use base64::Engine as _;
        let key_id = base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(digest.as_ref());
        Some(TokenIssuer {
            encoding,
            decoding,
            key_id,
            verified: std::sync::Mutex::default(),
        })
    }

    pub fn issue(&self, claims: &Claims) -> Option<String> {
        let mut header = Header::new(Algorithm::ES256);
        header.kid = Some(self.key_id.clone());
        jsonwebtoken::encode(&header, claims, &self.encoding).ok()
    }

    /// The claims of a token this server signed, if it is unexpired at `now` and meant for
    /// the API (its audience includes the issuer).
    pub fn verify(&self, token: &str, now: Timestamp) -> Option<Claims> {
        let fresh = |claims: Claims| {
            let now = now.as_second();
            (claims.exp > now && claims.nbf <= now + 60).then_some(claims)
        };
        let mut digest = [0u8; 32];
        digest.copy_from_slice(
            ring::digest::digest(&ring::digest::SHA256, token.as_bytes()).as_ref(),
        );
        let remembered = self
            .verified
            .lock()
            .ok()
            .and_then(|m| m.get(&digest).cloned());
        if let Some(claims) = remembered {
            return fresh(claims);
        }
        let claims = self.verify_signature(token)?;
        if let Ok(mut m) = self.verified.lock() {
            if m.len() >= VERIFIED_CAPACITY {
                m.clear();
            }
            m.insert(digest, claims.clone());
        }
        fresh(claims)
    }

    fn verify_signature(&self, token: &str) -> Option<Claims> {
        let mut validation = Validation::new(Algorithm::ES256);
        validation.set_issuer(&[ISSUER]);
        validation.set_audience(&[ISSUER]);
        // Expiry is checked against the injected clock below, not the library's.
        validation.validate_exp = false;
        validation.required_spec_claims.clear();
        let data = jsonwebtoken::decode::<Claims>(token, &self.decoding, &validation).ok()?;
        Some(data.claims)
    }
}

/// `system:serviceaccount:<namespace>:<name>`.
pub fn user_name(namespace: &str, name: &str) -> String {
    format!("system:serviceaccount:{namespace}:{name}")
}

/// The user a verified token stands for, if what it is bound to still exists: its
/// ServiceAccount (same uid) and, when bound to a pod, that pod (same uid, not being deleted).
pub fn user_of(cache: &WatchCache, claims: &Claims) -> Option<UserInfo> {
    let k = &claims.kubernetes;
    let sa = cache.object(
        Kind::ServiceAccount,
        Some(&k.namespace),
        &k.serviceaccount.name,
    )?;
    if sa["metadata"]["uid"].as_str() != Some(k.serviceaccount.uid.as_str()) {
        return None;
    }
    let mut extra = BTreeMap::new();
    if let Some(pod_ref) = &k.pod {
        let pod = cache.object(Kind::Pod, Some(&k.namespace), &pod_ref.name)?;
        if pod["metadata"]["uid"].as_str() != Some(pod_ref.uid.as_str())
            || pod["metadata"].get("deletionTimestamp").is_some()
        {
            return None;
        }
        extra.insert(
            "authentication.kubernetes.io/pod-name".to_owned(),
            vec![pod_ref.name.clone()],
        );
        extra.insert(
            "authentication.kubernetes.io/pod-uid".to_owned(),
            vec![pod_ref.uid.clone()],
        );
    }
    if let Some(node) = &k.node {
        extra.insert(
            "authentication.kubernetes.io/node-name".to_owned(),
            vec![node.name.clone()],
        );
    }
    extra.insert(
        "authentication.kubernetes.io/credential-id".to_owned(),
        vec![format!("JTI={}", claims.jti)],
    );
    Some(UserInfo {
        name: user_name(&k.namespace, &k.serviceaccount.name),
        uid: k.serviceaccount.uid.clone(),
        groups: vec![
            "system:serviceaccounts".to_owned(),
            format!("system:serviceaccounts:{}", k.namespace),
            crate::authn::SYSTEM_AUTHENTICATED.to_owned(),
        ],
        extra,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn claims(exp: i64) -> Claims {
        Claims {
            iss: ISSUER.into(),
            sub: user_name("a", "robot"),
            aud: vec![ISSUER.into()],
            exp,
            iat: 1000,
            nbf: 1000,
            jti: "j1".into(),
            kubernetes: KubernetesClaims {
                namespace: "a".into(),
                serviceaccount: ObjectRef {
                    name: "robot".into(),
                    uid: "sa-uid".into(),
                },
                ..KubernetesClaims::default()
            },
        }
    }

    #[test]
    fn tokens_verify_until_they_expire_and_only_with_our_key() {
        let dir = tempfile::tempdir().expect("tempdir");
        let issuer = TokenIssuer::load_or_create(dir.path()).expect("key");
        let again = TokenIssuer::load_or_create(dir.path()).expect("same key");
        let token = issuer.issue(&claims(5000)).expect("signed");
        let at = |s: i64| Timestamp::from_second(s).expect("timestamp");
        assert_eq!(again.verify(&token, at(2000)), Some(claims(5000)));
        assert_eq!(issuer.verify(&token, at(5000)), None, "expired");
        let other = tempfile::tempdir().expect("tempdir");
        let stranger = TokenIssuer::load_or_create(other.path()).expect("key");
        assert_eq!(stranger.verify(&token, at(2000)), None, "wrong signature");
        let mut wrong_audience = claims(5000);
        wrong_audience.aud = vec!["vault".into()];
        let token = issuer.issue(&wrong_audience).expect("signed");
        assert_eq!(issuer.verify(&token, at(2000)), None);
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(dir.path().join("pki/sa.key"))
            .expect("written")
            .permissions()
            .mode();
        assert_eq!(mode & 0o777, 0o600);
    }
}
