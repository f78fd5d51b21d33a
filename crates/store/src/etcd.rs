//! The etcd backend: the same `Store` on a real etcd cluster (`etcd-client`), so several API
//! servers can share one cluster's state. Keys are laid out as upstream's API server lays them
//! (`/registry/daemonsets/default/fluentd`, `/registry/minions/node-1`; `keys`), values are the
//! objects' JSON, and revisions are etcd's own: a write's revision is the cluster's revision
//! after it, and `resourceVersion` is the object's mod revision.
//!
//! Compare-and-swap is an etcd transaction comparing the key's mod revision (or, for a create,
//! that it does not exist). A watch is etcd's, from the revision after the one asked for, with
//! each change's previous value; a watch from before etcd's compacted revision ends with
//! `Compacted`. Every 5 minutes the store compacts etcd to the revision it saw 5 minutes
//! earlier, as upstream's API server does, so history stays bounded but a client that is a
//! little behind can resume.

use crate::{Error, Event, EventKind, KeyValue, ListPage, Result, Revision, Store, WatchStream};
use bytes::Bytes;
use etcd_client::{
    Client, Compare, CompareOp, ConnectOptions, DeleteOptions, GetOptions, PutOptions, Txn, TxnOp,
    TxnOpResponse, WatchOptions,
};
use std::future::Future;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::time::Duration;

/// How often etcd is compacted, and how much history is kept: upstream's default interval.
const COMPACTION_INTERVAL: Duration = Duration::from_secs(5 * 60);
/// Keys read per request when listing everything (the watch cache's first list): pages at one
/// revision keep each response small whatever the cluster's size.
const LIST_PAGE: i64 = 500;
/// Pauses before each round over the members after the first (about 3 s in all).
const RETRY_PAUSES: [Duration; 5] = [
    Duration::ZERO,
    Duration::from_millis(100),
    Duration::from_millis(300),
    Duration::from_millis(900),
    Duration::from_millis(1800),
];
/// gRPC messages may be larger than tonic's 4 MiB default: a page of large objects.
const MAX_MESSAGE: usize = 256 * 1024 * 1024;

/// TLS towards etcd: the CA that signed its serving certificates, and the client certificate
/// and key etcd asks for (`--etcd-cafile`, `--etcd-certfile`, `--etcd-keyfile`).
#[derive(Clone, Debug, Default)]
pub struct EtcdTls {
    pub ca_pem: Option<Vec<u8>>,
    pub cert_pem: Option<Vec<u8>>,
    pub key_pem: Option<Vec<u8>>,
}

pub struct EtcdStore {
    /// A client per member that answered at start; `current` is the one in use.
    clients: Vec<(String, Client)>,
    current: AtomicUsize,
    /// The highest revision seen in any answer or event.
    revision: Arc<AtomicU64>,
    size: Arc<AtomicU64>,
    tasks: Vec<tokio::task::JoinHandle<()>>,
    /// Bumped to ask every watch this store serves to request a progress report.
    progress: Arc<tokio::sync::watch::Sender<u64>>,
}

impl Drop for EtcdStore {
    fn drop(&mut self) {
        for task in &self.tasks {
            task.abort();
        }
    }
}

fn io(e: etcd_client::Error) -> Error {
    Error::Io(format!("etcd: {e}"))
}

/// Whether the member could not serve the request: for a read, any unavailability; for a
/// write, only a connection that was never made (so the write was never sent).
fn unreachable(e: &etcd_client::Error, idempotent: bool) -> bool {
    match e {
        etcd_client::Error::TransportError(_) | etcd_client::Error::IoError(_) => idempotent,
        etcd_client::Error::GRpcStatus(status) => {
            status.code() == tonic::Code::Unavailable
                && (idempotent || status.message().contains("connect"))
        }
        _ => false,
    }
}

fn key_value(kv: &etcd_client::KeyValue) -> Option<KeyValue> {
    Some(KeyValue {
        key: keys::from_etcd(kv.key())?,
        value: Bytes::copy_from_slice(kv.value()),
        create_revision: kv.create_revision() as Revision,
        mod_revision: kv.mod_revision() as Revision,
    })
}

