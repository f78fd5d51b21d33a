//! Pod volumes on the host: hostPath (with every `type` check and upstream's error text),
//! emptyDir, configMap, secret and downwardAPI. Each volume becomes a host path that the runtime
//! bind-mounts at the container's `mountPath`.

use crate::env::{Sources, field_value, resource_value};
use crate::runtime::Mount;
use k8s_openapi::api::core::v1::{Container, KeyToPath, Pod, Volume};
use std::collections::{BTreeMap, HashMap};
use std::os::unix::fs::{FileTypeExt, PermissionsExt};
use std::path::{Path, PathBuf};

/// A volume that could not be set up: the `FailedMount` event says
/// `MountVolume.SetUp failed for volume "<volume>" : <message>`.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[error("MountVolume.SetUp failed for volume \"{volume}\" : {message}")]
pub struct VolumeError {
    pub volume: String,
    pub message: String,
    /// Whether it can be fixed by something outside the pod changing (a ConfigMap created, a
    /// directory made), so the agent retries; unsupported kinds are permanent.
    pub retryable: bool,
}

/// The ConfigMaps and Secrets a pod's volumes refer to: (config maps, secrets).
pub fn referenced_sources(pod: &Pod) -> (Vec<String>, Vec<String>) {
    let mut cms = Vec::new();
    let mut secrets = Vec::new();
    for v in pod.spec.iter().flat_map(|s| s.volumes.iter().flatten()) {
        if let Some(c) = &v.config_map {
            cms.push(c.name.clone());
        }
        if let Some(s) = &v.secret
            && let Some(name) = &s.secret_name
        {
            secrets.push(name.clone());
        }
        for p in v.projected.iter().flat_map(|p| p.sources.iter().flatten()) {
            if let Some(c) = &p.config_map {
                cms.push(c.name.clone());
            }
            if let Some(s) = &p.secret {
                secrets.push(s.name.clone());
            }
        }
    }
    (cms, secrets)
}

/// Upstream's hostPath type check (pkg/volume/hostpath): creates what the `*OrCreate` types
/// allow, and otherwise reports what the path is not.
pub fn check_host_path(path: &Path, kind: &str) -> Result<(), String> {
    let failed = |what: &str| {
        Err(format!(
            "hostPath type check failed: {} is not {what}",
            path.display()
        ))
    };
    let meta = std::fs::metadata(path);
    match kind {
        "" => Ok(()),
        "DirectoryOrCreate" => match meta {
            Err(_) => {
                std::fs::create_dir_all(path).map_err(|e| e.to_string())?;
                let _ = std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o755));
                Ok(())
            }
            Ok(m) if m.is_dir() => Ok(()),
            Ok(_) => failed("a directory"),
        },
        "Directory" => match meta {
            Ok(m) if m.is_dir() => Ok(()),
            _ => failed("a directory"),
        },
        "FileOrCreate" => match meta {
            Err(_) => {
                std::fs::OpenOptions::new()
                    .create(true)
                    .append(true)
                    .open(path)
                    .map_err(|e| e.to_string())?;
                let _ = std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o644));
                Ok(())
            }
            Ok(m) if m.is_file() => Ok(()),
            Ok(_) => failed("a file"),
        },
        "File" => match meta {
            Ok(m) if m.is_file() => Ok(()),
            _ => failed("a file"),
        },
        "Socket" => match meta {
            Ok(m) if m.file_type().is_socket() => Ok(()),
            _ => failed("a socket file"),
        },
        "CharDevice" => match meta {
            Ok(m) if m.file_type().is_char_device() => Ok(()),
            _ => failed("a character device"),
        },
        "BlockDevice" => match meta {
            Ok(m) if m.file_type().is_block_device() => Ok(()),
            _ => failed("a block device"),
        },
        other => Err(format!("invalid HostPathType: {other}")),
    }
}

/// A directory a container sees through its mount: readable by whatever user the container runs
/// as (0755, as kubelet's). The pod directories above it stay private to the agent (umask 077),
/// so no other user of the host reaches a pod's volumes, its Secrets included.
fn create_volume_dir(dir: &Path) -> Result<(), String> {
    std::fs::create_dir_all(dir).map_err(|e| e.to_string())?;
    std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o755)).map_err(|e| e.to_string())
}

