//! Rate limits of a scope, and the organization's defaults for customers and agents
//! (rows without a `scope_id`). A scope's own row replaces the default as a whole.

use chrono::{DateTime, Utc};
use diesel::{
    prelude::*,
    upsert::{excluded, on_constraint},
};
use diesel_async::RunQueryDsl;
use uuid::Uuid;

use super::{
    access::OrgAccess,
    schema::rate_limits,
    scopes::{self, ScopeTarget, Subject},
    DbConn,
};
use crate::{
    domain::{
        budget::{BudgetScope, RateLimits},
        role::Access,
    },
    error::{AppError, AppResult},
};

#[derive(Debug, Clone, Queryable, Selectable)]
#[diesel(table_name = rate_limits, check_for_backend(diesel::pg::Pg))]
pub struct RateLimitRow {
    pub id: Uuid,
    pub org_id: Uuid,
    pub scope: BudgetScope,
    /// `None`: the organization's default for its scope.
    pub scope_id: Option<Uuid>,
    pub requests_per_minute: Option<i32>,
    pub tokens_per_minute: Option<i64>,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
}

macro_rules! of {
    ($access:expr, $subject:expr) => {
        rate_limits::table
            .filter(rate_limits::org_id.eq($access.org_id()))
            .filter(rate_limits::scope.eq($subject.scope()))
            .filter(rate_limits::scope_id.is_not_distinct_from($subject.scope_id()))
    };
}

/// Sets the limits of `subject`, replacing both values. Returns the row and whether
/// it is new.
pub async fn put(
    conn: &mut DbConn,
    access: &OrgAccess,
    subject: Subject,
    limits: RateLimits,
) -> AppResult<(RateLimitRow, bool)> {
    access.require(Access::Manage)?;
    if let Subject::Target(target) = subject {
        scopes::ensure_exists(conn, access, target).await?;
    }
    let row = diesel::insert_into(rate_limits::table)
        .values((
            rate_limits::id.eq(Uuid::now_v7()),
            rate_limits::org_id.eq(access.org_id()),
            rate_limits::scope.eq(subject.scope()),
            rate_limits::scope_id.eq(subject.scope_id()),
            rate_limits::requests_per_minute.eq(limits.requests_per_minute),
            rate_limits::tokens_per_minute.eq(limits.tokens_per_minute),
        ))
        .on_conflict(on_constraint("rate_limits_scope_key"))
        .do_update()
        .set((
            rate_limits::requests_per_minute.eq(excluded(rate_limits::requests_per_minute)),
            rate_limits::tokens_per_minute.eq(excluded(rate_limits::tokens_per_minute)),
            rate_limits::updated_at.eq(diesel::dsl::now),
        ))
        .returning(RateLimitRow::as_returning())
        .get_result(conn)
        .await?;
    let created = row.created_at == row.updated_at;
    Ok((row, created))
}

pub async fn find(conn: &mut DbConn, access: &OrgAccess, subject: Subject) -> AppResult<Option<RateLimitRow>> {
    Ok(of!(access, subject)
        .select(RateLimitRow::as_select())
        .first(conn)
        .await
        .optional()?)
}

/// A scope's own limits; 404 when it has none (or the scope is not the caller's).
pub async fn get(conn: &mut DbConn, access: &OrgAccess, target: ScopeTarget) -> AppResult<RateLimitRow> {
    find(conn, access, Subject::Target(target))
        .await?
        .ok_or_else(|| AppError::not_found("rate limit"))
}

/// Own limits (not defaults), oldest first, `limit` after the row `after`.
pub async fn list(
    conn: &mut DbConn,
    access: &OrgAccess,
    scope: Option<BudgetScope>,
    after: Option<Uuid>,
    limit: i64,
) -> AppResult<Vec<RateLimitRow>> {
    let mut query = rate_limits::table
        .filter(rate_limits::org_id.eq(access.org_id()))
        .filter(rate_limits::scope_id.is_not_null())
        .into_boxed();
    if let Some(scope) = scope {
        query = query.filter(rate_limits::scope.eq(scope));
    }
    if let Some(after) = after {
        query = query.filter(rate_limits::id.gt(after));
    }
    Ok(query
        .order(rate_limits::id.asc())
        .limit(limit)
        .select(RateLimitRow::as_select())
        .load(conn)
        .await?)
}

/// `false` if there was nothing to delete.
pub async fn delete(conn: &mut DbConn, access: &OrgAccess, subject: Subject) -> AppResult<bool> {
    access.require(Access::Manage)?;
    Ok(diesel::delete(of!(access, subject)).execute(conn).await? > 0)
}
