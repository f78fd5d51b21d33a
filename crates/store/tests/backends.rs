//! The backend-agnostic store suite: every backend runs every case.

use bytes::Bytes;
use everynode_store::{EmbeddedStore, Error, EventKind, MemoryStore, Store};
use futures::StreamExt;
use std::sync::Arc;

fn b(s: &str) -> Bytes {
    Bytes::copy_from_slice(s.as_bytes())
}

async fn crud_and_cas(store: Arc<dyn Store>) {
    let a = store
        .create("/core/pods/ns/a", b("1"))
        .await
        .expect("create");
    assert_eq!((a.create_revision, a.mod_revision), (1, 1));
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
    assert_eq!((a2.create_revision, a2.mod_revision), (1, 2));
    match store
        .update("/core/pods/ns/a", b("3"), a.mod_revision)
        .await
    {
        Err(Error::Conflict { current, .. }) => assert_eq!(current.mod_revision, 2),
        other => panic!("stale revision must conflict, got {other:?}"),
    }
    assert!(matches!(
        store.update("/core/pods/ns/none", b("x"), 1).await,
        Err(Error::NotFound(_))
    ));
    assert!(matches!(
        store.delete("/core/pods/ns/a", Some(1)).await,
        Err(Error::Conflict { .. })
    ));
    let gone = store
        .delete("/core/pods/ns/a", Some(2))
        .await
        .expect("delete");
    assert_eq!((gone.value, gone.mod_revision), (b("2"), 3));
    assert!(store.get("/core/pods/ns/a").await.expect("get").is_none());
    assert!(matches!(
        store.delete("/core/pods/ns/a", None).await,
        Err(Error::NotFound(_))
    ));
    assert_eq!(store.current_revision(), 3);
}

async fn list_pages_and_prefixes(store: Arc<dyn Store>) {
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
    assert_eq!(all.revision, 11);
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
    assert_eq!((e1.kind, e1.revision()), (EventKind::Updated, 2));
    assert_eq!(e1.prev.as_ref().map(|p| p.value.clone()), Some(b("1")));
    assert_eq!((e2.kind, e2.revision()), (EventKind::Deleted, 4));
    // Resuming from an earlier revision replays exactly what followed it.
    let mut replay = store.watch("/core/", 0).expect("watch from 0");
    let mut revs = Vec::new();
    for _ in 0..4 {
        revs.push(replay.next().await.expect("event").expect("ok").revision());
    }
    assert_eq!(revs, vec![1, 2, 3, 4]);
}

async fn compacted_watch_fails(store: Arc<dyn Store>) {
    for i in 0..5 {
        store
            .create(&format!("/core/pods/ns/c{i}"), b("x"))
            .await
            .expect("create");
    }
    store.compact(3).await.expect("compact");
    assert!(matches!(
        store.watch("/core/pods/", 2),
        Err(Error::Compacted {
            requested: 2,
            oldest: 3
        })
    ));
    let mut ok = store
        .watch("/core/pods/", 3)
        .expect("at the compacted revision is fine");
    assert_eq!(ok.next().await.expect("event").expect("ok").revision(), 4);
}

async fn concurrent_writers_all_land(store: Arc<dyn Store>) {
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
    assert_eq!(store.current_revision(), 400);
}

macro_rules! suite {
    ($backend:ident, $make:expr) => {
        mod $backend {
            use super::*;
            #[tokio::test]
            async fn crud_and_cas() {
                let (s, _dir) = $make;
                super::crud_and_cas(s).await
            }
            #[tokio::test]
            async fn list_pages_and_prefixes() {
                let (s, _dir) = $make;
                super::list_pages_and_prefixes(s).await
            }
            #[tokio::test]
            async fn watch_from_revision() {
                let (s, _dir) = $make;
                super::watch_from_revision(s).await
            }
            #[tokio::test]
            async fn compacted_watch_fails() {
                let (s, _dir) = $make;
                super::compacted_watch_fails(s).await
            }
            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn concurrent_writers_all_land() {
                let (s, _dir) = $make;
                super::concurrent_writers_all_land(s).await
            }
        }
    };
}

fn memory() -> (Arc<dyn Store>, Option<tempfile::TempDir>) {
    (Arc::new(MemoryStore::new(10_000)), None)
}

fn embedded() -> (Arc<dyn Store>, Option<tempfile::TempDir>) {
    let dir = tempfile::tempdir().expect("tempdir");
    let store = EmbeddedStore::open(&dir.path().join("everynode.redb"), 10_000).expect("open");
    (Arc::new(store), Some(dir))
}

suite!(memory_backend, memory());
suite!(embedded_backend, embedded());

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