/// The end of the range of keys that start with `prefix` (etcd's "prefix end").
fn prefix_end(prefix: &[u8]) -> Vec<u8> {
    let mut end = prefix.to_vec();
    while let Some(last) = end.pop() {
        if last < 0xff {
            end.push(last + 1);
            return end;
        }
    }
    vec![0]
}

impl EtcdStore {
    /// Connects to the cluster at `endpoints` (`http://127.0.0.1:2379` or `https://...`): a
    /// client per member, so a member that goes away is skipped rather than retried.
    pub async fn connect(endpoints: &[String], tls: Option<EtcdTls>) -> Result<Self> {
        let mut options = ConnectOptions::new()
            .with_connect_timeout(Duration::from_secs(5))
            .with_keep_alive(Duration::from_secs(10), Duration::from_secs(5));
        if let Some(tls) = tls {
            let mut config = etcd_client::TlsOptions::new();
            if let Some(ca) = tls.ca_pem {
                config = config.ca_certificate(etcd_client::Certificate::from_pem(ca));
            }
            if let (Some(cert), Some(key)) = (tls.cert_pem, tls.key_pem) {
                config = config.identity(etcd_client::Identity::from_pem(cert, key));
            }
            options = options.with_tls(config);
        }
        let mut clients = Vec::new();
        let mut last_error = None;
        for endpoint in endpoints {
            match Client::connect([endpoint], Some(options.clone())).await {
                Ok(client) => clients.push((endpoint.clone(), client)),
                Err(e) => {
                    tracing::warn!(%endpoint, error = %e, "etcd member unreachable; using the others");
                    last_error = Some(e);
                }
            }
        }
        if clients.is_empty() {
            return Err(last_error.map_or_else(|| Error::Io("no etcd endpoint given".into()), io));
        }
        let mut store = EtcdStore {
            clients,
            current: AtomicUsize::new(0),
            revision: Arc::new(AtomicU64::new(0)),
            size: Arc::new(AtomicU64::new(0)),
            tasks: Vec::new(),
            progress: Arc::new(tokio::sync::watch::channel(0).0),
        };
        store.latest_revision().await?;
        let clients: Vec<Client> = store.clients.iter().map(|(_, c)| c.clone()).collect();
        store.tasks = vec![
            tokio::spawn(compact_periodically(
                clients.clone(),
                Arc::clone(&store.revision),
            )),
            tokio::spawn(measure_size(clients, Arc::clone(&store.size))),
        ];
        Ok(store)
    }

    /// Runs `op` with the member in use, moving to the next one when a member cannot be
    /// reached. Reads (`idempotent`) move on whenever the member is unavailable; writes only
    /// when the connection was not made, so a write is never sent twice.
    async fn run<T, F, Fut>(&self, idempotent: bool, op: F) -> Result<T>
    where
        F: Fn(Client) -> Fut,
        Fut: Future<Output = std::result::Result<T, etcd_client::Error>>,
    {
        let count = self.clients.len();
        let first = self.current.load(Ordering::Relaxed) % count;
        let mut last = None;
        // Every member, then again after a pause: a cluster electing a leader (a member lost,
        // a busy machine) answers "unavailable" everywhere for a moment.
        for (round, pause) in RETRY_PAUSES.iter().enumerate() {
            if round > 0 {
                tokio::time::sleep(*pause).await;
            }
            for attempt in 0..count {
                let index = (first + attempt) % count;
                let (endpoint, client) = &self.clients[index];
                match op(client.clone()).await {
                    Ok(answer) => {
                        if index != first {
                            self.current.store(index, Ordering::Relaxed);
                            tracing::warn!(%endpoint, "moved to another etcd member");
                        }
                        return Ok(answer);
                    }
                    Err(e) if unreachable(&e, idempotent) => {
                        tracing::debug!(%endpoint, error = %e, "etcd member unavailable");
                        last = Some(e);
                    }
                    Err(e) => return Err(io(e)),
                }
            }
        }
        Err(last.map_or_else(|| Error::Io("no etcd member".into()), io))
    }

