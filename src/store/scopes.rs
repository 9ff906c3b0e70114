//! What a budget, a rate limit or a reset applies to, and the check that it exists in
//! the caller's organization.

use diesel::prelude::*;
use diesel_async::RunQueryDsl;
use uuid::Uuid;

use super::{
    access::OrgAccess,
    schema::{agents, api_keys, customers, projects},
    DbConn,
};
use crate::{
    domain::budget::{BudgetScope, DefaultScope},
    error::{AppError, AppResult},
};

/// One customer, agent, API key, project, or the organization itself.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ScopeTarget {
    pub scope: BudgetScope,
    pub id: Uuid,
}

/// What a budget or rate limit row belongs to: one target, or the organization's
/// default for its customers or agents.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Subject {
    Target(ScopeTarget),
    Default(DefaultScope),
}

impl Subject {
    pub fn scope(self) -> BudgetScope {
        match self {
            Self::Target(t) => t.scope,
            Self::Default(d) => d.scope(),
        }
    }

    /// `None` for a default.
    pub fn scope_id(self) -> Option<Uuid> {
        match self {
            Self::Target(t) => Some(t.id),
            Self::Default(_) => None,
        }
    }

    /// The default that stands in for this target when it has no row of its own.
    pub fn fallback(self) -> Option<Self> {
        match self.scope() {
            BudgetScope::Customer => Some(Self::Default(DefaultScope::Customer)),
            BudgetScope::Agent => Some(Self::Default(DefaultScope::Agent)),
            _ => None,
        }
        .filter(|d| *d != self)
    }
}

/// 404 unless the target belongs to the caller's organization (the organization
/// scope takes the organization's own id).
pub async fn ensure_exists(conn: &mut DbConn, access: &OrgAccess, target: ScopeTarget) -> AppResult<()> {
    let org = access.org_id();
    let found: Option<Uuid> = match target.scope {
        BudgetScope::Organization => (target.id == org).then_some(org),
        BudgetScope::Project => projects::table
            .filter(projects::org_id.eq(org).and(projects::id.eq(target.id)))
            .select(projects::id)
            .first(conn)
            .await
            .optional()?,
        BudgetScope::ApiKey => api_keys::table
            .filter(api_keys::org_id.eq(org).and(api_keys::id.eq(target.id)))
            .select(api_keys::id)
            .first(conn)
            .await
            .optional()?,
        BudgetScope::Customer => customers::table
            .filter(customers::org_id.eq(org).and(customers::id.eq(target.id)))
            .select(customers::id)
            .first(conn)
            .await
            .optional()?,
        BudgetScope::Agent => agents::table
            .filter(agents::org_id.eq(org).and(agents::id.eq(target.id)))
            .select(agents::id)
            .first(conn)
            .await
            .optional()?,
    };
    found
        .map(|_| ())
        .ok_or_else(|| AppError::not_found(scope_noun(target.scope)))
}

pub fn scope_noun(scope: BudgetScope) -> &'static str {
    match scope {
        BudgetScope::Customer => "customer",
        BudgetScope::Agent => "agent",
        BudgetScope::ApiKey => "API key",
        BudgetScope::Project => "project",
        BudgetScope::Organization => "organization",
    }
}
