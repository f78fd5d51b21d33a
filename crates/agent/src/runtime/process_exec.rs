//! `kubectl exec` for the process runtime: the command runs as the container's process does,
//! with its environment (read from `/proc/<pid>/environ`, since the agent never stores it), its
//! working directory and user, in its mount namespace when it has its own (`nsenter`), and in its
//! cgroups, so its use counts against the container's limits and in its metrics.
//!
//! With a TTY the command gets a pseudo-terminal as its controlling terminal through
//! util-linux's `setsid --ctty`, which avoids running code between fork and exec.

use super::exec::{ExecError, ExecSession, ExecSpec};
use crate::usage::{CGROUP_ROOT, group_dir, group_name, unified};
use std::os::fd::OwnedFd;
use std::path::Path;
use std::process::Stdio;

/// The container's process, read from `/proc`.
#[derive(Debug, PartialEq)]
struct Target {
    env: Vec<(String, String)>,
    cwd: Option<String>,
    uid: u32,
    gid: u32,
    own_mount_namespace: bool,
}

/// `NAME=value` pairs of an environ file.
fn parse_environ(bytes: &[u8]) -> Vec<(String, String)> {
    bytes
        .split(|b| *b == 0)
        .filter_map(|pair| {
            let text = String::from_utf8_lossy(pair);
            let (k, v) = text.split_once('=')?;
            Some((k.to_owned(), v.to_owned()))
        })
        .collect()
}

/// The effective uid and gid of a `/proc/<pid>/status`.
fn parse_ids(status: &str) -> (u32, u32) {
    let field = |name: &str| {
        status
            .lines()
            .find_map(|l| l.strip_prefix(name))
            .and_then(|rest| rest.split_whitespace().nth(1))
            .and_then(|v| v.parse().ok())
            .unwrap_or(0)
    };
    (field("Uid:"), field("Gid:"))
}

fn target(pid: i32) -> Option<Target> {
    let proc = Path::new("/proc").join(pid.to_string());
    let env = parse_environ(&std::fs::read(proc.join("environ")).ok()?);
    let (uid, gid) = parse_ids(&std::fs::read_to_string(proc.join("status")).ok()?);
    let cwd = std::fs::read_link(proc.join("cwd"))
        .ok()
        .map(|p| p.to_string_lossy().into_owned());
    let own_mount_namespace = std::fs::read_link(proc.join("ns/mnt")).ok()
        != std::fs::read_link("/proc/self/ns/mnt").ok();
    Some(Target {
        env,
        cwd,
        uid,
        gid,
        own_mount_namespace,
    })
}

/// The command line that runs `spec.argv` as the container's process would run.
fn command_line(pid: i32, target: &Target, spec: &ExecSpec) -> Vec<String> {
    let mut argv = Vec::new();
    if spec.tty {
        argv.extend(["setsid".to_owned(), "--ctty".to_owned()]);
    }
    if target.own_mount_namespace {
        argv.extend([
            "nsenter".to_owned(),
            "-t".to_owned(),
            pid.to_string(),
            "-m".to_owned(),
        ]);
        if let Some(cwd) = &target.cwd {
            argv.push(format!("--wd={cwd}"));
        }
        argv.extend([
            format!("--setuid={}", target.uid),
            format!("--setgid={}", target.gid),
            "--".to_owned(),
        ]);
    }
    argv.extend(spec.argv.iter().cloned());
    argv
}

/// Moves `pid` into the container's cgroups (best effort, as the shim joins them).
fn join_cgroups(key: &str, pid: u32) {
    let root = Path::new(CGROUP_ROOT);
    let name = group_name(key);
    let controllers: &[&str] = if unified(root) {
        &[""]
    } else {
        &["memory", "cpuacct", "cpu"]
    };
    for controller in controllers {
        let dir = group_dir(root, controller, &name);
        if dir.exists() {
            let _ = std::fs::write(dir.join("cgroup.procs"), pid.to_string());
        }
    }
}

/// The exit code of a finished command, a signal counting as 128 + its number.
fn code_of(status: std::process::ExitStatus) -> i32 {
    use std::os::unix::process::ExitStatusExt;
    status
        .code()
        .or_else(|| status.signal().map(|s| 128 + s))
        .unwrap_or(1)
}

