//! Pod events from the agent (component `kubelet`, as `kubectl describe pod` expects). A repeat
//! of the same reason and message on the same object bumps the first event's count instead of
//! creating another, so a probe failing every second does not flood the API.

use everynode_clock::SharedClock;
use k8s_openapi::api::core::v1::{Event, EventSource, ObjectReference, Pod};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{ObjectMeta, Time};
use kube::Client;
use kube::api::{Api, Patch, PatchParams, PostParams};
use std::collections::HashMap;
use std::sync::Mutex;

/// (object uid, reason, message) of an event series.
type SeriesKey = (String, String, String);

pub struct Recorder {
    client: Client,
    node: String,
    /// Whether Normal events (Created, Started, Killing) are recorded; hollow fleets skip them.
    normal: bool,
    /// (object uid, reason, message) → (event name, namespace, count).
    series: Mutex<HashMap<SeriesKey, (String, u32)>>,
    clock: SharedClock,
}

impl Recorder {
    pub fn new(client: Client, node: String, normal: bool, clock: SharedClock) -> Recorder {
        Recorder {
            client,
            node,
            normal,
            series: Mutex::new(HashMap::new()),
            clock,
        }
    }

    /// Forgets the series of a pod that is gone.
    pub fn forget(&self, uid: &str) {
        if let Ok(mut s) = self.series.lock() {
            s.retain(|(u, _, _), _| u != uid);
        }
    }

    /// Records an event about `pod` (and `container`, when given), best effort: a failure to
    /// record is logged, never fatal.
    pub async fn pod(
        &self,
        pod: &Pod,
        container: Option<&str>,
        warning: bool,
        reason: &str,
        message: &str,
    ) {
        if !warning && !self.normal {
            return;
        }
        let ns = crate::pod::namespace_of(pod);
        let uid = pod.metadata.uid.clone().unwrap_or_default();
        let api: Api<Event> = Api::namespaced(self.client.clone(), &ns);
        let at = self.clock.now();
        let now = Time(at);
        let key = (uid.clone(), reason.to_owned(), message.to_owned());
        let existing = self.series.lock().ok().and_then(|mut s| {
            s.get_mut(&key).map(|(name, count)| {
                *count += 1;
                (name.clone(), *count)
            })
        });
        if let Some((name, count)) = existing {
            let patch = serde_json::json!({"count": count, "lastTimestamp": now});
            if api
                .patch(&name, &PatchParams::default(), &Patch::Merge(&patch))
                .await
                .is_ok()
            {
                return;
            }
        }
        let name = format!(
            "{}.{:x}",
            pod.metadata.name.as_deref().unwrap_or("pod"),
            at.as_nanosecond()
        );
        let event = Event {
            metadata: ObjectMeta {
                name: Some(name.clone()),
                namespace: Some(ns.clone()),
                ..Default::default()
            },
            involved_object: ObjectReference {
                api_version: Some("v1".into()),
                kind: Some("Pod".into()),
                name: pod.metadata.name.clone(),
                namespace: Some(ns),
                uid: Some(uid),
                resource_version: pod.metadata.resource_version.clone(),
                field_path: container.map(|c| format!("spec.containers{{{c}}}")),
            },
            reason: Some(reason.to_owned()),
            message: Some(message.to_owned()),
            type_: Some(if warning { "Warning" } else { "Normal" }.to_owned()),
            source: Some(EventSource {
                component: Some("kubelet".into()),
                host: Some(self.node.clone()),
            }),
            reporting_component: Some("kubelet".into()),
            reporting_instance: Some(self.node.clone()),
            first_timestamp: Some(now.clone()),
            last_timestamp: Some(now),
            count: Some(1),
            ..Default::default()
        };
        match api.create(&PostParams::default(), &event).await {
            Ok(_) => {
                if let Ok(mut s) = self.series.lock() {
                    s.insert(key, (name, 1));
                }
            }
            Err(e) => tracing::debug!(error = %e, reason, "could not record an event"),
        }
    }
}
