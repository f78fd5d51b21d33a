//! One pod's lifecycle as typed states, in the manner of krustlet:
//! `Admission → Sandbox → Volumes → InitContainers → Running → Terminating → Terminated`.
//! Each state is a function that returns the next one; a deletion (or the pod vanishing) moves
//! any state to `Terminating`.

use super::admission;
use super::container::{Outcome, grace_seconds, supervise};
use super::status::{ContainerView, PodView, Previous, State, pod_status};
use super::{Kind, PodCtx};
use crate::env::{self, Sources};
use crate::runtime::Launch;
use crate::volumes::{self, VolumeData};
use everynode_api::quantity::Quantity;
use k8s_openapi::api::core::v1::{ConfigMap, Container, Pod, Secret};
use kube::api::{Api, DeleteParams, Patch, PatchParams, Preconditions};
use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::watch;

/// The lifecycle states. Data a state needs from its predecessor travels inside it.
enum PodState {
    Admission,
    /// The runtime's sandbox (network namespace, pod IP); the pod IP is known after it.
    Sandbox,
    Volumes,
    InitContainers {
        launches: Launches,
    },
    Running {
        launches: Launches,
    },
    /// The pod is finished (terminal phase, or rejected) and waits to be deleted.
    Finished,
    Terminating,
    Terminated,
}

/// Per-container launch specs, resolved once volumes and env are ready.
struct Launches {
    init: Vec<Launch>,
    regular: Vec<Launch>,
}

/// What ends a state early.
enum Interrupt {
    Delete,
}

fn deleting(pod: &Option<Arc<Pod>>) -> bool {
    pod.as_ref()
        .is_none_or(|p| p.metadata.deletion_timestamp.is_some())
}

/// Resolves when the pod is being deleted or is gone.
async fn deletion(rx: &mut watch::Receiver<Option<Arc<Pod>>>) -> Interrupt {
    loop {
        if deleting(&rx.borrow_and_update()) {
            return Interrupt::Delete;
        }
        if rx.changed().await.is_err() {
            return Interrupt::Delete;
        }
    }
}

/// Starts the view from what the pod already reports, so an agent restart continues counters
/// (restartCount, start times) rather than resetting them.
fn initial_view(pod: &Pod, host_ip: &str, pod_ip: &str, now: jiff::Timestamp) -> PodView {
    let spec = pod.spec.clone().unwrap_or_default();
    let status = pod.status.clone().unwrap_or_default();
    let recover =
        |c: &Container, statuses: &Option<Vec<k8s_openapi::api::core::v1::ContainerStatus>>| {
            let mut view = ContainerView::new(&c.name, c.image.as_deref().unwrap_or(""));
            if let Some(s) = statuses.iter().flatten().find(|s| s.name == c.name) {
                view.restart_count = s.restart_count;
                view.previous = s.container_id.clone().map(|container_id| Previous {
                    container_id,
                    started: s.started == Some(true),
                    ready: s.ready,
                });
                if let Some(started_at) = s
                    .state
                    .as_ref()
                    .and_then(|st| st.running.as_ref())
                    .and_then(|r| r.started_at.as_ref())
                {
                    view.state = State::Running {
                        started_at: started_at.0,
                    };
                    // Until the agent learns otherwise (the container adopted, or found gone
                    // and started again), the pod goes on saying what it said: a status
                    // written before that would flap a Ready pod to not ready.
                    view.container_id = s.container_id.clone();
                    view.started = s.started == Some(true);
                    view.ready = s.ready;
                }
            }
            view
        };
    let reported = |kind: &str| {
        status
            .conditions
            .iter()
            .flatten()
            .any(|c| c.type_ == kind && c.status == "True")
    };
    PodView {
        rejected: None,
        // As the containers: what the pod reported stands until the sandbox is seen to.
        sandbox_ready: reported("PodReadyToStartContainers"),
        initialized: spec.init_containers.as_ref().is_none_or(Vec::is_empty)
            || status
                .conditions
                .iter()
                .flatten()
                .any(|c| c.type_ == "Initialized" && c.status == "True"),
        init_containers: spec
            .init_containers
            .iter()
            .flatten()
            .map(|c| recover(c, &status.init_container_statuses))
            .collect(),
        containers: spec
            .containers
            .iter()
            .map(|c| recover(c, &status.container_statuses))
            .collect(),
        start_time: status.start_time.map(|t| t.0).or(Some(now)),
        host_ip: host_ip.to_owned(),
        pod_ip: pod_ip.to_owned(),
    }
}