/// Mounts a tmpfs at `dir` (made if missing) unless one is there: Secret volumes live in memory,
/// as kubelet keeps them, never on the node's disk. Where mounting is not allowed (an agent
/// without CAP_SYS_ADMIN), the directory stays on disk, private to the agent above it.
fn ensure_memory_backed(dir: &Path) -> Result<(), String> {
    use nix::mount::{MsFlags, mount};
    create_volume_dir(dir)?;
    if is_mount_point(dir) {
        return Ok(());
    }
    let flags = MsFlags::MS_NOSUID | MsFlags::MS_NODEV | MsFlags::MS_NOEXEC;
    if let Err(e) = mount(
        Some("tmpfs"),
        dir,
        Some("tmpfs"),
        flags,
        Some("mode=0755,size=64m"),
    ) {
        tracing::debug!(dir = %dir.display(), error = %e, "secret volume stays on disk: tmpfs not mountable");
    }
    Ok(())
}

/// `emptyDir.medium: Memory`: a tmpfs (of `sizeLimit` bytes when given), as kubelet mounts it;
/// where mounting is not allowed it stays a directory on disk.
fn mount_memory_empty_dir(dir: &Path, size: Option<u64>) {
    use nix::mount::{MsFlags, mount};
    if is_mount_point(dir) {
        return;
    }
    let options = match size {
        Some(bytes) => format!("mode=0777,size={bytes}"),
        None => "mode=0777".to_owned(),
    };
    let flags = MsFlags::MS_NOSUID | MsFlags::MS_NODEV;
    if let Err(e) = mount(
        Some("tmpfs"),
        dir,
        Some("tmpfs"),
        flags,
        Some(options.as_str()),
    ) {
        tracing::debug!(dir = %dir.display(), error = %e, "memory emptyDir stays on disk: tmpfs not mountable");
    }
}

/// Whether `dir` is the root of a mounted filesystem (its device differs from its parent's).
fn is_mount_point(dir: &Path) -> bool {
    use std::os::unix::fs::MetadataExt;
    let (Ok(here), Some(Ok(parent))) =
        (std::fs::metadata(dir), dir.parent().map(std::fs::metadata))
    else {
        return false;
    };
    here.dev() != parent.dev()
}

/// Unmounts every filesystem mounted under `dir` (the tmpfs of a pod's Secret volumes), deepest
/// first, so the pod directory can be removed. Read from `/proc/self/mounts`.
pub fn unmount_under(dir: &Path) {
    let mounts = std::fs::read_to_string("/proc/self/mounts").unwrap_or_default();
    let mut points: Vec<PathBuf> = mounts
        .lines()
        .filter_map(|l| l.split_whitespace().nth(1))
        // /proc/self/mounts escapes spaces and the like as octal; pod paths have none.
        .map(PathBuf::from)
        .filter(|p| p.starts_with(dir) && p != dir)
        .collect();
    points.sort_by_key(|p| std::cmp::Reverse(p.components().count()));
    for p in points {
        if let Err(e) = nix::mount::umount2(&p, nix::mount::MntFlags::MNT_DETACH) {
            tracing::warn!(path = %p.display(), error = %e, "could not unmount a pod volume");
        }
    }
}

/// Empties `dir` but keeps it (it may be a mount point).
fn clear_dir(dir: &Path) {
    for entry in std::fs::read_dir(dir).into_iter().flatten().flatten() {
        let path = entry.path();
        let _ = if path.is_dir() && !path.is_symlink() {
            std::fs::remove_dir_all(&path)
        } else {
            std::fs::remove_file(&path)
        };
    }
}

