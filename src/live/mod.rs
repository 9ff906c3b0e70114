//! The live spend-log stream's plumbing: new event ids travel from the instance that
//! recorded them to every instance holding a stream of that organization.
//!
//! - **Publishing** ([`LiveHub::publish`]): after an ingest request committed, its new
//!   event ids go to one Redis pub/sub channel, but only when somebody watches the
//!   organization (the sorted set of watched organizations, checked at most once a
//!   second per organization and instance), so ingestion pays nothing while nobody
//!   looks.
//! - **Subscribing**: each instance holds one subscriber connection, opened at start-up
//!   and reopened after a loss, and hands each message to the streams of its
//!   organization in this process (a registry of per-stream backlogs, so a message for
//!   one organization touches only that organization's streams).
//! - **Watching** ([`LiveHub::open`]): a stream marks its organization watched (score =
//!   when that expires, refreshed while it is open) and announces it on the channel, so
//!   publishers drop a cached "nobody watches" at once; it is ready when its own
//!   announcement came back through this instance's subscriber, which proves the
//!   subscription works and that the announcement reached the other instances too.
//!
//! Streams read the rows for the ids from PostgreSQL themselves (`http::live`), with
//! the organization in the query: a message can make a stream look, never show
//! another tenant's rows.

pub mod tickets;

use std::{
    collections::HashMap,
    sync::{
        atomic::{AtomicBool, Ordering},
        Arc, Mutex, MutexGuard,
    },
    time::Duration,
};

use futures_util::StreamExt;
use redis::{aio::ConnectionManager, AsyncCommands};
use tokio::sync::{watch, Notify};
use uuid::Uuid;

use crate::{
    config::LiveConfig,
    counters::keys::LiveKeys,
    domain::live::{Backlog, EndReason, LiveMessage},
    error::{AppError, AppResult},
    ingest::Outcome,
};

/// How long a watch mark lasts without being refreshed: a crashed instance's streams
/// stop costing publishers within this time.
const WATCH_TTL: Duration = Duration::from_secs(30);
/// How often the subscriber pings Redis (a silently dropped connection is found within
/// this time plus the Redis timeout) and refreshes this instance's watch marks.
const TICK: Duration = Duration::from_secs(5);
/// How long a publisher trusts its last look at the watched set.
const WATCHED_CACHE_TTL: Duration = Duration::from_secs(1);
/// How long the subscriber's connection attempt, subscription and ping may take. More
/// than `MP_REDIS_TIMEOUT_MS`, which bounds the request paths: a slow moment of Redis
/// (or of a busy runtime) must not end every stream of the instance as `unavailable`.
const SUBSCRIBER_PATIENCE: Duration = Duration::from_secs(5);
/// Wait before reconnecting the subscriber after a failure.
const RECONNECT_AFTER: Duration = Duration::from_secs(1);
/// `Retry-After` of a 503 while the live stream is unavailable.
pub const RETRY_AFTER_SECS: u64 = 5;

/// The state of this instance's subscriber connection.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Link {
    Connecting,
    Up,
    Down,
}

#[derive(Clone)]
pub struct LiveHub {
    inner: Arc<Inner>,
}

struct Inner {
    settings: LiveConfig,
    keys: LiveKeys,
    client: redis::Client,
    redis: ConnectionManager,
    timeout: Duration,
    /// Streams open on this instance, by organization.
    streams: Mutex<HashMap<Uuid, Vec<Arc<StreamQueue>>>>,
    /// Organization → whether someone watched it at the last look.
    watched: moka::future::Cache<Uuid, bool>,
    link: watch::Sender<Link>,
    stopping: AtomicBool,
}

/// One stream's side of the registry: the ids waiting for it and why it must end.
struct StreamQueue {
    state: Mutex<QueueState>,
    wake: Notify,
    /// Set when this instance's subscriber saw the stream's watch announcement.
    announced: watch::Sender<bool>,
}

struct QueueState {
    backlog: Backlog,
    end: Option<EndReason>,
}

