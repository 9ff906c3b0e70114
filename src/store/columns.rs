//! Column lists declared once.
//!
//! The wide usage tables are written column-wise (`INSERT … SELECT FROM unnest($arrays)`)
//! and read with SQL. [`columns!`] declares a struct whose fields are the columns: from
//! that one list come the struct (readable with `QueryableByName`), its column names,
//! the `$n::type[]` casts of its arrays, and the code that binds a slice of rows as one
//! array per column. A field's SQL type is written next to its Rust type, so a mismatch
//! (say, money bound as an integer) does not compile.

use diesel::sql_types::{
    Bool, Date, Int2, Int4, Int8, Jsonb, Nullable, Numeric, SqlType, Text, Timestamptz, Uuid as SqlUuid,
};

/// The PostgreSQL name of a SQL type, for casts.
pub trait PgTypeName {
    const NAME: &'static str;
}

macro_rules! pg_names {
    ($($ty:ty => $name:literal),+ $(,)?) => {$(
        impl PgTypeName for $ty {
            const NAME: &'static str = $name;
        }
    )+};
}

pg_names!(
    SqlUuid => "uuid",
    Text => "text",
    Int2 => "int2",
    Int4 => "int4",
    Int8 => "int8",
    Bool => "bool",
    Numeric => "numeric",
    Date => "date",
    Timestamptz => "timestamptz",
    Jsonb => "jsonb",
);

impl<T: PgTypeName + SqlType> PgTypeName for Nullable<T> {
    const NAME: &'static str = T::NAME;
}

/// The `unnest` arguments of `columns` bound from placeholder `$first` on:
/// `$4::uuid[], $5::text[], …`.
pub fn array_casts(types: &[&str], first: usize) -> String {
    types
        .iter()
        .enumerate()
        .map(|(i, t)| format!("${}::{t}[]", first + i))
        .collect::<Vec<_>>()
        .join(", ")
}

/// The upsert of a sharded sum table: rows bound as one array per column (`$3` on,
/// after the organization and shard) inserted in their order, and on a conflict with
/// `{table}_grain` every column after the first `grain_len` added to the stored row.
pub fn sharded_sum_upsert_sql(table: &str, columns: &[&str], types: &[&str], grain_len: usize) -> String {
    let names = columns.join(", ");
    let t_columns = columns.iter().map(|c| format!("t.{c}")).collect::<Vec<_>>().join(", ");
    let sums = columns[grain_len..]
        .iter()
        .map(|c| format!("{c} = r.{c} + EXCLUDED.{c}"))
        .collect::<Vec<_>>()
        .join(", ");
    format!(
        "INSERT INTO {table} AS r (org_id, shard, {names}) \
         SELECT $1, $2, {t_columns} FROM unnest({arrays}) WITH ORDINALITY AS t({names}, ord) \
         ORDER BY t.ord \
         ON CONFLICT ON CONSTRAINT {table}_grain DO UPDATE SET {sums}",
        arrays = array_casts(types, 3),
    )
}

/// Declares a struct of columns. Each field is `name: RustType => SqlType`; the struct
/// gets `COLUMNS` (names, in order), `TYPES` (their PostgreSQL types) and
/// `bind_arrays`, which binds one array per column, in order, borrowing from the rows.
macro_rules! columns {
    (
        $(#[$meta:meta])*
        pub struct $name:ident {
            $( $(#[doc = $doc:literal])* $field:ident : $rust:ty => $sql:ty ),+ $(,)?
        }
    ) => {
        $(#[$meta])*
        #[derive(diesel::QueryableByName)]
        pub struct $name {
            $( $(#[doc = $doc])* #[diesel(sql_type = $sql)] pub $field: $rust, )+
        }

        #[allow(dead_code)]
        impl $name {
            /// Column names, in declaration order.
            pub const COLUMNS: &'static [&'static str] = &[$(stringify!($field)),+];
            /// The PostgreSQL type of each column, in the same order.
            pub const TYPES: &'static [&'static str] =
                &[$(<$sql as $crate::store::columns::PgTypeName>::NAME),+];

            /// Binds the rows (each reached through `get`) as one array per column.
            pub fn bind_arrays<'a, R: Sync>(
                query: $crate::store::prepared::Prepared<'a>,
                rows: &'a [R],
                get: impl Fn(&'a R) -> &'a Self,
            ) -> $crate::store::prepared::Prepared<'a> {
                $(
                    let column: Vec<&'a $rust> = rows.iter().map(|r| &get(r).$field).collect();
                    let query = query.bind::<diesel::sql_types::Array<$sql>, _>(column);
                )+
                query
            }
        }
    };
}

pub(crate) use columns;

/// [`columns!`] for sums: every field also adds up (`add`), so roll-up rows can be
/// folded in memory before they are added to the stored ones.
macro_rules! summed_columns {
    (
        $(#[$meta:meta])*
        pub struct $name:ident {
            $( $(#[doc = $doc:literal])* $field:ident : $rust:ty => $sql:ty ),+ $(,)?
        }
    ) => {
        $crate::store::columns::columns! {
            $(#[$meta])*
            pub struct $name {
                $( $(#[doc = $doc])* $field: $rust => $sql ),+
            }
        }

        impl $name {
            /// Adds `other` to these sums, column by column.
            pub fn add(&mut self, other: &Self) {
                $( self.$field += other.$field; )+
            }
        }
    };
}

pub(crate) use summed_columns;
