//! The one error type of the service and its single mapping to HTTP.
//!
//! Every failure a client can see is an [`AppError`]: a stable [`ErrorCode`], a message
//! meant for the caller, and (for server faults) an internal cause that is logged but
//! never sent. It renders as RFC 9457 problem details (`application/problem+json`).

use actix_web::{http::StatusCode, HttpResponse, ResponseError};
use serde::Serialize;
use utoipa::ToSchema;

pub type AppResult<T> = Result<T, AppError>;

/// `Retry-After` of a 503 for a backing service lost: a PostgreSQL restart or fail-over
/// takes seconds, and a request retried too early just fails again.
pub const UNAVAILABLE_RETRY_AFTER_SECS: u64 = 1;

/// Stable, machine-readable error codes. Clients branch on these, so a code is never
/// renamed or reused for another meaning.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, ToSchema, strum::IntoStaticStr, strum::EnumIter)]
#[serde(rename_all = "snake_case")]
#[strum(serialize_all = "snake_case")]
pub enum ErrorCode {
    /// No credentials, or credentials that could not be verified.
    Unauthorized,
    /// The bearer token has expired.
    TokenExpired,
    /// The API key is unknown or malformed.
    InvalidApiKey,
    ApiKeyRevoked,
    ApiKeyExpired,
    /// Email and password do not match.
    InvalidCredentials,
    /// Too many failed sign-in attempts: wait for `Retry-After` seconds.
    TooManyAttempts,
    /// Authenticated, but the role does not allow this operation.
    Forbidden,
    /// The account's email address is not verified yet, and the operation needs it
    /// (accepting an invitation, acting on an organization the account did not create).
    EmailNotVerified,
    /// A verification or password-reset token that is unknown, already used, or expired.
    InvalidToken,
    NotFound,
    RouteNotFound,
    MethodNotAllowed,
    /// The body is not syntactically valid JSON.
    MalformedJson,
    UnknownField,
    MissingField,
    /// A field has the wrong JSON type or an unparseable value.
    InvalidType,
    /// The body parsed, but a value breaks a rule (see `errors`).
    ValidationFailed,
    InvalidPathParameter,
    InvalidQueryParameter,
    /// An analytics query reaches before the organization's retention window
    /// (`earliestAllowedDate` says where it starts).
    RetentionExceeded,
    PayloadTooLarge,
    /// The request target (path and query) is longer than the server accepts.
    UriTooLong,
    /// The request's headers together are larger than the server accepts.
    HeadersTooLarge,
    UnsupportedMediaType,
    /// The request conflicts with existing state (duplicate, last owner, ...).
    Conflict,
    /// The feature is turned off by configuration.
    Disabled,
    ServiceUnavailable,
    Internal,
}

impl ErrorCode {
    pub fn status(self) -> StatusCode {
        use ErrorCode::*;
        match self {
            Unauthorized | TokenExpired | InvalidApiKey | ApiKeyRevoked | ApiKeyExpired | InvalidCredentials => {
                StatusCode::UNAUTHORIZED
            }
            Forbidden | Disabled | EmailNotVerified => StatusCode::FORBIDDEN,
            NotFound | RouteNotFound => StatusCode::NOT_FOUND,
            MethodNotAllowed => StatusCode::METHOD_NOT_ALLOWED,
            MalformedJson
            | UnknownField
            | MissingField
            | InvalidType
            | InvalidPathParameter
            | InvalidQueryParameter
            | RetentionExceeded
            | InvalidToken => StatusCode::BAD_REQUEST,
            ValidationFailed => StatusCode::UNPROCESSABLE_ENTITY,
            PayloadTooLarge => StatusCode::PAYLOAD_TOO_LARGE,
            UriTooLong => StatusCode::URI_TOO_LONG,
            HeadersTooLarge => StatusCode::REQUEST_HEADER_FIELDS_TOO_LARGE,
            UnsupportedMediaType => StatusCode::UNSUPPORTED_MEDIA_TYPE,
            Conflict => StatusCode::CONFLICT,
            TooManyAttempts => StatusCode::TOO_MANY_REQUESTS,
            ServiceUnavailable => StatusCode::SERVICE_UNAVAILABLE,
            Internal => StatusCode::INTERNAL_SERVER_ERROR,
        }
    }

