//! The `process` runtime: each container is a host process started through a shim
//! (`everynode shim`, see `shim.rs`) that survives the agent. The image is recorded, not pulled:
//! the container's `command` and `args` run as they are on the host.
//!
//! State lives in `<state>/containers/<pod uid>/<container>/`: `launch.json`, `shim_pid`,
//! `pid` (the container's), `exit` once it has ended, and `shim.log` (the shim's own errors).

use super::shim::{ExitRecord, remove_cgroups};
use super::{Container, ExecResult, Exit, Launch, Runtime, RuntimeError};
use async_trait::async_trait;
use nix::sys::signal::{Signal, kill, killpg};
use nix::unistd::Pid;
use std::path::{Path, PathBuf};
use std::time::Duration;
use tokio::sync::watch;

pub struct ProcessRuntime {
    root: PathBuf,
    /// The executable that has the `shim` subcommand (normally this very binary).
    shim_exe: PathBuf,
}

impl ProcessRuntime {
    pub fn new(state_dir: &Path, shim_exe: PathBuf) -> ProcessRuntime {
        ProcessRuntime {
            root: state_dir.join("containers"),
            shim_exe,
        }
    }

    fn dir(&self, key: &str) -> PathBuf {
        self.root.join(key)
    }
}

fn read_number(path: &Path) -> Option<i32> {
    std::fs::read_to_string(path).ok()?.trim().parse().ok()
}

fn read_exit(dir: &Path) -> Option<Exit> {
    let bytes = std::fs::read(dir.join("exit")).ok()?;
    let r: ExitRecord = serde_json::from_slice(&bytes).ok()?;
    Some(Exit {
        code: r.code,
        signal: r.signal,
        oom_killed: false,
    })
}

fn alive(pid: i32) -> bool {
    kill(Pid::from_raw(pid), None).is_ok()
}

struct ProcessContainer {
    id: String,
    dir: PathBuf,
    pid: i32,
    launch: Launch,
    exited: watch::Receiver<Option<Exit>>,
}

impl ProcessContainer {
    /// Watches for the end of a shim this agent did not start (adopted after a restart): its
    /// exit cannot be waited for, so the pid and the exit file are polled.
    fn watch_adopted(dir: PathBuf, shim_pid: i32) -> watch::Receiver<Option<Exit>> {
        let (tx, rx) = watch::channel(None);
        tokio::spawn(async move {
            loop {
                if let Some(exit) = read_exit(&dir) {
                    let _ = tx.send(Some(exit));
                    return;
                }
                if !alive(shim_pid) {
                    // The shim died without recording an exit: the container is gone too.
                    let exit = read_exit(&dir).unwrap_or(Exit {
                        code: 137,
                        signal: Some(9),
                        oom_killed: false,
                    });
                    let _ = tx.send(Some(exit));
                    return;
                }
                tokio::time::sleep(Duration::from_millis(500)).await;
            }
        });
        rx
    }
}

#[async_trait]
impl Container for ProcessContainer {
    fn id(&self) -> String {
        self.id.clone()
    }

    async fn wait(&self) -> Exit {
        let mut rx = self.exited.clone();
        loop {
            if let Some(exit) = *rx.borrow_and_update() {
                return exit;
            }
            if rx.changed().await.is_err() {
                return read_exit(&self.dir).unwrap_or(Exit {
                    code: 137,
                    signal: Some(9),
                    oom_killed: false,
                });
            }
        }
    }

    fn signal(&self, kill_now: bool) {
        let sig = if kill_now {
            Signal::SIGKILL
        } else {
            Signal::SIGTERM
        };
        // The container runs in its own process group: the whole group gets the signal, so a
        // shell's children stop with it.
        if killpg(Pid::from_raw(self.pid), sig).is_err() {
            let _ = kill(Pid::from_raw(self.pid), sig);
        }
    }

