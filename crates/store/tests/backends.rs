//! The backend-agnostic store suite: every backend runs every case.

use bytes::Bytes;
use everynode_store::{EmbeddedStore, Error, EtcdStore, EventKind, MemoryStore, Store};
use futures::StreamExt;
use std::sync::Arc;

fn b(s: &str) -> Bytes {
    Bytes::copy_from_slice(s.as_bytes())
}

async fn crud_and_cas(store: Arc<dyn Store>) {
    // Revisions are counted from the store's own start (etcd's first write is revision 2).
    let base = store.current_revision();
    let a = store
        .create("/core/pods/ns/a", b("1"))
        .await
        .expect("create");
    assert_eq!((a.create_revision, a.mod_revision), (base + 1, base + 1));
    assert!(matches!(
        store.create("/core/pods/ns/a", b("x")).await,
        Err(Error::AlreadyExists(_))
    ));
    let got = store
        .get("/core/pods/ns/a")
        .await
        .expect("get")
        .expect("present");
    assert_eq!(got.value, b("1"));
    let a2 = store
        .update("/core/pods/ns/a", b("2"), a.mod_revision)
        .await
        .expect("cas ok");
    assert_eq!((a2.create_revision, a2.mod_revision), (base + 1, base + 2));
    match store
        .update("/core/pods/ns/a", b("3"), a.mod_revision)
        .await
    {
        Err(Error::Conflict { current, .. }) => assert_eq!(current.mod_revision, base + 2),
        other => panic!("stale revision must conflict, got {other:?}"),
    }
    assert!(matches!(
        store.update("/core/pods/ns/none", b("x"), 1).await,
        Err(Error::NotFound(_))
    ));
    assert!(matches!(
        store.delete("/core/pods/ns/a", Some(base + 1)).await,
        Err(Error::Conflict { .. })
    ));
    let gone = store
        .delete("/core/pods/ns/a", Some(base + 2))
        .await
        .expect("delete");
    assert_eq!((gone.value, gone.mod_revision), (b("2"), base + 3));
    assert!(store.get("/core/pods/ns/a").await.expect("get").is_none());
    assert!(matches!(
        store.delete("/core/pods/ns/a", None).await,
        Err(Error::NotFound(_))
    ));
    assert_eq!(store.current_revision(), base + 3);
}

async fn list_pages_and_prefixes(store: Arc<dyn Store>) {
    let base = store.current_revision();
    for ns in ["default", "default2"] {
        for i in 0..5 {
            store
                .create(&format!("/apps/daemonsets/{ns}/ds{i}"), b("x"))
                .await
                .expect("create");
        }
    }
    store
        .create("/core/nodes/n1", b("n"))
        .await
        .expect("create");
    let all = store
        .list("/apps/daemonsets/default/", None, 0)
        .await
        .expect("list");
    assert_eq!(all.items.len(), 5, "the trailing slash keeps default2 out");
    assert!(!all.more);
    assert_eq!(all.revision, base + 11);
    let mut seen = Vec::new();
    let mut after: Option<String> = None;
    loop {
        let page = store
            .list("/apps/daemonsets/", after.as_deref(), 3)
            .await
            .expect("page");
        assert!(page.items.len() <= 3);
        seen.extend(page.items.iter().map(|kv| kv.key.clone()));
        after = page.items.last().map(|kv| kv.key.clone());
        if !page.more {
            break;
        }
    }
    assert_eq!(seen.len(), 10);
    let mut sorted = seen.clone();
    sorted.sort();
    assert_eq!(seen, sorted, "pages come in key order without repeats");
}

async fn watch_from_revision(store: Arc<dyn Store>) {
    let base = store.current_revision();
    let first = store
        .create("/core/pods/ns/w1", b("1"))
        .await
        .expect("create");
    let mut live = store
        .watch("/core/pods/", first.mod_revision)
        .expect("watch");
    store
        .update("/core/pods/ns/w1", b("2"), first.mod_revision)
        .await
        .expect("update");
    store
        .create("/core/nodes/other", b("n"))
        .await
        .expect("other prefix");
    store
        .delete("/core/pods/ns/w1", None)
        .await
        .expect("delete");
    let e1 = live.next().await.expect("event").expect("ok");
    let e2 = live.next().await.expect("event").expect("ok");
    assert_eq!((e1.kind, e1.revision()), (EventKind::Updated, base + 2));
    assert_eq!(e1.prev.as_ref().map(|p| p.value.clone()), Some(b("1")));
    assert_eq!((e2.kind, e2.revision()), (EventKind::Deleted, base + 4));
    assert_eq!(e2.kv.value, b("2"), "a deletion carries the last value");
    // Resuming from an earlier revision replays exactly what followed it.
    let mut replay = store.watch("/core/", base).expect("watch from the start");
    let mut revs = Vec::new();
    for _ in 0..4 {
        revs.push(replay.next().await.expect("event").expect("ok").revision());
    }
    assert_eq!(revs, vec![base + 1, base + 2, base + 3, base + 4]);
}

