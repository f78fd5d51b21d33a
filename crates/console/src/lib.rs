//! The everynode web console, served under `/ui`: DaemonSets listed live, created by form or
//! YAML, inspected (pods, placement, revisions, events), operated (edit, redeploy, roll back,
//! delete), plus nodes and namespaces. Pages are rendered on the server (maud); live parts are
//! server-sent events; the one script and the stylesheet are embedded in the binary.
//!
//! The console is an API client: every read and write is an HTTP request to the API server's
//! router carrying the signed-in user's token (see `client`).

pub mod client;
mod daemonsets;
mod detail;
mod editor;
pub mod error;
pub mod form;
mod grid;
pub mod import;
mod layout;
mod live;
mod merged_log;
mod nodes;
mod permissions;
pub mod placement;
mod preview;
mod refill;
mod rollout;
mod service;
mod session;
pub mod status;
mod usage;
mod wizard;
mod wizard_edit;

use axum::Router;
use axum::http::header;
use axum::response::{IntoResponse, Redirect};
use axum::routing::{get, post};
use client::Backend;
use everynode_clock::SharedClock;

/// What every handler needs: where API requests go, and the clock.
#[derive(Clone)]
pub struct ConsoleState {
    backend: Backend,
    clock: SharedClock,
}

const CSS: &str = include_str!("../assets/console.css");
const JS: &str = include_str!("../assets/console.js");
/// The charts: uPlot, bundled at build time like the editor (`scripts/build-console-editor.sh`).
const CHARTS: &str = include_str!("../assets/charts.js");

/// The console's routes, to be nested under `/ui`, sending API requests to `backend`.
pub fn router(backend: Backend, clock: SharedClock) -> Router {
    Router::new()
        .route("/", get(|| async { Redirect::to("/ui/daemonsets") }))
        .route("/login", get(session::login_page).post(session::login))
        .route("/logout", post(session::logout))
        .route(
            "/assets/console.css",
            get(|| async {
                ([(header::CONTENT_TYPE, "text/css; charset=utf-8")], CSS).into_response()
            }),
        )
        .route(
            "/assets/console.js",
            get(|| async {
                (
                    [(header::CONTENT_TYPE, "text/javascript; charset=utf-8")],
                    JS,
                )
                    .into_response()
            }),
        )
        .route(
            "/assets/editor.js",
            get(|| async {
                (
                    [
                        (header::CONTENT_TYPE, "text/javascript; charset=utf-8"),
                        // The bundle changes only with the binary.
                        (header::CACHE_CONTROL, "private, max-age=3600"),
                    ],
                    editor::SCRIPT,
                )
                    .into_response()
            }),
        )
        .route(
            "/assets/charts.js",
            get(|| async {
                (
                    [
                        (header::CONTENT_TYPE, "text/javascript; charset=utf-8"),
                        (header::CACHE_CONTROL, "private, max-age=3600"),
                    ],
                    CHARTS,
                )
                    .into_response()
            }),
        )
        .route("/daemonsets", get(daemonsets::list))
        .route("/daemonsets/{ns}/{name}/usage", get(usage::daemonset))
        .route("/daemonsets/live", get(daemonsets::live))
        .route("/daemonsets/{ns}/{name}", get(detail::show))
        .route("/daemonsets/{ns}/{name}/live", get(detail::live))
        .route(
            "/daemonsets/{ns}/{name}/placement/live",
            get(detail::placement_live),
        )
        .route(
            "/daemonsets/{ns}/{name}/yaml",
            get(detail::download).post(detail::update_yaml),
        )
        .route("/daemonsets/{ns}/{name}/edit", post(detail::edit))
        .route(
            "/daemonsets/{ns}/{name}/wizard",
            get(wizard_edit::show).post(wizard_edit::submit),
        )
        .route("/daemonsets/{ns}/{name}/redeploy", post(detail::redeploy))
        .route("/daemonsets/{ns}/{name}/rollout", post(detail::rollout))
        .route("/daemonsets/{ns}/{name}/rollback", post(detail::rollback))
        .route("/daemonsets/{ns}/{name}/delete", post(detail::delete))
        .route("/daemonsets/{ns}/{name}/logs", get(merged_log::page_of))
        .route(
            "/daemonsets/{ns}/{name}/logs/stream",
            get(merged_log::stream),
        )
        .route("/pods/{ns}/{name}/logs", get(detail::logs))
        .route("/pods/{ns}/{name}/logs/stream", get(detail::logs_stream))
        .route("/create", get(wizard::page).post(wizard::submit))
        .route("/create/preview", post(wizard::preview))
        .route("/import", get(wizard::import_page).post(wizard::import))
        .route("/nodes", get(nodes::list))
        .route("/nodes/usage", get(usage::nodes))
        .route("/nodes/{name}", get(nodes::show))
        .route("/nodes/{name}/usage", get(usage::node))
        .route("/nodes/{name}/{action}", post(nodes::act))
        .route(
            "/namespaces",
            get(nodes::namespaces).post(nodes::create_namespace),
        )
        .route("/namespaces/{name}/delete", post(nodes::delete_namespace))
        .with_state(ConsoleState { backend, clock })
}

/// `api` with the console nested at `/ui`, sending its requests to `api` in process.
pub fn mount(api: Router, clock: SharedClock) -> Router {
    standalone(Backend::Router(api.clone()), clock).merge(api)
}

/// The console alone at `/ui` (and `/` redirecting there), sending its requests to `backend`.
pub fn standalone(backend: Backend, clock: SharedClock) -> Router {
    Router::new()
        .route("/ui/", get(|| async { Redirect::to("/ui/daemonsets") }))
        .nest("/ui", router(backend, clock))
}
