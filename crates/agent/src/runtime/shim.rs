//! The container shim (`everynode shim DIR`), the process runtime's equivalent of
//! containerd-shim or conmon. The agent starts one per container start; it outlives the agent,
//! so a crashed or restarted agent leaves containers running and finds them again.
//!
//! It reads `DIR/launch.json` and the environment on its stdin (never stored), then:
//! 1. with mounts, enters a private mount namespace and bind-mounts each volume at its path;
//! 2. joins cgroups that measure it (`usage`) and carry its limits, where the host allows it;
//! 3. starts the command in its own process group (so a signal reaches its children too),
//!    as `runAsUser`/`runAsGroup`, and writes its pid to `DIR/pid`;
//! 4. copies stdout and stderr into the log file in CRI format (`<RFC 3339 time> stdout F text`),
//!    rotating by size;
//! 5. with `stdin`, passes what clients write to the FIFO `DIR/stdin` (`kubectl attach -i`) on
//!    to the command's stdin, closing it after the first client leaves when `stdinOnce`;
//! 6. writes the exit code to `DIR/exit` and ends.

use super::{Launch, Mount};
use crate::usage::{CGROUP_ROOT, GROUP_PARENT, group_dir, group_name, unified};
use everynode_clock::Clock;
use std::io::{BufRead, BufReader, Read, Write};
use std::os::unix::process::{CommandExt, ExitStatusExt};
use std::path::{Path, PathBuf};
use std::process::{Command, ExitCode, Stdio};
use std::sync::{Arc, Mutex};

/// What `DIR/exit` holds.
#[derive(Debug, serde::Serialize, serde::Deserialize)]
pub struct ExitRecord {
    pub code: i32,
    pub signal: Option<i32>,
}

/// Runs the shim for the container described in `dir`; returns when the container has exited.
pub fn run(dir: &Path) -> ExitCode {
    match run_inner(dir) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            // The agent reads this (stderr goes to DIR/shim.log) into the container's status.
            eprintln!("{e}");
            ExitCode::FAILURE
        }
    }
}

fn run_inner(dir: &Path) -> Result<(), String> {
    // The agent runs with umask 077 so that nothing it writes is readable by other users; the
    // container gets the usual 022, as a container runtime gives it, for the files it creates
    // and the mount points made for it.
    nix::sys::stat::umask(nix::sys::stat::Mode::from_bits_truncate(0o022));
    let text = std::fs::read(dir.join("launch.json"))
        .map_err(|e| format!("reading {}: {e}", dir.join("launch.json").display()))?;
    let mut launch: Launch =
        serde_json::from_slice(&text).map_err(|e| format!("bad launch.json: {e}"))?;
    // The environment comes on stdin (JSON pairs), never from the state directory.
    let mut env = Vec::new();
    std::io::Read::read_to_end(&mut std::io::stdin(), &mut env)
        .map_err(|e| format!("reading the environment: {e}"))?;
    launch.env = serde_json::from_slice(&env).map_err(|e| format!("bad environment: {e}"))?;
    if !launch.mounts.is_empty() {
        private_mounts(&launch.mounts)?;
    }
    join_cgroups(&launch);
    let argv = launch.argv();
    let (program, args) = argv
        .split_first()
        .ok_or_else(|| "no command to run".to_owned())?;
    let stdin_fifo = if launch.stdin {
        Some(make_stdin_fifo(dir)?)
    } else {
        None
    };
    let mut command = Command::new(program);
    command
        .args(args)
        .env_clear()
        .envs(launch.env.iter().map(|(k, v)| (k, v)))
        .stdin(if launch.stdin {
            Stdio::piped()
        } else {
            Stdio::null()
        })
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .process_group(0);
    if let Some(dir) = &launch.working_dir {
        command.current_dir(dir);
    }
    if let Some(gid) = launch.run_as_group.or(launch.run_as_user.map(|_| 0)) {
        command.gid(gid);
    }
    if let Some(uid) = launch.run_as_user {
        command.uid(uid);
    }
    let mut child = command.spawn().map_err(|e| {
        format!(
            "failed to start container process: exec: \"{program}\": {}",
            match e.kind() {
                std::io::ErrorKind::NotFound => "executable file not found in $PATH".to_owned(),
                _ => e.to_string(),
            }
        )
    })?;
    write_atomic(&dir.join("pid"), child.id().to_string().as_bytes())
        .map_err(|e| format!("writing pid: {e}"))?;
    if let (Some(fifo), Some(pipe)) = (stdin_fifo, child.stdin.take()) {
        let once = launch.stdin_once;
        std::thread::spawn(move || relay_stdin(&fifo, pipe, once));
    }
    let log = Arc::new(Mutex::new(LogWriter::open(
        launch.log_path.clone(),
        launch.log_max_bytes,
        launch.log_max_files,
    )));
    let mut copiers = Vec::new();
    if let Some(out) = child.stdout.take() {
        copiers.push(copy_lines(out, "stdout", log.clone()));
    }
    if let Some(err) = child.stderr.take() {
        copiers.push(copy_lines(err, "stderr", log.clone()));
    }
    let status = child.wait().map_err(|e| format!("waiting: {e}"))?;
    for c in copiers {
        let _ = c.join();
    }
    let record = ExitRecord {
        code: status
            .code()
            .unwrap_or_else(|| 128 + status.signal().unwrap_or(0)),
        signal: status.signal(),
    };
    let json = serde_json::to_vec(&record).map_err(|e| e.to_string())?;
    write_atomic(&dir.join("exit"), &json).map_err(|e| format!("writing exit: {e}"))
}