async fn compacted_watch_fails(store: Arc<dyn Store>) {
    let base = store.current_revision();
    for i in 0..5 {
        store
            .create(&format!("/core/pods/ns/c{i}"), b("x"))
            .await
            .expect("create");
    }
    store.compact(base + 3).await.expect("compact");
    // A backend may refuse at once, or end the stream with the error (etcd tells it there).
    let refused = match store.watch("/core/pods/", base + 2) {
        Err(e) => e,
        Ok(mut stream) => stream
            .next()
            .await
            .expect("an answer")
            .expect_err("compacted"),
    };
    match refused {
        Error::Compacted { requested, oldest } => {
            assert_eq!((requested, oldest), (base + 2, base + 3))
        }
        other => panic!("expected Compacted, got {other:?}"),
    }
    let mut ok = store
        .watch("/core/pods/", base + 3)
        .expect("at the compacted revision is fine");
    assert_eq!(
        ok.next().await.expect("event").expect("ok").revision(),
        base + 4
    );
}

async fn concurrent_writers_all_land(store: Arc<dyn Store>) {
    let base = store.current_revision();
    let mut tasks = Vec::new();
    for w in 0..8 {
        let store = Arc::clone(&store);
        tasks.push(tokio::spawn(async move {
            for i in 0..50 {
                store
                    .create(&format!("/core/configmaps/ns/w{w}-{i}"), b("v"))
                    .await
                    .expect("create");
            }
        }));
    }
    for t in tasks {
        t.await.expect("writer");
    }
    let page = store
        .list("/core/configmaps/", None, 0)
        .await
        .expect("list");
    assert_eq!(page.items.len(), 400);
    let mut revs: Vec<u64> = page.items.iter().map(|kv| kv.mod_revision).collect();
    revs.sort_unstable();
    revs.dedup();
    assert_eq!(revs.len(), 400, "every write has its own revision");
    assert_eq!(store.current_revision(), base + 400);
}

macro_rules! suite {
    ($backend:ident, $make:expr) => {
        mod $backend {
            use super::*;
            #[tokio::test]
            async fn crud_and_cas() {
                let Some((s, _guard)) = $make.await else {
                    return;
                };
                super::crud_and_cas(s).await
            }
            #[tokio::test]
            async fn list_pages_and_prefixes() {
                let Some((s, _guard)) = $make.await else {
                    return;
                };
                super::list_pages_and_prefixes(s).await
            }
            #[tokio::test]
            async fn watch_from_revision() {
                let Some((s, _guard)) = $make.await else {
                    return;
                };
                super::watch_from_revision(s).await
            }
            #[tokio::test]
            async fn compacted_watch_fails() {
                let Some((s, _guard)) = $make.await else {
                    return;
                };
                super::compacted_watch_fails(s).await
            }
            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn concurrent_writers_all_land() {
                let Some((s, _guard)) = $make.await else {
                    return;
                };
                super::concurrent_writers_all_land(s).await
            }
        }
    };
}

/// What keeps a backend alive for a test: a temporary directory, an etcd process.
type Guard = Option<Box<dyn std::any::Any + Send>>;

async fn memory() -> Option<(Arc<dyn Store>, Guard)> {
    Some((Arc::new(MemoryStore::new(10_000)), None))
}

async fn embedded() -> Option<(Arc<dyn Store>, Guard)> {
    let dir = tempfile::tempdir().expect("tempdir");
    let store = EmbeddedStore::open(&dir.path().join("everynode.redb"), 10_000).expect("open");
    Some((Arc::new(store), Some(Box::new(dir))))
}