    /// The member in use.
    fn client(&self) -> Client {
        let index = self.current.load(Ordering::Relaxed) % self.clients.len();
        self.clients[index].1.clone()
    }

    /// A range read allowed answers larger than gRPC's default 4 MiB.
    async fn range(
        &self,
        key: Vec<u8>,
        options: Option<GetOptions>,
    ) -> Result<etcd_client::GetResponse> {
        self.run(true, |client| {
            let (key, options) = (key.clone(), options.clone());
            async move {
                client
                    .kv_client()
                    .max_decoding_message_size(MAX_MESSAGE)
                    .get(key, options)
                    .await
            }
        })
        .await
    }

    async fn txn(&self, txn: Txn) -> Result<etcd_client::TxnResponse> {
        self.run(false, |mut client| {
            let txn = txn.clone();
            async move { client.txn(txn).await }
        })
        .await
    }

    fn saw(&self, header: Option<&etcd_client::ResponseHeader>) -> Revision {
        let revision = header.map_or(0, |h| h.revision()) as Revision;
        self.revision.fetch_max(revision, Ordering::SeqCst);
        revision
    }

    /// A value kept outside the cluster's objects (`key` is etcd's own, not under
    /// `/registry/`): the servers' shared credentials.
    pub async fn get_raw(&self, key: &str) -> Result<Option<Vec<u8>>> {
        let answer = self.range(key.as_bytes().to_vec(), None).await?;
        Ok(answer.kvs().first().map(|kv| kv.value().to_vec()))
    }

    /// Stores `value` at `key` (etcd's own) unless something is there already; whether it did.
    pub async fn create_raw(&self, key: &str, value: Vec<u8>) -> Result<bool> {
        let txn = Txn::new()
            .when([Compare::create_revision(key, CompareOp::Equal, 0)])
            .and_then([TxnOp::put(key, value, None)]);
        let answer = self.txn(txn).await?;
        Ok(answer.succeeded())
    }

    /// Everything under `prefix`, in pages at one revision.
    async fn list_all(&self, prefix: &str) -> Result<ListPage> {
        let start = keys::to_etcd(prefix).into_bytes();
        let end = prefix_end(&start);
        let mut items = Vec::new();
        let mut from = start;
        let mut revision = 0;
        loop {
            let mut options = GetOptions::new()
                .with_range(end.clone())
                .with_limit(LIST_PAGE);
            if revision > 0 {
                options = options.with_revision(revision);
            }
            let answer = self.range(from.clone(), Some(options)).await?;
            if revision == 0 {
                revision = answer.header().map_or(0, |h| h.revision());
            }
            items.extend(answer.kvs().iter().filter_map(key_value));
            match answer.kvs().last() {
                Some(last) if answer.more() => {
                    from = last.key().to_vec();
                    from.push(0);
                }
                _ => break,
            }
        }
        self.revision
            .fetch_max(revision as Revision, Ordering::SeqCst);
        Ok(ListPage {
            items,
            revision: revision as Revision,
            more: false,
        })
    }
}

/// Compacts etcd to the revision seen one interval earlier, every interval, through the first
/// member that answers.
async fn compact_periodically(clients: Vec<Client>, revision: Arc<AtomicU64>) {
    let mut previous: Option<Revision> = None;
    loop {
        tokio::time::sleep(COMPACTION_INTERVAL).await;
        if let Some(target) = previous.filter(|r| *r > 0) {
            for mut client in clients.iter().cloned() {
                match client.compact(target as i64, None).await {
                    Ok(_) => tracing::debug!(revision = target, "etcd compacted"),
                    // Another server compacted as far or further: nothing to do.
                    Err(e) if e.to_string().contains("compacted") => {}
                    Err(e) => {
                        tracing::warn!(error = %e, "etcd compaction failed on a member");
                        continue;
                    }
                }
                break;
            }
        }
        previous = Some(revision.load(Ordering::SeqCst));
    }
}

/// Reads the database's size for the metrics every 30 s, from the first member that answers.
async fn measure_size(clients: Vec<Client>, size: Arc<AtomicU64>) {
    loop {
        for mut client in clients.iter().cloned() {
            if let Ok(status) = client.status().await {
                size.store(status.db_size().max(0) as u64, Ordering::Relaxed);
                break;
            }
        }
        tokio::time::sleep(Duration::from_secs(30)).await;
    }
}

