//! A bound on the memory large request bodies take at once.
//!
//! A usage batch of 16 MiB is held several times over while it is handled: the bytes
//! read, each event's raw JSON, the parsed events with their bodies, the rows bound
//! to the insert. Several such requests at once multiply that, and the allocator keeps
//! much of the peak afterwards. So the requests whose body is large
//! (`MP_LARGE_BODY_BYTES`, 1 MiB; a body of unknown length counts as large) are handled
//! `MP_LARGE_BODY_CONCURRENCY` (1) at a time per instance, the others waiting their turn
//! before their body is read. Small requests (single events, ordinary batches) never
//! wait here.

use std::sync::Arc;

use actix_web::{
    body::MessageBody,
    dev::{ServiceRequest, ServiceResponse},
    http::header::CONTENT_LENGTH,
    middleware::Next,
    web,
};
use tokio::sync::Semaphore;

use super::state::AppState;

/// The turns large bodies take.
#[derive(Clone)]
pub struct LargeBodies {
    threshold: usize,
    turns: Arc<Semaphore>,
}

impl LargeBodies {
    pub fn new(threshold: usize, concurrency: usize) -> Self {
        Self {
            threshold,
            turns: Arc::new(Semaphore::new(concurrency.max(1))),
        }
    }

    fn is_large(&self, req: &ServiceRequest) -> bool {
        req.headers()
            .get(CONTENT_LENGTH)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.trim().parse::<usize>().ok())
            .is_none_or(|length| length >= self.threshold)
    }
}

/// Middleware for the routes that take large bodies: a large request waits for a turn
/// before its body is read, and holds it until its answer is made.
pub async fn take_turns(
    req: ServiceRequest,
    next: Next<impl MessageBody + 'static>,
) -> Result<ServiceResponse<impl MessageBody>, actix_web::Error> {
    let limiter = req
        .app_data::<web::Data<AppState>>()
        .map(|state| state.large_bodies.clone())
        .filter(|limiter| limiter.is_large(&req));
    let _turn = match &limiter {
        // The semaphore is never closed.
        Some(limiter) => limiter.turns.clone().acquire_owned().await.ok(),
        None => None,
    };
    next.call(req).await
}
