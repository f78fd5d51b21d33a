//! Gathers `/metrics/resource` from every node's agent at a fixed interval, as metrics-server
//! gathers it from kubelets, over the same mutually authenticated channel as `pods/log`
//! (`agent_client`). Nodes that share one endpoint (a hollow fleet) are read once.

use super::usage::{Reading, UsageStore};
use crate::agent_client::AgentClient;
use crate::cache::WatchCache;
use crate::handlers::log::agent_address;
use everynode_api::node_endpoint::CERTIFICATE_ANNOTATION;
use everynode_api::registry::{self, Kind};
use everynode_clock::Clock;
use futures::StreamExt;
use serde_json::Value;
use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;
use std::time::Duration;

/// Endpoints read at once.
const CONCURRENT_SCRAPES: usize = 32;
/// How long one agent has to answer.
const SCRAPE_TIMEOUT: Duration = Duration::from_secs(10);

/// One sample line of the text format: name, labels, value. Comments, blank lines and lines
/// that do not parse give `None`. Only what kubelet's and the agent's `/metrics/resource` use
/// is read: quoted label values with `\\`, `\"` and `\n` escapes, and an optional timestamp.
pub fn parse_sample(line: &str) -> Option<(&str, BTreeMap<String, String>, f64)> {
    let line = line.trim();
    if line.is_empty() || line.starts_with('#') {
        return None;
    }
    let name_end = line.find(['{', ' '])?;
    let name = &line[..name_end];
    let mut rest = &line[name_end..];
    let mut labels = BTreeMap::new();
    if let Some(body) = rest.strip_prefix('{') {
        let mut chars = body.char_indices();
        let mut key = String::new();
        let close;
        loop {
            let (i, c) = chars.next()?;
            match c {
                '}' => {
                    close = i;
                    break;
                }
                ',' | ' ' => {}
                '=' => {
                    let (_, quote) = chars.next()?;
                    if quote != '"' {
                        return None;
                    }
                    let mut value = String::new();
                    loop {
                        let (_, c) = chars.next()?;
                        match c {
                            '"' => break,
                            '\\' => match chars.next()?.1 {
                                'n' => value.push('\n'),
                                other => value.push(other),
                            },
                            other => value.push(other),
                        }
                    }
                    labels.insert(std::mem::take(&mut key), value);
                }
                other => key.push(other),
            }
        }
        rest = &body[close + 1..];
    }
    let value = rest.split_whitespace().next()?.parse().ok()?;
    Some((name, labels, value))
}

/// What one endpoint reported.
#[derive(Debug, Default, PartialEq)]
pub struct Report {
    pub node: Option<(f64, u64)>,
    /// (namespace, pod, container) → (CPU seconds, working set).
    pub containers: BTreeMap<(String, String, String), (f64, u64)>,
}

/// Reads a `/metrics/resource` answer.
pub fn read_report(text: &str) -> Report {
    let mut report = Report::default();
    let mut node = (None, None);
    for (name, labels, value) in text.lines().filter_map(parse_sample) {
        let container = || {
            Some((
                labels.get("namespace")?.clone(),
                labels.get("pod")?.clone(),
                labels.get("container")?.clone(),
            ))
        };
        match name {
            "node_cpu_usage_seconds_total" => node.0 = Some(value),
            "node_memory_working_set_bytes" => node.1 = Some(value as u64),
            "container_cpu_usage_seconds_total" => {
                if let Some(key) = container() {
                    report.containers.entry(key).or_default().0 = value;
                }
            }
            "container_memory_working_set_bytes" => {
                if let Some(key) = container() {
                    report.containers.entry(key).or_default().1 = value as u64;
                }
            }
            _ => {}
        }
    }
    if let (Some(cpu), Some(memory)) = node {
        report.node = Some((cpu, memory));
    }
    report
}

/// The endpoints to read: (address, pinned certificate) → the nodes behind it.
fn endpoints(cache: &WatchCache) -> BTreeMap<(String, String), Vec<String>> {
    let mut out: BTreeMap<(String, String), Vec<String>> = BTreeMap::new();
    for obj in cache.all(&registry::by_kind(Kind::Node).key_prefix()) {
        let Ok(node) = serde_json::from_slice::<Value>(&obj.json) else {
            continue;
        };
        let (Some(address), Some(pin), Some(name)) = (
            agent_address(&node),
            node["metadata"]["annotations"][CERTIFICATE_ANNOTATION].as_str(),
            node["metadata"]["name"].as_str(),
        ) else {
            continue;
        };
        out.entry((address, pin.to_owned()))
            .or_default()
            .push(name.to_owned());
    }
    out
}

