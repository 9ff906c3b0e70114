//! Parsing request fields into domain types while collecting every broken rule, so a
//! client sees all of its mistakes in one `validation_failed` problem.

use crate::{
    domain::Invalid,
    error::{AppError, AppResult, FieldError},
};

pub type Checked<T> = Result<T, FieldError>;

/// The errors of a nested object, named under its field (`budget.amount`).
pub fn nested(name: &str, errors: Vec<FieldError>) -> Vec<FieldError> {
    errors
        .into_iter()
        .map(|e| FieldError {
            field: format!("{name}.{}", e.field),
            message: e.message,
        })
        .collect()
}

/// Names the request field a domain parse belongs to.
pub fn field<T>(name: &str, parsed: Result<T, Invalid>) -> Checked<T> {
    parsed.map_err(|e| FieldError {
        field: name.to_owned(),
        message: e.0,
    })
}

/// Like [`field`], for a field the client may leave out.
pub fn optional<T>(name: &str, parsed: Option<Result<T, Invalid>>) -> Checked<Option<T>> {
    parsed.transpose().map_err(|e| FieldError {
        field: name.to_owned(),
        message: e.0,
    })
}

/// Parses each element of a list field, naming failures `field[i]`.
pub fn each<T, R>(name: &str, raw: &[R], parse: impl Fn(&R) -> Result<T, Invalid>) -> Result<Vec<T>, Vec<FieldError>> {
    let mut values = Vec::with_capacity(raw.len());
    let mut errors = Vec::new();
    for (i, item) in raw.iter().enumerate() {
        match parse(item) {
            Ok(v) => values.push(v),
            Err(e) => errors.push(FieldError {
                field: format!("{name}[{i}]"),
                message: e.0,
            }),
        }
    }
    if errors.is_empty() {
        Ok(values)
    } else {
        Err(errors)
    }
}

/// Collects field errors while a request with many fields is parsed:
/// `let x = fields.take("x", parse(x));` for each, then
/// `let (Some(x), Some(y)) = (x, y) else { return Err(fields.into_errors()) };`.
#[derive(Debug, Default)]
pub struct Fields(Vec<FieldError>);

impl Fields {
    pub fn take<T>(&mut self, name: &str, parsed: Result<T, Invalid>) -> Option<T> {
        parsed.map_err(|e| self.push(name, e.0)).ok()
    }

    pub fn push(&mut self, name: &str, message: impl Into<String>) {
        self.0.push(FieldError {
            field: name.to_owned(),
            message: message.into(),
        });
    }

    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    pub fn into_errors(self) -> Vec<FieldError> {
        self.0
    }
}

/// The longest free-text query filter, in characters.
pub const MAX_FILTER_LEN: usize = 256;

/// A free-text query parameter: trimmed, bounded, no control characters (PostgreSQL
/// cannot even compare a string holding NUL). Left empty (`?customer=`), it is no filter.
pub fn query_text(name: &str, value: Option<String>) -> AppResult<Option<String>> {
    let invalid = |message: &str| {
        AppError::new(
            crate::error::ErrorCode::InvalidQueryParameter,
            format!("{name}: {message}"),
        )
    };
    // Control characters are refused even in a value that is otherwise blank (`%0A`),
    // as the `FilterText` pattern says.
    if value.as_deref().is_some_and(|v| v.chars().any(char::is_control)) {
        return Err(invalid("must not contain control characters"));
    }
    value
        .filter(|v| !v.trim().is_empty())
        .map(|v| crate::domain::usage::bounded_text(&v, MAX_FILTER_LEN).map_err(|e| invalid(&e.0)))
        .transpose()
}

pub fn one<T>(checked: Checked<T>) -> AppResult<T> {
    checked.map_err(|e| AppError::validation(vec![e]))
}

macro_rules! all_n {
    ($name:ident: $($v:ident $T:ident),+) => {
        /// All fields parsed, or every field error at once.
        #[allow(clippy::too_many_arguments)]
        pub fn $name<$($T),+>($($v: Checked<$T>),+) -> AppResult<($($T),+)> {
            match ($($v),+) {
                ($(Ok($v)),+) => Ok(($($v),+)),
                ($($v),+) => Err(AppError::validation(
                    [$($v.err()),+].into_iter().flatten().collect(),
                )),
            }
        }
    };
}

all_n!(all2: a A, b B);
all_n!(all3: a A, b B, c C);
all_n!(all4: a A, b B, c C, d D);

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reports_every_broken_field() {
        let err = all3(
            field("a", Ok::<_, Invalid>(1)),
            field::<u8>("b", Err(Invalid::new("bad b"))),
            field::<u8>("c", Err(Invalid::new("bad c"))),
        )
        .unwrap_err();
        let problem = err.problem();
        let fields: Vec<_> = problem.errors.iter().map(|e| e.field.as_str()).collect();
        assert_eq!(fields, ["b", "c"]);
    }

    #[test]
    fn list_errors_name_the_index() {
        let errs = each("xs", &["1", "x", "3"], |s| {
            s.parse::<u8>().map_err(|_| Invalid::new("not a number"))
        })
        .unwrap_err();
        assert_eq!(errs[0].field, "xs[1]");
    }
}