/// A real etcd (Debian's `etcd-server`), one member on loopback ports of its own, stopped and
/// removed when dropped.
struct EtcdProcess {
    child: std::process::Child,
    url: String,
    _dir: tempfile::TempDir,
}

impl Drop for EtcdProcess {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("a free port")
}

async fn etcd() -> Option<(Arc<dyn Store>, Guard)> {
    let binary = std::env::var("ETCD").unwrap_or_else(|_| "etcd".into());
    if std::process::Command::new(&binary)
        .arg("--version")
        .output()
        .is_err()
    {
        assert!(
            std::env::var("CI").as_deref() != Ok("true"),
            "etcd is required in CI (scripts/test.sh installs etcd-server)"
        );
        eprintln!("skipped: no etcd binary (install etcd-server)");
        return None;
    }
    let dir = tempfile::tempdir().expect("tempdir");
    let (client, peer) = (free_port(), free_port());
    let client_url = format!("http://127.0.0.1:{client}");
    let peer_url = format!("http://127.0.0.1:{peer}");
    let log = std::fs::File::create(dir.path().join("etcd.log")).expect("log");
    let child = std::process::Command::new(&binary)
        .args(["--name", "test", "--data-dir"])
        .arg(dir.path().join("data"))
        .args(["--listen-client-urls", &client_url])
        .args(["--advertise-client-urls", &client_url])
        .args(["--listen-peer-urls", &peer_url])
        .args(["--initial-advertise-peer-urls", &peer_url])
        .args(["--initial-cluster", &format!("test={peer_url}")])
        .stdout(std::process::Stdio::null())
        .stderr(log)
        .spawn()
        .expect("start etcd");
    let process = EtcdProcess {
        child,
        url: client_url.clone(),
        _dir: dir,
    };
    for _ in 0..100 {
        if let Ok(store) = EtcdStore::connect(std::slice::from_ref(&client_url), None).await {
            return Some((Arc::new(store), Some(Box::new(process))));
        }
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
    panic!("etcd did not answer at {client_url}");
}

suite!(memory_backend, memory());
suite!(embedded_backend, embedded());
suite!(etcd_backend, etcd());

#[tokio::test]
async fn embedded_reopen_keeps_data_and_revision() {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("everynode.redb");
    {
        let store = EmbeddedStore::open(&path, 100).expect("open");
        store.create("/core/nodes/a", b("a")).await.expect("create");
        store.create("/core/nodes/b", b("b")).await.expect("create");
    }
    // Dropping the store joined its writer, so the database is free to open again.
    let store = EmbeddedStore::open(&path, 100).expect("reopen");
    assert_eq!(store.current_revision(), 2);
    assert_eq!(
        store
            .get("/core/nodes/b")
            .await
            .expect("get")
            .expect("present")
            .value,
        b("b")
    );
    let next = store.create("/core/nodes/c", b("c")).await.expect("create");
    assert_eq!(
        next.mod_revision, 3,
        "revisions keep increasing across restarts"
    );
    assert!(
        matches!(store.watch("/core/", 1), Err(Error::Compacted { .. })),
        "history does not survive a restart"
    );
}

#[tokio::test]
async fn etcd_progress_reaches_a_follower_past_writes_it_does_not_watch() {
    let Some((_, guard)) = etcd().await else {
        return;
    };
    // The store of `etcd()` is behind `dyn Store`; a second, concrete one on the same member.
    let url = guard
        .as_ref()
        .and_then(|g| g.downcast_ref::<EtcdProcess>())
        .map(|p| p.url.clone())
        .expect("the etcd process");
    let store = EtcdStore::connect(std::slice::from_ref(&url), None)
        .await
        .expect("connect");
    let start = store.current_revision();
    let mut follower = store.watch("/", start).expect("watch");
    // A write outside the cluster's keys: no event for the follower.
    assert!(
        store
            .create_raw("/elsewhere/x", b"1".to_vec())
            .await
            .expect("raw write")
    );
    let latest = store.latest_revision().await.expect("latest");
    assert!(latest > start);
    let event = tokio::time::timeout(std::time::Duration::from_secs(10), follower.next())
        .await
        .expect("a progress report in time")
        .expect("an item")
        .expect("ok");
    assert_eq!(event.kind, EventKind::Progress);
    assert!(
        event.revision() >= latest,
        "{} < {latest}",
        event.revision()
    );
}
