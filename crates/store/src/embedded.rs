//! The durable default backend: redb (a crash-safe, copy-on-write embedded database) in the data
//! directory. Writes go through one writer thread that drains every queued request into a single
//! transaction and commits it with an fsync, so concurrent writers share the cost of durability
//! (group commit). A write is acknowledged only after its transaction committed.

use crate::memory::page_of;
use crate::{
    Error, Event, EventKind, EventLog, KeyValue, ListPage, Result, Revision, Store, WatchStream,
};
use bytes::Bytes;
use redb::{Database, Durability, ReadableDatabase, ReadableTable, TableDefinition};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, PoisonError, RwLock, mpsc};
use std::time::Duration;
use tokio::sync::oneshot;

const OBJECTS: TableDefinition<'_, &str, &[u8]> = TableDefinition::new("objects");
const META: TableDefinition<'_, &str, u64> = TableDefinition::new("meta");
const REVISION_KEY: &str = "revision";
/// The most writes one transaction takes, so one commit never holds callers for long.
const MAX_BATCH: usize = 512;
const HEADER: usize = 16;
/// redb's page cache. Its default, 1 GiB, was most of the server's memory at 10,000 nodes;
/// reads are served by the API server's watch cache, so the store reads little but the pages
/// its writes touch, and the OS page cache holds the rest of the file.
const CACHE_BYTES: usize = 128 * 1024 * 1024;

fn io(e: impl std::fmt::Display) -> Error {
    Error::Io(e.to_string())
}

/// Stored layout: create revision (8 bytes LE), mod revision (8 bytes LE), value.
fn encode(kv: &KeyValue) -> Vec<u8> {
    let mut buf = Vec::with_capacity(HEADER + kv.value.len());
    buf.extend_from_slice(&kv.create_revision.to_le_bytes());
    buf.extend_from_slice(&kv.mod_revision.to_le_bytes());
    buf.extend_from_slice(&kv.value);
    buf
}

fn decode(key: &str, raw: &[u8]) -> Result<KeyValue> {
    if raw.len() < HEADER {
        return Err(Error::Io(format!(
            "record for {key} is truncated ({} bytes)",
            raw.len()
        )));
    }
    let word = |at: usize| {
        let mut b = [0u8; 8];
        b.copy_from_slice(&raw[at..at + 8]);
        u64::from_le_bytes(b)
    };
    Ok(KeyValue {
        key: key.to_owned(),
        create_revision: word(0),
        mod_revision: word(8),
        value: Bytes::copy_from_slice(&raw[HEADER..]),
    })
}

enum Op {
    Create {
        key: String,
        value: Bytes,
    },
    Update {
        key: String,
        value: Bytes,
        expected: Revision,
    },
    Delete {
        key: String,
        expected: Option<Revision>,
    },
}

struct Request {
    op: Op,
    reply: oneshot::Sender<Result<KeyValue>>,
}

fn open_database(path: &Path) -> Result<Database> {
    Database::builder()
        .set_cache_size(CACHE_BYTES)
        .create(path)
        .map_err(io)
}

/// The open database, replaced after a failed commit. Once a write fails on I/O (a full disk,
/// say), redb refuses every later transaction ("Previous I/O error occurred") until the database
/// is closed and opened again; without this, writes never resumed when space came back.
struct Handle {
    path: PathBuf,
    current: RwLock<Option<Arc<Database>>>,
}

impl Handle {
    fn get(&self) -> Result<Arc<Database>> {
        self.current
            .read()
            .unwrap_or_else(PoisonError::into_inner)
            .clone()
            .ok_or_else(|| Error::Io("the store is reopening after an I/O error".into()))
    }

    /// Closes the database (once the reads holding it finish, for at most a few seconds) and
    /// opens it again from what its last commit left on disk.
    fn reopen(&self) -> Result<()> {
        let old = self
            .current
            .write()
            .unwrap_or_else(PoisonError::into_inner)
            .take();
        if let Some(mut old) = old {
            for _ in 0..500 {
                match Arc::try_unwrap(old) {
                    Ok(db) => {
                        drop(db);
                        break;
                    }
                    Err(shared) => {
                        old = shared;
                        std::thread::sleep(Duration::from_millis(10));
                    }
                }
            }
        }
        let db = open_database(&self.path)?;
        *self.current.write().unwrap_or_else(PoisonError::into_inner) = Some(Arc::new(db));
        Ok(())
    }
}

/// The embedded durable backend.
pub struct EmbeddedStore {
    db: Arc<Handle>,
    /// `None` only while dropping.
    writer: Option<mpsc::Sender<Request>>,
    writer_thread: Option<std::thread::JoinHandle<()>>,
    revision: Arc<AtomicU64>,
    log: Arc<EventLog>,
}

