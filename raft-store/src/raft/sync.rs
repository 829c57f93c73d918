//! Group commit of log appends across every raft group of a node.
//!
//! A log store writes its entries to RocksDB without fsync (they are readable at
//! once) and hands the "durable" callback here. This thread takes every callback
//! waiting, fsyncs the write-ahead log once, and completes them all: entries written
//! before the fsync began are in it, because RocksDB appends to the WAL in write order.

use rocksdb::DB;
use std::io;
use std::sync::mpsc;
use std::sync::Arc;
use std::time::Instant;

pub(crate) type Done = Box<dyn FnOnce(io::Result<()>) + Send>;

pub(crate) struct Syncer {
    tx: Option<mpsc::Sender<Done>>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl Syncer {
    pub(crate) fn start(db: Arc<DB>, fsync: bool) -> Syncer {
        let (tx, rx) = mpsc::channel::<Done>();
        let spawned = std::thread::Builder::new().name("raft-log-sync".into()).spawn(move || {
            while let Ok(first) = rx.recv() {
                let mut waiting = vec![first];
                while let Ok(more) = rx.try_recv() {
                    waiting.push(more);
                }
                let started = Instant::now();
                let result = if fsync { db.flush_wal(true).map_err(|e| e.to_string()) } else { Ok(()) };
                metrics::histogram!(crate::metric_names::RAFT_SYNC_SECONDS).record(started.elapsed().as_secs_f64());
                metrics::histogram!(crate::metric_names::RAFT_SYNC_APPENDS).record(waiting.len() as f64);
                for done in waiting {
                    done(result.clone().map_err(io::Error::other));
                }
            }
        });
        let thread = match spawned {
            Ok(handle) => Some(handle),
            Err(e) => {
                // Without the thread every append reports an I/O error instead of hanging.
                tracing::error!(error = %e, "cannot start the raft log sync thread");
                None
            }
        };
        Syncer { tx: Some(tx), thread }
    }

    /// Runs `done` once everything written to the database so far is durable.
    pub(crate) fn after_sync(&self, done: Done) {
        let sent = match &self.tx {
            Some(tx) => tx.send(done).map_err(|mpsc::SendError(done)| done),
            None => Err(done),
        };
        if let Err(done) = sent {
            done(Err(io::Error::other("raft log sync thread is not running")));
        }
    }
}

impl Drop for Syncer {
    /// Ends the thread and waits for it, so its handle on the database is gone (the
    /// database closes with the last handle, never during process exit).
    fn drop(&mut self) {
        drop(self.tx.take());
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}
