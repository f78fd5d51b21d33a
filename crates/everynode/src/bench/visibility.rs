//! The bench's visibility stage (issue 20's figures): with the DaemonSet rolled out on every
//! hollow node, the server time of its placement view (a page of 500 nodes and all of them),
//! of a preview of an image change, and, when asked, the server's memory while one client
//! follows the merged log of every pod.

use super::Child;
use crate::Error;
use futures::AsyncBufReadExt;
use kube::Client;
use serde_json::json;
use std::time::Duration;
use tokio::time::Instant;

const DS: &str = "/apis/apps/v1/namespaces/default/daemonsets/hollow-agent";

/// One timed request: how long until the whole body was read, and its size.
async fn timed(
    client: &Client,
    request: http::Request<Vec<u8>>,
) -> Result<(Duration, usize), Error> {
    let uri = request.uri().to_string();
    let started = Instant::now();
    let body = client
        .request_text(request)
        .await
        .map_err(|e| super::stage_error("visibility", format!("{uri}: {e}")))?;
    Ok((started.elapsed(), body.len()))
}

/// `runs` of the request `make` builds: the median and the slowest, and the body size.
async fn repeat(
    client: &Client,
    runs: usize,
    make: impl Fn() -> Result<http::Request<Vec<u8>>, Error>,
) -> Result<String, Error> {
    let mut times = Vec::with_capacity(runs);
    let mut size = 0;
    for _ in 0..runs {
        let (took, bytes) = timed(client, make()?).await?;
        times.push(took);
        size = bytes;
    }
    times.sort();
    let ms = |d: Duration| d.as_secs_f64() * 1000.0;
    Ok(format!(
        "median {:.0} ms, slowest {:.0} ms of {runs}; {:.0} KB",
        ms(times[runs / 2]),
        ms(times[runs - 1]),
        size as f64 / 1024.0
    ))
}

fn get(path: &str) -> Result<http::Request<Vec<u8>>, Error> {
    http::Request::get(path)
        .header("Accept", "application/json")
        .body(Vec::new())
        .map_err(|e| super::stage_error("visibility", e))
}

/// The report rows of the stage.
pub async fn measure(
    client: &Client,
    nodes: usize,
    server: &Child,
    log_follow: Duration,
) -> Result<String, Error> {
    eprintln!("visibility: placement, preview, merged log");
    let mut out = String::new();
    let page = repeat(client, 5, || get(&format!("{DS}/placement?limit=500"))).await?;
    out += &format!("| placement, a page of 500 of {nodes} nodes | {page} |\n");
    let all = repeat(client, 5, || get(&format!("{DS}/placement"))).await?;
    out += &format!("| placement, all {nodes} nodes | {all} |\n");
    let ds: serde_json::Value = serde_json::from_str(
        &client
            .request_text(get(DS)?)
            .await
            .map_err(|e| super::stage_error("visibility", e))?,
    )
    .map_err(|e| super::stage_error("visibility", e))?;
    let mut changed = ds.clone();
    changed["spec"]["template"]["spec"]["containers"][0]["image"] =
        json!("registry.example/hollow-agent:4");
    if let Some(meta) = changed["metadata"].as_object_mut() {
        meta.remove("managedFields");
        // No precondition: the controller updates the status between the five requests.
        meta.remove("resourceVersion");
    }
    let body = serde_json::to_vec(&changed).map_err(|e| super::stage_error("visibility", e))?;
    let preview = repeat(client, 5, || {
        http::Request::post(format!("{DS}/preview"))
            .header("Content-Type", "application/json")
            .header("Accept", "application/json")
            .body(body.clone())
            .map_err(|e| super::stage_error("visibility", e))
    })
    .await?;
    out += &format!("| preview of an image change on {nodes} nodes | {preview} |\n");
    if !log_follow.is_zero() {
        out += &follow_log(client, nodes, server, log_follow).await?;
    }
    Ok(out)
}

/// Follows the merged log of every pod for `duration`, sampling the server's memory.
async fn follow_log(
    client: &Client,
    nodes: usize,
    server: &Child,
    duration: Duration,
) -> Result<String, Error> {
    let request = get(&format!("{DS}/log?follow=true&tailLines=0"))?;
    let mut lines = client
        .request_stream(request)
        .await
        .map_err(|e| super::stage_error("merged log", e))?
        .lines();
    let started = Instant::now();
    let mut received = 0u64;
    let mut samples: Vec<u64> = vec![server.status_kb("VmRSS:")];
    let mut next_sample = started + Duration::from_secs(10);
    let mut late_first = None;
    while started.elapsed() < duration {
        let deadline = next_sample.min(started + duration);
        match tokio::time::timeout_at(deadline, futures::StreamExt::next(&mut lines)).await {
            Ok(Some(Ok(_))) => received += 1,
            Ok(Some(Err(e))) => return Err(super::stage_error("merged log", e)),
            Ok(None) => return Err(super::stage_error("merged log", "the stream ended")),
            Err(_) => {}
        }
        if Instant::now() >= next_sample {
            samples.push(server.status_kb("VmRSS:"));
            next_sample += Duration::from_secs(10);
            // Memory after the first minute, when every pod's stream has joined.
            if late_first.is_none() && started.elapsed() >= Duration::from_secs(60) {
                late_first = samples.last().copied();
            }
        }
    }
    let mb = |kb: u64| kb as f64 / 1024.0;
    let secs = started.elapsed().as_secs_f64();
    let min = samples.iter().copied().min().unwrap_or(0);
    let max = samples.iter().copied().max().unwrap_or(0);
    let last = samples.last().copied().unwrap_or(0);
    let after_a_minute =
        late_first.map_or_else(String::new, |kb| format!(", after 1 min {:.0} MB", mb(kb)));
    Ok(format!(
        "| merged log of {nodes} nodes followed for {secs:.0} s | {received} lines ({:.0}/s); server RSS before {:.0} MB{after_a_minute}, at the end {:.0} MB (min {:.0}, max {:.0}, {} samples) |\n",
        received as f64 / secs.max(1e-9),
        mb(samples[0]),
        mb(last),
        mb(min),
        mb(max),
        samples.len()
    ))
}
