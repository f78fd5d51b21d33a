//! Signing in: the user pastes a bearer token once; it travels in an HttpOnly, SameSite=Strict
//! cookie scoped to `/ui`, and every API call the console makes carries it. Writes must come
//! from the console's own pages (the browser's `Sec-Fetch-Site`, when sent, says so).

use crate::ConsoleState;
use crate::client::ApiClient;
use crate::error::ConsoleError;
use crate::layout::{Nav, page};
use axum::Form;
use axum::extract::{FromRequestParts, State};
use axum::http::request::Parts;
use axum::http::{HeaderMap, Method, header};
use axum::response::{IntoResponse, Redirect, Response};
use maud::html;
use serde::Deserialize;

const COOKIE: &str = "everynode_token";
/// The namespace of the kubeconfig the user signed in with, where pages start.
const NAMESPACE_COOKIE: &str = "everynode_namespace";

/// The signed-in user's API client.
pub struct Session(pub ApiClient);

fn token_from(headers: &HeaderMap) -> Option<String> {
    cookie(headers, COOKIE)
}

fn cookie(headers: &HeaderMap, wanted: &str) -> Option<String> {
    headers
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .filter_map(|c| c.trim().split_once('='))
        .find(|(name, _)| *name == wanted)
        .and_then(|(_, value)| {
            serde_urlencoded::from_str::<Vec<(String, String)>>(&format!("t={value}"))
                .ok()?
                .pop()
                .map(|(_, t)| t)
        })
        .filter(|t| !t.is_empty())
}

impl FromRequestParts<ConsoleState> for Session {
    type Rejection = Response;

    async fn from_request_parts(
        parts: &mut Parts,
        state: &ConsoleState,
    ) -> Result<Self, Self::Rejection> {
        if parts.method != Method::GET
            && let Some(site) = parts
                .headers
                .get("sec-fetch-site")
                .and_then(|v| v.to_str().ok())
            && site != "same-origin"
            && site != "none"
        {
            return Err(ConsoleError::BadInput(format!(
                "refused a write sent from another site ({site})"
            ))
            .into_response());
        }
        match token_from(&parts.headers) {
            Some(token) => ApiClient::new(&state.backend, &token, state.clock.clone())
                .map(Session)
                .map_err(IntoResponse::into_response),
            None => Err(Redirect::to("/ui/login").into_response()),
        }
    }
}

/// The namespace the user signed in to, if their kubeconfig named one.
pub struct HomeNamespace(pub Option<String>);

impl FromRequestParts<ConsoleState> for HomeNamespace {
    type Rejection = Response;

    async fn from_request_parts(
        parts: &mut Parts,
        _state: &ConsoleState,
    ) -> Result<Self, Self::Rejection> {
        Ok(HomeNamespace(cookie(&parts.headers, NAMESPACE_COOKIE)))
    }
}

pub async fn login_page() -> Response {
    login_form(None).into_response()
}

fn login_form(error: Option<&str>) -> axum::response::Html<String> {
    page(
        "Sign in",
        Nav::None,
        html! {
            div.card style="max-width: 520px; margin: 60px auto;" {
                h1 { "everynode console" }
                p.muted { "Paste a bearer token, or a kubeconfig with one. `everynode up` writes the admin token to "
                          code { "<data-dir>/admin.token" } "; `everynode user add` writes each user's kubeconfig." }
                @if let Some(e) = error { div.error role="alert" { p { (e) } } }
                form method="post" action="/ui/login" {
                    label style="display:flex" { "Token"
                        input type="password" name="token" autocomplete="off" autofocus;
                    }
                    label style="display:flex" { "or kubeconfig"
                        textarea name="kubeconfig" rows="6" spellcheck="false" autocomplete="off" {}
                    }
                    button.primary type="submit" { "Sign in" }
                }
            }
        },
    )
}

#[derive(Deserialize)]
pub struct LoginForm {
    #[serde(default)]
    token: String,
    #[serde(default)]
    kubeconfig: String,
}

