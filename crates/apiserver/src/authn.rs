//! Authentication: who a request is from. Each authenticator yields a [`UserInfo`]; any failure
//! is upstream's bare 401 `Status` ("Unauthorized"), saying nothing about why a credential was
//! refused. In upstream's order:
//! 1. a client certificate signed by the cluster CA (CN = user, O = groups), checked during the
//!    TLS handshake; the connection carries the identity as [`ClientCertificate`];
//! 2. a bearer token: the administrator's token; a static token from `--token-auth-file`
//!    (upstream's CSV); a user token made by `everynode user add`, kept hashed in a Secret of
//!    type `everynode.io/user-token` in `kube-system`, so deleting the Secret ends it at once.
//!
//! Requests without credentials are anonymous (`system:anonymous`) only on the public paths
//! (version and health), as upstream's anonymous authenticator restricted to those paths;
//! elsewhere they are a 401.

use crate::error::ApiError;
use crate::registry::Registry;
use axum::extract::{Request, State};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use base64::Engine as _;
use serde::Serialize;
use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};
use std::sync::Arc;

pub const SYSTEM_AUTHENTICATED: &str = "system:authenticated";
pub const SYSTEM_UNAUTHENTICATED: &str = "system:unauthenticated";
pub const SYSTEM_MASTERS: &str = "system:masters";
pub const ANONYMOUS: &str = "system:anonymous";
/// The administrator, who holds the token in `<data-dir>/admin.token`.
pub const ADMIN_USER: &str = "everynode-admin";
/// The Secret type of user tokens, and the namespace they live in.
pub const USER_TOKEN_TYPE: &str = "everynode.io/user-token";
pub const USER_TOKEN_NAMESPACE: &str = "kube-system";
/// User tokens are `<id>.<secret>`; the Secret is `<prefix><id>`.
pub const USER_TOKEN_SECRET_PREFIX: &str = "everynode-user-token-";

/// An authenticated identity, as upstream's `user.Info`.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize)]
pub struct UserInfo {
    pub name: String,
    pub uid: String,
    pub groups: Vec<String>,
    pub extra: BTreeMap<String, Vec<String>>,
}

impl UserInfo {
    pub fn new(name: &str, uid: &str, groups: &[&str]) -> Self {
        UserInfo {
            name: name.to_owned(),
            uid: uid.to_owned(),
            groups: groups.iter().map(|g| (*g).to_owned()).collect(),
            extra: BTreeMap::new(),
        }
    }

    /// Adds `system:authenticated`, as upstream does for every authenticated user.
    pub(crate) fn authenticated(mut self) -> Self {
        if !self.groups.iter().any(|g| g == SYSTEM_AUTHENTICATED) {
            self.groups.push(SYSTEM_AUTHENTICATED.to_owned());
        }
        self
    }

    pub fn anonymous() -> Self {
        UserInfo::new(ANONYMOUS, "", &[SYSTEM_UNAUTHENTICATED])
    }

    pub fn admin() -> Self {
        UserInfo::new(ADMIN_USER, "", &[SYSTEM_MASTERS]).authenticated()
    }
}

tokio::task_local! {
    /// The caller of the request being served, for the checks deep in the write path that
    /// depend on who asks (RBAC escalation prevention), like upstream's request context.
    /// Writes the server makes itself run outside any request and see no user.
    pub static REQUEST_USER: UserInfo;
}

/// The identity of the client certificate a connection presented, if any (set per connection
/// by the server after the TLS handshake).
#[derive(Clone, Debug)]
pub struct ClientCertificate(pub Option<UserInfo>);

/// Errors reading authentication configuration. Not retryable: the file must be fixed.
#[derive(Debug, thiserror::Error)]
pub enum AuthnConfigError {
    #[error("cannot read {path}: {source}")]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("{path}:{line}: {message}")]
    Malformed {
        path: PathBuf,
        line: usize,
        message: String,
    },
}

/// Parses upstream's static token file: `token,user,uid[,"group1,group2"]` per line; blank
/// lines and lines starting with `#` are skipped. Later duplicates of a token win, as upstream.
pub fn read_token_file(path: &Path) -> Result<HashMap<String, UserInfo>, AuthnConfigError> {
    let text = std::fs::read_to_string(path).map_err(|source| AuthnConfigError::Read {
        path: path.to_owned(),
        source,
    })?;
    parse_token_file(&text).map_err(|(line, message)| AuthnConfigError::Malformed {
        path: path.to_owned(),
        line,
        message,
    })
}

fn parse_token_file(text: &str) -> Result<HashMap<String, UserInfo>, (usize, String)> {
    let mut tokens = HashMap::new();
    for (i, line) in text.lines().enumerate() {
        let trimmed = line.trim();
        if trimmed.is_empty() || trimmed.starts_with('#') {
            continue;
        }
        let fields = csv_fields(trimmed).map_err(|m| (i + 1, m))?;
        if fields.len() < 3 {
            return Err((
                i + 1,
                format!(
                    "token file is malformed: at least 3 columns required, found {}",
                    fields.len()
                ),
            ));
        }
        let groups: Vec<String> = fields
            .get(3)
            .map(|g| {
                g.split(',')
                    .map(str::trim)
                    .filter(|g| !g.is_empty())
                    .map(str::to_owned)
                    .collect()
            })
            .unwrap_or_default();
        let user = UserInfo {
            name: fields[1].clone(),
            uid: fields[2].clone(),
            groups,
            extra: BTreeMap::new(),
        };
        tokens.insert(fields[0].clone(), user);
    }
    Ok(tokens)
}