/// Reads every agent every `interval` into `store`, until the process ends.
pub async fn run(
    cache: Arc<WatchCache>,
    clock: Arc<dyn Clock>,
    identity: AgentClient,
    store: Arc<UsageStore>,
    interval: Duration,
) {
    let origin = tokio::time::Instant::now();
    let mut clients: HashMap<String, reqwest::Client> = HashMap::new();
    loop {
        let round = endpoints(&cache);
        clients.retain(|pin, _| round.keys().any(|(_, p)| p == pin));
        for (_, pin) in round.keys() {
            if !clients.contains_key(pin) {
                match identity.pinned_to(pin) {
                    Ok(client) => {
                        clients.insert(pin.clone(), client);
                    }
                    Err(e) => tracing::warn!(error = %e, "no client for an agent"),
                }
            }
        }
        let clients_now = &clients;
        futures::stream::iter(round)
            .for_each_concurrent(CONCURRENT_SCRAPES, |((address, pin), nodes)| {
                let store = Arc::clone(&store);
                let clock = Arc::clone(&clock);
                async move {
                    let Some(client) = clients_now.get(&pin) else {
                        return;
                    };
                    let url = format!("https://{address}/metrics/resource");
                    let answer = client.get(&url).timeout(SCRAPE_TIMEOUT).send().await;
                    let text = match answer {
                        Ok(r) if r.status().is_success() => r.text().await.unwrap_or_default(),
                        Ok(r) => {
                            tracing::debug!(%url, status = %r.status(), "resource metrics refused");
                            return;
                        }
                        Err(e) => {
                            tracing::debug!(%url, error = %e, "resource metrics unreachable");
                            return;
                        }
                    };
                    let report = read_report(&text);
                    let reading = |(cpu_seconds, memory_bytes): (f64, u64)| Reading {
                        cpu_seconds,
                        memory_bytes,
                        at: clock.now(),
                        seen: origin.elapsed(),
                    };
                    if let Some(node) = report.node {
                        for name in &nodes {
                            store.node(name, reading(node));
                        }
                    }
                    for ((namespace, pod, container), figures) in report.containers {
                        store.container(&namespace, &pod, &container, reading(figures));
                    }
                }
            })
            .await;
        // Two rounds missed: the pod or node is gone (or unreachable), and shows no figures.
        store.forget_older_than(origin.elapsed().saturating_sub(interval * 3));
        store.record_history();
        tokio::time::sleep(interval).await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn samples_parse_with_labels_escapes_and_timestamps() {
        let (name, labels, value) =
            parse_sample(r#"container_cpu_usage_seconds_total{container="a",namespace="n",pod="p\"q"} 1.5 1700000000000"#)
                .expect("sample");
        assert_eq!(name, "container_cpu_usage_seconds_total");
        assert_eq!(labels.get("pod").map(String::as_str), Some("p\"q"));
        assert_eq!(value, 1.5);
        assert_eq!(
            parse_sample("node_memory_working_set_bytes 2048").map(|s| s.2),
            Some(2048.0)
        );
        assert_eq!(parse_sample("# HELP x y"), None);
        assert_eq!(parse_sample("broken{a=\"b\" 1"), None);
    }

    #[test]
    fn a_report_has_the_node_and_each_container() {
        let text = "node_cpu_usage_seconds_total 12.5\nnode_memory_working_set_bytes 1000\n\
            container_cpu_usage_seconds_total{container=\"c\",namespace=\"n\",pod=\"p\"} 3.0\n\
            container_memory_working_set_bytes{container=\"c\",namespace=\"n\",pod=\"p\"} 40\n\
            pod_cpu_usage_seconds_total{namespace=\"n\",pod=\"p\"} 3.0\n";
        let report = read_report(text);
        assert_eq!(report.node, Some((12.5, 1000)));
        assert_eq!(
            report.containers.get(&("n".into(), "p".into(), "c".into())),
            Some(&(3.0, 40))
        );
    }
}
