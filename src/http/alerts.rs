//! An organization's alert history: the alert emails queued for it, and how their
//! delivery went.

use actix_web::{get, web};
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, ToSchema};
use uuid::Uuid;

use super::{extract::AuthUser, paging, paths::OrgPath, state::AppState};
use crate::{
    domain::{
        alert_email::AlertKey,
        outbox::{EmailKind, EmailStatus},
        role::Access,
    },
    error::{AppError, AppResult, Problem},
    store::{
        self,
        outbox::{AlertRecord, HistoryPage},
    },
};

#[derive(Deserialize, IntoParams)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
#[into_params(parameter_in = Query, rename_all = "camelCase")]
pub struct AlertQuery {
    /// Only alerts in this delivery state.
    status: Option<EmailStatus>,
    /// Page size.
    #[param(minimum = 1, maximum = 500, default = 50)]
    limit: Option<i64>,
    /// Opaque: `nextCursor` of the previous page. Absent or empty: the first page.
    cursor: Option<String>,
}

/// What an alert was about.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum AlertKind {
    /// A budget crossed one of its alert thresholds.
    BudgetAlert,
}

impl AlertKind {
    fn of(kind: EmailKind) -> Option<Self> {
        match kind {
            EmailKind::BudgetAlert => Some(Self::BudgetAlert),
            EmailKind::EmailVerification | EmailKind::PasswordReset | EmailKind::Invoice => None,
        }
    }
}

#[derive(Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct AlertView {
    id: Uuid,
    kind: AlertKind,
    /// What makes the alert unique: at most one email per key, ever. For budget
    /// alerts `budget_alert:<budgetId>:<subjectId>:<periodStart>:<thresholdPercent>`.
    #[schema(
        example = "budget_alert:0193a8e2-7c4b-7d2e-9f00-000000000001:0193a8e2-7c4b-7d2e-9f00-000000000002:20261201T000000Z:80"
    )]
    dedupe_key: String,
    /// The budget whose threshold was crossed.
    budget_id: Option<Uuid>,
    /// The customer, agent, key, project or organization it was crossed for.
    subject_id: Option<Uuid>,
    /// The threshold crossed, in percent of the budget.
    #[schema(minimum = 1, maximum = 100)]
    threshold_percent: Option<u8>,
    /// Start of the budget period the alert belongs to.
    period_start: Option<DateTime<Utc>>,
    /// The organization's alert addresses when the alert fired.
    recipients: Vec<String>,
    subject: String,
    /// `pending`: waiting for its first or next attempt; `sent`: accepted by the SMTP
    /// server; `failed`: given up; `skipped`: the organization had no alert addresses.
    status: EmailStatus,
    /// Delivery attempts made.
    attempts: i32,
    /// When the next attempt is due; only while pending.
    next_attempt_at: Option<DateTime<Utc>>,
    /// The last delivery error (kept after a late success, to tell why it was late),
    /// or why the alert was skipped.
    last_error: Option<String>,
    /// When the threshold was crossed and the alert queued.
    created_at: DateTime<Utc>,
    /// When the SMTP server accepted it.
    sent_at: Option<DateTime<Utc>>,
}

impl AlertView {
    fn from_record(record: AlertRecord) -> AppResult<Self> {
        let kind = AlertKind::of(record.kind).ok_or_else(|| {
            AppError::internal(anyhow::anyhow!(
                "{} email {} in the alert history",
                record.kind.as_str(),
                record.id
            ))
        })?;
        let key = AlertKey::parse(&record.dedupe_key);
        Ok(Self {
            id: record.id,
            kind,
            budget_id: key.map(|k| k.budget_id),
            subject_id: key.map(|k| k.subject_id),
            threshold_percent: key.map(|k| k.threshold_percent),
            period_start: key.map(|k| k.period_start),
            dedupe_key: record.dedupe_key,
            recipients: record.recipients,
            subject: record.subject,
            status: record.status,
            attempts: record.attempts,
            next_attempt_at: (record.status == EmailStatus::Pending).then_some(record.next_attempt_at),
            last_error: record.last_error,
            created_at: record.created_at,
            sent_at: record.sent_at,
        })
    }
}

#[derive(Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct AlertPageView {
    data: Vec<AlertView>,
    /// Pass as `cursor` for the next page; absent on the last page.
    next_cursor: Option<String>,
}

/// The organization's alert emails and their delivery, newest first.
#[utoipa::path(
    tag = "alerts",
    security(("bearer" = [])),
    params(OrgPath, AlertQuery),
    responses(
        (status = 200, description = "A page of alerts, newest first", body = AlertPageView),
        (status = 400, description = "A query parameter is invalid", body = Problem),
        (status = 401, body = Problem),
        (status = 404, body = Problem),
    )
)]
#[get("/orgs/{orgId}/alerts")]
pub async fn list_alerts(
    state: web::Data<AppState>,
    caller: AuthUser,
    path: web::Path<OrgPath>,
    query: web::Query<AlertQuery>,
) -> AppResult<web::Json<AlertPageView>> {
    let mut conn = state.conn().await?;
    let access = store::access::authorize(&mut conn, &caller.0, path.org_id, Access::Read).await?;
    let q = query.into_inner();
    let limit = paging::page_size(q.limit)?;
    let before = paging::id_cursor(q.cursor.as_deref())?;
    let page = HistoryPage {
        status: q.status,
        before,
        limit,
    };
    let (records, next) = store::outbox::alert_history(&mut conn, &access, page).await?;
    Ok(web::Json(AlertPageView {
        data: records
            .into_iter()
            .map(AlertView::from_record)
            .collect::<AppResult<_>>()?,
        next_cursor: next.map(|id| id.simple().to_string()),
    }))
}