/// Writes `data` as files under `dir` (all keys, or `items`), with `mode` unless an item
/// sets its own. The directory is emptied first so removed keys disappear.
fn write_files(
    dir: &Path,
    data: &BTreeMap<String, Vec<u8>>,
    items: Option<&Vec<KeyToPath>>,
    mode: i32,
    what: &str,
) -> Result<(), String> {
    clear_dir(dir);
    create_volume_dir(dir)?;
    let files: Vec<(String, &Vec<u8>, i32)> = match items {
        Some(items) => {
            let mut out = Vec::new();
            for item in items {
                let value = data.get(&item.key).ok_or_else(|| {
                    format!("configmap references non-existent config key: {}", item.key)
                        .replace("configmap", what)
                })?;
                out.push((item.path.clone(), value, item.mode.unwrap_or(mode)));
            }
            out
        }
        None => data.iter().map(|(k, v)| (k.clone(), v, mode)).collect(),
    };
    for (rel, bytes, mode) in files {
        if rel.split('/').any(|p| p == "..") {
            return Err(format!("invalid path {rel:?}"));
        }
        let path = dir.join(&rel);
        if let Some(parent) = path.parent() {
            create_volume_dir(parent)?;
        }
        std::fs::write(&path, bytes).map_err(|e| e.to_string())?;
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(mode as u32 & 0o777))
            .map_err(|e| e.to_string())?;
    }
    Ok(())
}

/// Fetched ConfigMaps and Secrets, with binary data, and ServiceAccount tokens, for volumes.
#[derive(Default, Debug)]
pub struct VolumeData {
    pub config_maps: HashMap<String, BTreeMap<String, Vec<u8>>>,
    pub secrets: HashMap<String, BTreeMap<String, Vec<u8>>>,
    /// `<volume>/<path>` → the token of a projected `serviceAccountToken` source.
    pub tokens: HashMap<String, Vec<u8>>,
}

/// Where a projected volume's files live under the pod's directory.
pub fn projected_dir(pod_dir: &Path, volume: &str) -> PathBuf {
    pod_dir
        .join("volumes")
        .join("kubernetes.io~projected")
        .join(volume)
}

/// Replaces one file of a volume atomically (a new file renamed over the old), so a reader
/// never sees half a token.
pub fn replace_file(dir: &Path, rel: &str, bytes: &[u8], mode: i32) -> Result<(), String> {
    if rel.split('/').any(|p| p == "..") {
        return Err(format!("invalid path {rel:?}"));
    }
    let path = dir.join(rel);
    let tmp = dir.join(format!(".{}.tmp", rel.replace('/', "_")));
    std::fs::write(&tmp, bytes).map_err(|e| e.to_string())?;
    std::fs::set_permissions(&tmp, std::fs::Permissions::from_mode(mode as u32 & 0o777))
        .map_err(|e| e.to_string())?;
    std::fs::rename(&tmp, &path).map_err(|e| e.to_string())
}

/// A file of a downward API volume: its path, contents and mode (if the item sets one).
type DownwardFile = (String, Vec<u8>, Option<i32>);

/// The files of a `downwardAPI` volume or projected source.
fn downward_files(
    pod: &Pod,
    items: &[k8s_openapi::api::core::v1::DownwardAPIVolumeFile],
    env_sources: &Sources,
) -> Result<Vec<DownwardFile>, (String, bool)> {
    let mut out = Vec::new();
    for item in items {
        let value = if let Some(f) = &item.field_ref {
            field_value(pod, &f.field_path, env_sources).map_err(|e| (e.to_string(), false))?
        } else if let Some(r) = &item.resource_field_ref {
            let container = pod
                .spec
                .as_ref()
                .and_then(|s| {
                    s.containers
                        .iter()
                        .find(|c| Some(&c.name) == r.container_name.as_ref())
                })
                .cloned()
                .unwrap_or_default();
            resource_value(
                &container,
                &r.resource,
                r.divisor.as_ref().map(|q| q.0.as_str()),
                env_sources,
            )
            .map_err(|e| (e.to_string(), false))?
        } else {
            continue;
        };
        out.push((item.path.clone(), value.into_bytes(), item.mode));
    }
    Ok(out)
}