    async fn exec(&self, argv: &[String], timeout: Duration) -> Result<ExecResult, RuntimeError> {
        let Some((program, args)) = argv.split_first() else {
            return Err(RuntimeError::Config("exec: empty command".into()));
        };
        // Enter the container's mount namespace when it has one, so probes see its volumes.
        let mut command = if !self.launch.mounts.is_empty() {
            let mut c = tokio::process::Command::new("nsenter");
            c.arg("-t")
                .arg(self.pid.to_string())
                .arg("-m")
                .arg("--")
                .arg(program)
                .args(args);
            c
        } else {
            let mut c = tokio::process::Command::new(program);
            c.args(args);
            c
        };
        command
            .env_clear()
            .envs(self.launch.env.iter().map(|(k, v)| (k, v)))
            .stdin(std::process::Stdio::null())
            .kill_on_drop(true);
        if let Some(dir) = &self.launch.working_dir {
            command.current_dir(dir);
        }
        if let Some(uid) = self.launch.run_as_user {
            command.uid(uid);
            command.gid(self.launch.run_as_group.unwrap_or(0));
        }
        let child = command.output();
        match tokio::time::timeout(timeout, child).await {
            Err(_) => Err(RuntimeError::Start(format!(
                "command {argv:?} timed out after {}s",
                timeout.as_secs_f64()
            ))),
            Ok(Err(e)) => Err(RuntimeError::Start(format!("exec: \"{program}\": {e}"))),
            Ok(Ok(out)) => {
                let mut output = String::from_utf8_lossy(&out.stdout).into_owned();
                output.push_str(&String::from_utf8_lossy(&out.stderr));
                output.truncate(10 * 1024);
                Ok(ExecResult {
                    code: out.status.code().unwrap_or(137),
                    output,
                })
            }
        }
    }
}

#[async_trait]
impl Runtime for ProcessRuntime {
    fn version(&self) -> String {
        format!("process://{}", env!("CARGO_PKG_VERSION"))
    }

    fn runs_workloads(&self) -> bool {
        true
    }

    async fn start(&self, launch: Launch) -> Result<Box<dyn Container>, RuntimeError> {
        if launch.argv().is_empty() {
            return Err(RuntimeError::Config(
                "the process runtime runs the container's command and args; this container has no command (image entrypoints are not read): set `command`".into(),
            ));
        }
        let dir = self.dir(&launch.key);
        for stale in ["pid", "exit", "shim_pid", "shim.log"] {
            let _ = std::fs::remove_file(dir.join(stale));
        }
        std::fs::create_dir_all(&dir)
            .map_err(|e| RuntimeError::Start(format!("creating {}: {e}", dir.display())))?;
        let json =
            serde_json::to_vec_pretty(&launch).map_err(|e| RuntimeError::Start(e.to_string()))?;
        std::fs::write(dir.join("launch.json"), json)
            .map_err(|e| RuntimeError::Start(format!("writing launch.json: {e}")))?;
        let shim_log = std::fs::File::create(dir.join("shim.log"))
            .map_err(|e| RuntimeError::Start(format!("creating shim.log: {e}")))?;
        let mut shim = tokio::process::Command::new(&self.shim_exe)
            .arg("shim")
            .arg(&dir)
            .stdin(std::process::Stdio::piped())
            .stdout(std::process::Stdio::null())
            .stderr(shim_log)
            .process_group(0)
            .spawn()
            .map_err(|e| {
                RuntimeError::Start(format!("starting shim {}: {e}", self.shim_exe.display()))
            })?;
        let shim_pid = shim.id().unwrap_or(0) as i32;
        let _ = std::fs::write(dir.join("shim_pid"), shim_pid.to_string());
        // The environment goes through the shim's stdin, not the state directory; only once
        // `shim_pid` names the shim, or a resync could take it for a shim whose state is lost.
        if let Some(mut stdin) = shim.stdin.take() {
            use tokio::io::AsyncWriteExt;
            let env =
                serde_json::to_vec(&launch.env).map_err(|e| RuntimeError::Start(e.to_string()))?;
            stdin.write_all(&env).await.map_err(|e| {
                RuntimeError::Start(format!("handing the environment to the shim: {e}"))
            })?;
        }
        // A container is started only when none could be adopted: any other shim still serving
        // this directory lost its state (a wiped state directory) and would run a second copy.
        for other in shims_serving(&dir).filter(|pid| *pid != shim_pid) {
            tracing::warn!(
                key = launch.key,
                shim = other,
                "stopping a copy of this container whose state was lost"
            );
            stop_shim(other);
        }
        // Wait for the shim to report the container's pid, or to fail trying.
        let pid = loop {
            if let Some(pid) = read_number(&dir.join("pid")) {
                break pid;
            }
            if let Ok(Some(_)) = shim.try_wait() {
                if let Some(pid) = read_number(&dir.join("pid")) {
                    break pid;
                }
                let text = std::fs::read_to_string(dir.join("shim.log")).unwrap_or_default();
                let text = text.trim();
                return Err(RuntimeError::Start(if text.is_empty() {
                    "the container shim exited before starting the container".into()
                } else {
                    text.to_owned()
                }));
            }
            tokio::time::sleep(Duration::from_millis(5)).await;
        };
        let (tx, rx) = watch::channel(None);
        let exit_dir = dir.clone();
        tokio::spawn(async move {
            let _ = shim.wait().await;
            let exit = read_exit(&exit_dir).unwrap_or(Exit {
                code: 137,
                signal: Some(9),
                oom_killed: false,
            });
            let _ = tx.send(Some(exit));
        });
        Ok(Box::new(ProcessContainer {
            id: format!("process://{}-{pid}", launch.key.replace('/', "-")),
            dir,
            pid,
            launch,
            exited: rx,
        }))
    }