/// Runs the pod until it is terminated and its API object deleted.
pub async fn run(ctx: Arc<PodCtx>) {
    let Some(pod) = ctx.current() else {
        return;
    };
    // Until the sandbox says otherwise, a pod reports the IP it already had (an agent restart).
    let pod_ip = pod
        .status
        .as_ref()
        .and_then(|s| s.pod_ip.clone())
        .unwrap_or_default();
    ctx.update_view(|v| *v = initial_view(&pod, &ctx.node.host_ip, &pod_ip, ctx.node.clock.now()));
    let writer = tokio::spawn(status_writer(Arc::clone(&ctx)));
    let mut state = if everynode_api::scheduling::is_terminated(&pod) {
        PodState::Finished
    } else {
        PodState::Admission
    };
    loop {
        state = match state {
            PodState::Admission => admission_state(&ctx).await,
            PodState::Sandbox => sandbox_state(&ctx).await,
            PodState::Volumes => volumes_state(&ctx).await,
            PodState::InitContainers { launches } => init_state(&ctx, launches).await,
            PodState::Running { launches } => running_state(&ctx, launches).await,
            PodState::Finished => {
                let mut rx = ctx.pod.clone();
                let Interrupt::Delete = deletion(&mut rx).await;
                PodState::Terminated
            }
            PodState::Terminating => PodState::Terminated,
            PodState::Terminated => break,
        };
    }
    writer.abort();
    finish(&ctx).await;
}

/// Asks the runtime for the pod's sandbox, retrying with backoff (2 s doubling to 2 min) and a
/// `FailedCreatePodSandBox` event while it fails; the pod IP is the sandbox's, or the node's
/// when the pod shares the node's network.
async fn sandbox_state(ctx: &Arc<PodCtx>) -> PodState {
    let mut delay = Duration::from_secs(2);
    let mut last_error = String::new();
    let mut rx = ctx.pod.clone();
    loop {
        let Some(pod) = ctx.current() else {
            return PodState::Terminating;
        };
        let (host_resolv, node_hosts) = &*crate::dns::NODE_FILES;
        let cluster_dns = ctx
            .node
            .cluster_dns
            .as_deref()
            .map(|server| (server, crate::dns::CLUSTER_DOMAIN));
        let (resolv, warning) = crate::dns::resolv_for(&pod, host_resolv, cluster_dns);
        let spec = crate::runtime::SandboxSpec {
            pod: Arc::clone(&pod),
            log_directory: ctx.node.log_dir(&pod),
            pod_dir: ctx.node.pod_dir(&ctx.uid),
            dns: resolv,
            node_hosts: node_hosts.clone(),
            cluster_domain: crate::dns::CLUSTER_DOMAIN.to_owned(),
        };
        match ctx.node.runtime.ensure_sandbox(&spec).await {
            Ok(ip) => {
                // Only where the runtime wrote the pod a resolv.conf of its own.
                let own_network = ip.is_some() && ctx.node.runtime.runs_workloads();
                if let Some(warning) = warning.filter(|_| own_network) {
                    ctx.node
                        .events
                        .pod(&pod, None, true, "MissingClusterDNS", &warning)
                        .await;
                }
                let ip = ip.unwrap_or_else(|| ctx.node.host_ip.clone());
                ctx.update_view(|v| v.pod_ip = ip);
                return PodState::Volumes;
            }
            Err(e) => {
                ctx.update_view(|v| v.sandbox_ready = false);
                let message = e.to_string();
                if message != last_error {
                    ctx.node
                        .events
                        .pod(&pod, None, true, e.reason(), &message)
                        .await;
                    last_error = message;
                }
                tokio::select! {
                    _ = tokio::time::sleep(delay) => {}
                    Interrupt::Delete = deletion(&mut rx) => return PodState::Terminating,
                }
                delay = (delay * 2).min(Duration::from_secs(120));
            }
        }
    }
}