/// `DIR/stdin`, a FIFO only the agent's user may open, made fresh for this start.
fn make_stdin_fifo(dir: &Path) -> Result<PathBuf, String> {
    let path = dir.join("stdin");
    match std::fs::remove_file(&path) {
        Ok(()) => {}
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
        Err(e) => return Err(format!("removing {}: {e}", path.display())),
    }
    nix::unistd::mkfifo(&path, nix::sys::stat::Mode::from_bits_truncate(0o600))
        .map_err(|e| format!("making {}: {e}", path.display()))?;
    Ok(path)
}

/// Copies each attached client's input from the FIFO to the command's stdin. Opening the FIFO
/// waits for a client; its end (the client left or closed stdin) ends that client's input, and
/// with `once` the command's stdin too, as a runtime does for `stdinOnce`. Without `once`, the
/// command's stdin stays open for the next client.
fn relay_stdin(fifo: &Path, mut pipe: std::process::ChildStdin, once: bool) {
    loop {
        let Ok(mut client) = std::fs::File::open(fifo) else {
            return;
        };
        let mut buf = [0u8; 8192];
        loop {
            match client.read(&mut buf) {
                Ok(0) => break,
                Ok(n) => {
                    if pipe
                        .write_all(&buf[..n])
                        .and_then(|()| pipe.flush())
                        .is_err()
                    {
                        // The command closed its stdin: nothing more can reach it.
                        return;
                    }
                }
                Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
                Err(_) => break,
            }
        }
        if once {
            let _ = std::fs::remove_file(fifo);
            return;
        }
    }
}

fn write_atomic(path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    let tmp = path.with_extension("tmp");
    std::fs::write(&tmp, bytes)?;
    std::fs::rename(tmp, path)
}