impl EmbeddedStore {
    /// Opens (or creates) the database at `path`, keeping `history` events for watches.
    /// Watch history does not survive a restart: a watch from before it gets `Compacted`.
    pub fn open(path: &Path, history: usize) -> Result<Self> {
        let db = open_database(path)?;
        let txn = db.begin_write().map_err(io)?;
        let revision = {
            txn.open_table(OBJECTS).map_err(io)?;
            let meta = txn.open_table(META).map_err(io)?;
            meta.get(REVISION_KEY).map_err(io)?.map_or(0, |g| g.value())
        };
        txn.commit().map_err(io)?;
        let db = Arc::new(Handle {
            path: path.to_owned(),
            current: RwLock::new(Some(Arc::new(db))),
        });
        let revision = Arc::new(AtomicU64::new(revision));
        let log = Arc::new(EventLog::new(revision.load(Ordering::SeqCst), history));
        let (writer, requests) = mpsc::channel();
        let (db2, rev2, log2) = (Arc::clone(&db), Arc::clone(&revision), Arc::clone(&log));
        let writer_thread = std::thread::Builder::new()
            .name("store-writer".into())
            .spawn(move || write_loop(&db2, &requests, &rev2, &log2))
            .map_err(io)?;
        Ok(EmbeddedStore {
            db,
            writer: Some(writer),
            writer_thread: Some(writer_thread),
            revision,
            log,
        })
    }

    async fn submit(&self, op: Op) -> Result<KeyValue> {
        let (reply, rx) = oneshot::channel();
        let writer = self.writer.as_ref().ok_or(Error::Closed)?;
        writer
            .send(Request { op, reply })
            .map_err(|_| Error::Closed)?;
        rx.await.map_err(|_| Error::Closed)?
    }

    async fn read<T: Send + 'static>(
        &self,
        f: impl FnOnce(&Database) -> Result<T> + Send + 'static,
    ) -> Result<T> {
        let db = self.db.get()?;
        tokio::task::spawn_blocking(move || f(&db))
            .await
            .map_err(io)?
    }
}

impl Drop for EmbeddedStore {
    /// Closes the queue and waits for the writer to finish what it took, so every acknowledged
    /// write is committed and the database file is released when the store is gone.
    fn drop(&mut self) {
        self.writer.take();
        if let Some(thread) = self.writer_thread.take() {
            let _ = thread.join();
        }
    }
}

/// Applies one operation inside the batch's transaction. A failed precondition affects only its
/// own request; the revision advances only for writes that happen.
fn apply(
    table: &mut redb::Table<'_, &str, &[u8]>,
    op: Op,
    revision: &mut Revision,
) -> Result<Event> {
    let current = |table: &redb::Table<'_, &str, &[u8]>, key: &str| -> Result<Option<KeyValue>> {
        table
            .get(key)
            .map_err(io)?
            .map(|g| decode(key, g.value()))
            .transpose()
    };
    match op {
        Op::Create { key, value } => {
            if current(table, &key)?.is_some() {
                return Err(Error::AlreadyExists(key));
            }
            let kv = KeyValue {
                key,
                value,
                create_revision: *revision + 1,
                mod_revision: *revision + 1,
            };
            table
                .insert(kv.key.as_str(), encode(&kv).as_slice())
                .map_err(io)?;
            *revision += 1;
            Ok(Event {
                kind: EventKind::Created,
                kv,
                prev: None,
            })
        }
        Op::Update {
            key,
            value,
            expected,
        } => {
            let prev = current(table, &key)?.ok_or_else(|| Error::NotFound(key.clone()))?;
            if prev.mod_revision != expected {
                return Err(Error::Conflict {
                    key,
                    expected,
                    current: Box::new(prev),
                });
            }
            let kv = KeyValue {
                key,
                value,
                create_revision: prev.create_revision,
                mod_revision: *revision + 1,
            };
            table
                .insert(kv.key.as_str(), encode(&kv).as_slice())
                .map_err(io)?;
            *revision += 1;
            Ok(Event {
                kind: EventKind::Updated,
                kv,
                prev: Some(prev),
            })
        }
        Op::Delete { key, expected } => {
            let prev = current(table, &key)?.ok_or_else(|| Error::NotFound(key.clone()))?;
            if let Some(expected) = expected
                && prev.mod_revision != expected
            {
                return Err(Error::Conflict {
                    key,
                    expected,
                    current: Box::new(prev),
                });
            }
            table.remove(key.as_str()).map_err(io)?;
            *revision += 1;
            let kv = KeyValue {
                mod_revision: *revision,
                ..prev.clone()
            };
            Ok(Event {
                kind: EventKind::Deleted,
                kv,
                prev: Some(prev),
            })
        }
    }
}

/// Commits one batch; returns each request's outcome (in order) or the commit failure.
fn commit_batch(
    db: &Database,
    ops: Vec<Op>,
    start: Revision,
) -> Result<(Vec<Result<Event>>, Revision)> {
    let mut txn = db.begin_write().map_err(io)?;
    txn.set_durability(Durability::Immediate).map_err(io)?;
    let mut revision = start;
    let mut outcomes = Vec::with_capacity(ops.len());
    {
        let mut table = txn.open_table(OBJECTS).map_err(io)?;
        for op in ops {
            outcomes.push(apply(&mut table, op, &mut revision));
        }
        let mut meta = txn.open_table(META).map_err(io)?;
        meta.insert(REVISION_KEY, revision).map_err(io)?;
    }
    txn.commit().map_err(io)?;
    Ok((outcomes, revision))
}

