//! The outbox worker: delivers queued emails over SMTP, retrying with backoff.
//!
//! # Delivery semantics
//!
//! Each email is delivered in its own transaction:
//!
//! 1. claim one due row with `SELECT … FOR UPDATE SKIP LOCKED`;
//! 2. hold that row lock through the whole SMTP conversation;
//! 3. record the outcome (sent / rescheduled / failed) in the same transaction; commit.
//!
//! While one worker holds a row, every other worker (this instance's or another's)
//! skips it, and once committed as sent it is never picked again: two instances never
//! send the same row, and a worker that restarts carries on from the table.
//!
//! The one gap is a crash (or lost database connection) **after the SMTP server
//! accepted the message and before the commit**: the transaction rolls back, the row
//! is pending again with its old attempt count, and a worker sends it a second time.
//! In that window delivery is at-least-once; everywhere else it is exactly once. The
//! `Message-ID` is the same on every attempt, so receivers that dedupe by it show
//! one email. Sending one email per transaction keeps the window to one email.
//!
//! Holding a transaction open during SMTP is bounded by `MP_SMTP_TIMEOUT_MS` per
//! step. A PostgreSQL `idle_in_transaction_session_timeout` shorter than that would
//! end the transaction mid-delivery and cause exactly the double send above.

use std::{sync::Arc, time::Duration};

use diesel_async::AsyncConnection;
use tokio::sync::Notify;
use uuid::Uuid;

use super::{
    mailer::{Mailer, SendFailure},
    JobHandle, Shutdown,
};
use crate::{
    config::{EmailConfig, SmtpTls},
    domain::outbox::{AfterFailure, RetryPolicy},
    error::{AppError, AppResult},
    store::{self, DbPool},
};

/// At most this many emails per pass before the worker checks its wake-ups again.
const MAX_PER_PASS: usize = 100;

/// Wakes this instance's worker right away instead of at its next poll. Call
/// [`Wakeup::notify`] after the transaction that enqueued commits: before it, the
/// worker would not see the row yet. Other instances find it at their next poll.
#[derive(Clone, Default)]
pub struct Wakeup(Arc<Notify>);

impl Wakeup {
    pub fn notify(&self) {
        // One stored permit: a wake-up while the worker is busy is not lost.
        self.0.notify_one();
    }

    async fn notified(&self) {
        self.0.notified().await;
    }
}

/// What happened to one claimed email.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    Sent,
    /// Failed; another attempt is scheduled.
    Retrying,
    /// Given up.
    Failed,
}

/// What one pass over the due emails did.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct PassSummary {
    pub sent: usize,
    pub retrying: usize,
    pub failed: usize,
}

impl PassSummary {
    pub fn handled(&self) -> usize {
        self.sent + self.retrying + self.failed
    }
}

pub struct OutboxWorker {
    db: DbPool,
    mailer: Mailer,
    retry: RetryPolicy,
    poll_interval: Duration,
    wakeup: Wakeup,
}

impl OutboxWorker {
    /// A worker for the configured SMTP server; `None` when there is none.
    pub fn from_config(db: DbPool, config: &EmailConfig, wakeup: Wakeup) -> anyhow::Result<Option<Self>> {
        let Some(smtp) = &config.smtp else {
            return Ok(None);
        };
        let mailer = Mailer::new(smtp, &config.from)?;
        tracing::info!(
            host = %smtp.host,
            port = smtp.port,
            tls = match smtp.tls {
                SmtpTls::None => "none",
                SmtpTls::StartTls => "starttls",
                SmtpTls::Tls => "tls",
            },
            poll_ms = config.poll_interval.as_millis() as u64,
            "email outbox worker configured"
        );
        Ok(Some(Self {
            db,
            mailer,
            retry: config.retry,
            poll_interval: config.poll_interval,
            wakeup,
        }))
    }

    pub fn spawn(self) -> JobHandle {
        JobHandle::spawn("email outbox", move |shutdown| self.run(shutdown))
    }