/// A projected volume: every source's files in one directory, as kubelet writes them.
fn projected_files(
    pod: &Pod,
    v: &Volume,
    data: &VolumeData,
    env_sources: &Sources,
) -> Result<BTreeMap<String, Vec<u8>>, (String, bool)> {
    let mut files = BTreeMap::new();
    let Some(projected) = &v.projected else {
        return Ok(files);
    };
    let pick = |source: &BTreeMap<String, Vec<u8>>,
                items: Option<&Vec<KeyToPath>>,
                what: &str,
                files: &mut BTreeMap<String, Vec<u8>>|
     -> Result<(), (String, bool)> {
        match items {
            Some(items) => {
                for item in items {
                    let value = source.get(&item.key).ok_or_else(|| {
                        (
                            format!("{what} references non-existent config key: {}", item.key),
                            true,
                        )
                    })?;
                    files.insert(item.path.clone(), value.clone());
                }
            }
            None => files.extend(source.iter().map(|(k, v)| (k.clone(), v.clone()))),
        }
        Ok(())
    };
    for source in projected.sources.iter().flatten() {
        if let Some(token) = &source.service_account_token {
            let key = format!("{}/{}", v.name, token.path);
            let bytes = data.tokens.get(&key).ok_or_else(|| {
                (
                    format!("failed to fetch token: no token for path {:?}", token.path),
                    true,
                )
            })?;
            files.insert(token.path.clone(), bytes.clone());
        }
        if let Some(c) = &source.config_map {
            match data.config_maps.get(&c.name) {
                Some(d) => pick(d, c.items.as_ref(), "configmap", &mut files)?,
                None if c.optional == Some(true) => {}
                None => return Err((format!("configmap \"{}\" not found", c.name), true)),
            }
        }
        if let Some(sec) = &source.secret {
            match data.secrets.get(&sec.name) {
                Some(d) => pick(d, sec.items.as_ref(), "secret", &mut files)?,
                None if sec.optional == Some(true) => {}
                None => return Err((format!("secret \"{}\" not found", sec.name), true)),
            }
        }
        if let Some(d) = &source.downward_api {
            for (path, bytes, _) in
                downward_files(pod, d.items.as_deref().unwrap_or_default(), env_sources)?
            {
                files.insert(path, bytes);
            }
        }
    }
    Ok(files)
}

/// Sets up every volume of `pod` under `pod_dir`; returns volume name → host path.
pub fn set_up(
    pod: &Pod,
    pod_dir: &Path,
    data: &VolumeData,
    env_sources: &Sources,
) -> Result<HashMap<String, PathBuf>, VolumeError> {
    let mut paths = HashMap::new();
    for v in pod.spec.iter().flat_map(|s| s.volumes.iter().flatten()) {
        let path =
            set_up_one(pod, v, pod_dir, data, env_sources).map_err(|(message, retryable)| {
                VolumeError {
                    volume: v.name.clone(),
                    message,
                    retryable,
                }
            })?;
        paths.insert(v.name.clone(), path);
    }
    Ok(paths)
}

