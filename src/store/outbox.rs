//! The email outbox: emails are queued in the caller's transaction, claimed by the
//! worker under a row lock, marked with how delivery went, and read back as an
//! organization's alert history.
//!
//! Queuing is a system write, not a tenant's request: the budgets code enqueues from
//! the ingest transaction, where there is no signed-in member, so [`enqueue`] and
//! [`enqueue_budget_alert`] take an organization id rather than an `OrgAccess`.
//! Reading the history is a tenant's request and takes one.

use std::time::Duration;

use chrono::{DateTime, Utc};
use diesel::{
    pg::data_types::PgInterval,
    prelude::*,
    sql_types::{Bool, Interval, Nullable, Timestamptz},
};
use diesel_async::{AsyncConnection, RunQueryDsl};
use uuid::Uuid;

use super::{
    access::OrgAccess,
    schema::{email_outbox, organizations},
    DbConn,
};
use crate::{
    domain::{
        alert_email::BudgetAlert,
        email::EmailAddress,
        outbox::{EmailKind, EmailStatus, OutgoingEmail},
    },
    error::{AppError, AppResult},
};

/// What [`enqueue`] did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Enqueued {
    /// A new email, waiting for the worker.
    Queued(Uuid),
    /// A new email with nobody to send it to, recorded as `skipped`.
    Skipped(Uuid),
    /// An email with the same dedupe key exists already; nothing was written.
    Duplicate,
}

impl Enqueued {
    /// Whether the worker has something new to deliver (worth waking it after commit).
    pub fn needs_delivery(self) -> bool {
        matches!(self, Self::Queued(_))
    }

    /// The new row's id; `None` for a duplicate.
    pub fn id(self) -> Option<Uuid> {
        match self {
            Self::Queued(id) | Self::Skipped(id) => Some(id),
            Self::Duplicate => None,
        }
    }
}

/// A queued email as the worker sees it.
#[derive(Debug, Clone, Queryable, Selectable)]
#[diesel(table_name = email_outbox, check_for_backend(diesel::pg::Pg))]
pub struct QueuedEmail {
    pub id: Uuid,
    pub org_id: Option<Uuid>,
    pub kind: EmailKind,
    pub dedupe_key: String,
    pub recipients: Vec<String>,
    pub subject: String,
    pub text_body: String,
    pub html_body: String,
    pub status: EmailStatus,
    pub attempts: i32,
    pub next_attempt_at: DateTime<Utc>,
    pub last_error: Option<String>,
    pub created_at: DateTime<Utc>,
    pub sent_at: Option<DateTime<Utc>>,
}

/// Queues `email` on `conn`, inside whatever transaction the caller has open: the
/// email exists exactly when the caller's decision commits. A second email with the
/// same dedupe key, from this or any other instance, is a no-op (`ON CONFLICT DO
/// NOTHING`; a concurrent insert of the same key waits for the first to commit or
/// roll back). Wake the worker (`jobs::outbox::Wakeup::notify`) after the commit.
pub async fn enqueue(conn: &mut DbConn, email: &OutgoingEmail) -> AppResult<Enqueued> {
    let status = email.initial_status();
    let skip_reason = (status == EmailStatus::Skipped).then(|| match email.kind() {
        EmailKind::BudgetAlert => "nobody to send to: the organization has no alert email addresses",
        _ => "nobody to send to",
    });
    let recipients: Vec<&str> = email.recipients().iter().map(EmailAddress::as_str).collect();
    let id = Uuid::now_v7();
    let inserted: Option<Uuid> = diesel::insert_into(email_outbox::table)
        .values((
            email_outbox::id.eq(id),
            email_outbox::org_id.eq(email.org_id()),
            email_outbox::kind.eq(email.kind()),
            email_outbox::dedupe_key.eq(email.dedupe_key()),
            email_outbox::recipients.eq(recipients),
            email_outbox::subject.eq(email.subject()),
            email_outbox::text_body.eq(email.text_body()),
            email_outbox::html_body.eq(email.html_body()),
            email_outbox::status.eq(status),
            email_outbox::last_error.eq(skip_reason),
        ))
        .on_conflict(email_outbox::dedupe_key)
        .do_nothing()
        .returning(email_outbox::id)
        .get_result(conn)
        .await
        .optional()?;
    Ok(match inserted {
        None => Enqueued::Duplicate,
        Some(id) if status == EmailStatus::Skipped => Enqueued::Skipped(id),
        Some(id) => Enqueued::Queued(id),
    })
}