/// The token and namespace of a kubeconfig's current context.
fn from_kubeconfig(text: &str) -> Result<(String, Option<String>), String> {
    let config = kube::config::Kubeconfig::from_yaml(text)
        .map_err(|e| format!("That is not a kubeconfig: {e}"))?;
    let context_name = config
        .current_context
        .clone()
        .or_else(|| config.contexts.first().map(|c| c.name.clone()))
        .ok_or("The kubeconfig has no context.")?;
    let context = config
        .contexts
        .iter()
        .find(|c| c.name == context_name)
        .and_then(|c| c.context.clone())
        .ok_or_else(|| format!("The kubeconfig has no context {context_name:?}."))?;
    let user = context.user.unwrap_or_default();
    let auth = config
        .auth_infos
        .iter()
        .find(|a| a.name == user)
        .and_then(|a| a.auth_info.clone())
        .ok_or_else(|| format!("The kubeconfig has no user {user:?}."))?;
    let token = auth.token.map(|t| {
        use secrecy::ExposeSecret as _;
        t.expose_secret().to_owned()
    });
    match token {
        Some(t) if !t.is_empty() => Ok((t, context.namespace)),
        _ => Err("That kubeconfig signs in with a client certificate; the console needs one with a token (`everynode user add` writes one).".into()),
    }
}

pub async fn login(State(state): State<ConsoleState>, Form(form): Form<LoginForm>) -> Response {
    let (token, namespace) = if form.token.trim().is_empty() && !form.kubeconfig.trim().is_empty() {
        match from_kubeconfig(&form.kubeconfig) {
            Ok(found) => found,
            Err(message) => {
                return (
                    axum::http::StatusCode::BAD_REQUEST,
                    login_form(Some(&message)),
                )
                    .into_response();
            }
        }
    } else {
        (form.token.trim().to_owned(), None)
    };
    if token.is_empty() {
        return (
            axum::http::StatusCode::BAD_REQUEST,
            login_form(Some("Paste a token or a kubeconfig.")),
        )
            .into_response();
    }
    let checked = match ApiClient::new(&state.backend, &token, state.clock.clone()) {
        Ok(client) => client.get("/api").await,
        Err(e) => Err(e),
    };
    match checked {
        Ok(_) => {
            let value = crate::layout::query_value(&token);
            let home = namespace.unwrap_or_default();
            let target = if home.is_empty() {
                "/ui/daemonsets".to_owned()
            } else {
                format!(
                    "/ui/daemonsets?namespace={}",
                    crate::layout::query_value(&home)
                )
            };
            (
                axum::response::AppendHeaders([
                    (
                        header::SET_COOKIE,
                        format!("{COOKIE}={value}; Path=/ui; HttpOnly; Secure; SameSite=Strict"),
                    ),
                    (
                        header::SET_COOKIE,
                        format!(
                            "{NAMESPACE_COOKIE}={}; Path=/ui; HttpOnly; Secure; SameSite=Strict",
                            crate::layout::query_value(&home)
                        ),
                    ),
                ]),
                Redirect::to(&target),
            )
                .into_response()
        }
        Err(ConsoleError::Unauthorized) => (
            axum::http::StatusCode::UNAUTHORIZED,
            login_form(Some("The API server did not accept that token.")),
        )
            .into_response(),
        Err(e) => e.into_response(),
    }
}

pub async fn logout() -> Response {
    (
        [(
            header::SET_COOKIE,
            format!("{COOKIE}=; Path=/ui; HttpOnly; Secure; SameSite=Strict; Max-Age=0"),
        )],
        Redirect::to("/ui/login"),
    )
        .into_response()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_token_is_read_from_its_cookie_only() {
        let mut headers = HeaderMap::new();
        headers.insert(
            header::COOKIE,
            "other=1; everynode_token=abc%2Bd; x=y"
                .parse()
                .expect("header"),
        );
        assert_eq!(token_from(&headers).as_deref(), Some("abc+d"));
        let mut none = HeaderMap::new();
        none.insert(header::COOKIE, "everynode_token=".parse().expect("header"));
        assert_eq!(token_from(&none), None);
    }
}