    async fn run(self, mut shutdown: Shutdown) {
        loop {
            let stop = shutdown.clone();
            match self.deliver_due_until(|| stop.is_requested()).await {
                Ok(summary) if summary.handled() > 0 => tracing::debug!(?summary, "outbox pass"),
                Ok(_) => {}
                Err(e) => tracing::warn!(error = %e, "outbox pass failed; trying again at the next poll"),
            }
            tokio::select! {
                _ = shutdown.requested() => return,
                _ = self.wakeup.notified() => {}
                _ = tokio::time::sleep(self.poll_interval) => {}
            }
        }
    }

    /// Delivers due emails one by one until none is due, a delivery fails, or
    /// [`MAX_PER_PASS`] were handled. A failure ends the pass: the server is down or
    /// unhappy, and the other due emails wait for the next poll rather than each
    /// adding a failed attempt against it.
    pub async fn deliver_due(&self) -> AppResult<PassSummary> {
        self.deliver_due_until(|| false).await
    }

    async fn deliver_due_until(&self, stop: impl Fn() -> bool) -> AppResult<PassSummary> {
        let mut summary = PassSummary::default();
        while summary.handled() < MAX_PER_PASS && !stop() {
            match self.deliver_one().await? {
                None => break,
                Some(Outcome::Sent) => summary.sent += 1,
                Some(Outcome::Retrying) => {
                    summary.retrying += 1;
                    break;
                }
                Some(Outcome::Failed) => {
                    summary.failed += 1;
                    break;
                }
            }
        }
        Ok(summary)
    }

    /// Claims, sends and records one due email in one transaction (see the module doc).
    async fn deliver_one(&self) -> AppResult<Option<Outcome>> {
        // Drawn before the transaction: the thread-local generator must not be held
        // across an await.
        let jitter: f64 = rand::random();
        let mut conn = self.db.get().await?;
        conn.transaction(async |conn| {
            let Some(email) = store::outbox::claim_due(conn, 1).await?.into_iter().next() else {
                return Ok(None);
            };
            let attempt = u32::try_from(email.attempts).unwrap_or(0).saturating_add(1);
            let outcome = match self.mailer.send(&email).await {
                Ok(()) => {
                    record(email.id, "sent", async {
                        store::outbox::mark_sent(conn, email.id, !email.kind.keeps_body_after_send()).await
                    })
                    .await?;
                    tracing::info!(email_id = %email.id, kind = email.kind.as_str(), attempt, "email sent");
                    Outcome::Sent
                }
                Err(SendFailure::Unbuildable(error)) => {
                    store::outbox::mark_failed(conn, email.id, &error).await?;
                    tracing::error!(email_id = %email.id, kind = email.kind.as_str(), %error, "email cannot be sent; given up");
                    Outcome::Failed
                }
                Err(failure) => match self.retry.after_failure(attempt, jitter) {
                    AfterFailure::RetryIn(delay) => {
                        store::outbox::reschedule(conn, email.id, delay, failure.message()).await?;
                        tracing::warn!(
                            email_id = %email.id, kind = email.kind.as_str(), attempt,
                            retry_in_ms = delay.as_millis() as u64, error = failure.message(),
                            "email delivery failed; will retry"
                        );
                        Outcome::Retrying
                    }
                    AfterFailure::GiveUp => {
                        store::outbox::mark_failed(conn, email.id, failure.message()).await?;
                        tracing::error!(
                            email_id = %email.id, kind = email.kind.as_str(), attempt,
                            error = failure.message(), "email delivery failed for the last time; given up"
                        );
                        Outcome::Failed
                    }
                },
            };
            Ok::<_, AppError>(Some(outcome))
        })
        .await
    }
}

/// Records a delivery that already happened. If that fails, the transaction rolls
/// back and the email will be sent again: say so, since it is the double-send case.
async fn record(id: Uuid, what: &str, write: impl std::future::Future<Output = AppResult<()>>) -> AppResult<()> {
    write.await.inspect_err(|e| {
        tracing::error!(
            email_id = %id, error = %e,
            "email was {what} but the outcome could not be recorded; it will be sent again"
        );
    })
}
