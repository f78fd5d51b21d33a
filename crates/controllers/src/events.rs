//! Recording core/v1 Events (what `kubectl describe` lists) for any controller.

use everynode_clock::SharedClock;
use k8s_openapi::api::core::v1::{Event, EventSource, ObjectReference};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{ObjectMeta, Time};
use kube::Client;
use kube::api::{Api, PostParams};

/// Records events as one component, stamped by the component's clock (upstream's
/// `EventRecorder`).
#[derive(Clone)]
pub struct Recorder {
    client: Client,
    component: &'static str,
    clock: SharedClock,
}

impl Recorder {
    /// A recorder for `component` (`daemonset-controller`, `default-scheduler`, ...).
    pub fn new(client: Client, component: &'static str, clock: SharedClock) -> Self {
        Recorder {
            client,
            component,
            clock,
        }
    }

    /// The time by this recorder's clock, for the conditions written beside an event.
    pub fn now(&self) -> k8s_openapi::jiff::Timestamp {
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
        record(
            &self.client,
            involved,
            self.component,
            warning,
            reason,
            message,
            self.clock.now(),
        )
        .await;
    }
}

async fn record(
    client: &Client,
    involved: ObjectReference,
    component: &str,
    warning: bool,
    reason: &str,
    message: &str,
    at: k8s_openapi::jiff::Timestamp,
) {
    let ns = involved
        .namespace
        .clone()
        .unwrap_or_else(|| "default".into());
    let now = Time(at);
    let event = Event {
        metadata: ObjectMeta {
            generate_name: Some(format!("{}.", involved.name.clone().unwrap_or_default())),
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
    if let Err(e) = Api::<Event>::namespaced(client.clone(), &ns)
        .create(&PostParams::default(), &event)
        .await
    {
        tracing::debug!(error = %e, reason, "could not record an event");
    }
}