/// The response a failed compare reads back: the key's current value, if any.
fn current_of(answer: &etcd_client::TxnResponse) -> Option<KeyValue> {
    answer.op_responses().into_iter().find_map(|r| match r {
        TxnOpResponse::Get(get) => get.kvs().first().and_then(key_value),
        _ => None,
    })
}

#[async_trait::async_trait]
impl Store for EtcdStore {
    async fn get(&self, key: &str) -> Result<Option<KeyValue>> {
        let answer = self.range(keys::to_etcd(key).into_bytes(), None).await?;
        self.saw(answer.header());
        Ok(answer.kvs().first().and_then(key_value))
    }

    async fn list(
        &self,
        prefix: &str,
        start_after: Option<&str>,
        limit: usize,
    ) -> Result<ListPage> {
        if limit == 0 && start_after.is_none() {
            return self.list_all(prefix).await;
        }
        let start = keys::to_etcd(prefix).into_bytes();
        let end = prefix_end(&start);
        let from = match start_after {
            Some(after) => {
                let mut key = keys::to_etcd(after).into_bytes();
                key.push(0);
                key
            }
            None => start,
        };
        let mut options = GetOptions::new().with_range(end);
        if limit > 0 {
            options = options.with_limit(limit as i64);
        }
        let answer = self.range(from, Some(options)).await?;
        let revision = self.saw(answer.header());
        Ok(ListPage {
            items: answer.kvs().iter().filter_map(key_value).collect(),
            revision,
            more: answer.more(),
        })
    }

    async fn create(&self, key: &str, value: Bytes) -> Result<KeyValue> {
        let etcd_key = keys::to_etcd(key);
        let txn = Txn::new()
            .when([Compare::create_revision(
                etcd_key.clone(),
                CompareOp::Equal,
                0,
            )])
            .and_then([TxnOp::put(etcd_key.clone(), value.to_vec(), None)])
            .or_else([TxnOp::get(etcd_key, None)]);
        let answer = self.txn(txn).await?;
        let revision = self.saw(answer.header());
        if !answer.succeeded() {
            return Err(Error::AlreadyExists(key.to_owned()));
        }
        Ok(KeyValue {
            key: key.to_owned(),
            value,
            create_revision: revision,
            mod_revision: revision,
        })
    }

    async fn update(&self, key: &str, value: Bytes, expected: Revision) -> Result<KeyValue> {
        let etcd_key = keys::to_etcd(key);
        let txn = Txn::new()
            .when([Compare::mod_revision(
                etcd_key.clone(),
                CompareOp::Equal,
                expected as i64,
            )])
            .and_then([TxnOp::put(
                etcd_key.clone(),
                value.to_vec(),
                Some(PutOptions::new().with_prev_key()),
            )])
            .or_else([TxnOp::get(etcd_key, None)]);
        let answer = self.txn(txn).await?;
        let revision = self.saw(answer.header());
        if !answer.succeeded() {
            return match current_of(&answer) {
                Some(current) => Err(Error::Conflict {
                    key: key.to_owned(),
                    expected,
                    current: Box::new(current),
                }),
                None => Err(Error::NotFound(key.to_owned())),
            };
        }
        let create_revision = answer
            .op_responses()
            .into_iter()
            .find_map(|r| match r {
                TxnOpResponse::Put(put) => put.prev_key().map(|p| p.create_revision() as Revision),
                _ => None,
            })
            .unwrap_or(revision);
        Ok(KeyValue {
            key: key.to_owned(),
            value,
            create_revision,
            mod_revision: revision,
        })
    }