async fn admission_state(ctx: &Arc<PodCtx>) -> PodState {
    let Some(pod) = ctx.current() else {
        return PodState::Terminated;
    };
    if deleting(&Some(Arc::clone(&pod))) {
        return PodState::Terminated;
    }
    let node = ctx.node.node.borrow().clone();
    let result = {
        let Ok(mut admitted) = ctx.node.admitted.lock() else {
            return PodState::Terminated;
        };
        let others: Vec<&Pod> = admitted
            .iter()
            .filter(|(uid, _)| **uid != ctx.uid)
            .map(|(_, p)| p.as_ref())
            .collect();
        let result = admission::admit(&pod, &node, &others);
        if result.is_ok() {
            admitted.insert(ctx.uid.clone(), Arc::clone(&pod));
        }
        result
    };
    match result {
        Ok(()) => PodState::Sandbox,
        Err((reason, message)) => {
            ctx.node
                .events
                .pod(&pod, None, true, &reason, &message)
                .await;
            ctx.update_view(|v| v.rejected = Some((reason, message)));
            PodState::Finished
        }
    }
}

async fn fetch<K>(api: Api<K>, names: &[String]) -> HashMap<String, K>
where
    K: kube::Resource + Clone + serde::de::DeserializeOwned + std::fmt::Debug,
{
    let mut out = HashMap::new();
    for name in names {
        if let Ok(Some(obj)) = api.get_opt(name).await {
            out.insert(name.clone(), obj);
        }
    }
    out
}

/// Key → text, per ConfigMap or Secret name.
type TextData = HashMap<String, BTreeMap<String, String>>;

/// ConfigMap/Secret data as text (env) and bytes (volumes).
fn decode(
    cms: &HashMap<String, ConfigMap>,
    secrets: &HashMap<String, Secret>,
) -> (VolumeData, TextData, TextData) {
    let mut data = VolumeData::default();
    let mut cm_text = HashMap::new();
    let mut secret_text = HashMap::new();
    for (name, cm) in cms {
        let mut bytes: BTreeMap<String, Vec<u8>> = cm
            .data
            .clone()
            .unwrap_or_default()
            .into_iter()
            .map(|(k, v)| (k, v.into_bytes()))
            .collect();
        for (k, v) in cm.binary_data.clone().unwrap_or_default() {
            bytes.insert(k, v.0);
        }
        cm_text.insert(name.clone(), cm.data.clone().unwrap_or_default());
        data.config_maps.insert(name.clone(), bytes);
    }
    for (name, s) in secrets {
        let mut bytes: BTreeMap<String, Vec<u8>> = s
            .data
            .clone()
            .unwrap_or_default()
            .into_iter()
            .map(|(k, v)| (k, v.0))
            .collect();
        for (k, v) in s.string_data.clone().unwrap_or_default() {
            bytes.insert(k, v.into_bytes());
        }
        secret_text.insert(
            name.clone(),
            bytes
                .iter()
                .map(|(k, v)| (k.clone(), String::from_utf8_lossy(v).into_owned()))
                .collect(),
        );
        data.secrets.insert(name.clone(), bytes);
    }
    (data, cm_text, secret_text)
}

