//! Group commit: concurrent small ingest requests of one API key share a transaction.
//!
//! A single event costs PostgreSQL about as much as a batch of a hundred (the claim,
//! the event insert, five roll-up upserts and two ledger upserts are one statement
//! each, whatever the number of rows), and a commit waits for its WAL flush. So the
//! requests of a key that arrive while its transactions are running queue up, and the
//! next transaction takes all of them (up to a size cap):
//!
//! - **No added latency when idle**: with fewer than `in_flight` transactions of the key
//!   running, a request starts one at once, alone. There is no timer: a request waits
//!   at most for the transactions already running (and, past the size cap, for as many
//!   more as the queue ahead of it fills).
//! - **Answered after commit**: each request gets its own outcomes only once the
//!   transaction holding its events has committed and been settled into the budget
//!   counters; a 2xx still means committed.
//! - **Per request**: duplicates (also of one `requestId` sent by two requests of the
//!   same group: the first stands, the second is a duplicate) and rejections are
//!   answered to the request they belong to.
//! - **Failures stay small**: when PostgreSQL is lost every request of the group gets
//!   the 503 (with `Retry-After`), and a retry is stored once (`requestId`). Any other
//!   failure of a shared transaction (a statement failing because of one event) is
//!   retried request by request, so one bad event fails only its own request.

use std::{
    collections::{HashMap, VecDeque},
    future::Future,
    panic::AssertUnwindSafe,
    sync::{Arc, Mutex, MutexGuard},
};

use futures_util::FutureExt;
use prometheus::{Histogram, HistogramOpts};
use tokio::sync::oneshot;
use uuid::Uuid;

use super::Outcome;
use crate::{
    auth::KeyIdentity,
    domain::usage::NewUsageEvent,
    error::{AppError, AppResult, ErrorCode, FieldError},
};

/// One submitted event: validated, or the rules it broke.
pub type Submitted = Result<NewUsageEvent, Vec<FieldError>>;

/// Requests with more events than this go to PostgreSQL on their own: they are
/// batches already, and a small request should not wait behind a large one.
pub const MAX_REQUEST_EVENTS: usize = 10;

/// Records the events of one or more requests of `key` in one transaction, settles
/// them, and answers an outcome per event, in order.
pub trait Flush: Clone + Send + Sync + 'static {
    fn flush(&self, key: KeyIdentity, events: Vec<Submitted>) -> impl Future<Output = AppResult<Vec<Outcome>>> + Send;
}

#[derive(Debug, Clone, Copy)]
pub struct GroupSettings {
    /// Most events one group transaction holds; 1 turns coalescing off.
    pub max_events: usize,
    /// Group transactions of one API key running at once.
    pub in_flight: usize,
}

struct Waiter {
    events: Vec<Submitted>,
    reply: oneshot::Sender<AppResult<Vec<Outcome>>>,
}

#[derive(Default)]
struct Lane {
    waiting: VecDeque<Waiter>,
    running: usize,
}

#[derive(Clone)]
pub struct GroupCommit {
    settings: GroupSettings,
    /// Per API key.
    lanes: Arc<Mutex<HashMap<Uuid, Lane>>>,
    /// Requests per group transaction.
    sizes: Histogram,
}

impl GroupCommit {
    pub fn new(settings: GroupSettings) -> prometheus::Result<Self> {
        let sizes = Histogram::with_opts(
            HistogramOpts::new(
                "meterplane_ingest_group_requests",
                "Ingest requests recorded per group transaction (single events coalesced)",
            )
            .buckets(vec![1.0, 2.0, 4.0, 8.0, 16.0, 32.0, 64.0, 128.0, 256.0, 512.0]),
        )?;
        Ok(Self {
            settings: GroupSettings {
                max_events: settings.max_events.max(1),
                in_flight: settings.in_flight.max(1),
            },
            lanes: Arc::default(),
            sizes,
        })
    }

    /// The group-size histogram, for the metrics registry.
    pub fn sizes(&self) -> &Histogram {
        &self.sizes
    }

    /// Whether a request of `events` events goes through a group.
    pub fn coalesces(&self, events: usize) -> bool {
        self.settings.max_events > 1 && events <= MAX_REQUEST_EVENTS.min(self.settings.max_events)
    }

    fn lanes(&self) -> MutexGuard<'_, HashMap<Uuid, Lane>> {
        // A panic while holding the lock cannot leave a lane half-changed: every
        // change under it is a push, a pop or a counter step.
        self.lanes.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// Queues the request's events and answers once they are committed (or failed).
    pub async fn submit<F: Flush>(
        &self,
        flusher: &F,
        key: &KeyIdentity,
        events: Vec<Submitted>,
    ) -> AppResult<Vec<Outcome>> {
        let (reply, answer) = oneshot::channel();
        let start = {
            let mut lanes = self.lanes();
            let lane = lanes.entry(key.key_id).or_default();
            lane.waiting.push_back(Waiter { events, reply });
            if lane.running < self.settings.in_flight {
                lane.running += 1;
                Some(take(lane, self.settings.max_events))
            } else {
                None
            }
        };
        if let Some(group) = start {
            // A task of its own: the transaction goes on (and every request in it is
            // answered) even if the client that started it goes away.
            tokio::spawn(self.clone().run(flusher.clone(), *key, group));
        }
        answer.await.unwrap_or_else(|_| {
            Err(AppError::unavailable(anyhow::anyhow!(
                "the ingest group holding this request ended before it was recorded"
            )))
        })
    }