    async fn exec_session(
        &self,
        key: &str,
        spec: super::exec::ExecSpec,
    ) -> Result<super::exec::ExecSession, super::exec::ExecError> {
        let dir = self.dir(key);
        let container = key.rsplit('/').next().unwrap_or(key).to_owned();
        let pid = read_number(&dir.join("pid"))
            .filter(|pid| alive(*pid) && !dir.join("exit").exists())
            .ok_or(super::exec::ExecError::NotRunning(container))?;
        super::process_exec::start(key, pid, spec)
    }

    async fn usage(&self, key: &str) -> Option<crate::usage::Usage> {
        crate::usage::of_group(
            std::path::Path::new(crate::usage::CGROUP_ROOT),
            &crate::usage::group_name(key),
        )
    }

    async fn adopt(&self, key: &str) -> Option<Box<dyn Container>> {
        let dir = self.dir(key);
        let pid = read_number(&dir.join("pid"))?;
        let shim_pid = read_number(&dir.join("shim_pid"))?;
        if read_exit(&dir).is_some() || !alive(shim_pid) {
            return None;
        }
        let mut launch: Launch =
            serde_json::from_slice(&std::fs::read(dir.join("launch.json")).ok()?).ok()?;
        launch.env = environment_of(pid);
        let exited = ProcessContainer::watch_adopted(dir.clone(), shim_pid);
        Some(Box::new(ProcessContainer {
            id: format!("process://{}-{pid}", key.replace('/', "-")),
            dir,
            pid,
            launch,
            exited,
        }))
    }

    async fn remove_others(&self, keep: &[String]) {
        let Ok(pods) = std::fs::read_dir(&self.root) else {
            return;
        };
        for pod in pods.flatten() {
            let Ok(containers) = std::fs::read_dir(pod.path()) else {
                continue;
            };
            let mut emptied = true;
            for c in containers.flatten() {
                let key = format!(
                    "{}/{}",
                    pod.file_name().to_string_lossy(),
                    c.file_name().to_string_lossy()
                );
                if keep.contains(&key) {
                    emptied = false;
                    continue;
                }
                if let Some(pid) = read_number(&c.path().join("pid"))
                    && read_exit(&c.path()).is_none()
                    && alive(pid)
                {
                    tracing::info!(key, pid, "stopping a container of a pod that is gone");
                    let _ = killpg(Pid::from_raw(pid), Signal::SIGKILL);
                }
                remove_cgroups(&key);
                let _ = std::fs::remove_dir_all(c.path());
            }
            if emptied {
                let _ = std::fs::remove_dir(pod.path());
            }
        }
        // Shims whose state directory is gone (the agent's state was lost or wiped): their
        // containers cannot be adopted, and a pod that still exists gets a fresh container, so
        // each would otherwise run a second copy forever.
        for (shim, key) in orphan_shims(&self.root) {
            tracing::warn!(key, shim, "stopping a container whose state is gone");
            stop_shim(shim);
            remove_cgroups(&key);
        }
    }
}