fn launch_for(
    ctx: &PodCtx,
    pod: &Pod,
    c: &Container,
    env: Vec<(String, String)>,
    volume_paths: &HashMap<String, std::path::PathBuf>,
    registry_auth: &[crate::runtime::RegistryAuth],
) -> Launch {
    let limits = c
        .resources
        .as_ref()
        .and_then(|r| r.limits.clone())
        .unwrap_or_default();
    let limit = |name: &str| limits.get(name).and_then(|q| Quantity::parse(&q.0).ok());
    let security = c.security_context.clone().unwrap_or_default();
    let pod_security = pod
        .spec
        .as_ref()
        .and_then(|s| s.security_context.clone())
        .unwrap_or_default();
    let mut full_env = vec![
        (
            "PATH".to_owned(),
            "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin".to_owned(),
        ),
        (
            "HOSTNAME".to_owned(),
            pod.metadata.name.clone().unwrap_or_default(),
        ),
    ];
    for (k, v) in env {
        full_env.retain(|(name, _)| *name != k);
        full_env.push((k, v));
    }
    let (command, args) = env::command_and_args(c, &full_env);
    let request = |name: &str| {
        c.resources
            .as_ref()
            .and_then(|r| r.requests.as_ref())
            .and_then(|r| r.get(name))
            .and_then(|q| Quantity::parse(&q.0).ok())
    };
    let capabilities = security.capabilities.clone().unwrap_or_default();
    let privileged = security.privileged == Some(true);
    let seccomp_type = security
        .seccomp_profile
        .as_ref()
        .or(pod_security.seccomp_profile.as_ref())
        .map(|p| p.type_.clone());
    Launch {
        key: format!("{}/{}", ctx.uid, c.name),
        pod_uid: ctx.uid.clone(),
        name: c.name.clone(),
        pod_ref: format!(
            "{}_{}({})",
            pod.metadata.name.as_deref().unwrap_or(""),
            pod.metadata.namespace.as_deref().unwrap_or(""),
            ctx.uid
        ),
        pull_policy: crate::runtime::PullPolicy::of(c.image_pull_policy.as_deref()),
        registry_auth: registry_auth.to_vec(),
        security: crate::runtime::Security {
            privileged,
            capabilities_add: capabilities.add.unwrap_or_default(),
            capabilities_drop: capabilities.drop.unwrap_or_default(),
            read_only_root_filesystem: security.read_only_root_filesystem == Some(true),
            no_new_privileges: security.allow_privilege_escalation == Some(false),
            // kubelet leaves containers unconfined unless a profile is asked for.
            seccomp_unconfined: seccomp_type.as_deref() != Some("RuntimeDefault"),
            unmasked_proc: security.proc_mount.as_deref() == Some("Unmasked"),
            run_as_non_root: security
                .run_as_non_root
                .or(pod_security.run_as_non_root)
                .unwrap_or(false),
            supplemental_groups: pod_security.supplemental_groups.clone().unwrap_or_default(),
        },
        image: c.image.clone().unwrap_or_default(),
        command,
        args,
        env: full_env,
        working_dir: c
            .working_dir
            .clone()
            .filter(|d| !d.is_empty())
            .map(Into::into),
        mounts: {
            let mut mounts = volumes::mounts_for(c, volume_paths, pod);
            mounts.extend(termination_log_mount(ctx, c));
            mounts
        },
        run_as_user: security
            .run_as_user
            .or(pod_security.run_as_user)
            .map(|u| u as u32),
        run_as_group: security
            .run_as_group
            .or(pod_security.run_as_group)
            .map(|g| g as u32),
        memory_limit_bytes: limit("memory").map(|q| q.units_ceil() as i64),
        cpu_limit_millis: limit("cpu").map(|q| q.milli_ceil() as i64),
        cpu_request_millis: request("cpu")
            .or_else(|| limit("cpu"))
            .map(|q| q.milli_ceil() as i64),
        stdin: c.stdin == Some(true),
        stdin_once: c.stdin_once == Some(true),
        tty: c.tty == Some(true),
        log_path: Default::default(),
        log_max_bytes: ctx.node.log_max_bytes,
        log_max_files: ctx.node.log_max_files,
    }
}