fn set_up_one(
    pod: &Pod,
    v: &Volume,
    pod_dir: &Path,
    data: &VolumeData,
    env_sources: &Sources,
) -> Result<PathBuf, (String, bool)> {
    let dir_for = |plugin: &str| pod_dir.join("volumes").join(plugin).join(&v.name);
    let retry = |m: String| (m, true);
    if let Some(h) = &v.host_path {
        let path = PathBuf::from(&h.path);
        check_host_path(&path, h.type_.as_deref().unwrap_or("")).map_err(retry)?;
        return Ok(path);
    }
    if let Some(empty) = &v.empty_dir {
        let dir = dir_for("kubernetes.io~empty-dir");
        std::fs::create_dir_all(&dir).map_err(|e| retry(e.to_string()))?;
        if empty.medium.as_deref() == Some("Memory") {
            let size = empty
                .size_limit
                .as_ref()
                .and_then(|q| everynode_api::quantity::Quantity::parse(&q.0).ok())
                .map(|q| u64::try_from(q.units_ceil()).unwrap_or(u64::MAX));
            mount_memory_empty_dir(&dir, size);
        }
        let _ = std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(0o777));
        return Ok(dir);
    }
    if let Some(c) = &v.config_map {
        let dir = dir_for("kubernetes.io~configmap");
        match data.config_maps.get(&c.name) {
            Some(d) => write_files(
                &dir,
                d,
                c.items.as_ref(),
                c.default_mode.unwrap_or(0o644),
                "configmap",
            )
            .map_err(retry)?,
            None if c.optional == Some(true) => {
                std::fs::create_dir_all(&dir).map_err(|e| retry(e.to_string()))?;
            }
            None => return Err(retry(format!("configmap \"{}\" not found", c.name))),
        }
        return Ok(dir);
    }
    if let Some(s) = &v.secret {
        let dir = dir_for("kubernetes.io~secret");
        ensure_memory_backed(&dir).map_err(retry)?;
        let name = s.secret_name.clone().unwrap_or_default();
        match data.secrets.get(&name) {
            Some(d) => write_files(
                &dir,
                d,
                s.items.as_ref(),
                s.default_mode.unwrap_or(0o644),
                "secret",
            )
            .map_err(retry)?,
            None if s.optional == Some(true) => {
                std::fs::create_dir_all(&dir).map_err(|e| retry(e.to_string()))?;
            }
            None => return Err(retry(format!("secret \"{name}\" not found"))),
        }
        return Ok(dir);
    }
    if let Some(d) = &v.downward_api {
        let dir = dir_for("kubernetes.io~downward-api");
        let mut files = BTreeMap::new();
        let mut items = Vec::new();
        for (path, bytes, mode) in
            downward_files(pod, d.items.as_deref().unwrap_or_default(), env_sources)?
        {
            files.insert(path.clone(), bytes);
            items.push(KeyToPath {
                key: path.clone(),
                path,
                mode,
            });
        }
        write_files(
            &dir,
            &files,
            Some(&items),
            d.default_mode.unwrap_or(0o644),
            "downwardAPI",
        )
        .map_err(retry)?;
        return Ok(dir);
    }
    if let Some(pvc) = &v.persistent_volume_claim {
        return Err((
            format!(
                "persistentVolumeClaim volumes (claim \"{}\") are not supported by everynode yet; use a hostPath volume",
                pvc.claim_name
            ),
            false,
        ));
    }
    if let Some(projected) = &v.projected {
        // Memory-backed: it holds a token, as kubelet keeps it off disk.
        let dir = dir_for("kubernetes.io~projected");
        ensure_memory_backed(&dir).map_err(retry)?;
        let files = projected_files(pod, v, data, env_sources)?;
        write_files(
            &dir,
            &files,
            None,
            projected.default_mode.unwrap_or(0o644),
            "projected",
        )
        .map_err(retry)?;
        return Ok(dir);
    }
    Err((
        "this volume type is not supported by everynode yet".into(),
        false,
    ))
}