    pub fn as_str(self) -> &'static str {
        self.into()
    }

    fn title(self) -> &'static str {
        self.status().canonical_reason().unwrap_or("Error")
    }
}

/// One rule a request value broke.
#[derive(Debug, Clone, Serialize, ToSchema, PartialEq, Eq)]
pub struct FieldError {
    /// The JSON field, in the request's own naming (`alertEmails[1]`).
    pub field: String,
    pub message: String,
}

/// RFC 9457 problem details, the body of every error response.
#[derive(Debug, Serialize, ToSchema)]
pub struct Problem {
    /// A URI naming the problem type (`urn:meterplane:problem:<code>`).
    #[schema(example = "urn:meterplane:problem:not_found")]
    pub r#type: String,
    #[schema(example = "Not Found")]
    pub title: &'static str,
    #[schema(example = 404)]
    pub status: u16,
    #[schema(example = "project not found")]
    pub detail: String,
    pub code: ErrorCode,
    /// Present for `validation_failed`: each rule that was broken.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub errors: Vec<FieldError>,
    /// Present for `retention_exceeded`: the oldest day the organization keeps.
    #[serde(rename = "earliestAllowedDate", skip_serializing_if = "Option::is_none")]
    pub earliest_allowed_date: Option<chrono::NaiveDate>,
}

#[derive(Debug)]
pub struct AppError {
    code: ErrorCode,
    detail: String,
    field_errors: Vec<FieldError>,
    earliest_allowed_date: Option<chrono::NaiveDate>,
    /// Sent as `Retry-After` (seconds) when set.
    retry_after_secs: Option<u64>,
    /// Logged, never sent: server-side detail of a 5xx.
    internal: Option<anyhow::Error>,
}

impl AppError {
    pub fn new(code: ErrorCode, detail: impl Into<String>) -> Self {
        Self {
            code,
            detail: detail.into(),
            field_errors: Vec::new(),
            earliest_allowed_date: None,
            retry_after_secs: None,
            internal: None,
        }
    }

    /// Tells the client when to try again (`Retry-After`).
    pub fn retry_after(self, seconds: u64) -> Self {
        Self {
            retry_after_secs: Some(seconds),
            ..self
        }
    }

    pub fn code(&self) -> ErrorCode {
        self.code
    }

    pub fn not_found(what: &str) -> Self {
        Self::new(ErrorCode::NotFound, format!("{what} not found"))
    }

    pub fn unauthorized(detail: impl Into<String>) -> Self {
        Self::new(ErrorCode::Unauthorized, detail)
    }

    pub fn forbidden(detail: impl Into<String>) -> Self {
        Self::new(ErrorCode::Forbidden, detail)
    }

    pub fn conflict(detail: impl Into<String>) -> Self {
        Self::new(ErrorCode::Conflict, detail)
    }

    pub fn validation(errors: Vec<FieldError>) -> Self {
        let detail = errors
            .iter()
            .map(|e| format!("{}: {}", e.field, e.message))
            .collect::<Vec<_>>()
            .join("; ");
        Self {
            field_errors: errors,
            ..Self::new(ErrorCode::ValidationFailed, detail)
        }
    }

    pub fn invalid_field(field: &str, message: impl Into<String>) -> Self {
        Self::validation(vec![FieldError {
            field: field.to_owned(),
            message: message.into(),
        }])
    }

    /// A query reaching before `earliest`, the oldest day the organization keeps.
    pub fn retention_exceeded(earliest: chrono::NaiveDate) -> Self {
        Self {
            earliest_allowed_date: Some(earliest),
            ..Self::new(
                ErrorCode::RetentionExceeded,
                format!("the organization's retention starts on {earliest}; ask for that day or later"),
            )
        }
    }

    pub fn internal(cause: impl Into<anyhow::Error>) -> Self {
        Self {
            internal: Some(cause.into()),
            ..Self::new(ErrorCode::Internal, "internal server error")
        }
    }