/// The container's `terminationMessagePath` (default `/dev/termination-log`), bound to an empty
/// host file of its own that `container.rs` reads when it exits, as kubelet does. Only where
/// the runtime runs processes and may mount (as root); elsewhere the message comes from the
/// log alone (`FallbackToLogsOnError`).
fn termination_log_mount(ctx: &PodCtx, c: &Container) -> Option<crate::runtime::Mount> {
    if !ctx.node.runtime.runs_workloads() || !nix::unistd::geteuid().is_root() {
        return None;
    }
    let file = super::container::termination_log(ctx, &c.name);
    let dir = file.parent()?;
    std::fs::create_dir_all(dir).ok()?;
    std::fs::write(&file, b"").ok()?;
    // Writable by the container whatever user it runs as; the directories above stay private.
    std::fs::set_permissions(&file, std::os::unix::fs::PermissionsExt::from_mode(0o666)).ok()?;
    let target = c
        .termination_message_path
        .clone()
        .filter(|p| !p.is_empty())
        .unwrap_or_else(|| "/dev/termination-log".to_owned());
    Some(crate::runtime::Mount {
        source: file,
        target: target.into(),
        read_only: false,
        propagation: crate::runtime::Propagation::None,
    })
}

/// Sets up volumes and resolves every container's environment, retrying with backoff
/// (2 s doubling to 2 min) while something they need is missing.
async fn volumes_state(ctx: &Arc<PodCtx>) -> PodState {
    let mut delay = Duration::from_secs(2);
    let mut last_error = String::new();
    let mut rx = ctx.pod.clone();
    loop {
        let Some(pod) = ctx.current() else {
            return PodState::Terminating;
        };
        let ns = crate::pod::namespace_of(&pod);
        // A hollow runtime mounts nothing, so it reads only what the environment names.
        let (mut cms, mut secrets) = if ctx.node.runtime.runs_workloads() {
            volumes::referenced_sources(&pod)
        } else {
            Default::default()
        };
        let (env_cms, env_secrets) = env::referenced_sources(&pod);
        cms.extend(env_cms);
        secrets.extend(env_secrets);
        let pull_secrets: Vec<String> = pod
            .spec
            .iter()
            .flat_map(|s| s.image_pull_secrets.iter().flatten())
            .map(|r| r.name.clone())
            .filter(|n| !n.is_empty())
            .collect();
        secrets.extend(pull_secrets.iter().cloned());
        cms.sort();
        cms.dedup();
        secrets.sort();
        secrets.dedup();
        let cm_objs = fetch(
            Api::<ConfigMap>::namespaced(ctx.node.client.clone(), &ns),
            &cms,
        )
        .await;
        let secret_objs = fetch(
            Api::<Secret>::namespaced(ctx.node.client.clone(), &ns),
            &secrets,
        )
        .await;
        let (mut data, cm_text, secret_text) = decode(&cm_objs, &secret_objs);
        let token_sources = crate::tokens::sources(&pod);
        let mut token_error = None;
        if ctx.node.runtime.runs_workloads() {
            for source in &token_sources {
                match crate::tokens::request(&ctx.node.client, &pod, source).await {
                    Ok(token) => {
                        data.tokens.insert(source.key(), token);
                    }
                    Err(e) => token_error = Some(e),
                }
            }
        }
        // kubelet pulls with what it can read, and without a secret that is missing.
        let registry_auth: Vec<crate::runtime::RegistryAuth> = pull_secrets
            .iter()
            .filter_map(|name| secret_objs.get(name))
            .flat_map(crate::runtime::image::auth_from_secret)
            .collect();
        let node = ctx.node.node.borrow().clone();
        let sources = Sources {
            config_maps: cm_text,
            secrets: secret_text,
            node_name: ctx.node.node_name.clone(),
            host_ip: ctx.node.host_ip.clone(),
            pod_ip: ctx.pod_ip(),
            node_allocatable: node
                .status
                .as_ref()
                .and_then(|s| s.allocatable.clone())
                .unwrap_or_default()
                .into_iter()
                .filter_map(|(k, v)| Quantity::parse(&v.0).ok().map(|q| (k, q)))
                .collect(),
        };
        let result = if let Some(e) = token_error {
            Err(("FailedMount", e, true))
        } else if ctx.node.runtime.runs_workloads() {
            volumes::set_up(&pod, &ctx.node.pod_dir(&ctx.uid), &data, &sources)
                .map_err(|e| ("FailedMount", e.to_string(), e.retryable))
        } else {
            Ok(HashMap::new())
        };
        let outcome = result.and_then(|paths| {
            let spec = pod.spec.clone().unwrap_or_default();
            let build = |list: &[Container]| -> Result<Vec<Launch>, (&'static str, String, bool)> {
                list.iter()
                    .map(|c| {
                        env::container_env(&pod, c, &sources)
                            .map(|e| launch_for(ctx, &pod, c, e, &paths, &registry_auth))
                            .map_err(|e| ("Failed", format!("Error: {e}"), true))
                    })
                    .collect()
            };
            Ok(Launches {
                init: build(spec.init_containers.as_deref().unwrap_or_default())?,
                regular: build(&spec.containers)?,
            })
        });
        match outcome {
            Ok(launches) => {
                let started = ctx
                    .tokens_refreshing
                    .swap(true, std::sync::atomic::Ordering::SeqCst);
                if !token_sources.is_empty() && !started && ctx.node.runtime.runs_workloads() {
                    tokio::spawn(crate::tokens::refresh(
                        ctx.node.client.clone(),
                        ctx.node.pod_dir(&ctx.uid),
                        ctx.pod.clone(),
                        token_sources.clone(),
                    ));
                }
                ctx.update_view(|v| v.sandbox_ready = true);
                return PodState::InitContainers { launches };
            }
            Err((reason, message, retryable)) => {
                if message != last_error {
                    ctx.node
                        .events
                        .pod(&pod, None, true, reason, &message)
                        .await;
                    if reason == "Failed" {
                        let text = message.trim_start_matches("Error: ").to_owned();
                        ctx.update_view(|v| {
                            for c in v.containers.iter_mut().chain(v.init_containers.iter_mut()) {
                                c.state = State::Waiting {
                                    reason: "CreateContainerConfigError".into(),
                                    message: Some(text.clone()),
                                };
                            }
                        });
                    }
                    last_error = message;
                }
                if !retryable {
                    let Interrupt::Delete = deletion(&mut rx).await;
                    return PodState::Terminating;
                }
                tokio::select! {
                    _ = tokio::time::sleep(delay) => {}
                    Interrupt::Delete = deletion(&mut rx) => return PodState::Terminating,
                }
                delay = (delay * 2).min(Duration::from_secs(120));
            }
        }
    }
}