/// What a stream does next.
#[derive(Debug, PartialEq, Eq)]
pub enum Next {
    /// New events of the organization, oldest first.
    Ids(Vec<Uuid>),
    End(EndReason),
}

impl StreamQueue {
    fn lock(&self) -> MutexGuard<'_, QueueState> {
        // A panic while holding this lock leaves consistent data (plain pushes and
        // drains), so a poisoned lock is used as is.
        self.state.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    fn push(&self, ids: &[Uuid]) {
        let mut state = self.lock();
        if state.end.is_none() && state.backlog.push(ids).is_err() {
            state.end = Some(EndReason::TooSlow);
        }
        drop(state);
        self.wake.notify_one();
    }

    fn finish(&self, reason: EndReason) {
        self.lock().end.get_or_insert(reason);
        self.wake.notify_one();
    }
}

/// An open stream's registration; dropping it (the client went away, or the stream
/// ended) removes it from the registry.
pub struct Subscription {
    hub: Arc<Inner>,
    org: Uuid,
    queue: Arc<StreamQueue>,
}

impl Subscription {
    /// Waits for up to `max` new ids, or the reason to end. Ids already waiting are
    /// handed out before an end. Cancel-safe: nothing is taken before it is returned.
    pub async fn next(&self, max: usize) -> Next {
        loop {
            {
                let mut state = self.queue.lock();
                let ids = state.backlog.take(max);
                if !ids.is_empty() {
                    return Next::Ids(ids);
                }
                if let Some(reason) = state.end {
                    return Next::End(reason);
                }
            }
            // `notify_one` stores a permit when nobody waits, so a push between the
            // check above and this wait is not lost.
            self.queue.wake.notified().await;
        }
    }
}

impl Drop for Subscription {
    fn drop(&mut self) {
        let mut streams = self.hub.lock_streams();
        if let Some(queues) = streams.get_mut(&self.org) {
            queues.retain(|q| !Arc::ptr_eq(q, &self.queue));
            if queues.is_empty() {
                streams.remove(&self.org);
            }
        }
    }
}

fn unavailable(what: &str) -> AppError {
    AppError::unavailable(anyhow::anyhow!("live stream: {what}")).retry_after(RETRY_AFTER_SECS)
}

impl LiveHub {
    /// Builds the hub and starts this instance's subscriber on the current runtime.
    pub fn start(
        settings: LiveConfig,
        prefix: &str,
        client: redis::Client,
        redis: ConnectionManager,
        timeout: Duration,
    ) -> Self {
        let (link, _) = watch::channel(Link::Connecting);
        let hub = Self {
            inner: Arc::new(Inner {
                settings,
                keys: LiveKeys::new(prefix),
                client,
                redis,
                timeout,
                streams: Mutex::new(HashMap::new()),
                watched: moka::future::Cache::builder()
                    .max_capacity(100_000)
                    .time_to_live(WATCHED_CACHE_TTL)
                    .build(),
                link,
                stopping: AtomicBool::new(false),
            }),
        };
        tokio::spawn(subscriber(hub.inner.clone()));
        hub
    }

    pub fn settings(&self) -> &LiveConfig {
        &self.inner.settings
    }

    pub(crate) fn redis(&self) -> (ConnectionManager, &LiveKeys, Duration) {
        (self.inner.redis.clone(), &self.inner.keys, self.inner.timeout)
    }

    /// Announces the events an ingest request committed to the streams watching the
    /// organization, wherever they are. Never fails the request: usage is recorded
    /// in PostgreSQL either way, and a stream that misses events because Redis failed
    /// here is a stream whose own subscription is failing too.
    pub async fn publish(&self, org: Uuid, outcomes: &[Outcome]) {
        let ids: Vec<Uuid> = outcomes
            .iter()
            .filter_map(|outcome| match outcome {
                Outcome::Accepted { event_id, .. } => Some(*event_id),
                _ => None,
            })
            .collect();
        if ids.is_empty() || !self.is_watched(org).await {
            return;
        }
        let message = LiveMessage::Events { org, ids }.encode();
        let mut conn = self.inner.redis.clone();
        let sent = tokio::time::timeout(
            self.inner.timeout,
            conn.publish::<_, _, i64>(self.inner.keys.channel(), message),
        )
        .await;
        if !matches!(sent, Ok(Ok(_))) {
            tracing::warn!(%org, "could not publish new events to the live stream");
        }
    }

