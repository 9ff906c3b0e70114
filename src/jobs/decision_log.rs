//! Writes authorize decisions to PostgreSQL in batches, off the request path: the
//! authorize check hands a row to a bounded queue and answers at once.
//!
//! When the queue is full (PostgreSQL far slower than the decisions coming in), rows
//! are dropped and counted rather than slowing the gateway down: the log explains
//! decisions, it does not make them.

use std::{
    sync::{
        atomic::{AtomicU64, Ordering},
        Arc,
    },
    time::Duration,
};

use tokio::sync::mpsc;

use crate::store::{self, decisions::DecisionRow, DbPool};

const QUEUE: usize = 10_000;
const BATCH: usize = 500;
/// How long a batch waits to fill before it is written.
const LINGER: Duration = Duration::from_millis(100);

#[derive(Clone)]
pub struct DecisionLog {
    queue: mpsc::Sender<DecisionRow>,
    dropped: Arc<AtomicU64>,
}

impl DecisionLog {
    /// Starts the writer on the current tokio runtime.
    pub fn start(pool: DbPool) -> Self {
        let (queue, rows) = mpsc::channel(QUEUE);
        tokio::spawn(write_batches(pool, rows));
        Self {
            queue,
            dropped: Arc::new(AtomicU64::new(0)),
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

    /// Decisions not logged because the queue was full, since start.
    pub fn dropped(&self) -> u64 {
        self.dropped.load(Ordering::Relaxed)
    }
}

async fn write_batches(pool: DbPool, mut rows: mpsc::Receiver<DecisionRow>) {
    let mut batch = Vec::with_capacity(BATCH);
    while let Some(first) = rows.recv().await {
        batch.push(first);
        let deadline = tokio::time::Instant::now() + LINGER;
        while batch.len() < BATCH {
            match tokio::time::timeout_at(deadline, rows.recv()).await {
                Ok(Some(row)) => batch.push(row),
                Ok(None) | Err(_) => break,
            }
        }
        let written = match pool.get().await {
            Ok(mut conn) => store::decisions::insert(&mut conn, &batch)
                .await
                .map_err(|e| e.to_string()),
            Err(e) => Err(e.to_string()),
        };
        if let Err(error) = written {
            tracing::warn!(%error, rows = batch.len(), "could not write authorize decisions");
        }
        batch.clear();
    }
}
