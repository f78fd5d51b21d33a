//! Recording core/v1 Events (what `kubectl describe` lists) for any controller.

use everynode_clock::SharedClock;
use k8s_openapi::api::core::v1::{Event, EventSource, ObjectReference};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{ObjectMeta, Time};
use k8s_openapi::jiff::Timestamp;
use kube::Client;
use kube::api::{Api, Patch, PatchParams, PostParams};
use serde_json::json;
use std::collections::HashMap;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

/// (involved object uid, or its namespace/name, reason, message) of an event series.
type SeriesKey = (String, String, String);

/// How long a repeat joins the series of the same event, as upstream's event correlator
/// aggregates similar events within ten minutes.
const SERIES_WINDOW: Duration = Duration::from_secs(600);

/// Most series remembered (upstream's correlator keeps an LRU of 4096): past it, the oldest go.
const MAX_SERIES: usize = 4096;

/// One series: the event that carries it, its count and when it last grew.
#[derive(Clone, Debug)]
struct Series {
    name: String,
    namespace: String,
    count: i32,
    last: Timestamp,
}

/// Records events as one component, stamped by the component's clock (upstream's
/// `EventRecorder`). A repeat of the same reason and message about the same object within ten
/// minutes bumps the first event's `count` and `lastTimestamp` instead of creating another, as
/// upstream's recorder does, so a controller retrying every few seconds writes one object.
#[derive(Clone)]
pub struct Recorder {
    client: Client,
    component: &'static str,
    clock: SharedClock,
    series: Arc<Mutex<HashMap<SeriesKey, Series>>>,
}

impl Recorder {
    /// A recorder for `component` (`daemonset-controller`, `default-scheduler`, ...).
    pub fn new(client: Client, component: &'static str, clock: SharedClock) -> Self {
        Recorder {
            client,
            component,
            clock,
            series: Arc::default(),
        }
    }

    /// The time by this recorder's clock, for the conditions written beside an event.
    pub fn now(&self) -> Timestamp {
        self.clock.now()
    }

    /// Records an event about `involved`. Failures are logged, not returned: an event is never
    /// worth failing the work it describes.
    pub async fn record(
        &self,
        involved: ObjectReference,
        warning: bool,
        reason: &str,
        message: &str,
    ) {
        let at = self.clock.now();
        let object = involved.uid.clone().unwrap_or_else(|| {
            format!(
                "{}/{}/{}",
                involved.kind.as_deref().unwrap_or_default(),
                involved.namespace.as_deref().unwrap_or_default(),
                involved.name.as_deref().unwrap_or_default()
            )
        });
        let key = (object, reason.to_owned(), message.to_owned());
        if let Some(series) = self.repeat(&key, at) {
            let patch = json!({"count": series.count, "lastTimestamp": Time(at)});
            let bumped = Api::<Event>::namespaced(self.client.clone(), &series.namespace)
                .patch(&series.name, &PatchParams::default(), &Patch::Merge(&patch))
                .await;
            match bumped {
                Ok(_) => return,
                // Deleted meanwhile (or never written): a new event starts the series again.
                Err(e) => tracing::debug!(error = %e, reason, "could not bump an event series"),
            }
        }
        let Some((name, namespace)) = create(
            &self.client,
            involved,
            self.component,
            warning,
            reason,
            message,
            at,
        )
        .await
        else {
            return;
        };
        let mut all = lock(&self.series);
        if all.len() >= MAX_SERIES {
            let oldest = all.values().map(|s| s.last).min();
            all.retain(|_, s| Some(s.last) != oldest);
        }
        all.insert(
            key,
            Series {
                name,
                namespace,
                count: 1,
                last: at,
            },
        );
    }

    /// The series `key` continues at `at`, counted one more, if it is recent enough.
    fn repeat(&self, key: &SeriesKey, at: Timestamp) -> Option<Series> {
        let mut all = lock(&self.series);
        let series = all.get_mut(key)?;
        let recent = at.duration_since(series.last).as_secs() < SERIES_WINDOW.as_secs() as i64;
        if !recent {
            all.remove(key);
            return None;
        }
        series.count += 1;
        series.last = at;
        Some(series.clone())
    }
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(PoisonError::into_inner)
}

/// Creates the event; its name and namespace, or `None` when it could not be written.
async fn create(
    client: &Client,
    involved: ObjectReference,
    component: &str,
    warning: bool,
    reason: &str,
    message: &str,
    at: Timestamp,
) -> Option<(String, String)> {
    let ns = involved
        .namespace
        .clone()
        .unwrap_or_else(|| "default".into());
    let now = Time(at);
    // Upstream's name: the object's and the time in hex nanoseconds.
    let name = format!(
        "{}.{:x}",
        involved.name.clone().unwrap_or_default(),
        at.as_nanosecond()
    );
    let event = Event {
        metadata: ObjectMeta {
            name: Some(name.clone()),
            namespace: Some(ns.clone()),
            ..Default::default()
        },
        involved_object: involved,
        reason: Some(reason.into()),
        message: Some(message.into()),
        type_: Some(if warning { "Warning" } else { "Normal" }.into()),
        source: Some(EventSource {
            component: Some(component.into()),
            host: None,
        }),
        first_timestamp: Some(now.clone()),
        last_timestamp: Some(now),
        count: Some(1),
        reporting_component: Some(component.into()),
        ..Default::default()
    };
    match Api::<Event>::namespaced(client.clone(), &ns)
        .create(&PostParams::default(), &event)
        .await
    {
        Ok(_) => Some((name, ns)),
        Err(e) => {
            tracing::debug!(error = %e, reason, "could not record an event");
            None
        }
    }
}