fn write_loop(
    db: &Handle,
    requests: &mpsc::Receiver<Request>,
    revision: &AtomicU64,
    log: &EventLog,
) {
    while let Ok(first) = requests.recv() {
        let mut batch = vec![first];
        while batch.len() < MAX_BATCH {
            match requests.try_recv() {
                Ok(r) => batch.push(r),
                Err(_) => break,
            }
        }
        let (ops, replies): (Vec<Op>, Vec<_>) = batch.into_iter().map(|r| (r.op, r.reply)).unzip();
        let start = revision.load(Ordering::SeqCst);
        let (writes, began) = (ops.len(), tokio::time::Instant::now());
        let committed = db.get().and_then(|db| commit_batch(&db, ops, start));
        tracing::debug!(
            writes,
            micros = began.elapsed().as_micros() as u64,
            "store commit"
        );
        match committed {
            Ok((outcomes, new_revision)) => {
                let events: Vec<Event> = outcomes
                    .iter()
                    .filter_map(|o| o.as_ref().ok().cloned())
                    .collect();
                // Publish before acknowledging, so a client that reads after its write sees it in watches.
                revision.store(new_revision, Ordering::SeqCst);
                log.append(events);
                for (reply, outcome) in replies.into_iter().zip(outcomes) {
                    // The caller may have gone away; its write is durable either way.
                    let _ = reply.send(outcome.map(|e| e.kv));
                }
            }
            Err(e) => {
                tracing::error!(error = %e, "store commit failed; no write of the batch was acknowledged");
                for reply in replies {
                    let _ = reply.send(Err(Error::Io(e.to_string())));
                }
                if let Err(e) = db.reopen() {
                    tracing::error!(error = %e, "could not reopen the store; the next write tries again");
                }
            }
        }
    }
}

#[async_trait::async_trait]
impl Store for EmbeddedStore {
    async fn get(&self, key: &str) -> Result<Option<KeyValue>> {
        let key = key.to_owned();
        self.read(move |db| {
            let txn = db.begin_read().map_err(io)?;
            let table = txn.open_table(OBJECTS).map_err(io)?;
            table
                .get(key.as_str())
                .map_err(io)?
                .map(|g| decode(&key, g.value()))
                .transpose()
        })
        .await
    }

    async fn list(
        &self,
        prefix: &str,
        start_after: Option<&str>,
        limit: usize,
    ) -> Result<ListPage> {
        let (prefix, start_after) = (prefix.to_owned(), start_after.map(str::to_owned));
        self.read(move |db| {
            let txn = db.begin_read().map_err(io)?;
            // The revision comes from the same snapshot as the rows, so a watch from it misses nothing.
            let rev = txn
                .open_table(META)
                .map_err(io)?
                .get(REVISION_KEY)
                .map_err(io)?
                .map_or(0, |g| g.value());
            let table = txn.open_table(OBJECTS).map_err(io)?;
            let start = match &start_after {
                Some(k) if k.as_str() >= prefix.as_str() => k.clone(),
                _ => prefix.clone(),
            };
            let mut rows = Vec::new();
            for entry in table.range(start.as_str()..).map_err(io)? {
                let (k, v) = entry.map_err(io)?;
                let key = k.value().to_owned();
                if start_after.as_deref() == Some(key.as_str()) {
                    continue;
                }
                if !key.starts_with(&prefix) || (limit > 0 && rows.len() > limit) {
                    break;
                }
                let kv = decode(&key, v.value())?;
                rows.push((key, kv));
            }
            Ok(page_of(
                rows.iter().map(|(k, kv)| (k, kv.clone())),
                &prefix,
                limit,
                rev,
            ))
        })
        .await
    }

    async fn create(&self, key: &str, value: Bytes) -> Result<KeyValue> {
        self.submit(Op::Create {
            key: key.to_owned(),
            value,
        })
        .await
    }

    async fn update(&self, key: &str, value: Bytes, expected: Revision) -> Result<KeyValue> {
        self.submit(Op::Update {
            key: key.to_owned(),
            value,
            expected,
        })
        .await
    }

    async fn delete(&self, key: &str, expected: Option<Revision>) -> Result<KeyValue> {
        self.submit(Op::Delete {
            key: key.to_owned(),
            expected,
        })
        .await
    }

    fn watch(&self, prefix: &str, after: Revision) -> Result<WatchStream> {
        self.log.follow(prefix, after)
    }

    fn current_revision(&self) -> Revision {
        self.revision.load(Ordering::SeqCst)
    }

    async fn compact(&self, revision: Revision) -> Result<()> {
        self.log.compact(revision);
        Ok(())
    }

    fn size_bytes(&self) -> Option<u64> {
        std::fs::metadata(&self.db.path).ok().map(|m| m.len())
    }
}
