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

/// The signed-in user's API client.
pub struct Session(pub ApiClient);

fn token_from(headers: &HeaderMap) -> Option<String> {
    headers
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .filter_map(|c| c.trim().split_once('='))
        .find(|(name, _)| *name == COOKIE)
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
                p.muted { "Paste a bearer token. `everynode up` writes the admin token to "
                          code { "<data-dir>/admin.token" } "." }
                @if let Some(e) = error { div.error role="alert" { p { (e) } } }
                form method="post" action="/ui/login" {
                    label style="display:flex" { "Token"
                        input type="password" name="token" autocomplete="off" required autofocus;
                    }
                    button.primary type="submit" { "Sign in" }
                }
            }
        },
    )
}

#[derive(Deserialize)]
pub struct LoginForm {
    token: String,
}

pub async fn login(State(state): State<ConsoleState>, Form(form): Form<LoginForm>) -> Response {
    let token = form.token.trim().to_owned();
    let checked = match ApiClient::new(&state.backend, &token, state.clock.clone()) {
        Ok(client) => client.get("/api").await,
        Err(e) => Err(e),
    };
    match checked {
        Ok(_) => {
            let value = crate::layout::query_value(&token);
            (
                [(
                    header::SET_COOKIE,
                    format!("{COOKIE}={value}; Path=/ui; HttpOnly; Secure; SameSite=Strict"),
                )],
                Redirect::to("/ui/daemonsets"),
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
