//! Background work that runs beside the HTTP server on every instance: keeping usage
//! partitions ahead of time, delivering the email outbox, and the retention purge.
//! Each job is safe to run on several instances at once; none needs to be the only
//! one.

pub mod decision_log;
pub mod mailer;
pub mod outbox;
pub mod partitions;
pub mod purge;

use std::future::Future;

use tokio::{sync::watch, task::JoinHandle};

use crate::{config::Config, ingest::Ingestor, store::DbPool};

/// A running job. Dropping the handle leaves the job running (detached).
pub struct JobHandle {
    name: &'static str,
    stop: watch::Sender<bool>,
    task: JoinHandle<()>,
}

/// What a job watches to know it should stop after what it is doing.
#[derive(Clone)]
pub struct Shutdown(watch::Receiver<bool>);

impl Shutdown {
    pub fn is_requested(&self) -> bool {
        *self.0.borrow()
    }

    /// Resolves once a stop is requested; never when the handle was dropped instead.
    pub async fn requested(&mut self) {
        if self.0.wait_for(|stop| *stop).await.is_err() {
            std::future::pending::<()>().await;
        }
    }
}

impl JobHandle {
    pub fn spawn<F, Fut>(name: &'static str, job: F) -> Self
    where
        F: FnOnce(Shutdown) -> Fut,
        Fut: Future<Output = ()> + Send + 'static,
    {
        let (stop, watch) = watch::channel(false);
        let task = tokio::spawn(job(Shutdown(watch)));
        Self { name, stop, task }
    }

    pub fn name(&self) -> &'static str {
        self.name
    }

    /// Asks the job to stop once its current step is done (an email being delivered
    /// is delivered and recorded), and waits for it.
    pub async fn stop(self) {
        let _ = self.stop.send(true);
        if let Err(e) = self.task.await {
            tracing::warn!(job = self.name, error = %e, "job ended abnormally");
        }
    }

    /// Ends the job at once, wherever it is: what a crash does to it. A transaction
    /// it had open is rolled back by PostgreSQL when its connection goes.
    pub fn abort(self) {
        self.task.abort();
    }
}

/// Starts every background job of an instance.
pub fn spawn_all(
    config: &Config,
    db: &DbPool,
    ingest: &Ingestor,
    wakeup: &outbox::Wakeup,
) -> anyhow::Result<Vec<JobHandle>> {
    let mut jobs = vec![partitions::spawn(ingest.clone())];
    jobs.extend(purge::spawn(db.clone(), config.purge));
    match outbox::OutboxWorker::from_config(db.clone(), &config.email, wakeup.clone())? {
        Some(worker) => jobs.push(worker.spawn()),
        None => tracing::warn!(
            "MP_SMTP_URL is not set: this instance does not deliver emails; alert emails stay pending \
             until an instance with an SMTP server runs"
        ),
    }
    Ok(jobs)
}
