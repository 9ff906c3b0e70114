//! Limits on a request's head (target and headers), answered in the problem shape.
//!
//! actix-web's HTTP/1 decoder has limits of its own, and answers them before any of
//! our code runs, with an empty body: a request target longer than 65,534 bytes
//! (the `http` crate's URI limit) gets a bare 400, a head longer than 128 KiB a bare
//! 431 (`docs/api.md`). These lower limits catch the overlong heads that do reach the
//! application, so most answer like every other error.

use actix_web::{
    body::MessageBody,
    dev::{RequestHead, ServiceRequest, ServiceResponse},
    middleware::Next,
};

use crate::error::{AppError, ErrorCode};

/// Longest request target (path and query) served: 16 KiB, past any URL the API
/// documents (its longest, `ids` filters, stay under 4 KiB even percent-encoded).
pub const MAX_TARGET_BYTES: usize = 16 * 1024;
/// Largest header section served, counted as on the wire (`name: value\r\n`).
pub const MAX_HEADER_BYTES: usize = 32 * 1024;

/// The head's first broken limit, if any.
pub fn check(head: &RequestHead) -> Option<AppError> {
    let target = head.uri.path_and_query().map_or(0, |pq| pq.as_str().len());
    if target > MAX_TARGET_BYTES {
        return Some(AppError::new(
            ErrorCode::UriTooLong,
            format!("the request target is {target} bytes long; at most {MAX_TARGET_BYTES} are accepted"),
        ));
    }
    let headers: usize = head
        .headers()
        .iter()
        .map(|(name, value)| name.as_str().len() + value.len() + 4)
        .sum();
    if headers > MAX_HEADER_BYTES {
        return Some(AppError::new(
            ErrorCode::HeadersTooLarge,
            format!("the request headers take {headers} bytes; at most {MAX_HEADER_BYTES} are accepted"),
        ));
    }
    None
}

/// Middleware: refuses an overlong head before routing, extractors and handlers.
pub async fn enforce(
    req: ServiceRequest,
    next: Next<impl MessageBody + 'static>,
) -> Result<ServiceResponse<impl MessageBody>, actix_web::Error> {
    if let Some(error) = check(req.head()) {
        return Ok(req.error_response(error).map_into_right_body());
    }
    next.call(req).await.map(ServiceResponse::map_into_left_body)
}