/// One CSV record: commas separate fields; double quotes enclose fields with commas, and `""`
/// inside quotes is a quote (RFC 4180, what Go's encoding/csv reads).
fn csv_fields(line: &str) -> Result<Vec<String>, String> {
    let mut fields = Vec::new();
    let mut field = String::new();
    let mut chars = line.chars().peekable();
    let mut quoted = false;
    while let Some(c) = chars.next() {
        match (quoted, c) {
            (true, '"') if chars.peek() == Some(&'"') => {
                chars.next();
                field.push('"');
            }
            (true, '"') => quoted = false,
            (false, '"') if field.is_empty() => quoted = true,
            (false, ',') => fields.push(std::mem::take(&mut field)),
            (_, c) => field.push(c),
        }
    }
    if quoted {
        return Err("extraneous or missing \" in quoted-field".into());
    }
    fields.push(field);
    Ok(fields)
}

/// The identity a client certificate states: CN is the user, each O a group.
pub fn user_of_certificate(der: &[u8]) -> Option<UserInfo> {
    let (_, cert) = x509_parser::parse_x509_certificate(der).ok()?;
    let subject = cert.subject();
    let name = subject.iter_common_name().next()?.as_str().ok()?.to_owned();
    if name.is_empty() {
        return None;
    }
    let groups = subject
        .iter_organization()
        .filter_map(|o| o.as_str().ok().map(str::to_owned))
        .collect();
    Some(
        UserInfo {
            name,
            uid: String::new(),
            groups,
            extra: BTreeMap::new(),
        }
        .authenticated(),
    )
}

