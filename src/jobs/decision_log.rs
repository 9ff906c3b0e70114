//! Writes authorize decisions to PostgreSQL in batches, off the request path: the
//! authorize check hands a row to a bounded queue and answers at once.
//!
//! When the queue is full (PostgreSQL far slower than the decisions coming in), rows
//! are dropped and counted rather than slowing the gateway down: the log explains
//! decisions, it does not make them. When the instance stops, the writer writes what
//! it holds before the process may exit ([`DecisionLog::stop`]).

use std::{
    sync::{
        atomic::{AtomicU64, Ordering},
        Arc, Mutex,
    },
    time::Duration,
};

use tokio::sync::mpsc;

use super::{JobHandle, Shutdown};
use crate::store::{self, decisions::DecisionRow, DbPool};

const QUEUE: usize = 10_000;
const BATCH: usize = 500;
/// How long a batch waits to fill before it is written.
const LINGER: Duration = Duration::from_millis(100);

#[derive(Clone)]
pub struct DecisionLog {
    queue: mpsc::Sender<DecisionRow>,
    dropped: Arc<AtomicU64>,
    /// The writer, until [`DecisionLog::stop`] takes it.
    writer: Arc<Mutex<Option<JobHandle>>>,
}

impl DecisionLog {
    /// Starts the writer on the current tokio runtime.
    pub fn start(pool: DbPool) -> Self {
        let (queue, rows) = mpsc::channel(QUEUE);
        let writer = JobHandle::spawn("decision log", move |shutdown| write_batches(pool, rows, shutdown));
        Self {
            queue,
            dropped: Arc::new(AtomicU64::new(0)),
            writer: Arc::new(Mutex::new(Some(writer))),
        }
    }

    pub fn record(&self, row: DecisionRow) {
        if self.queue.try_send(row).is_err() {
            let dropped = self.dropped.fetch_add(1, Ordering::Relaxed) + 1;
            if dropped.is_power_of_two() {
                tracing::warn!(dropped, "decision log queue full; decisions are not being logged");
            }
        }
    }

    /// Decisions not logged because the queue was full (or came after the stop),
    /// since start.
    pub fn dropped(&self) -> u64 {
        self.dropped.load(Ordering::Relaxed)
    }

    /// Writes every decision recorded so far, without waiting for its batch to fill,
    /// and stops the writer; decisions recorded afterwards are dropped. Call it once
    /// the server has answered its last request: the process may then exit without
    /// losing the last batch. Later calls return at once.
    pub async fn stop(&self) {
        let writer = self.writer.lock().ok().and_then(|mut w| w.take());
        if let Some(writer) = writer {
            writer.stop().await;
        }
    }
}

async fn write_batches(pool: DbPool, mut rows: mpsc::Receiver<DecisionRow>, mut shutdown: Shutdown) {
    let mut batch = Vec::with_capacity(BATCH);
    loop {
        let first = tokio::select! {
            row = rows.recv() => row,
            () = shutdown.requested() => None,
        };
        let Some(first) = first else { break };
        batch.push(first);
        let deadline = tokio::time::Instant::now() + LINGER;
        while batch.len() < BATCH && !shutdown.is_requested() {
            tokio::select! {
                row = tokio::time::timeout_at(deadline, rows.recv()) => match row {
                    Ok(Some(row)) => batch.push(row),
                    Ok(None) | Err(_) => break,
                },
                () = shutdown.requested() => break,
            }
        }
        write(&pool, &mut batch).await;
    }
    // Stopping (or every sender gone): what is queued is written, nothing more comes.
    rows.close();
    while let Some(row) = rows.recv().await {
        batch.push(row);
        if batch.len() == BATCH {
            write(&pool, &mut batch).await;
        }
    }
    write(&pool, &mut batch).await;
}

async fn write(pool: &DbPool, batch: &mut Vec<DecisionRow>) {
    if batch.is_empty() {
        return;
    }
    let written = match pool.get().await {
        Ok(mut conn) => store::decisions::insert(&mut conn, batch)
            .await
            .map_err(|e| e.to_string()),
        Err(e) => Err(e.to_string()),
    };
    if let Err(error) = written {
        tracing::warn!(%error, rows = batch.len(), "could not write authorize decisions");
    }
    batch.clear();
}