    async fn delete(&self, key: &str, expected: Option<Revision>) -> Result<KeyValue> {
        let etcd_key = keys::to_etcd(key);
        let compare = match expected {
            Some(revision) => {
                Compare::mod_revision(etcd_key.clone(), CompareOp::Equal, revision as i64)
            }
            None => Compare::create_revision(etcd_key.clone(), CompareOp::Greater, 0),
        };
        let txn = Txn::new()
            .when([compare])
            .and_then([TxnOp::delete(
                etcd_key.clone(),
                Some(DeleteOptions::new().with_prev_key()),
            )])
            .or_else([TxnOp::get(etcd_key, None)]);
        let answer = self.txn(txn).await?;
        let revision = self.saw(answer.header());
        if !answer.succeeded() {
            return match (current_of(&answer), expected) {
                (Some(current), Some(expected)) => Err(Error::Conflict {
                    key: key.to_owned(),
                    expected,
                    current: Box::new(current),
                }),
                _ => Err(Error::NotFound(key.to_owned())),
            };
        }
        let removed = answer.op_responses().into_iter().find_map(|r| match r {
            TxnOpResponse::Delete(delete) => delete.prev_kvs().first().and_then(key_value),
            _ => None,
        });
        let removed = removed.ok_or_else(|| Error::NotFound(key.to_owned()))?;
        Ok(KeyValue {
            mod_revision: revision,
            ..removed
        })
    }

    fn watch(&self, prefix: &str, after: Revision) -> Result<WatchStream> {
        let client = self.client();
        let start = keys::to_etcd(prefix).into_bytes();
        let seen = Arc::clone(&self.revision);
        let progress = self.progress.subscribe();
        Ok(Box::pin(watch::follow(
            client, start, after, seen, progress,
        )))
    }

    fn current_revision(&self) -> Revision {
        self.revision.load(Ordering::SeqCst)
    }

    async fn latest_revision(&self) -> Result<Revision> {
        // Every watch is asked to report its progress: a write outside the watched keys raises
        // etcd's revision with no event, and the progress report is what brings a follower
        // (the watch cache) up to it.
        self.progress.send_modify(|n| *n = n.wrapping_add(1));
        // A count-only read of one key: etcd answers with its current revision.
        let answer = self
            .range(
                keys::ROOT.as_bytes().to_vec(),
                Some(GetOptions::new().with_count_only()),
            )
            .await?;
        Ok(self.saw(answer.header()).max(self.current_revision()))
    }

    async fn compact(&self, revision: Revision) -> Result<()> {
        // etcd keeps the compacted revision itself; the trait forgets it too.
        let compacted = self
            .run(false, |mut client| async move {
                client.compact(revision as i64 + 1, None).await
            })
            .await;
        match compacted {
            Ok(_) => Ok(()),
            Err(e) if e.to_string().contains("compacted") => Ok(()),
            Err(e) => Err(e),
        }
    }

    fn size_bytes(&self) -> Option<u64> {
        Some(self.size.load(Ordering::Relaxed)).filter(|s| *s > 0)
    }
}

/// Following an etcd watch as a stream of `Event`s.
mod watch {
    use super::*;
    use futures::Stream;

    struct State {
        client: Client,
        start: Vec<u8>,
        after: Revision,
        seen: Arc<AtomicU64>,
        progress: tokio::sync::watch::Receiver<u64>,
        requests: Option<etcd_client::WatchRequestSender>,
        stream: Option<etcd_client::WatchResponseStream>,
        pending: std::collections::VecDeque<Arc<Event>>,
        done: bool,
    }

    fn event_of(e: &etcd_client::Event) -> Option<Event> {
        let kv = e.kv()?;
        let prev = e.prev_kv().and_then(key_value);
        match e.event_type() {
            etcd_client::EventType::Put => {
                let kv = key_value(kv)?;
                let kind = if kv.create_revision == kv.mod_revision {
                    EventKind::Created
                } else {
                    EventKind::Updated
                };
                Some(Event { kind, kv, prev })
            }
            etcd_client::EventType::Delete => {
                // The last value, at the deletion's revision (etcd's own carries no value).
                let last = prev.clone().or_else(|| key_value(kv))?;
                Some(Event {
                    kind: EventKind::Deleted,
                    kv: KeyValue {
                        mod_revision: kv.mod_revision() as Revision,
                        ..last
                    },
                    prev,
                })
            }
        }
    }