    /// Whether any instance has a stream of `org` open, as of at most a second ago
    /// (or as announced since). Redis failing counts as nobody watching.
    async fn is_watched(&self, org: Uuid) -> bool {
        if let Some(known) = self.inner.watched.get(&org).await {
            return known;
        }
        let mut conn = self.inner.redis.clone();
        let score = tokio::time::timeout(
            self.inner.timeout,
            conn.zscore::<_, _, Option<i64>>(self.inner.keys.watched(), org.simple().to_string()),
        )
        .await;
        let now = chrono::Utc::now().timestamp_millis();
        let watched = matches!(score, Ok(Ok(Some(until))) if until > now);
        self.inner.watched.insert(org, watched).await;
        watched
    }

    /// Opens a stream of `org` on this instance: 503 when Redis cannot be reached or
    /// the instance is stopping.
    pub async fn open(&self, org: Uuid) -> AppResult<Subscription> {
        let hub = &self.inner;
        if hub.stopping.load(Ordering::SeqCst) {
            return Err(unavailable("the instance is stopping"));
        }
        // A subscriber that is (re)connecting gets a few seconds; one that is down
        // answers at once.
        let patience = hub.timeout * 2 + Duration::from_secs(2);
        let mut link = hub.link.subscribe();
        let settled = tokio::time::timeout(patience, link.wait_for(|l| *l != Link::Connecting)).await;
        if !matches!(settled, Ok(Ok(l)) if *l == Link::Up) {
            return Err(unavailable("the Redis subscription is down"));
        }
        let queue = Arc::new(StreamQueue {
            state: Mutex::new(QueueState {
                backlog: Backlog::new(hub.settings.buffer),
                end: None,
            }),
            wake: Notify::new(),
            announced: watch::channel(false).0,
        });
        let mut announced = queue.announced.subscribe();
        hub.lock_streams().entry(org).or_default().push(queue.clone());
        let subscription = Subscription {
            hub: hub.clone(),
            org,
            queue,
        };
        hub.mark_watched(&[org])
            .await
            .map_err(|_| unavailable("marking the organization watched failed"))?;
        let mut conn = hub.redis.clone();
        let announce = LiveMessage::Watch { org }.encode();
        let published =
            tokio::time::timeout(hub.timeout, conn.publish::<_, _, i64>(hub.keys.channel(), announce)).await;
        if !matches!(published, Ok(Ok(_))) {
            return Err(unavailable("announcing the stream failed"));
        }
        if !matches!(
            tokio::time::timeout(patience, announced.wait_for(|a| *a)).await,
            Ok(Ok(_))
        ) {
            return Err(unavailable("the announcement did not come back"));
        }
        Ok(subscription)
    }

    /// Open streams of this instance that fell too far behind and wait for their client
    /// to read that they ended (`too_slow`): what to watch when clients are slow.
    pub fn streams_behind(&self) -> usize {
        self.inner
            .lock_streams()
            .values()
            .flatten()
            .filter(|queue| queue.lock().end == Some(EndReason::TooSlow))
            .count()
    }

    /// Ends every stream of this instance with `shutdown` and refuses new ones: the
    /// instance is stopping (SIGTERM), and open streams would hold up its graceful stop.
    pub fn shutdown(&self) {
        self.inner.stopping.store(true, Ordering::SeqCst);
        self.inner.end_all(EndReason::Shutdown);
    }
}

impl Inner {
    fn lock_streams(&self) -> MutexGuard<'_, HashMap<Uuid, Vec<Arc<StreamQueue>>>> {
        // Only inserts, removals and pushes happen under this lock: a poisoned lock
        // still holds a consistent map.
        self.streams.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    fn queues_of(&self, org: Uuid) -> Vec<Arc<StreamQueue>> {
        self.lock_streams().get(&org).cloned().unwrap_or_default()
    }

