//! Live regions: a page fragment re-rendered whenever one of the watched collections changes,
//! sent as server-sent events. The first event is the fragment as it is now; later ones follow
//! changes, several changes close together making one render.

use crate::client::ApiClient;
use axum::response::sse::{Event, KeepAlive, Sse};
use futures::stream::{BoxStream, Stream, StreamExt};
use std::convert::Infallible;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;

/// How long to gather further changes before rendering.
const GATHER: Duration = Duration::from_millis(200);

/// Renders the fragment; an error renders as its message.
pub type Render =
    Arc<dyn Fn(ApiClient) -> Pin<Box<dyn Future<Output = String> + Send>> + Send + Sync>;

/// The event stream: `render` now, then after every change to any of `watches` (watch paths).
pub async fn fragment(
    client: ApiClient,
    watches: Vec<String>,
    render: Render,
) -> Sse<impl Stream<Item = Result<Event, Infallible>>> {
    fragment_gathering(client, watches, render, GATHER).await
}

/// As `fragment`, gathering changes for `gather` before each render: a large fragment (the
/// placement grid of thousands of nodes) renders at most about once per `gather`.
pub async fn fragment_gathering(
    client: ApiClient,
    watches: Vec<String>,
    render: Render,
    gather: Duration,
) -> Sse<impl Stream<Item = Result<Event, Infallible>>> {
    let mut streams: Vec<BoxStream<'static, ()>> = Vec::new();
    for path in &watches {
        if let Ok(events) = client.watch(path).await {
            streams.push(events.map(|_| ()).boxed());
        }
    }
    let changes = futures::stream::select_all(streams);
    let state = (client, render, changes, true);
    let events = futures::stream::unfold(
        state,
        move |(client, render, mut changes, first)| async move {
            if !first {
                changes.next().await?;
                let deadline = tokio::time::Instant::now() + gather;
                while let Ok(Some(())) = tokio::time::timeout_at(deadline, changes.next()).await {}
            }
            let html = render(client.clone()).await;
            Some((
                Ok(Event::default().data(html)),
                (client, render, changes, false),
            ))
        },
    );
    Sse::new(events).keep_alive(KeepAlive::default())
}