/// The bind mounts for one container: each `volumeMount` at its `mountPath` (with `subPath`).
pub fn mounts_for(
    container: &Container,
    volumes: &HashMap<String, PathBuf>,
    pod: &Pod,
) -> Vec<Mount> {
    let always_read_only = |name: &str| {
        pod.spec
            .iter()
            .flat_map(|s| s.volumes.iter().flatten())
            .find(|v| v.name == name)
            .is_some_and(|v| {
                v.config_map.is_some()
                    || v.secret.is_some()
                    || v.downward_api.is_some()
                    || v.projected.is_some()
            })
    };
    container
        .volume_mounts
        .iter()
        .flatten()
        .filter_map(|m| {
            let base = volumes.get(&m.name)?;
            let source = match m.sub_path.as_deref().filter(|s| !s.is_empty()) {
                Some(sub) => {
                    let p = base.join(sub);
                    if !p.exists() {
                        let _ = std::fs::create_dir_all(&p);
                    }
                    p
                }
                None => base.clone(),
            };
            Some(Mount {
                source,
                target: PathBuf::from(&m.mount_path),
                read_only: m.read_only == Some(true) || always_read_only(&m.name),
                propagation: crate::runtime::Propagation::of(m.mount_propagation.as_deref()),
            })
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn host_path_type_checks_use_upstream_wording() {
        let dir = tempfile::tempdir().expect("tempdir");
        let missing = dir.path().join("nope");
        assert_eq!(
            check_host_path(&missing, "Directory"),
            Err(format!(
                "hostPath type check failed: {} is not a directory",
                missing.display()
            ))
        );
        assert_eq!(
            check_host_path(&missing, "File"),
            Err(format!(
                "hostPath type check failed: {} is not a file",
                missing.display()
            ))
        );
        assert_eq!(check_host_path(&missing, "DirectoryOrCreate"), Ok(()));
        assert!(missing.is_dir());
        assert_eq!(
            check_host_path(&missing, "FileOrCreate"),
            Err(format!(
                "hostPath type check failed: {} is not a file",
                missing.display()
            ))
        );
        let file = dir.path().join("f");
        assert_eq!(check_host_path(&file, "FileOrCreate"), Ok(()));
        assert!(file.is_file());
        assert!(check_host_path(&file, "Socket").is_err());
        assert!(check_host_path(&file, "CharDevice").is_err());
        assert_eq!(
            check_host_path(Path::new("/dev/null"), "CharDevice"),
            Ok(())
        );
        assert_eq!(check_host_path(&file, ""), Ok(()));
    }

    #[test]
    fn config_map_volume_writes_items_with_modes() {
        let dir = tempfile::tempdir().expect("tempdir");
        let pod: Pod = serde_json::from_value(serde_json::json!({
            "metadata": {"name": "p", "namespace": "ns", "labels": {"a": "b"}},
            "spec": {"containers": [{"name": "c", "volumeMounts": [
                {"name": "cfg", "mountPath": "/etc/cfg"},
                {"name": "info", "mountPath": "/etc/info"}
            ]}], "volumes": [
                {"name": "cfg", "configMap": {"name": "settings", "items": [{"key": "a", "path": "sub/a.txt", "mode": 256}]}},
                {"name": "info", "downwardAPI": {"items": [{"path": "labels", "fieldRef": {"fieldPath": "metadata.labels"}}]}},
                {"name": "missing", "secret": {"secretName": "nope", "optional": true}}
            ]}
        }))
        .expect("pod");
        let mut data = VolumeData::default();
        data.config_maps.insert(
            "settings".into(),
            BTreeMap::from([
                ("a".to_owned(), b"1".to_vec()),
                ("b".to_owned(), b"2".to_vec()),
            ]),
        );
        let paths = set_up(&pod, dir.path(), &data, &Sources::default()).expect("set up");
        let cfg = &paths["cfg"];
        assert_eq!(
            std::fs::read_to_string(cfg.join("sub/a.txt")).expect("a"),
            "1"
        );
        assert!(!cfg.join("b").exists());
        let mode = std::fs::metadata(cfg.join("sub/a.txt"))
            .expect("meta")
            .permissions()
            .mode();
        assert_eq!(mode & 0o777, 0o400);
        assert_eq!(
            std::fs::read_to_string(paths["info"].join("labels")).expect("labels"),
            "a=\"b\""
        );
        let mounts = mounts_for(
            &pod.spec.as_ref().expect("spec").containers[0],
            &paths,
            &pod,
        );
        assert_eq!(mounts.len(), 2);
        assert!(mounts.iter().all(|m| m.read_only));
        // The optional Secret's directory is memory-backed where this may mount (root).
        let secret = &paths["missing"];
        if nix::unistd::geteuid().is_root() {
            assert!(is_mount_point(secret), "a tmpfs at {}", secret.display());
        }
        unmount_under(dir.path());
        assert!(!is_mount_point(secret));
    }

    #[test]
    fn missing_config_map_names_the_volume() {
        let dir = tempfile::tempdir().expect("tempdir");
        let pod: Pod = serde_json::from_value(serde_json::json!({
            "metadata": {"name": "p"},
            "spec": {"containers": [], "volumes": [{"name": "cfg", "configMap": {"name": "settings"}}]}
        }))
        .expect("pod");
        let err = set_up(
            &pod,
            dir.path(),
            &VolumeData::default(),
            &Sources::default(),
        )
        .expect_err("missing");
        assert_eq!(
            err.to_string(),
            "MountVolume.SetUp failed for volume \"cfg\" : configmap \"settings\" not found"
        );
        assert!(err.retryable);
    }
}