    pub fn follow(
        client: Client,
        start: Vec<u8>,
        after: Revision,
        seen: Arc<AtomicU64>,
        progress: tokio::sync::watch::Receiver<u64>,
    ) -> impl Stream<Item = Result<Arc<Event>>> + Send + 'static {
        let state = State {
            client,
            start,
            after,
            seen,
            progress,
            requests: None,
            stream: None,
            pending: Default::default(),
            done: false,
        };
        futures::stream::unfold(state, |mut state| async move {
            loop {
                if let Some(event) = state.pending.pop_front() {
                    return Some((Ok(event), state));
                }
                if state.done {
                    return None;
                }
                if state.stream.is_none() {
                    let options = WatchOptions::new()
                        .with_range(prefix_end(&state.start))
                        .with_start_revision(state.after as i64 + 1)
                        .with_prev_key()
                        .with_progress_notify();
                    match state.client.watch(state.start.clone(), Some(options)).await {
                        Ok(stream) => {
                            let (requests, responses) = stream.split();
                            state.requests = Some(requests);
                            state.stream = Some(responses);
                        }
                        Err(e) => {
                            state.done = true;
                            return Some((Err(io(e)), state));
                        }
                    }
                }
                let stream = state.stream.as_mut()?;
                let next = tokio::select! {
                    next = stream.message() => next,
                    changed = state.progress.changed() => {
                        if changed.is_err() {
                            // The store is gone: so is its watch.
                            return None;
                        }
                        if let Some(requests) = state.requests.as_mut() {
                            let _ = requests.request_progress().await;
                        }
                        continue;
                    }
                };
                let message = match next {
                    Ok(Some(message)) => message,
                    Ok(None) => return None,
                    Err(e) => {
                        state.done = true;
                        return Some((Err(io(e)), state));
                    }
                };
                if message.compact_revision() > 0 {
                    state.done = true;
                    // etcd names the first revision it still has; the trait, the last one
                    // a watch may start after.
                    return Some((
                        Err(Error::Compacted {
                            requested: state.after,
                            oldest: message.compact_revision() as Revision - 1,
                        }),
                        state,
                    ));
                }
                if message.canceled() {
                    state.done = true;
                    let reason = message.cancel_reason().to_owned();
                    return Some((
                        Err(Error::Io(format!("etcd watch canceled: {reason}"))),
                        state,
                    ));
                }
                if let Some(header) = message.header() {
                    state
                        .seen
                        .fetch_max(header.revision() as Revision, Ordering::SeqCst);
                }
                // A progress report: no events, and everything up to its revision sent.
                if message.events().is_empty()
                    && !message.created()
                    && let Some(header) = message.header()
                    && header.revision() as Revision > state.after
                {
                    state.after = header.revision() as Revision;
                    state.pending.push_back(Arc::new(Event {
                        kind: EventKind::Progress,
                        kv: KeyValue {
                            key: String::new(),
                            value: Bytes::new(),
                            create_revision: 0,
                            mod_revision: state.after,
                        },
                        prev: None,
                    }));
                }
                for event in message.events() {
                    if let Some(event) = event_of(event) {
                        state.after = event.revision();
                        state.pending.push_back(Arc::new(event));
                    }
                }
            }
        })
    }
}

/// Where upstream's API server keeps each resource in etcd, and back. Built-in resources drop
/// their group (`/registry/daemonsets/...`, `/registry/leases/...`); nodes are `minions`,
/// Services and Endpoints live under `services/specs` and `services/endpoints`. Resources of
/// other groups keep theirs (`/registry/<group>/<resource>/...`). `events.k8s.io` Events are
/// stored as the core Events they are (`/registry/events/...`), as upstream stores them; their
/// old prefix maps only so that leftovers from earlier versions can be found and moved.
pub mod keys {
    pub const ROOT: &str = "/registry/";

    /// Groups whose resources upstream stores without the group.
    const UNGROUPED: &[&str] = &[
        "core",
        "apps",
        "coordination.k8s.io",
        "scheduling.k8s.io",
        "rbac.authorization.k8s.io",
        "certificates.k8s.io",
        "discovery.k8s.io",
    ];

