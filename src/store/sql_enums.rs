//! Domain enums stored as `text` columns (each backed by a CHECK constraint).

use diesel::{
    deserialize::{self, FromSql},
    pg::{Pg, PgValue},
    serialize::{self, Output, ToSql},
    sql_types::Text,
};

use crate::domain::{
    budget::BudgetScope,
    outbox::{EmailKind, EmailStatus},
    period::BudgetPeriod,
    plan::Plan,
    project_mode::ProjectMode,
    role::Role,
    unpriced::UnpricedModels,
    usage::{BillingSource, EventStatus},
};

macro_rules! text_enum {
    ($($ty:ty),+) => {$(
        impl ToSql<Text, Pg> for $ty {
            fn to_sql<'b>(&'b self, out: &mut Output<'b, '_, Pg>) -> serialize::Result {
                <str as ToSql<Text, Pg>>::to_sql(self.as_str(), out)
            }
        }

        impl FromSql<Text, Pg> for $ty {
            fn from_sql(value: PgValue<'_>) -> deserialize::Result<Self> {
                let raw = <String as FromSql<Text, Pg>>::from_sql(value)?;
                raw.parse().map_err(|_| format!("unknown {} `{raw}`", stringify!($ty)).into())
            }
        }
    )+};
}

text_enum!(
    Plan,
    Role,
    ProjectMode,
    BudgetScope,
    BudgetPeriod,
    EmailKind,
    EmailStatus,
    EventStatus,
    BillingSource,
    UnpricedModels
);