/// A private mount namespace with every volume bind-mounted at its `mountPath`. Mount points
/// that do not exist on the host are created (a directory, or an empty file for a file volume).
fn private_mounts(mounts: &[Mount]) -> Result<(), String> {
    use nix::mount::{MsFlags, mount};
    nix::sched::unshare(nix::sched::CloneFlags::CLONE_NEWNS).map_err(|e| {
        format!("volumes need a private mount namespace, which requires root: unshare: {e}")
    })?;
    mount(
        None::<&str>,
        "/",
        None::<&str>,
        MsFlags::MS_REC | MsFlags::MS_PRIVATE,
        None::<&str>,
    )
    .map_err(|e| format!("making mounts private: {e}"))?;
    for m in mounts {
        let source_is_dir = m.source.is_dir();
        if !m.target.exists() {
            let made = if source_is_dir {
                std::fs::create_dir_all(&m.target)
            } else {
                m.target
                    .parent()
                    .map_or(Ok(()), std::fs::create_dir_all)
                    .and_then(|()| std::fs::File::create(&m.target).map(|_| ()))
            };
            made.map_err(|e| format!("creating mount point {}: {e}", m.target.display()))?;
        }
        mount(
            Some(&m.source),
            &m.target,
            None::<&str>,
            MsFlags::MS_BIND | MsFlags::MS_REC,
            None::<&str>,
        )
        .map_err(|e| {
            format!(
                "mounting {} at {}: {e}",
                m.source.display(),
                m.target.display()
            )
        })?;
        if m.read_only {
            mount(
                None::<&str>,
                &m.target,
                None::<&str>,
                MsFlags::MS_BIND | MsFlags::MS_REMOUNT | MsFlags::MS_RDONLY | MsFlags::MS_REC,
                None::<&str>,
            )
            .map_err(|e| format!("making {} read-only: {e}", m.target.display()))?;
        }
    }
    Ok(())
}

/// Joins the container's cgroups: always those that measure it (memory and cpuacct on v1; one
/// group on v2), so `/metrics/resource` can read its use, and with its limits where it has them.
/// Hosts that forbid groups (no write access, EPERM) run the container without: the reason
/// goes to the shim log and the container still starts.
fn join_cgroups(launch: &Launch) {
    let root = Path::new(CGROUP_ROOT);
    let name = group_name(&launch.key);
    let pid = std::process::id().to_string();
    let mut groups: Vec<(PathBuf, Vec<(&str, String)>)> = Vec::new();
    if unified(root) {
        // Controllers must be enabled for the children of each level before they can be used.
        for level in [root.to_path_buf(), root.join(GROUP_PARENT)] {
            let _ = std::fs::create_dir_all(&level);
            let _ = std::fs::write(level.join("cgroup.subtree_control"), "+cpu +memory");
        }
        let mut files = Vec::new();
        if let Some(bytes) = launch.memory_limit_bytes {
            files.push(("memory.max", bytes.to_string()));
        }
        if let Some(millis) = launch.cpu_limit_millis {
            files.push(("cpu.max", format!("{} 100000", (millis * 100).max(1000))));
        }
        groups.push((group_dir(root, "", &name), files));
    } else {
        let mut memory = Vec::new();
        if let Some(bytes) = launch.memory_limit_bytes {
            memory.push(("memory.limit_in_bytes", bytes.to_string()));
        }
        groups.push((group_dir(root, "memory", &name), memory));
        groups.push((group_dir(root, "cpuacct", &name), Vec::new()));
        if let Some(millis) = launch.cpu_limit_millis {
            // 100 ms period, as kubelet uses.
            groups.push((
                group_dir(root, "cpu", &name),
                vec![
                    ("cpu.cfs_period_us", "100000".to_owned()),
                    ("cpu.cfs_quota_us", (millis * 100).max(1000).to_string()),
                ],
            ));
        }
    }
    for (group, files) in groups {
        let result = std::fs::create_dir_all(&group).and_then(|()| {
            for (file, value) in &files {
                std::fs::write(group.join(file), value)?;
            }
            std::fs::write(group.join("cgroup.procs"), &pid)
        });
        if let Err(e) = result {
            eprintln!("cgroup not joined ({}): {e}", group.display());
        }
    }
}