/// Compares without an early exit, so timing does not reveal how much of a guess was right.
pub(crate) fn same_secret(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

/// SHA-256 of a token secret, hex: what a user-token Secret keeps instead of the secret.
pub fn token_hash(secret: &str) -> String {
    ring::digest::digest(&ring::digest::SHA256, secret.as_bytes())
        .as_ref()
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

/// The bearer-token authenticators, and the registry user tokens are looked up in.
pub struct Authenticator {
    admin_tokens: Vec<String>,
    static_tokens: HashMap<String, UserInfo>,
    registry: Arc<Registry>,
}

impl Authenticator {
    pub fn new(
        registry: Arc<Registry>,
        admin_tokens: Vec<String>,
        static_tokens: HashMap<String, UserInfo>,
    ) -> Self {
        Authenticator {
            admin_tokens,
            static_tokens,
            registry,
        }
    }

    /// The user a bearer token stands for, if any.
    pub fn user_of_token(&self, token: &str) -> Option<UserInfo> {
        // A JWT: three base64url parts.
        if token.matches('.').count() == 2 {
            let claims = self
                .registry
                .token_issuer
                .verify(token, self.registry.clock.now())?;
            return crate::service_account_token::user_of(&self.registry.cache, &claims);
        }
        if self
            .admin_tokens
            .iter()
            .any(|ok| same_secret(ok.as_bytes(), token.as_bytes()))
        {
            return Some(UserInfo::admin());
        }
        if let Some(user) = self.static_tokens.get(token) {
            return Some(user.clone().authenticated());
        }
        if let Some((id, secret)) = crate::bootstrap_token::split(token)
            && let Some(obj) = self.registry.cache.object(
                everynode_api::registry::Kind::Secret,
                Some(crate::bootstrap_token::NAMESPACE),
                &format!("{}{id}", crate::bootstrap_token::SECRET_PREFIX),
            )
        {
            return crate::bootstrap_token::user_of(&obj, id, secret, self.registry.clock.now());
        }
        self.user_token(token)
    }

    /// A user token `<id>.<secret>`: the Secret named after the id, its hash compared.
    fn user_token(&self, token: &str) -> Option<UserInfo> {
        let (id, secret) = token.split_once('.')?;
        let valid_id = id.len() == 6
            && id
                .bytes()
                .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit());
        if !valid_id || secret.is_empty() {
            return None;
        }
        let obj = self.registry.cache.object(
            everynode_api::registry::Kind::Secret,
            Some(USER_TOKEN_NAMESPACE),
            &format!("{USER_TOKEN_SECRET_PREFIX}{id}"),
        )?;
        if obj["type"] != USER_TOKEN_TYPE || obj["metadata"].get("deletionTimestamp").is_some() {
            return None;
        }
        let field = |k: &str| -> Option<String> {
            let b64 = obj["data"].get(k)?.as_str()?;
            let bytes = base64::engine::general_purpose::STANDARD.decode(b64).ok()?;
            String::from_utf8(bytes).ok()
        };
        let hash = field("token-secret-sha256")?;
        if !same_secret(hash.as_bytes(), token_hash(secret).as_bytes()) {
            return None;
        }
        let groups = field("groups")
            .map(|g| {
                g.split(',')
                    .filter(|g| !g.is_empty())
                    .map(str::to_owned)
                    .collect()
            })
            .unwrap_or_default();
        Some(
            UserInfo {
                name: field("user-name")?,
                uid: obj["metadata"]["uid"].as_str().unwrap_or("").to_owned(),
                groups,
                extra: BTreeMap::new(),
            }
            .authenticated(),
        )
    }
}

/// Where a joining node reads the CA and the server's address before it trusts either;
/// RBAC lets `system:anonymous` get it and nothing else there.
pub const CLUSTER_INFO_PATH: &str = "/api/v1/namespaces/kube-public/configmaps/cluster-info";

/// Paths answered to anonymous callers: what upstream's `system:public-info-viewer` grants,
/// and the cluster-info ConfigMap node bootstrap needs (authorized by RBAC like any request).
pub fn is_public(path: &str) -> bool {
    matches!(
        path,
        "/version" | "/version/" | "/healthz" | "/livez" | "/readyz"
    ) || path == CLUSTER_INFO_PATH
        || path.starts_with("/healthz/")
        || path.starts_with("/livez/")
        || path.starts_with("/readyz/")
}

/// The token of an `Authorization: Bearer <token>` header; the scheme in any case, as upstream
/// reads it.
fn bearer_token(header: &str) -> Option<&str> {
    let (scheme, token) = header.trim().split_once(' ')?;
    scheme
        .eq_ignore_ascii_case("bearer")
        .then_some(token.trim())
        .filter(|t| !t.is_empty())
}

/// Middleware: puts the caller's [`UserInfo`] into the request's extensions, or answers 401.
pub async fn authenticate(
    State(authenticator): State<Arc<Authenticator>>,
    mut req: Request,
    next: Next,
) -> Response {
    let header = req
        .headers()
        .get(axum::http::header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok());
    let certificate = req
        .extensions()
        .get::<ClientCertificate>()
        .and_then(|c| c.0.clone());
    let user = match (certificate, header) {
        (Some(user), _) => Some(user),
        (None, Some(h)) => bearer_token(h).and_then(|t| authenticator.user_of_token(t)),
        (None, None) if is_public(req.uri().path()) => Some(UserInfo::anonymous()),
        (None, None) => None,
    };
    match user {
        Some(user) => {
            req.extensions_mut().insert(user.clone());
            let mut response = next.run(req).await;
            // For the audit log, which wraps authentication so it records refusals too.
            response.extensions_mut().insert(user);
            response
        }
        None => ApiError::unauthorized().into_response(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_bearer_scheme_in_any_case() {
        assert_eq!(bearer_token("Bearer abc"), Some("abc"));
        assert_eq!(bearer_token("bearer abc"), Some("abc"));
        assert_eq!(bearer_token("BEARER  abc "), Some("abc"));
        assert_eq!(bearer_token("Basic abc"), None);
        assert_eq!(bearer_token("Bearer "), None);
    }

    #[test]
    fn secrets_and_public_paths() {
        assert!(same_secret(b"abc", b"abc"));
        assert!(!same_secret(b"abc", b"abd"));
        assert!(!same_secret(b"abc", b"ab"));
        assert!(is_public("/version") && is_public("/readyz/ping"));
        assert!(!is_public("/api/v1/pods") && !is_public("/versionx"));
    }

    #[test]
    fn token_file_in_upstreams_csv() {
        let tokens = parse_token_file(
            "# comment\n\ns3cret,alice,uid-1,\"team-a,ops\"\nt2,bob,uid-2\n\"t,3\",\"carol \"\"c\"\"\",u3,g\n",
        )
        .expect("parses");
        assert_eq!(
            tokens["s3cret"],
            UserInfo::new("alice", "uid-1", &["team-a", "ops"])
        );
        assert_eq!(tokens["t2"].groups, Vec::<String>::new());
        assert_eq!(tokens["t,3"].name, "carol \"c\"");
        assert_eq!(
            parse_token_file("ok,a,1\nonly,two\n"),
            Err((
                2,
                "token file is malformed: at least 3 columns required, found 2".into()
            ))
        );
    }

    #[test]
    fn certificates_name_the_user_and_groups() {
        let key = rcgen::KeyPair::generate().expect("key");
        let mut params = rcgen::CertificateParams::new(Vec::<String>::new()).expect("params");
        params
            .distinguished_name
            .push(rcgen::DnType::CommonName, "system:node:n1");
        params
            .distinguished_name
            .push(rcgen::DnType::OrganizationName, "system:nodes");
        let cert = params.self_signed(&key).expect("cert");
        let user = user_of_certificate(cert.der()).expect("identity");
        assert_eq!(user.name, "system:node:n1");
        assert_eq!(user.groups, ["system:nodes", SYSTEM_AUTHENTICATED]);
    }
}