async fn init_state(ctx: &Arc<PodCtx>, launches: Launches) -> PodState {
    let initialized = ctx.view.lock().map(|v| v.initialized).unwrap_or(false);
    if initialized {
        return PodState::Running { launches };
    }
    let Some(pod) = ctx.current() else {
        return PodState::Terminating;
    };
    let specs = pod
        .spec
        .as_ref()
        .and_then(|s| s.init_containers.clone())
        .unwrap_or_default();
    let (stop_tx, stop_rx) = watch::channel(None);
    let mut rx = ctx.pod.clone();
    for (index, (spec, launch)) in specs
        .into_iter()
        .zip(launches.init.iter().cloned())
        .enumerate()
    {
        let run = supervise(
            Arc::clone(ctx),
            Kind::Init,
            index,
            spec,
            launch,
            stop_rx.clone(),
        );
        tokio::pin!(run);
        let outcome = tokio::select! {
            o = &mut run => o,
            Interrupt::Delete = deletion(&mut rx) => {
                let _ = stop_tx.send(Some(stop_grace(ctx, &pod)));
                run.await;
                return PodState::Terminating;
            }
        };
        match outcome {
            Outcome::Succeeded => {}
            Outcome::Failed => return PodState::Finished,
            Outcome::Stopped => return PodState::Terminating,
        }
    }
    ctx.update_view(|v| v.initialized = true);
    PodState::Running { launches }
}

/// The grace period a pod is stopped with: its own while it is in the API; its own capped by
/// the shutdown grace period when the agent is stopping (beyond.md §5); 2 s when it was
/// force-deleted.
fn stop_grace(ctx: &PodCtx, last: &Pod) -> i64 {
    match (ctx.current(), ctx.node.shutdown_grace.get()) {
        (Some(p), _) => grace_seconds(&p),
        (None, Some(cap)) => grace_seconds(last).min(cap.as_secs() as i64),
        (None, None) => 2,
    }
}

