//! Global and per-organization discounts (managed by operators).

use chrono::{DateTime, Utc};
use diesel::prelude::*;
use diesel_async::RunQueryDsl;
use rust_decimal::Decimal;
use uuid::Uuid;

use super::{access::OrgAccess, schema::discounts, DbConn};
use crate::{
    domain::discount::DiscountRule,
    error::{AppError, AppResult},
};

#[derive(Debug, Clone, Queryable, Selectable)]
#[diesel(table_name = discounts, check_for_backend(diesel::pg::Pg))]
pub struct DiscountRow {
    pub id: Uuid,
    pub org_id: Option<Uuid>,
    pub provider: Option<String>,
    pub model: Option<String>,
    pub percent: Decimal,
    pub valid_from: DateTime<Utc>,
    pub valid_until: Option<DateTime<Utc>>,
    pub created_at: DateTime<Utc>,
}

impl From<DiscountRow> for DiscountRule {
    fn from(row: DiscountRow) -> Self {
        Self {
            id: row.id,
            org_id: row.org_id,
            provider: row.provider,
            model: row.model,
            percent: row.percent,
            valid_from: row.valid_from,
            valid_until: row.valid_until,
        }
    }
}

pub struct NewDiscount {
    pub org_id: Option<Uuid>,
    pub provider: Option<String>,
    pub model: Option<String>,
    pub percent: Decimal,
    pub valid_from: DateTime<Utc>,
    pub valid_until: Option<DateTime<Utc>>,
}

pub async fn insert(conn: &mut DbConn, new: NewDiscount) -> AppResult<DiscountRow> {
    diesel::insert_into(discounts::table)
        .values((
            discounts::id.eq(Uuid::now_v7()),
            discounts::org_id.eq(new.org_id),
            discounts::provider.eq(new.provider),
            discounts::model.eq(new.model),
            discounts::percent.eq(new.percent),
            discounts::valid_from.eq(new.valid_from),
            discounts::valid_until.eq(new.valid_until),
        ))
        .returning(DiscountRow::as_returning())
        .get_result(conn)
        .await
        .map_err(|e| match e {
            diesel::result::Error::DatabaseError(diesel::result::DatabaseErrorKind::ForeignKeyViolation, _) => {
                AppError::not_found("organization")
            }
            other => other.into(),
        })
}

/// Operator view: every discount, or those of one scope (`Some(None)`: global only).
pub async fn list(conn: &mut DbConn, org: Option<Option<Uuid>>) -> AppResult<Vec<DiscountRow>> {
    let mut query = discounts::table.select(DiscountRow::as_select()).into_boxed();
    match org {
        Some(Some(org_id)) => query = query.filter(discounts::org_id.eq(org_id)),
        Some(None) => query = query.filter(discounts::org_id.is_null()),
        None => {}
    }
    Ok(query.order(discounts::created_at.asc()).load(conn).await?)
}

pub async fn delete(conn: &mut DbConn, id: Uuid) -> AppResult<()> {
    let deleted = diesel::delete(discounts::table.find(id)).execute(conn).await?;
    if deleted == 0 {
        return Err(AppError::not_found("discount"));
    }
    Ok(())
}

/// The discounts that can apply to an organization's calls: its own and the global ones.
pub async fn rules_for_org(conn: &mut DbConn, org_id: Uuid) -> AppResult<Vec<DiscountRule>> {
    let rows: Vec<DiscountRow> = discounts::table
        .filter(discounts::org_id.eq(org_id).or(discounts::org_id.is_null()))
        .select(DiscountRow::as_select())
        .load(conn)
        .await?;
    Ok(rows.into_iter().map(DiscountRule::from).collect())
}

/// Tenant view of the same: what applies to the caller's organization.
pub async fn list_applicable(conn: &mut DbConn, access: &OrgAccess) -> AppResult<Vec<DiscountRow>> {
    Ok(discounts::table
        .filter(discounts::org_id.eq(access.org_id()).or(discounts::org_id.is_null()))
        .order(discounts::created_at.asc())
        .select(DiscountRow::as_select())
        .load(conn)
        .await?)
}
