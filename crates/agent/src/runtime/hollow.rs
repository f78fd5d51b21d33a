//! The `hollow` runtime: nothing runs. A container "starts" after a configurable delay and runs
//! until it is signalled (or, when built with `exiting`, until it exits on its own); exec
//! (probes, hooks) succeeds. Everything above it (admission, status,
//! restarts, termination) is the real agent, which is what scale tests need to exercise.

use super::{Container, ExecResult, Exit, Launch, Runtime, RuntimeError, SandboxSpec};
use async_trait::async_trait;
use std::time::Duration;
use tokio::sync::watch;

/// A stable, unique address for a hollow pod (10.x.y.z from its uid), so pod IPs look real.
fn hollow_pod_ip(uid: &str) -> String {
    let h = everynode_api::fnv::fnv1a_32([uid.as_bytes()]);
    format!(
        "10.{}.{}.{}",
        (h >> 16) & 0xff,
        (h >> 8) & 0xff,
        (h & 0xfe).max(2)
    )
}

pub struct HollowRuntime {
    start_delay: Duration,
    /// Every container exits on its own this long after it starts, with this code.
    exit_after: Option<(Duration, i32)>,
    /// Every running container logs one line a second (for measuring log streams at scale).
    log_lines: Option<everynode_clock::SharedClock>,
}

impl HollowRuntime {
    pub fn new(start_delay: Duration) -> HollowRuntime {
        HollowRuntime {
            start_delay,
            exit_after: None,
            log_lines: None,
        }
    }

    /// The same, with every running container writing one synthetic line a second to its log,
    /// stamped by `clock`.
    pub fn with_log_lines(mut self, clock: everynode_clock::SharedClock) -> HollowRuntime {
        self.log_lines = Some(clock);
        self
    }

    /// A runtime whose containers exit with `code` after running for `run_for`: crash loops
    /// without processes, on paused time in tests or by the thousand in benchmarks.
    pub fn exiting(start_delay: Duration, run_for: Duration, code: i32) -> HollowRuntime {
        HollowRuntime {
            start_delay,
            exit_after: Some((run_for, code)),
            log_lines: None,
        }
    }
}

/// One line a second in the CRI log format, until the container exits or the file reaches
/// `max_bytes` (a hollow container's log is never rotated).
async fn write_lines(
    path: std::path::PathBuf,
    key: String,
    max_bytes: u64,
    clock: everynode_clock::SharedClock,
    mut exited: watch::Receiver<Option<Exit>>,
) {
    use tokio::io::AsyncWriteExt;
    if let Some(dir) = path.parent()
        && tokio::fs::create_dir_all(dir).await.is_err()
    {
        return;
    }
    let Ok(mut file) = tokio::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(&path)
        .await
    else {
        return;
    };
    let mut written = 0u64;
    let mut ticks = tokio::time::interval(Duration::from_secs(1));
    for n in 0u64.. {
        tokio::select! {
            _ = ticks.tick() => {}
            _ = exited.wait_for(Option::is_some) => return,
        }
        let line = format!("{} stdout F hollow line {n} of {key}\n", clock.now());
        written += line.len() as u64;
        if (max_bytes > 0 && written > max_bytes) || file.write_all(line.as_bytes()).await.is_err()
        {
            return;
        }
    }
}

struct HollowContainer {
    id: String,
    exit_tx: watch::Sender<Option<Exit>>,
}

#[async_trait]
impl Container for HollowContainer {
    fn id(&self) -> String {
        self.id.clone()
    }

    async fn wait(&self) -> Exit {
        let mut rx = self.exit_tx.subscribe();
        loop {
            if let Some(exit) = *rx.borrow_and_update() {
                return exit;
            }
            if rx.changed().await.is_err() {
                return Exit {
                    code: 137,
                    signal: Some(9),
                    oom_killed: false,
                };
            }
        }
    }

    fn signal(&self, kill: bool) {
        // A hollow container stops at once: exit 0 on SIGTERM as a well-behaved daemon would.
        let exit = if kill {
            Exit {
                code: 137,
                signal: Some(9),
                oom_killed: false,
            }
        } else {
            Exit {
                code: 0,
                signal: None,
                oom_killed: false,
            }
        };
        self.exit_tx.send_if_modified(|current| {
            if current.is_none() {
                *current = Some(exit);
                true
            } else {
                false
            }
        });
    }

    async fn exec(&self, _argv: &[String], _timeout: Duration) -> Result<ExecResult, RuntimeError> {
        Ok(ExecResult {
            code: 0,
            output: String::new(),
        })
    }
}

#[async_trait]
impl Runtime for HollowRuntime {
    fn version(&self) -> String {
        format!("hollow://{}", env!("CARGO_PKG_VERSION"))
    }

    fn runs_workloads(&self) -> bool {
        false
    }

    async fn ensure_sandbox(&self, spec: &SandboxSpec) -> Result<Option<String>, RuntimeError> {
        Ok(Some(hollow_pod_ip(&spec.uid())))
    }

    async fn start(&self, launch: Launch) -> Result<Box<dyn Container>, RuntimeError> {
        if !self.start_delay.is_zero() {
            tokio::time::sleep(self.start_delay).await;
        }
        let exit_tx = watch::channel(None).0;
        if let Some((run_for, code)) = self.exit_after {
            let exit_tx = exit_tx.clone();
            tokio::spawn(async move {
                tokio::time::sleep(run_for).await;
                exit_tx.send_if_modified(|current| {
                    let first = current.is_none();
                    if first {
                        *current = Some(Exit {
                            code,
                            signal: None,
                            oom_killed: false,
                        });
                    }
                    first
                });
            });
        }
        if let Some(clock) = &self.log_lines {
            tokio::spawn(write_lines(
                launch.log_path.clone(),
                launch.key.clone(),
                launch.log_max_bytes,
                clock.clone(),
                exit_tx.subscribe(),
            ));
        }
        Ok(Box::new(HollowContainer {
            id: format!("hollow://{}", launch.key.replace('/', "-")),
            exit_tx,
        }))
    }

    async fn adopt(&self, _key: &str) -> Option<Box<dyn Container>> {
        None
    }

    async fn remove_others(&self, _keep: &[String]) {}
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hollow_pod_ips_are_stable_and_valid() {
        let a = hollow_pod_ip("3f1c-uid");
        assert_eq!(a, hollow_pod_ip("3f1c-uid"));
        assert!(a.parse::<std::net::Ipv4Addr>().is_ok(), "{a}");
    }

    #[tokio::test(start_paused = true)]
    async fn a_logging_hollow_container_writes_a_line_a_second_until_it_stops() {
        let dir = tempfile::tempdir().expect("dir");
        let log_path = dir.path().join("ns_pod_uid").join("c").join("0.log");
        let runtime = HollowRuntime::new(Duration::ZERO).with_log_lines(everynode_clock::system());
        let launch = Launch {
            key: "ns/pod/c".into(),
            log_path: log_path.clone(),
            log_max_bytes: 1 << 20,
            ..Launch::default()
        };
        let container = runtime.start(launch).await.expect("starts");
        tokio::time::sleep(Duration::from_millis(2500)).await;
        container.signal(true);
        tokio::time::sleep(Duration::from_secs(3)).await;
        let text = std::fs::read_to_string(&log_path).expect("log");
        let lines: Vec<&str> = text.lines().collect();
        assert_eq!(lines.len(), 3, "{text}");
        assert!(
            lines[2].ends_with(" stdout F hollow line 2 of ns/pod/c"),
            "{text}"
        );
    }
}