/// Queues the alert email for a threshold crossing of one of `org_id`'s budgets, to
/// the organization's alert addresses, in the caller's transaction. The email is
/// rendered now, so it reports the spend at the moment of crossing. Enqueuing the same
/// crossing again (same budget, period start and threshold) does nothing, which is
/// what makes "one email per threshold, per period, per budget" hold across instances.
///
/// The work runs in a savepoint: when this returns an error nothing was written and
/// the caller's transaction is still usable, so the ingest path can log the error
/// and commit the usage anyway (an alert problem must never lose usage).
pub async fn enqueue_budget_alert(conn: &mut DbConn, org_id: Uuid, alert: &BudgetAlert) -> AppResult<Enqueued> {
    alert
        .validate()
        .map_err(|e| AppError::internal(anyhow::anyhow!("budget alert for {}: {e}", alert.budget_id)))?;
    conn.transaction(async |conn| {
        let (org_name, addresses): (String, Vec<String>) = organizations::table
            .find(org_id)
            .select((organizations::name, organizations::alert_emails))
            .first(conn)
            .await
            .optional()?
            .ok_or_else(|| AppError::not_found("organization"))?;
        // Stored addresses were checked when they were set; one that no longer parses
        // is left out rather than holding back the others.
        let recipients = addresses
            .iter()
            .filter_map(|raw| EmailAddress::parse(raw).ok())
            .collect();
        let rendered = alert.render(&org_name);
        let email = OutgoingEmail::new(
            EmailKind::BudgetAlert,
            Some(org_id),
            alert.dedupe_key(),
            recipients,
            rendered.subject,
            rendered.text,
            rendered.html,
        )
        .map_err(|e| AppError::internal(anyhow::anyhow!("budget alert for {}: {e}", alert.budget_id)))?;
        enqueue(conn, &email).await
    })
    .await
}

/// Up to `limit` pending emails that are due, oldest due first, locked until the
/// caller's transaction ends. Must run inside a transaction: the lock is what keeps
/// another worker (`SKIP LOCKED` passes over locked rows instead of waiting) from
/// delivering the same email while this one is at it.
pub async fn claim_due(conn: &mut DbConn, limit: i64) -> AppResult<Vec<QueuedEmail>> {
    Ok(email_outbox::table
        // A literal rather than a bound parameter, so the planner can always match
        // the partial index `email_outbox_due_idx` (a generic plan could not).
        .filter(diesel::dsl::sql::<Bool>("status = 'pending'"))
        .filter(email_outbox::next_attempt_at.le(diesel::dsl::now))
        .order((email_outbox::next_attempt_at.asc(), email_outbox::id.asc()))
        .limit(limit)
        .for_update()
        .skip_locked()
        .select(QueuedEmail::as_select())
        .load(conn)
        .await?)
}

/// The SMTP server accepted the email. `scrub_bodies` empties the bodies (kinds that
/// carry single-use links). The last error, if any, stays: it tells why it was late.
pub async fn mark_sent(conn: &mut DbConn, id: Uuid, scrub_bodies: bool) -> AppResult<()> {
    diesel::update(email_outbox::table.find(id))
        .set((
            email_outbox::status.eq(EmailStatus::Sent),
            email_outbox::attempts.eq(email_outbox::attempts + 1),
            // When the server accepted it, not when the transaction began.
            email_outbox::sent_at.eq(diesel::dsl::sql::<Nullable<Timestamptz>>("clock_timestamp()")),
            scrub_bodies.then(|| email_outbox::text_body.eq("")),
            scrub_bodies.then(|| email_outbox::html_body.eq("")),
        ))
        .execute(conn)
        .await?;
    Ok(())
}