async fn running_state(ctx: &Arc<PodCtx>, launches: Launches) -> PodState {
    let Some(pod) = ctx.current() else {
        return PodState::Terminating;
    };
    let specs = pod.spec.clone().unwrap_or_default().containers;
    let (stop_tx, stop_rx) = watch::channel(None);
    let mut set = tokio::task::JoinSet::new();
    for (index, (spec, launch)) in specs.into_iter().zip(launches.regular).enumerate() {
        set.spawn(supervise(
            Arc::clone(ctx),
            Kind::Regular,
            index,
            spec,
            launch,
            stop_rx.clone(),
        ));
    }
    let mut rx = ctx.pod.clone();
    loop {
        tokio::select! {
            next = set.join_next() => {
                if next.is_none() {
                    // Every container is done for good (restartPolicy Never / OnFailure).
                    return PodState::Finished;
                }
            }
            Interrupt::Delete = deletion(&mut rx) => {
                let _ = stop_tx.send(Some(stop_grace(ctx, &pod)));
                while set.join_next().await.is_some() {}
                return PodState::Terminating;
            }
        }
    }
}

/// How often a pod's reported status is checked against the API's copy, as kubelet's status
/// manager reconciles (`syncBatch`, every 10 s).
const RECONCILE_EVERY: Duration = Duration::from_secs(10);

/// Reports the view whenever it changes, and, checked every `RECONCILE_EVERY`, whenever the
/// API's copy stops agreeing with it: the node lifecycle controller marks pods NotReady while
/// their node is unreachable, and once the agent reaches the server again it must say they are
/// Ready. Not on every change of the API's copy: that copy lags the agent's own writes, and
/// answering each stale echo kept the agent posting.
async fn status_writer(ctx: Arc<PodCtx>) {
    let mut last = None;
    loop {
        sync_status(&ctx, &mut last).await;
        tokio::select! {
            () = ctx.changed.notified() => {}
            () = tokio::time::sleep(RECONCILE_EVERY) => {}
        }
    }
}

/// Whether the API's copy of the pod says what `status` says, where others write too: the
/// phase and each condition's status. (Not a full comparison: the server's rendering of times
/// and empty fields need not match ours, and comparing them would post forever.)
fn api_agrees(pod: &Pod, status: &serde_json::Value) -> bool {
    let Some(api) = pod.status.as_ref() else {
        return false;
    };
    if status["phase"].as_str() != api.phase.as_deref() {
        return false;
    }
    let api_conditions = api.conditions.as_deref().unwrap_or_default();
    status["conditions"]
        .as_array()
        .into_iter()
        .flatten()
        .all(|c| {
            api_conditions.iter().any(|a| {
                Some(a.type_.as_str()) == c["type"].as_str()
                    && Some(a.status.as_str()) == c["status"].as_str()
            })
        })
}

async fn sync_status(ctx: &PodCtx, last: &mut Option<serde_json::Value>) {
    let Some(pod) = ctx.current() else {
        return;
    };
    let view = match ctx.view.lock() {
        Ok(v) => v.clone(),
        Err(_) => return,
    };
    let status = pod_status(&pod, &view, ctx.node.clock.now());
    let Ok(value) = serde_json::to_value(&status) else {
        return;
    };
    if last.as_ref() == Some(&value) && api_agrees(&pod, &value) {
        return;
    }
    let ns = crate::pod::namespace_of(&pod);
    let name = pod.metadata.name.clone().unwrap_or_default();
    let api: Api<Pod> = Api::namespaced(ctx.node.client.clone(), &ns);
    let patch = serde_json::json!({"status": value});
    match api
        .patch_status(&name, &PatchParams::default(), &Patch::Merge(&patch))
        .await
    {
        Ok(_) => *last = Some(value),
        Err(kube::Error::Api(e)) if e.code == 404 => *last = Some(value),
        Err(e) => {
            tracing::warn!(pod = %name, error = %e, "could not report pod status; retrying");
            tokio::time::sleep(Duration::from_secs(1)).await;
            ctx.changed.notify_one();
        }
    }
}