    fn end_all(&self, reason: EndReason) {
        for queue in self.lock_streams().values().flatten() {
            queue.finish(reason);
        }
    }

    /// Marks `orgs` watched until `WATCH_TTL` from now, and forgets expired marks.
    async fn mark_watched(&self, orgs: &[Uuid]) -> redis::RedisResult<()> {
        let until = chrono::Utc::now().timestamp_millis() + WATCH_TTL.as_millis() as i64;
        let mut pipe = redis::pipe();
        for org in orgs {
            pipe.zadd(self.keys.watched(), org.simple().to_string(), until).ignore();
        }
        pipe.cmd("ZREMRANGEBYSCORE")
            .arg(self.keys.watched())
            .arg("-inf")
            .arg(chrono::Utc::now().timestamp_millis())
            .ignore();
        let mut conn = self.redis.clone();
        match tokio::time::timeout(self.timeout, pipe.query_async::<()>(&mut conn)).await {
            Ok(result) => result,
            Err(_) => Err(redis::RedisError::from(std::io::Error::from(
                std::io::ErrorKind::TimedOut,
            ))),
        }
    }

    async fn dispatch(&self, payload: &[u8]) {
        let Some(message) = std::str::from_utf8(payload).ok().and_then(LiveMessage::decode) else {
            tracing::debug!("ignored a message on the live channel that is not ours");
            return;
        };
        match message {
            LiveMessage::Watch { org } => {
                self.watched.insert(org, true).await;
                for queue in self.queues_of(org) {
                    queue.announced.send_replace(true);
                }
            }
            LiveMessage::Events { org, ids } => {
                for queue in self.queues_of(org) {
                    queue.push(&ids);
                }
            }
        }
    }
}

/// This instance's one subscriber connection: connects, hands messages to the
/// streams, pings Redis and refreshes the watch marks; when the connection is lost, it
/// ends the streams with `unavailable` (they may have missed events) and reconnects.
async fn subscriber(hub: Arc<Inner>) {
    loop {
        hub.link.send_replace(Link::Connecting);
        match subscribe(&hub).await {
            Ok((mut sink, mut messages)) => {
                hub.link.send_replace(Link::Up);
                let mut tick = tokio::time::interval_at(tokio::time::Instant::now() + TICK, TICK);
                loop {
                    tokio::select! {
                        message = messages.next() => match message {
                            Some(message) => hub.dispatch(message.get_payload_bytes()).await,
                            None => break,
                        },
                        _ = tick.tick() => {
                            let pong = tokio::time::timeout(SUBSCRIBER_PATIENCE, sink.ping::<redis::Value>()).await;
                            if !matches!(pong, Ok(Ok(_))) {
                                break;
                            }
                            let orgs: Vec<Uuid> = hub.lock_streams().keys().copied().collect();
                            if hub.mark_watched(&orgs).await.is_err() {
                                tracing::warn!("could not refresh the live stream's watch marks");
                            }
                        }
                    }
                }
                tracing::warn!("lost the live stream's Redis subscription; reconnecting");
            }
            Err(e) => tracing::debug!(error = %e, "could not subscribe to the live stream channel"),
        }
        hub.link.send_replace(Link::Down);
        hub.end_all(EndReason::Unavailable);
        tokio::time::sleep(RECONNECT_AFTER).await;
    }
}

async fn subscribe(hub: &Inner) -> redis::RedisResult<(redis::aio::PubSubSink, redis::aio::PubSubStream)> {
    let timed_out = || redis::RedisError::from(std::io::Error::from(std::io::ErrorKind::TimedOut));
    let mut pubsub = tokio::time::timeout(SUBSCRIBER_PATIENCE, hub.client.get_async_pubsub())
        .await
        .map_err(|_| timed_out())??;
    tokio::time::timeout(SUBSCRIBER_PATIENCE, pubsub.subscribe(hub.keys.channel()))
        .await
        .map_err(|_| timed_out())??;
    Ok(pubsub.split())
}