/// An attempt failed; try again `delay` after now. Database time, the clock
/// [`claim_due`] compares with; `clock_timestamp()` rather than `now()`, which is the
/// start of the transaction, before the attempt. `error` must already be sanitized.
pub async fn reschedule(conn: &mut DbConn, id: Uuid, delay: Duration, error: &str) -> AppResult<()> {
    let micros = i64::try_from(delay.as_micros()).unwrap_or(i64::MAX);
    let next = diesel::dsl::sql::<Timestamptz>("clock_timestamp() + ")
        .bind::<Interval, _>(PgInterval::from_microseconds(micros));
    diesel::update(email_outbox::table.find(id))
        .set((
            email_outbox::attempts.eq(email_outbox::attempts + 1),
            email_outbox::next_attempt_at.eq(next),
            email_outbox::last_error.eq(error),
        ))
        .execute(conn)
        .await?;
    Ok(())
}

/// Gives up on an email after an attempt: the last one allowed, or one that can never
/// succeed. `error` must already be sanitized.
pub async fn mark_failed(conn: &mut DbConn, id: Uuid, error: &str) -> AppResult<()> {
    diesel::update(email_outbox::table.find(id))
        .set((
            email_outbox::status.eq(EmailStatus::Failed),
            email_outbox::attempts.eq(email_outbox::attempts + 1),
            email_outbox::last_error.eq(error),
        ))
        .execute(conn)
        .await?;
    Ok(())
}

/// One email of an organization's alert history (bodies left out).
#[derive(Debug, Clone, Queryable, Selectable)]
#[diesel(table_name = email_outbox, check_for_backend(diesel::pg::Pg))]
pub struct AlertRecord {
    pub id: Uuid,
    pub kind: EmailKind,
    pub dedupe_key: String,
    pub recipients: Vec<String>,
    pub subject: String,
    pub status: EmailStatus,
    pub attempts: i32,
    pub next_attempt_at: DateTime<Utc>,
    pub last_error: Option<String>,
    pub created_at: DateTime<Utc>,
    pub sent_at: Option<DateTime<Utc>>,
}

/// Which page of the history to read.
#[derive(Debug, Clone, Copy)]
pub struct HistoryPage {
    pub status: Option<EmailStatus>,
    /// Only emails older than this one (the previous page's last id).
    pub before: Option<Uuid>,
    pub limit: i64,
}

/// The organization's alert emails, newest first (ids are UUIDv7, so id order is
/// creation order), and the id to continue from when there are more.
pub async fn alert_history(
    conn: &mut DbConn,
    access: &OrgAccess,
    page: HistoryPage,
) -> AppResult<(Vec<AlertRecord>, Option<Uuid>)> {
    let alert_kinds: Vec<EmailKind> = EmailKind::alerts().collect();
    let mut query = email_outbox::table
        .filter(email_outbox::org_id.eq(access.org_id()))
        .filter(email_outbox::kind.eq_any(alert_kinds))
        .into_boxed();
    if let Some(status) = page.status {
        query = query.filter(email_outbox::status.eq(status));
    }
    if let Some(before) = page.before {
        query = query.filter(email_outbox::id.lt(before));
    }
    let limit = page.limit.max(1);
    let mut rows: Vec<AlertRecord> = query
        .order(email_outbox::id.desc())
        .limit(limit + 1)
        .select(AlertRecord::as_select())
        .load(conn)
        .await?;
    let more = rows.len() as i64 > limit;
    rows.truncate(limit as usize);
    let next = if more { rows.last().map(|r| r.id) } else { None };
    Ok((rows, next))
}
