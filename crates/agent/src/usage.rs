//! CPU and memory use, read as kubelet reads them for `/metrics/resource`: a container's from its
//! cgroup (v1: `cpuacct.usage` and `memory.usage_in_bytes` less `total_inactive_file`; v2:
//! `cpu.stat`'s `usage_usec` and `memory.current` less `inactive_file`), the node's from
//! `/proc/stat` and `/proc/meminfo`.
//!
//! The working set is memory in use less the page cache the kernel can drop, the figure kubelet
//! evicts on and `kubectl top` shows.

use std::path::{Path, PathBuf};

/// Cumulative CPU time and the current working set.
#[derive(Clone, Copy, Debug, Default, PartialEq)]
pub struct Usage {
    pub cpu_seconds: f64,
    pub memory_working_set_bytes: u64,
}

pub const CGROUP_ROOT: &str = "/sys/fs/cgroup";

/// The directory under each hierarchy where the process runtime puts its containers' groups.
pub const GROUP_PARENT: &str = "everynode";

/// A container key's group name (`<pod uid>/<container>` → `<pod uid>_<container>`).
pub fn group_name(key: &str) -> String {
    key.replace('/', "_")
}

/// Whether the host has the unified (v2) hierarchy only.
pub fn unified(root: &Path) -> bool {
    root.join("cgroup.controllers").exists()
}

/// The group's directory in `controller`'s hierarchy (v1) or in the unified one (v2).
pub fn group_dir(root: &Path, controller: &str, name: &str) -> PathBuf {
    if unified(root) {
        root.join(GROUP_PARENT).join(name)
    } else {
        root.join(controller).join(GROUP_PARENT).join(name)
    }
}

/// A value named `key` in a `key value` file (`memory.stat`, `cpu.stat`).
fn stat_value(text: &str, key: &str) -> Option<u64> {
    text.lines().find_map(|line| {
        let (k, v) = line.split_once(' ')?;
        (k == key).then(|| v.trim().parse().ok()).flatten()
    })
}

fn read_u64(path: &Path) -> Option<u64> {
    std::fs::read_to_string(path).ok()?.trim().parse().ok()
}

/// Memory in use less the inactive page cache, never below zero.
pub fn working_set(usage: u64, inactive_file: u64) -> u64 {
    usage.saturating_sub(inactive_file)
}

/// A container's use from its cgroup `name` under `root`; `None` when it has no group (it is not
/// running, or the host refused the group).
pub fn of_group(root: &Path, name: &str) -> Option<Usage> {
    if unified(root) {
        let dir = root.join(GROUP_PARENT).join(name);
        let cpu = std::fs::read_to_string(dir.join("cpu.stat")).ok()?;
        let usec = stat_value(&cpu, "usage_usec")?;
        let current = read_u64(&dir.join("memory.current")).unwrap_or(0);
        let stat = std::fs::read_to_string(dir.join("memory.stat")).unwrap_or_default();
        return Some(Usage {
            cpu_seconds: usec as f64 / 1e6,
            memory_working_set_bytes: working_set(
                current,
                stat_value(&stat, "inactive_file").unwrap_or(0),
            ),
        });
    }
    let nanos = read_u64(
        &root
            .join("cpuacct")
            .join(GROUP_PARENT)
            .join(name)
            .join("cpuacct.usage"),
    )?;
    let memory = root.join("memory").join(GROUP_PARENT).join(name);
    let usage = read_u64(&memory.join("memory.usage_in_bytes")).unwrap_or(0);
    let stat = std::fs::read_to_string(memory.join("memory.stat")).unwrap_or_default();
    Some(Usage {
        cpu_seconds: nanos as f64 / 1e9,
        memory_working_set_bytes: working_set(
            usage,
            stat_value(&stat, "total_inactive_file").unwrap_or(0),
        ),
    })
}