    /// A backing service (PostgreSQL, Redis) could not be reached or dropped the
    /// connection: nothing is wrong with the request, so it says when to try again
    /// (callers may set a longer `Retry-After`).
    pub fn unavailable(cause: impl Into<anyhow::Error>) -> Self {
        Self {
            internal: Some(cause.into()),
            ..Self::new(ErrorCode::ServiceUnavailable, "a backing service is unavailable")
        }
        .retry_after(UNAVAILABLE_RETRY_AFTER_SECS)
    }

    pub fn problem(&self) -> Problem {
        Problem {
            r#type: format!("urn:meterplane:problem:{}", self.code.as_str()),
            title: self.code.title(),
            status: self.code.status().as_u16(),
            detail: self.detail.clone(),
            code: self.code,
            errors: self.field_errors.clone(),
            earliest_allowed_date: self.earliest_allowed_date,
        }
    }
}

impl std::fmt::Display for AppError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}: {}", self.code.as_str(), self.detail)
    }
}

impl std::error::Error for AppError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        self.internal.as_ref().map(|e| e.as_ref() as _)
    }
}

impl ResponseError for AppError {
    fn status_code(&self) -> StatusCode {
        self.code.status()
    }

    fn error_response(&self) -> HttpResponse {
        if let Some(cause) = &self.internal {
            tracing::error!(
                code = self.code.as_str(),
                error = format!("{cause:#}"),
                "request failed"
            );
        }
        let mut response = HttpResponse::build(self.status_code());
        response.content_type("application/problem+json");
        if self.status_code() == StatusCode::UNAUTHORIZED {
            response.insert_header(("WWW-Authenticate", "Bearer"));
        }
        if let Some(seconds) = self.retry_after_secs {
            response.insert_header((actix_web::http::header::RETRY_AFTER, seconds.to_string()));
        }
        response.json(self.problem())
    }
}

impl From<diesel::result::Error> for AppError {
    fn from(error: diesel::result::Error) -> Self {
        use diesel::result::{DatabaseErrorKind, Error};
        match error {
            Error::NotFound => Self::not_found("resource"),
            Error::DatabaseError(DatabaseErrorKind::UniqueViolation, info) => Self::conflict(format!(
                "already exists ({})",
                info.constraint_name().unwrap_or("unique")
            )),
            other if database_unreachable(&other) => Self::unavailable(other),
            other => Self::internal(other),
        }
    }
}

/// Whether a database error says that PostgreSQL or the connection to it went away
/// (a restart, a fail-over, an administrator ending sessions), not that the statement
/// failed: such a request is answered 503 and can be retried as it was. A transaction
/// cut off in its commit may have committed, which is why every write a client retries
/// is idempotent (usage events by `requestId`).
fn database_unreachable(error: &diesel::result::Error) -> bool {
    use diesel::result::{DatabaseErrorKind, Error};
    match error {
        // The connection is closed or could not send: no SQLSTATE at all.
        Error::DatabaseError(DatabaseErrorKind::UnableToSendCommand | DatabaseErrorKind::ClosedConnection, _) => true,
        Error::DatabaseError(_, info) => server_going_away(info.message()),
        Error::RollbackErrorOnCommit {
            rollback_error,
            commit_error,
        } => database_unreachable(commit_error) || database_unreachable(rollback_error),
        // A connection whose transaction state was lost with an earlier failure.
        Error::BrokenTransactionManager => true,
        _ => false,
    }
}

/// The messages of the SQLSTATEs a server sends when it ends or refuses sessions:
/// 57P01 `admin_shutdown` (a fast or smart shutdown, `pg_terminate_backend`), 57P02
/// `crash_shutdown`, 57P03 `cannot_connect_now` (starting up, shutting down, in
/// recovery), 57P05 and 25P03 (idle timeouts). diesel's error information carries the
/// server's message but not its SQLSTATE, so the message is what can be matched; these
/// are the server's default (English) texts, and a server configured with another
/// `lc_messages` answers such a cut 500 instead.
fn server_going_away(message: &str) -> bool {
    const PREFIXES: [&str; 3] = [
        "terminating connection",
        "the database system is",
        "canceling statement due to conflict with recovery",
    ];
    PREFIXES.iter().any(|prefix| message.starts_with(prefix))
}