    /// The group of each ungrouped resource that is not core.
    const GROUP_OF: &[(&str, &str)] = &[
        ("daemonsets", "apps"),
        ("controllerrevisions", "apps"),
        ("deployments", "apps"),
        ("replicasets", "apps"),
        ("statefulsets", "apps"),
        ("leases", "coordination.k8s.io"),
        ("priorityclasses", "scheduling.k8s.io"),
        ("roles", "rbac.authorization.k8s.io"),
        ("rolebindings", "rbac.authorization.k8s.io"),
        ("clusterroles", "rbac.authorization.k8s.io"),
        ("clusterrolebindings", "rbac.authorization.k8s.io"),
        ("certificatesigningrequests", "certificates.k8s.io"),
        ("endpointslices", "discovery.k8s.io"),
    ];

    /// Resources upstream keeps under another name.
    const RENAMED: &[(&str, &str)] = &[
        ("core/nodes/", "minions/"),
        ("core/services/", "services/specs/"),
        ("core/endpoints/", "services/endpoints/"),
    ];

    /// everynode's key (`/<group or core>/<resource>/...`, or a prefix of one) in etcd.
    pub fn to_etcd(key: &str) -> String {
        let rest = key.trim_start_matches('/');
        if rest.is_empty() {
            return ROOT.to_owned();
        }
        for (ours, theirs) in RENAMED {
            if let Some(tail) = rest.strip_prefix(ours) {
                return format!("{ROOT}{theirs}{tail}");
            }
        }
        match rest.split_once('/') {
            Some((group, tail)) if UNGROUPED.contains(&group) => format!("{ROOT}{tail}"),
            _ => format!("{ROOT}{rest}"),
        }
    }

    /// The everynode key of an etcd key; `None` for keys outside `/registry/` or not valid
    /// UTF-8.
    pub fn from_etcd(key: &[u8]) -> Option<String> {
        let rest = std::str::from_utf8(key).ok()?.strip_prefix(ROOT)?;
        for (ours, theirs) in RENAMED {
            if let Some(tail) = rest.strip_prefix(theirs) {
                return Some(format!("/{ours}{tail}"));
            }
        }
        let (first, _) = rest.split_once('/')?;
        if first.contains('.') {
            return Some(format!("/{rest}"));
        }
        let group = GROUP_OF
            .iter()
            .find(|(resource, _)| *resource == first)
            .map_or("core", |(_, group)| group);
        Some(format!("/{group}/{rest}"))
    }

    #[cfg(test)]
    mod tests {
        use super::*;

        #[test]
        fn keys_are_upstreams_and_map_back() {
            for (ours, theirs) in [
                (
                    "/apps/daemonsets/default/fluentd",
                    "/registry/daemonsets/default/fluentd",
                ),
                ("/core/pods/kube-system/p", "/registry/pods/kube-system/p"),
                ("/core/nodes/node-1", "/registry/minions/node-1"),
                (
                    "/core/services/default/s",
                    "/registry/services/specs/default/s",
                ),
                (
                    "/core/endpoints/default/s",
                    "/registry/services/endpoints/default/s",
                ),
                (
                    "/coordination.k8s.io/leases/kube-node-lease/n",
                    "/registry/leases/kube-node-lease/n",
                ),
                (
                    "/rbac.authorization.k8s.io/clusterroles/view",
                    "/registry/clusterroles/view",
                ),
                (
                    "/events.k8s.io/events/default/e",
                    "/registry/events.k8s.io/events/default/e",
                ),
                ("/core/events/default/e", "/registry/events/default/e"),
                (
                    "/discovery.k8s.io/endpointslices/default/web-x",
                    "/registry/endpointslices/default/web-x",
                ),
            ] {
                assert_eq!(to_etcd(ours), theirs);
                assert_eq!(from_etcd(theirs.as_bytes()).as_deref(), Some(ours));
            }
            assert_eq!(to_etcd("/"), "/registry/");
            assert_eq!(to_etcd("/apps/daemonsets/"), "/registry/daemonsets/");
            assert_eq!(to_etcd("/core/nodes/"), "/registry/minions/");
            assert_eq!(from_etcd(b"/other/x"), None);
        }
    }
}