/// Shim processes (`everynode shim DIR`) serving a container under `root` that the state no
/// longer knows: `DIR` is gone, or was made anew and its `shim_pid` names another shim. A
/// directory without `shim_pid` is a start under way and is left alone.
fn orphan_shims(root: &Path) -> Vec<(i32, String)> {
    processes()
        .filter_map(|(pid, args)| {
            let [_, verb, dir, ..] = args.as_slice() else {
                return None;
            };
            let dir = Path::new(dir);
            let key = dir.strip_prefix(root).ok()?;
            let known = if dir.exists() {
                read_number(&dir.join("shim_pid")).is_none_or(|shim| shim == pid)
            } else {
                false
            };
            (verb == "shim" && !known).then(|| (pid, key.to_string_lossy().into_owned()))
        })
        .collect()
}

/// Shim processes serving `dir`.
fn shims_serving(dir: &Path) -> impl Iterator<Item = i32> + '_ {
    processes().filter_map(move |(pid, args)| match args.as_slice() {
        [_, verb, served, ..] if verb == "shim" && Path::new(served) == dir => Some(pid),
        _ => None,
    })
}

/// SIGKILL to a shim, then to its container's process group. The shim goes first: seeing its
/// container die, it would record the exit in a directory that now belongs to the new copy.
fn stop_shim(shim: i32) {
    let containers = children(shim);
    let _ = kill(Pid::from_raw(shim), Signal::SIGKILL);
    for child in containers {
        let _ = killpg(Pid::from_raw(child), Signal::SIGKILL);
        let _ = kill(Pid::from_raw(child), Signal::SIGKILL);
    }
}

/// The children of `parent`.
fn children(parent: i32) -> Vec<i32> {
    let Ok(entries) = std::fs::read_dir("/proc") else {
        return Vec::new();
    };
    entries
        .flatten()
        .filter_map(|e| e.file_name().to_str()?.parse::<i32>().ok())
        .filter(|pid| {
            std::fs::read_to_string(format!("/proc/{pid}/stat"))
                .ok()
                .and_then(|stat| {
                    // `pid (comm) state ppid ...`: the command may hold spaces; split after it.
                    let rest = stat.rsplit_once(") ")?.1;
                    rest.split_whitespace().nth(1)?.parse::<i32>().ok()
                })
                == Some(parent)
        })
        .collect()
}

/// Every process with its command line.
fn processes() -> impl Iterator<Item = (i32, Vec<String>)> {
    std::fs::read_dir("/proc")
        .into_iter()
        .flatten()
        .flatten()
        .filter_map(|e| {
            let pid = e.file_name().to_str()?.parse::<i32>().ok()?;
            let raw = std::fs::read(e.path().join("cmdline")).ok()?;
            let args = raw
                .split(|b| *b == 0)
                .filter(|a| !a.is_empty())
                .map(|a| String::from_utf8_lossy(a).into_owned())
                .collect();
            Some((pid, args))
        })
}

/// The environment a running process was started with (`/proc/PID/environ`), for probes of an
/// adopted container: its values are not kept on disk.
fn environment_of(pid: i32) -> Vec<(String, String)> {
    std::fs::read(format!("/proc/{pid}/environ"))
        .unwrap_or_default()
        .split(|b| *b == 0)
        .filter_map(|entry| {
            let text = String::from_utf8_lossy(entry);
            let (k, v) = text.split_once('=')?;
            Some((k.to_owned(), v.to_owned()))
        })
        .collect()
}
