//! Hand-written statements that PostgreSQL parses and plans once per connection.
//!
//! diesel's `sql_query` marks every statement unsafe to cache, so each is sent unnamed
//! and PostgreSQL parses, analyses and plans it on every call. For the wide upserts of
//! the ingest transaction (a roll-up upsert names ~80 columns) that was two thirds of
//! PostgreSQL's work per single event (`benches/README.md`). A [`Prepared`] is the same
//! SQL and binds, but cacheable: the connection keeps it prepared under its text and
//! bind types, and only its first use on a connection pays for parsing (planning too,
//! once PostgreSQL settles on a generic plan).
//!
//! Only for SQL whose text never depends on the data (rows go into array binds, never
//! into the text), or every connection's cache would fill with one-off statements; and
//! each placeholder `$1`, `$2`, … must appear once, in order (the binds are pushed
//! where their placeholders stand).

use std::marker::PhantomData;

use diesel::{
    pg::Pg,
    query_builder::{AstPass, Query, QueryFragment, QueryId},
    serialize::ToSql,
    sql_types::{HasSqlType, Untyped},
    QueryResult,
};

pub struct Prepared<'f> {
    /// The SQL between placeholders: one more piece than there are placeholders.
    pieces: Vec<&'f str>,
    /// Why the SQL cannot be used (a placeholder out of order), found when it is run.
    malformed: Option<String>,
    binds: Vec<Box<dyn QueryFragment<Pg> + Send + 'f>>,
}

impl<'f> Prepared<'f> {
    pub fn new(sql: &'f str) -> Self {
        let mut pieces = Vec::new();
        let mut malformed = None;
        let mut rest = sql;
        let mut expected = 1usize;
        while let Some(dollar) = rest.find('$') {
            let digits = rest[dollar + 1..].bytes().take_while(u8::is_ascii_digit).count();
            if digits == 0 {
                malformed.get_or_insert_with(|| format!("a `$` that is no placeholder in: {sql}"));
                break;
            }
            let number = rest[dollar + 1..dollar + 1 + digits].parse::<usize>().unwrap_or(0);
            if number != expected {
                malformed.get_or_insert_with(|| format!("placeholder ${number} where ${expected} belongs in: {sql}"));
            }
            pieces.push(&rest[..dollar]);
            rest = &rest[dollar + 1 + digits..];
            expected += 1;
        }
        pieces.push(rest);
        Self {
            pieces,
            malformed,
            binds: Vec::new(),
        }
    }

    /// Binds the next placeholder.
    pub fn bind<ST, V>(mut self, value: V) -> Self
    where
        Pg: HasSqlType<ST>,
        V: ToSql<ST, Pg> + Send + 'f,
        ST: Send + 'f,
    {
        self.binds.push(Box::new(Bind {
            value,
            sql_type: PhantomData,
        }));
        self
    }
}

struct Bind<ST, V> {
    value: V,
    sql_type: PhantomData<ST>,
}

impl<ST, V> QueryFragment<Pg> for Bind<ST, V>
where
    Pg: HasSqlType<ST>,
    V: ToSql<ST, Pg>,
{
    fn walk_ast<'b>(&'b self, mut out: AstPass<'_, 'b, Pg>) -> QueryResult<()> {
        // Writes the next `$n` and binds the value to it.
        out.push_bind_param::<ST, V>(&self.value)
    }
}

impl QueryFragment<Pg> for Prepared<'_> {
    fn walk_ast<'b>(&'b self, mut out: AstPass<'_, 'b, Pg>) -> QueryResult<()> {
        if let Some(why) = &self.malformed {
            return Err(diesel::result::Error::QueryBuilderError(why.clone().into()));
        }
        if self.binds.len() + 1 != self.pieces.len() {
            return Err(diesel::result::Error::QueryBuilderError(
                format!(
                    "{} placeholders but {} binds in: {}",
                    self.pieces.len() - 1,
                    self.binds.len(),
                    self.pieces.concat()
                )
                .into(),
            ));
        }
        for (piece, bind) in self.pieces.iter().zip(&self.binds) {
            out.push_sql(piece);
            bind.walk_ast(out.reborrow())?;
        }
        if let Some(last) = self.pieces.last() {
            out.push_sql(last);
        }
        Ok(())
    }
}

// No static id: diesel caches the statement under its SQL text and bind types.
impl QueryId for Prepared<'_> {
    type QueryId = ();
    const HAS_STATIC_QUERY_ID: bool = false;
}

impl Query for Prepared<'_> {
    type SqlType = Untyped;
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn placeholders_split_the_sql_in_order() {
        let q = Prepared::new("SELECT $1, t.* FROM unnest($2::text[], $3::int8[]) AS t");
        assert_eq!(
            q.pieces,
            ["SELECT ", ", t.* FROM unnest(", "::text[], ", "::int8[]) AS t"]
        );
        assert!(q.malformed.is_none());
        assert!(Prepared::new("SELECT $2, $1").malformed.is_some());
        assert!(Prepared::new("SELECT $1, $1").malformed.is_some());
        assert!(Prepared::new("SELECT '$'").malformed.is_some());
    }
}
