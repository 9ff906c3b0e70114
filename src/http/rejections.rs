//! Turns actix-web's own extractor failures into the one problem shape, so malformed
//! JSON, wrong types, bad UUIDs, oversized bodies and unknown routes all answer like
//! every other error.

use actix_web::{
    error::{JsonPayloadError, PathError, QueryPayloadError},
    web, HttpRequest, HttpResponse,
};

use crate::error::{AppError, ErrorCode};

pub fn json_config(limit: usize) -> web::JsonConfig {
    web::JsonConfig::default()
        .limit(limit)
        .error_handler(|err, _req| json_error(err).into())
}

pub fn path_config() -> web::PathConfig {
    web::PathConfig::default().error_handler(|err, _req| path_error(err).into())
}

pub fn query_config() -> web::QueryConfig {
    web::QueryConfig::default().error_handler(|err, _req| query_error(err).into())
}

fn json_error(err: JsonPayloadError) -> AppError {
    match err {
        JsonPayloadError::Overflow { limit } | JsonPayloadError::OverflowKnownLength { limit, .. } => AppError::new(
            ErrorCode::PayloadTooLarge,
            format!("the request body exceeds {limit} bytes"),
        ),
        JsonPayloadError::ContentType => AppError::new(
            ErrorCode::UnsupportedMediaType,
            "the request body must be application/json",
        ),
        JsonPayloadError::Deserialize(e) => serde_error(&e),
        other => AppError::new(
            ErrorCode::MalformedJson,
            format!("the request body could not be read: {other}"),
        ),
    }
}

/// Classifies a serde_json error by what the client got wrong.
fn serde_error(e: &serde_json::Error) -> AppError {
    use serde_json::error::Category;
    let message = e.to_string();
    let code = match e.classify() {
        Category::Syntax | Category::Eof | Category::Io => ErrorCode::MalformedJson,
        Category::Data if message.starts_with("unknown field") => ErrorCode::UnknownField,
        Category::Data if message.starts_with("missing field") => ErrorCode::MissingField,
        Category::Data => ErrorCode::InvalidType,
    };
    AppError::new(code, message)
}

fn path_error(err: PathError) -> AppError {
    let detail = match err {
        PathError::Deserialize(e) => format!("a path parameter is invalid: {e}"),
        other => format!("a path parameter is invalid: {other}"),
    };
    AppError::new(ErrorCode::InvalidPathParameter, detail)
}

fn query_error(err: QueryPayloadError) -> AppError {
    let detail = match err {
        QueryPayloadError::Deserialize(e) => format!("a query parameter is invalid: {e}"),
        other => format!("a query parameter is invalid: {other}"),
    };
    AppError::new(ErrorCode::InvalidQueryParameter, detail)
}

/// The default service: no route matched.
pub async fn route_not_found(req: HttpRequest) -> Result<HttpResponse, AppError> {
    Err(AppError::new(
        ErrorCode::RouteNotFound,
        format!("no route for {} {}", req.method(), req.path()),
    ))
}