    /// Commits `group`, then the groups queued meanwhile, until the lane is empty.
    async fn run<F: Flush>(self, flusher: F, key: KeyIdentity, mut group: Vec<Waiter>) {
        loop {
            self.sizes.observe(group.len() as f64);
            // A panic answers the group's requests 503 (their senders are dropped)
            // and leaves the lane working.
            if AssertUnwindSafe(commit(&flusher, &key, group))
                .catch_unwind()
                .await
                .is_err()
            {
                tracing::error!(api_key_id = %key.key_id, "an ingest group transaction panicked");
            }
            let mut lanes = self.lanes();
            let Some(lane) = lanes.get_mut(&key.key_id) else {
                return;
            };
            if lane.waiting.is_empty() {
                lane.running = lane.running.saturating_sub(1);
                if lane.running == 0 {
                    lanes.remove(&key.key_id);
                }
                return;
            }
            group = take(lane, self.settings.max_events);
        }
    }
}

/// The waiting requests from the front, as long as their events fit in `max_events`
/// (always at least one).
fn take(lane: &mut Lane, max_events: usize) -> Vec<Waiter> {
    let mut group = Vec::new();
    let mut events = 0;
    while let Some(next) = lane.waiting.front() {
        if !group.is_empty() && events + next.events.len() > max_events {
            break;
        }
        events += next.events.len();
        group.extend(lane.waiting.pop_front());
    }
    group
}

async fn commit<F: Flush>(flusher: &F, key: &KeyIdentity, group: Vec<Waiter>) {
    if group.len() == 1 {
        for waiter in group {
            let answer = flusher.flush(*key, waiter.events).await;
            let _ = waiter.reply.send(answer);
        }
        return;
    }
    let mut sizes = Vec::with_capacity(group.len());
    let mut replies = Vec::with_capacity(group.len());
    let mut kept = Vec::with_capacity(group.len());
    let mut events = Vec::new();
    for waiter in group {
        sizes.push(waiter.events.len());
        // Kept for a retry one by one (see below).
        kept.push(waiter.events.clone());
        events.extend(waiter.events);
        replies.push(waiter.reply);
    }
    let total = events.len();
    match flusher.flush(*key, events).await {
        Ok(outcomes) if outcomes.len() == total => {
            let mut outcomes = outcomes.into_iter();
            for (size, reply) in sizes.into_iter().zip(replies) {
                let _ = reply.send(Ok(outcomes.by_ref().take(size).collect()));
            }
        }
        Ok(outcomes) => {
            let shared = Arc::new(AppError::internal(anyhow::anyhow!(
                "a group of {total} events was answered with {} outcomes",
                outcomes.len()
            )));
            for reply in replies {
                let _ = reply.send(Err(AppError::from(shared.clone())));
            }
        }
        Err(error) if error.code() == ErrorCode::ServiceUnavailable => {
            // Nothing to isolate: PostgreSQL (or the pool) is gone for everyone.
            let shared = Arc::new(error);
            for reply in replies {
                let _ = reply.send(Err(AppError::from(shared.clone())));
            }
        }
        Err(error) => {
            // Rolled back: retried request by request, so that what failed it (one
            // event a statement refused) fails only its own request.
            tracing::warn!(
                api_key_id = %key.key_id,
                requests = replies.len(),
                error = %error,
                "an ingest group transaction failed; its requests are recorded one by one"
            );
            for (events, reply) in kept.into_iter().zip(replies) {
                let answer = flusher.flush(*key, events).await;
                let _ = reply.send(answer);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn lane_of(sizes: &[usize]) -> Lane {
        let mut lane = Lane::default();
        for &n in sizes {
            let (reply, _) = oneshot::channel();
            lane.waiting.push_back(Waiter {
                events: (0..n).map(|_| Err(vec![])).collect(),
                reply,
            });
        }
        lane
    }

    #[test]
    fn a_group_takes_requests_in_order_up_to_the_cap_and_at_least_one() {
        let mut lane = lane_of(&[1, 3, 2, 5, 1]);
        let sizes = |g: Vec<Waiter>| g.iter().map(|w| w.events.len()).collect::<Vec<_>>();
        assert_eq!(sizes(take(&mut lane, 6)), vec![1, 3, 2]);
        assert_eq!(
            sizes(take(&mut lane, 4)),
            vec![5],
            "a request larger than the cap goes alone"
        );
        assert_eq!(sizes(take(&mut lane, 4)), vec![1]);
        assert!(take(&mut lane, 4).is_empty());
    }
}
