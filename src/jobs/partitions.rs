//! Keeps the daily partitions of `usage_events` for today and the next two days in
//! place, so ingestion rarely has to create one on the request path.

use std::time::Duration;

use super::{JobHandle, Shutdown};
use crate::ingest::Ingestor;

const EVERY: Duration = Duration::from_secs(3600);
const DAYS_AHEAD: u32 = 2;

pub fn spawn(ingest: Ingestor) -> JobHandle {
    JobHandle::spawn("partitions", move |shutdown| run(ingest, shutdown))
}

async fn run(ingest: Ingestor, mut shutdown: Shutdown) {
    let mut every_hour = tokio::time::interval(EVERY);
    loop {
        tokio::select! {
            _ = shutdown.requested() => return,
            _ = every_hour.tick() => {}
        }
        if let Err(e) = ingest.prepare_partitions(DAYS_AHEAD).await {
            tracing::warn!(error = %e, "could not prepare usage partitions; ingestion will create them on demand");
        }
    }
}