/// Starts `spec` in the container whose process is `pid` (key `key`).
pub fn start(key: &str, pid: i32, spec: ExecSpec) -> Result<ExecSession, ExecError> {
    let container = key.rsplit('/').next().unwrap_or(key).to_owned();
    let target = target(pid).ok_or_else(|| ExecError::NotRunning(container.clone()))?;
    let argv = command_line(pid, &target, &spec);
    let (program, args) = argv
        .split_first()
        .ok_or_else(|| ExecError::Start("no command given".into()))?;
    let mut command = tokio::process::Command::new(program);
    command
        .args(args)
        .env_clear()
        .envs(target.env.iter().map(|(k, v)| (k, v)))
        .kill_on_drop(true);
    if !target.own_mount_namespace {
        if let Some(cwd) = &target.cwd {
            command.current_dir(cwd);
        }
        command.uid(target.uid).gid(target.gid);
    }
    let not_found = |e: std::io::Error| {
        let what = spec.argv.first().cloned().unwrap_or_default();
        ExecError::Start(if e.kind() == std::io::ErrorKind::NotFound {
            format!("exec: \"{what}\": executable file not found in $PATH")
        } else {
            format!("exec: \"{what}\": {e}")
        })
    };
    if spec.tty {
        let size = spec.size.map(|(columns, rows)| nix::pty::Winsize {
            ws_row: rows,
            ws_col: columns,
            ws_xpixel: 0,
            ws_ypixel: 0,
        });
        let pty = nix::pty::openpty(size.as_ref(), None)
            .map_err(|e| ExecError::Start(format!("allocating a terminal: {e}")))?;
        let slave = |fd: &OwnedFd| -> Result<Stdio, ExecError> {
            fd.try_clone()
                .map(Stdio::from)
                .map_err(|e| ExecError::Start(format!("allocating a terminal: {e}")))
        };
        command
            .stdin(slave(&pty.slave)?)
            .stdout(slave(&pty.slave)?)
            .stderr(slave(&pty.slave)?);
        let mut child = command.spawn().map_err(not_found)?;
        // The parent's copies of the terminal's far end must close, or reading never ends.
        drop(command);
        drop(pty.slave);
        if let Some(id) = child.id() {
            join_cgroups(key, id);
        }
        let master = std::fs::File::from(pty.master);
        let reader = master
            .try_clone()
            .map_err(|e| ExecError::Start(format!("allocating a terminal: {e}")))?;
        let sizer = master
            .try_clone()
            .map_err(|e| ExecError::Start(format!("allocating a terminal: {e}")))?;
        let resize = move |columns: u16, rows: u16| {
            let size = rustix::termios::Winsize {
                ws_row: rows,
                ws_col: columns,
                ws_xpixel: 0,
                ws_ypixel: 0,
            };
            if let Err(e) = rustix::termios::tcsetwinsize(&sizer, size) {
                tracing::debug!(error = %e, "could not resize an exec terminal");
            }
        };
        return Ok(ExecSession {
            stdin: spec
                .stdin
                .then(|| Box::new(tokio::fs::File::from_std(master)) as super::exec::Writer),
            stdout: Some(Box::new(TerminalReader(tokio::fs::File::from_std(reader)))),
            stderr: None,
            resize: Some(Box::new(resize)),
            exit: Box::pin(async move { child.wait().await.map_or(1, code_of) }),
        });
    }
    command
        .stdin(if spec.stdin {
            Stdio::piped()
        } else {
            Stdio::null()
        })
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    let mut child = command.spawn().map_err(not_found)?;
    if let Some(id) = child.id() {
        join_cgroups(key, id);
    }
    let stdin = child
        .stdin
        .take()
        .map(|s| Box::new(s) as super::exec::Writer);
    let stdout = child
        .stdout
        .take()
        .map(|s| Box::new(s) as super::exec::Reader);
    let stderr = child
        .stderr
        .take()
        .map(|s| Box::new(s) as super::exec::Reader);
    Ok(ExecSession {
        stdin,
        stdout,
        stderr,
        resize: None,
        exit: Box::pin(async move { child.wait().await.map_or(1, code_of) }),
    })
}

/// A terminal's near end: reading it fails with EIO once the command and everything it started
/// have closed the far end, which is the end of the output, not an error.
struct TerminalReader(tokio::fs::File);

impl tokio::io::AsyncRead for TerminalReader {
    fn poll_read(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
        buf: &mut tokio::io::ReadBuf<'_>,
    ) -> std::task::Poll<std::io::Result<()>> {
        match std::pin::Pin::new(&mut self.0).poll_read(cx, buf) {
            std::task::Poll::Ready(Err(e)) if e.raw_os_error() == Some(nix::libc::EIO) => {
                std::task::Poll::Ready(Ok(()))
            }
            other => other,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_containers_environment_and_ids_are_read_from_proc() {
        assert_eq!(
            parse_environ(b"PATH=/bin\0GREETING=a=b\0\0"),
            [
                ("PATH".into(), "/bin".into()),
                ("GREETING".into(), "a=b".into())
            ]
        );
        let status = "Name:\tsh\nUid:\t1000\t1000\t1000\t1000\nGid:\t2000\t2000\t2000\t2000\n";
        assert_eq!(parse_ids(status), (1000, 2000));
    }

    #[test]
    fn a_container_with_its_own_mounts_is_entered_with_nsenter() {
        let target = Target {
            env: Vec::new(),
            cwd: Some("/work".into()),
            uid: 1000,
            gid: 1000,
            own_mount_namespace: true,
        };
        let spec = ExecSpec {
            argv: vec!["ls".into()],
            stdin: false,
            tty: true,
            size: None,
        };
        assert_eq!(
            command_line(42, &target, &spec),
            [
                "setsid",
                "--ctty",
                "nsenter",
                "-t",
                "42",
                "-m",
                "--wd=/work",
                "--setuid=1000",
                "--setgid=1000",
                "--",
                "ls"
            ]
        );
        let shared = Target {
            own_mount_namespace: false,
            ..target
        };
        assert_eq!(
            command_line(42, &shared, &ExecSpec { tty: false, ..spec }),
            ["ls"]
        );
    }
}