/// Removes the cgroups of a container key (after it has exited for good); errors ignored.
pub fn remove_cgroups(key: &str) {
    let root = Path::new(CGROUP_ROOT);
    let name = group_name(key);
    for controller in ["memory", "cpu", "cpuacct"] {
        let _ = std::fs::remove_dir(group_dir(root, controller, &name));
    }
}

/// The container log in CRI format, rotated when it grows past `max_bytes`: the current file
/// moves to `NAME.1`, `NAME.1` to `NAME.2`, ... keeping `max_files` files in all.
pub struct LogWriter {
    path: PathBuf,
    file: Option<std::fs::File>,
    written: u64,
    max_bytes: u64,
    max_files: usize,
}

impl LogWriter {
    pub fn open(path: PathBuf, max_bytes: u64, max_files: usize) -> LogWriter {
        if let Some(parent) = path.parent() {
            let _ = std::fs::create_dir_all(parent);
        }
        let file = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&path)
            .ok();
        let written = file
            .as_ref()
            .and_then(|f| f.metadata().ok())
            .map_or(0, |m| m.len());
        LogWriter {
            path,
            file,
            written,
            max_bytes,
            max_files: max_files.max(1),
        }
    }

    pub fn write_line(&mut self, stream: &str, text: &[u8]) {
        let mut line = format!("{} {stream} F ", everynode_clock::SystemClock.now()).into_bytes();
        line.extend_from_slice(text);
        line.push(b'\n');
        if self.max_bytes > 0 && self.written + line.len() as u64 > self.max_bytes {
            self.rotate();
        }
        if let Some(f) = self.file.as_mut()
            && f.write_all(&line).is_ok()
        {
            self.written += line.len() as u64;
        }
    }

    fn rotate(&mut self) {
        rotate_files(&self.path, self.max_files);
        self.file = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&self.path)
            .ok();
        self.written = 0;
    }
}

/// Moves a log aside as rotation does: `NAME` to `NAME.1`, `NAME.1` to `NAME.2`, ... keeping
/// `max_files` files in all (the live one included); with one file, the log is dropped. The
/// process runtime's shim and the CRI runtime's rotation both use it, so `kubectl logs` reads
/// either the same way.
pub fn rotate_files(path: &std::path::Path, max_files: usize) {
    let numbered = |n: usize| PathBuf::from(format!("{}.{n}", path.display()));
    if max_files <= 1 {
        let _ = std::fs::remove_file(path);
    } else {
        for n in (1..max_files - 1).rev() {
            let _ = std::fs::rename(numbered(n), numbered(n + 1));
        }
        let _ = std::fs::rename(path, numbered(1));
    }
}

fn copy_lines(
    from: impl Read + Send + 'static,
    stream: &'static str,
    log: Arc<Mutex<LogWriter>>,
) -> std::thread::JoinHandle<()> {
    std::thread::spawn(move || {
        let mut reader = BufReader::new(from);
        let mut buf = Vec::new();
        loop {
            buf.clear();
            match reader.read_until(b'\n', &mut buf) {
                Ok(0) | Err(_) => break,
                Ok(_) => {
                    if buf.last() == Some(&b'\n') {
                        buf.pop();
                    }
                    if let Ok(mut w) = log.lock() {
                        w.write_line(stream, &buf);
                    }
                }
            }
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn log_rotation_keeps_max_files() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("0.log");
        let mut w = LogWriter::open(path.clone(), 200, 3);
        for i in 0..40 {
            w.write_line("stdout", format!("line {i}").as_bytes());
        }
        assert!(path.exists());
        assert!(dir.path().join("0.log.1").exists());
        assert!(dir.path().join("0.log.2").exists());
        assert!(!dir.path().join("0.log.3").exists());
        let current = std::fs::read_to_string(&path).expect("read");
        assert!(current.contains(" stdout F line 39\n"), "{current}");
        assert!(std::fs::metadata(&path).expect("meta").len() <= 200);
    }
}
