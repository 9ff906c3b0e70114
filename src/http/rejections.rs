//! Turns actix-web's own extractor failures into the one problem shape, so malformed
//! JSON, wrong types, bad UUIDs, oversized bodies and unknown routes all answer like
//! every other error.

use actix_web::{
    dev::ResourceDef,
    error::{JsonPayloadError, PathError, QueryPayloadError},
    http::{header, Method},
    web, HttpRequest, HttpResponse, ResponseError,
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
pub(super) fn serde_error(e: &serde_json::Error) -> AppError {
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

/// The methods each documented path answers. Built from the OpenAPI document, which
/// lists every registered route, so a known path asked with another method gets 405.
pub struct KnownRoutes(Vec<(ResourceDef, Vec<Method>)>);

impl KnownRoutes {
    pub fn from_document(doc: &utoipa::openapi::OpenApi) -> Self {
        let routes = doc
            .paths
            .paths
            .iter()
            .map(|(path, item)| {
                let methods = [
                    (Method::GET, item.get.is_some()),
                    (Method::POST, item.post.is_some()),
                    (Method::PUT, item.put.is_some()),
                    (Method::PATCH, item.patch.is_some()),
                    (Method::DELETE, item.delete.is_some()),
                ]
                .into_iter()
                .filter_map(|(method, present)| present.then_some(method))
                .collect();
                (ResourceDef::new(path.as_str()), methods)
            })
            .collect();
        Self(routes)
    }

    /// The methods of the route `path` belongs to, if any.
    fn allowed(&self, path: &str) -> Option<&[Method]> {
        self.0
            .iter()
            .find(|(pattern, _)| pattern.is_match(path))
            .map(|(_, methods)| methods.as_slice())
    }
}

/// The default service: no route matched this method and path.
pub async fn route_not_found(req: HttpRequest, routes: web::Data<KnownRoutes>) -> HttpResponse {
    let Some(allowed) = routes.allowed(req.path()) else {
        return AppError::new(
            ErrorCode::RouteNotFound,
            format!("no route for {} {}", req.method(), req.path()),
        )
        .error_response();
    };
    let allow = allowed.iter().map(Method::as_str).collect::<Vec<_>>().join(", ");
    let mut response = AppError::new(
        ErrorCode::MethodNotAllowed,
        format!("{} does not answer {}; it answers {allow}", req.path(), req.method()),
    )
    .error_response();
    if let Ok(value) = header::HeaderValue::from_str(&allow) {
        response.headers_mut().insert(header::ALLOW, value);
    }
    response
}
