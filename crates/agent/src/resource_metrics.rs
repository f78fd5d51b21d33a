//! kubelet's `/metrics/resource`: each running container's CPU and memory, summed per pod, and
//! the node's, in the Prometheus text format with kubelet's names. The API server gathers these
//! from every agent for `metrics.k8s.io` (`kubectl top`), as metrics-server gathers them from
//! kubelets.
//!
//! The containers are those with a log directory in one of the served state directories
//! (`logs/<namespace>_<pod>_<uid>/<container>`), measured by the runtime; one that is not running
//! has no figure and is left out.

use crate::usage::{self, Usage};
use axum::extract::State;
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use prometheus_client::collector::Collector;
use prometheus_client::encoding::{DescriptorEncoder, EncodeMetric, prometheus_text};
use prometheus_client::metrics::counter::ConstCounter;
use prometheus_client::metrics::gauge::ConstGauge;
use prometheus_client::registry::Registry;
use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::Arc;

pub use crate::endpoint::Workloads;

/// One container: (namespace, pod, container) and the key the runtime knows it by.
#[derive(Debug, PartialEq)]
struct Known {
    namespace: String,
    pod: String,
    container: String,
    key: String,
}

/// Containers with a log directory under `state_dirs`.
fn known_containers(state_dirs: &[PathBuf]) -> Vec<Known> {
    let mut out = Vec::new();
    for state in state_dirs {
        for pod_dir in std::fs::read_dir(state.join("logs"))
            .into_iter()
            .flatten()
            .flatten()
        {
            let pod_dir_name = pod_dir.file_name().to_string_lossy().into_owned();
            // Namespaces and pod names are DNS labels and subdomains: no `_` in them.
            let mut parts = pod_dir_name.splitn(3, '_');
            let (Some(namespace), Some(pod), Some(uid)) =
                (parts.next(), parts.next(), parts.next())
            else {
                continue;
            };
            for container in std::fs::read_dir(pod_dir.path())
                .into_iter()
                .flatten()
                .flatten()
            {
                if !container.path().is_dir() {
                    continue;
                }
                let container = container.file_name().to_string_lossy().into_owned();
                out.push(Known {
                    namespace: namespace.to_owned(),
                    pod: pod.to_owned(),
                    key: format!("{uid}/{container}"),
                    container,
                });
            }
        }
    }
    out
}

/// One scrape's figures.
#[derive(Debug, Default)]
struct Figures {
    node: Option<Usage>,
    containers: Vec<(Known, Usage)>,
}