/// CPU seconds the whole machine has been busy, from `/proc/stat`'s first line (user, nice,
/// system, irq, softirq, steal; idle and iowait excluded), in `USER_HZ` ticks of 1/100 s.
pub fn busy_cpu_seconds(proc_stat: &str) -> Option<f64> {
    let line = proc_stat.lines().find(|l| l.starts_with("cpu "))?;
    let ticks: Vec<u64> = line
        .split_whitespace()
        .skip(1)
        .filter_map(|v| v.parse().ok())
        .collect();
    // user nice system idle iowait irq softirq steal
    let busy = [0usize, 1, 2, 5, 6, 7]
        .iter()
        .filter_map(|&i| ticks.get(i))
        .sum::<u64>();
    Some(busy as f64 / 100.0)
}

/// Memory in use on the machine (`MemTotal - MemAvailable`), in bytes.
pub fn used_memory_bytes(meminfo: &str) -> Option<u64> {
    let kib = |key: &str| {
        meminfo.lines().find_map(|l| {
            let rest = l.strip_prefix(key)?.strip_prefix(':')?;
            rest.split_whitespace().next()?.parse::<u64>().ok()
        })
    };
    Some(kib("MemTotal")?.saturating_sub(kib("MemAvailable")?) * 1024)
}

/// The node's use.
pub fn of_node() -> Option<Usage> {
    let stat = std::fs::read_to_string("/proc/stat").ok()?;
    let meminfo = std::fs::read_to_string("/proc/meminfo").ok()?;
    Some(Usage {
        cpu_seconds: busy_cpu_seconds(&stat)?,
        memory_working_set_bytes: used_memory_bytes(&meminfo)?,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_node_counts_busy_ticks_and_memory_not_available() {
        let stat = "cpu  100 20 30 5000 40 5 6 7 0 0\ncpu0 1 2 3 4\n";
        assert_eq!(
            busy_cpu_seconds(stat),
            Some((100 + 20 + 30 + 5 + 6 + 7) as f64 / 100.0)
        );
        let meminfo = "MemTotal:       1000 kB\nMemFree:         100 kB\nMemAvailable:    400 kB\n";
        assert_eq!(used_memory_bytes(meminfo), Some(600 * 1024));
    }

    fn write(dir: &Path, file: &str, text: &str) {
        std::fs::create_dir_all(dir).expect("dir");
        std::fs::write(dir.join(file), text).expect("write");
    }

    #[test]
    fn a_v1_group_gives_cpu_and_the_working_set() {
        let root = tempfile::tempdir().expect("tmp");
        let cpu = root.path().join("cpuacct").join(GROUP_PARENT).join("u_c");
        write(&cpu, "cpuacct.usage", "2500000000\n");
        let mem = root.path().join("memory").join(GROUP_PARENT).join("u_c");
        write(&mem, "memory.usage_in_bytes", "1000000\n");
        write(&mem, "memory.stat", "cache 5\ntotal_inactive_file 200000\n");
        assert_eq!(
            of_group(root.path(), "u_c"),
            Some(Usage {
                cpu_seconds: 2.5,
                memory_working_set_bytes: 800_000
            })
        );
        assert_eq!(of_group(root.path(), "other"), None);
    }

    #[test]
    fn a_v2_group_gives_cpu_and_the_working_set() {
        let root = tempfile::tempdir().expect("tmp");
        write(root.path(), "cgroup.controllers", "cpu memory\n");
        let dir = root.path().join(GROUP_PARENT).join("u_c");
        write(&dir, "cpu.stat", "usage_usec 1500000\nuser_usec 1\n");
        write(&dir, "memory.current", "4096\n");
        write(&dir, "memory.stat", "anon 1\ninactive_file 1024\n");
        assert_eq!(
            of_group(root.path(), "u_c"),
            Some(Usage {
                cpu_seconds: 1.5,
                memory_working_set_bytes: 3072
            })
        );
    }
}