/// Containers are stopped: report the final status, delete the API object when it is being
/// deleted (as kubelet, with grace 0 and the uid as precondition), and clean up.
async fn finish(ctx: &Arc<PodCtx>) {
    let pod = ctx.current();
    if let Some(pod) = &pod {
        let mut last = None;
        sync_status(ctx, &mut last).await;
        if pod.metadata.deletion_timestamp.is_some() {
            let ns = crate::pod::namespace_of(pod);
            let api: Api<Pod> = Api::namespaced(ctx.node.client.clone(), &ns);
            let dp = DeleteParams {
                grace_period_seconds: Some(0),
                preconditions: Some(Preconditions {
                    uid: Some(ctx.uid.clone()),
                    resource_version: None,
                }),
                ..Default::default()
            };
            if let Err(e) = api
                .delete(pod.metadata.name.as_deref().unwrap_or(""), &dp)
                .await
                && !matches!(&e, kube::Error::Api(s) if s.code == 404 || s.code == 409)
            {
                tracing::warn!(error = %e, "could not delete a terminated pod");
            }
        }
    }
    if let Ok(mut admitted) = ctx.node.admitted.lock() {
        admitted.remove(&ctx.uid);
    }
    ctx.node.events.forget(&ctx.uid);
    // The containers are stopped, so the in-memory volumes (Secrets, tokens) go now, also when
    // the agent is only shutting down: nothing of them stays on the node, and a restarted agent
    // sets them up again.
    if ctx.node.runtime.runs_workloads() {
        crate::volumes::unmount_under(&ctx.node.pod_dir(&ctx.uid));
    }
    if pod
        .as_ref()
        .is_none_or(|p| p.metadata.deletion_timestamp.is_some())
    {
        ctx.node.runtime.remove_sandbox(&ctx.uid).await;
        let _ = std::fs::remove_dir_all(ctx.node.pod_dir(&ctx.uid));
        if let Some(p) = &pod {
            let _ = std::fs::remove_dir_all(ctx.node.log_dir(p));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn initial_view_recovers_restart_counts() {
        let pod: Pod = serde_json::from_value(serde_json::json!({
            "metadata": {"name": "p", "uid": "u"},
            "spec": {"containers": [{"name": "c", "image": "busybox"}]},
            "status": {"containerStatuses": [{"name": "c", "image": "busybox", "imageID": "", "ready": true,
                "restartCount": 4, "state": {"running": {"startedAt": "2026-11-25T10:00:00Z"}}}]}
        }))
        .expect("pod");
        let v = initial_view(&pod, "10.0.0.1", "10.0.0.1", jiff::Timestamp::UNIX_EPOCH);
        assert_eq!(v.containers[0].restart_count, 4);
        assert!(matches!(v.containers[0].state, State::Running { .. }));
        assert!(v.initialized);
    }

    /// The node lifecycle controller's NotReady, seen on the API copy, disagrees with what the
    /// agent reports; times and other fields do not matter.
    #[test]
    fn api_agreement_looks_at_phase_and_condition_statuses() {
        let ours = serde_json::json!({"phase": "Running", "conditions": [
            {"type": "Ready", "status": "True", "lastTransitionTime": "2026-11-29T10:00:00Z"}]});
        let pod = |phase: &str, ready: &str| -> Pod {
            serde_json::from_value(serde_json::json!({"status": {"phase": phase, "conditions": [
                {"type": "Ready", "status": ready, "lastTransitionTime": "2026-11-29T10:00:05Z"}]}}))
            .expect("pod")
        };
        assert!(api_agrees(&pod("Running", "True"), &ours));
        assert!(!api_agrees(&pod("Running", "False"), &ours));
        assert!(!api_agrees(&pod("Pending", "True"), &ours));
        assert!(!api_agrees(&Pod::default(), &ours));
    }
}