type Labels = Vec<(&'static str, String)>;

/// One family of samples, made into metrics by `metric` (a counter's or a gauge's constructor).
fn family<M: EncodeMetric>(
    encoder: &mut DescriptorEncoder<'_>,
    name: &str,
    help: &str,
    samples: &[(Labels, f64)],
    metric: fn(f64) -> M,
) -> Result<(), std::fmt::Error> {
    let mut family = encoder.encode_descriptor(name, help, None, metric(0.0).metric_type())?;
    for (labels, value) in samples {
        metric(*value).encode(family.encode_family(labels)?)?;
    }
    Ok(())
}

fn counter(
    encoder: &mut DescriptorEncoder<'_>,
    name: &str,
    help: &str,
    samples: &[(Labels, f64)],
) -> Result<(), std::fmt::Error> {
    family(encoder, name, help, samples, ConstCounter::new)
}

fn gauge(
    encoder: &mut DescriptorEncoder<'_>,
    name: &str,
    help: &str,
    samples: &[(Labels, f64)],
) -> Result<(), std::fmt::Error> {
    family(encoder, name, help, samples, ConstGauge::new)
}

impl Collector for Figures {
    fn encode(&self, mut encoder: DescriptorEncoder<'_>) -> Result<(), std::fmt::Error> {
        let container_labels = |k: &Known| -> Labels {
            vec![
                ("container", k.container.clone()),
                ("namespace", k.namespace.clone()),
                ("pod", k.pod.clone()),
            ]
        };
        let cpu: Vec<(Labels, f64)> = self
            .containers
            .iter()
            .map(|(k, u)| (container_labels(k), u.cpu_seconds))
            .collect();
        let memory: Vec<(Labels, f64)> = self
            .containers
            .iter()
            .map(|(k, u)| (container_labels(k), u.memory_working_set_bytes as f64))
            .collect();
        let mut pods: BTreeMap<(String, String), Usage> = BTreeMap::new();
        for (k, u) in &self.containers {
            let sum = pods
                .entry((k.namespace.clone(), k.pod.clone()))
                .or_default();
            sum.cpu_seconds += u.cpu_seconds;
            sum.memory_working_set_bytes += u.memory_working_set_bytes;
        }
        let pod_labels = |(ns, pod): &(String, String)| -> Labels {
            vec![("namespace", ns.clone()), ("pod", pod.clone())]
        };
        let pod_cpu: Vec<(Labels, f64)> = pods
            .iter()
            .map(|(k, u)| (pod_labels(k), u.cpu_seconds))
            .collect();
        let pod_memory: Vec<(Labels, f64)> = pods
            .iter()
            .map(|(k, u)| (pod_labels(k), u.memory_working_set_bytes as f64))
            .collect();
        counter(
            &mut encoder,
            "container_cpu_usage_seconds",
            "Cumulative cpu time consumed by the container in core-seconds",
            &cpu,
        )?;
        gauge(
            &mut encoder,
            "container_memory_working_set_bytes",
            "Current working set of the container in bytes",
            &memory,
        )?;
        counter(
            &mut encoder,
            "pod_cpu_usage_seconds",
            "Cumulative cpu time consumed by the pod in core-seconds",
            &pod_cpu,
        )?;
        gauge(
            &mut encoder,
            "pod_memory_working_set_bytes",
            "Current working set of the pod in bytes",
            &pod_memory,
        )?;
        if let Some(node) = self.node {
            counter(
                &mut encoder,
                "node_cpu_usage_seconds",
                "Cumulative cpu time consumed by the node in core-seconds",
                &[(Vec::new(), node.cpu_seconds)],
            )?;
            gauge(
                &mut encoder,
                "node_memory_working_set_bytes",
                "Current working set of the node in bytes",
                &[(Vec::new(), node.memory_working_set_bytes as f64)],
            )?;
        }
        gauge(
            &mut encoder,
            "scrape_error",
            "1 if there was an error while getting container metrics, 0 otherwise",
            &[(Vec::new(), if self.node.is_some() { 0.0 } else { 1.0 })],
        )
    }
}

/// The handler.
pub async fn serve(State(server): State<Workloads>) -> Response {
    let dirs = Arc::clone(&server.state_dirs);
    let known = tokio::task::spawn_blocking(move || known_containers(&dirs))
        .await
        .unwrap_or_default();
    let mut figures = Figures {
        node: tokio::task::spawn_blocking(usage::of_node)
            .await
            .ok()
            .flatten(),
        containers: Vec::new(),
    };
    for k in known {
        if let Some(u) = server.runtime.usage(&k.key).await {
            figures.containers.push((k, u));
        }
    }
    let mut registry = Registry::default();
    registry.register_collector(Box::new(figures));
    let mut text = String::new();
    if let Err(e) = prometheus_text::encode(&mut text, &registry) {
        return (StatusCode::INTERNAL_SERVER_ERROR, e.to_string()).into_response();
    }
    let mut response = text.into_response();
    response.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static(prometheus_text::CONTENT_TYPE),
    );
    response
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn containers_are_found_by_their_log_directories() {
        let state = tempfile::tempdir().expect("tmp");
        let dir = state
            .path()
            .join("logs")
            .join("kube-system_agent-x1_0a-1b")
            .join("main");
        std::fs::create_dir_all(&dir).expect("dir");
        std::fs::write(dir.join("0.log"), "").expect("log");
        let found = known_containers(&[state.path().to_owned()]);
        assert_eq!(
            found,
            [Known {
                namespace: "kube-system".into(),
                pod: "agent-x1".into(),
                container: "main".into(),
                key: "0a-1b/main".into(),
            }]
        );
    }

    #[test]
    fn figures_are_encoded_with_kubelets_names_and_summed_per_pod() {
        let known = |c: &str| Known {
            namespace: "n".into(),
            pod: "p".into(),
            container: c.into(),
            key: format!("u/{c}"),
        };
        let figures = Figures {
            node: Some(Usage {
                cpu_seconds: 10.0,
                memory_working_set_bytes: 100,
            }),
            containers: vec![
                (
                    known("a"),
                    Usage {
                        cpu_seconds: 1.5,
                        memory_working_set_bytes: 10,
                    },
                ),
                (
                    known("b"),
                    Usage {
                        cpu_seconds: 0.5,
                        memory_working_set_bytes: 20,
                    },
                ),
            ],
        };
        let mut registry = Registry::default();
        registry.register_collector(Box::new(figures));
        let mut text = String::new();
        prometheus_text::encode(&mut text, &registry).expect("encode");
        assert!(
            text.contains(
                "container_cpu_usage_seconds_total{container=\"a\",namespace=\"n\",pod=\"p\"} 1.5"
            ),
            "{text}"
        );
        assert!(
            text.contains("pod_cpu_usage_seconds_total{namespace=\"n\",pod=\"p\"} 2.0"),
            "{text}"
        );
        assert!(
            text.contains("pod_memory_working_set_bytes{namespace=\"n\",pod=\"p\"} 30"),
            "{text}"
        );
        assert!(text.contains("node_cpu_usage_seconds_total 10.0"), "{text}");
        assert!(text.contains("scrape_error 0"), "{text}");
    }
}