/// The error of a read several requests waited on (a cache's), for each of them: same
/// code, detail and `Retry-After`; the cause as text.
impl From<std::sync::Arc<AppError>> for AppError {
    fn from(shared: std::sync::Arc<AppError>) -> Self {
        Self {
            code: shared.code,
            detail: shared.detail.clone(),
            field_errors: shared.field_errors.clone(),
            earliest_allowed_date: shared.earliest_allowed_date,
            retry_after_secs: shared.retry_after_secs,
            internal: shared.internal.as_ref().map(|cause| anyhow::anyhow!("{cause:#}")),
        }
    }
}

/// Turns a unique-constraint violation into a 409 with a message for the caller.
pub trait OrConflict<T> {
    fn or_conflict(self, detail: &str) -> AppResult<T>;
}

impl<T> OrConflict<T> for Result<T, diesel::result::Error> {
    fn or_conflict(self, detail: &str) -> AppResult<T> {
        self.map_err(|e| match AppError::from(e) {
            err if err.code == ErrorCode::Conflict => AppError::conflict(detail),
            err => err,
        })
    }
}

impl From<diesel_async::pooled_connection::deadpool::PoolError> for AppError {
    fn from(error: diesel_async::pooled_connection::deadpool::PoolError) -> Self {
        Self::unavailable(error)
    }
}

impl From<redis::RedisError> for AppError {
    fn from(error: redis::RedisError) -> Self {
        Self::unavailable(error)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn wire_codes_match_serde_names() {
        use strum::IntoEnumIterator;
        for code in ErrorCode::iter() {
            assert_eq!(serde_json::to_value(code).unwrap(), code.as_str());
        }
    }

    #[test]
    fn a_lost_database_is_503_with_retry_after_and_a_failed_statement_is_not() {
        use diesel::result::{DatabaseErrorKind, Error};
        let database = |kind, message: &str| Error::DatabaseError(kind, Box::new(message.to_owned()));
        let lost = [
            database(DatabaseErrorKind::UnableToSendCommand, "connection closed"),
            database(DatabaseErrorKind::ClosedConnection, "closed"),
            database(
                DatabaseErrorKind::Unknown,
                "terminating connection due to administrator command",
            ),
            database(DatabaseErrorKind::Unknown, "the database system is shutting down"),
            database(DatabaseErrorKind::Unknown, "the database system is starting up"),
            Error::RollbackErrorOnCommit {
                rollback_error: Box::new(database(DatabaseErrorKind::UnableToSendCommand, "connection closed")),
                commit_error: Box::new(database(
                    DatabaseErrorKind::Unknown,
                    "terminating connection due to administrator command",
                )),
            },
        ];
        for error in lost {
            let shown = error.to_string();
            let err = AppError::from(error);
            assert_eq!(err.code(), ErrorCode::ServiceUnavailable, "{shown}");
            assert_eq!(err.retry_after_secs, Some(UNAVAILABLE_RETRY_AFTER_SECS), "{shown}");
            let response = err.error_response();
            assert_eq!(response.status(), StatusCode::SERVICE_UNAVAILABLE);
            assert_eq!(
                response.headers().get("retry-after").map(|v| v.as_bytes()),
                Some(&b"1"[..])
            );
        }
        let failed = database(DatabaseErrorKind::Unknown, "division by zero");
        assert_eq!(AppError::from(failed).code(), ErrorCode::Internal);
        assert_eq!(AppError::from(Error::NotFound).code(), ErrorCode::NotFound);
    }

    #[test]
    fn internal_detail_is_not_sent() {
        let err = AppError::internal(anyhow::anyhow!("password=hunter2"));
        let body = serde_json::to_string(&err.problem()).unwrap();
        assert!(!body.contains("hunter2"));
        assert_eq!(err.problem().status, 500);
    }
}
