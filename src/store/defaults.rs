//! The organization's defaults for its customers and agents: a budget and rate limits
//! that apply to every customer (or agent) without its own, from its first request.

use diesel_async::AsyncConnection;

use super::{
    access::OrgAccess,
    budgets::{self, Budget},
    rate_limits::{self, RateLimitRow},
    scopes::Subject,
    DbConn,
};
use crate::{
    domain::{
        budget::{BudgetSettings, DefaultScope, RateLimits},
        role::Access,
    },
    error::{AppError, AppResult},
};

#[derive(Debug, Clone)]
pub struct Defaults {
    pub budget: Option<Budget>,
    pub rate_limits: Option<RateLimitRow>,
}

pub async fn get(conn: &mut DbConn, access: &OrgAccess, kind: DefaultScope) -> AppResult<Defaults> {
    let subject = Subject::Default(kind);
    Ok(Defaults {
        budget: budgets::find(conn, access, subject).await?,
        rate_limits: rate_limits::find(conn, access, subject).await?,
    })
}

/// Replaces both defaults at once: `None` removes one.
pub async fn replace(
    conn: &mut DbConn,
    access: &OrgAccess,
    kind: DefaultScope,
    budget: Option<&BudgetSettings>,
    limits: Option<RateLimits>,
) -> AppResult<Defaults> {
    access.require(Access::Manage)?;
    let subject = Subject::Default(kind);
    conn.transaction(async |conn| {
        let budget = match budget {
            Some(settings) => Some(budgets::put(conn, access, subject, settings).await?.0),
            None => {
                budgets::delete(conn, access, subject).await?;
                None
            }
        };
        let rate_limits = match limits {
            Some(limits) => Some(rate_limits::put(conn, access, subject, limits).await?.0),
            None => {
                rate_limits::delete(conn, access, subject).await?;
                None
            }
        };
        Ok::<_, AppError>(Defaults { budget, rate_limits })
    })
    .await
}
