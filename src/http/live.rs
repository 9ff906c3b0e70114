//! The live request log: a Server-Sent Events stream of an organization's new calls
//! as they are recorded, and the tickets that let a browser open it.

use std::convert::Infallible;

use actix_web::{
    get,
    http::header,
    post,
    web::{self, Bytes},
    FromRequest, HttpRequest, HttpResponse,
};
use chrono::{DateTime, Utc};
use futures_util::{stream, StreamExt};
use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, ToSchema};
use uuid::Uuid;

use super::{
    extract::AuthUser, paging, paths::OrgPath, schemas::FilterText, spend_logs::SpendLogEntry, state::AppState,
    validate::query_text,
};
use crate::{
    domain::{
        identity::Caller,
        live::{EndReason, TicketGrant},
        role::Access,
        usage::{retention_start, EventStatus},
    },
    error::{AppError, AppResult, Problem},
    live::{Next, Subscription},
    store::{self, access::OrgAccess, spend_logs::LogFilter},
};

/// Most event ids one read of PostgreSQL looks up; a larger backlog takes several.
const READ_AT_MOST: usize = 500;

#[derive(Deserialize, IntoParams)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
#[into_params(parameter_in = Query, rename_all = "camelCase")]
pub struct StreamQuery {
    project_id: Option<Uuid>,
    api_key_id: Option<Uuid>,
    /// The tenant's customer id (`user` on events).
    #[param(inline, value_type = Option<FilterText>)]
    customer: Option<String>,
    #[param(inline, value_type = Option<FilterText>)]
    agent: Option<String>,
    #[param(inline, value_type = Option<FilterText>)]
    provider: Option<String>,
    /// The model: its catalog id or the provider's name for it, in any case (as on the
    /// spend-log list).
    #[param(inline, value_type = Option<FilterText>)]
    model: Option<String>,
    status: Option<EventStatus>,
    /// Inclusive bounds on when the call happened (RFC 3339); late-reported calls
    /// outside them are not sent.
    from: Option<DateTime<Utc>>,
    to: Option<DateTime<Utc>>,
    /// A stream ticket (the `ticket` security scheme); documented there, not here.
    #[param(ignore)]
    ticket: Option<String>,
}

impl StreamQuery {
    fn filter(&self) -> AppResult<LogFilter> {
        paging::check_range(self.from, self.to)?;
        Ok(LogFilter {
            project_id: self.project_id,
            api_key_id: self.api_key_id,
            customer: query_text("customer", self.customer.clone())?,
            agent: query_text("agent", self.agent.clone())?,
            provider: query_text("provider", self.provider.clone())?.map(|p| p.to_lowercase()),
            model: query_text("model", self.model.clone())?,
            status: self.status,
            from: self.from,
            to: self.to,
        })
    }
}

#[derive(Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct StreamTicketView {
    /// Pass as `?ticket=` to `GET /v1/orgs/{orgId}/spend-logs/stream`. Good for one
    /// stream of this organization, once, until `expiresAt`.
    #[schema(example = "mpt_4f1c0e2a9b8d7c6e5f4a3b2c1d0e9f8a7b6c5d4e3f2a1b0c9d8e7f6a5b4c3d2e")]
    ticket: String,
    expires_at: DateTime<Utc>,
}

/// A one-time ticket for opening the live request log without a header.
///
/// A browser's `EventSource` cannot send `Authorization`; this trades the caller's JWT for a ticket to put in the stream's URL instead (`?ticket=`). It works once, within 60 seconds, for this organization and this person, who must still be a member when the stream opens. Anyone who may read the spend logs may ask for one. Redis 6.2 or later is needed (`GETDEL`).
#[utoipa::path(
    tag = "spend logs",
    security(("bearer" = [])),
    params(OrgPath),
    responses(
        (status = 201, description = "The ticket, shown once", body = StreamTicketView),
        (status = 401, body = Problem),
        (status = 404, body = Problem),
        (status = 503, description = "Redis is unavailable; retry after `Retry-After` seconds", body = Problem,
            headers(("Retry-After" = i64, description = "Seconds to wait"))),
    )
)]
#[post("/orgs/{orgId}/stream-tickets")]
pub async fn create_stream_ticket(
    state: web::Data<AppState>,
    caller: AuthUser,
    path: web::Path<OrgPath>,
) -> AppResult<HttpResponse> {
    let mut conn = state.conn().await?;
    let access = store::access::authorize(&mut conn, &caller.0, path.org_id, Access::Read).await?;
    drop(conn);
    let issued = state
        .live
        .issue_ticket(TicketGrant {
            user_id: access.user_id(),
            org_id: access.org_id(),
        })
        .await?;
    Ok(HttpResponse::Created().json(StreamTicketView {
        ticket: issued.secret,
        expires_at: issued.expires_at,
    }))
}

/// The organization's new calls, live, as Server-Sent Events.
///
/// Each call recorded after the stream opened is sent once it is stored, as an event whose `id` is the call's id and whose `data` is the call as a spend-log page shows it (`SpendLogEntry`); filters work as on the spend-log list. Comments (`: keep-alive`) come every `MP_LIVE_HEARTBEAT_SECS` (15 by default). The stream ends with an `end` event whose data gives the reason: `expired` after `MP_LIVE_MAX_STREAM_SECS` (an hour by default), `too_slow` when the client fell more than `MP_LIVE_BUFFER` events behind, `shutdown` when the instance stops, `unavailable` when it lost Redis. Reconnect after an `end`, with a new ticket when using one; calls recorded in between are in the spend-log list. Authenticate with `Authorization: Bearer <JWT>` or, from a browser's `EventSource`, with `?ticket=` from `POST /v1/orgs/{orgId}/stream-tickets`.
#[utoipa::path(
    tag = "spend logs",
    security(("bearer" = []), ("ticket" = [])),
    params(OrgPath, StreamQuery),
    responses(
        (status = 200, description = "An endless `text/event-stream` until its `end` event. The schema is that of one event as an SSE parser reads it; on the wire, e.g.: `id: 0193e4a2-…` / `data: {\"id\":\"0193e4a2-…\",\"requestId\":\"req_01J9Z3K4\",…}`, heartbeat comments (`: keep-alive`), and last `event: end` / `data: {\"reason\":\"expired\"}`.", content_type = "text/event-stream", body = LiveEvent),
        (status = 400, description = "A query parameter is invalid", body = Problem),
        (status = 401, description = "No credentials, or a ticket that is invalid, used, expired or for another organization", body = Problem),
        (status = 404, body = Problem),
        (status = 503, description = "Redis (which carries the events between instances) is unavailable, or the instance is stopping; retry after `Retry-After` seconds", body = Problem,
            headers(("Retry-After" = i64, description = "Seconds to wait"))),
    )
)]
#[get("/orgs/{orgId}/spend-logs/stream")]
pub async fn stream_spend_logs(
    req: HttpRequest,
    state: web::Data<AppState>,
    path: web::Path<OrgPath>,
    query: web::Query<StreamQuery>,
) -> AppResult<HttpResponse> {
    let query = query.into_inner();
    let filter = query.filter()?;
    let caller = caller(&req, &state, query.ticket.as_deref(), path.org_id).await?;
    let mut conn = state.conn().await?;
    let access = store::access::authorize(&mut conn, &caller, path.org_id, Access::Read).await?;
    let org = store::orgs::get(&mut conn, &access).await?;
    drop(conn);
    let not_before = retention_start(Utc::now(), org.retention_days);
    let subscription = state.live.open(access.org_id()).await?;
    let settings = *state.live.settings();
    let feed = Feed {
        state: state.into_inner(),
        subscription,
        access,
        filter,
        not_before,
        heartbeat: tokio::time::interval_at(tokio::time::Instant::now() + settings.heartbeat, settings.heartbeat),
        deadline: tokio::time::Instant::now() + settings.max_stream,
        ended: false,
    };
    let body = stream::once(async { Ok::<_, Infallible>(Bytes::from_static(b": connected\n\n")) })
        .chain(stream::unfold(feed, Feed::step));
    Ok(HttpResponse::Ok()
        .content_type(EVENT_STREAM)
        .insert_header((header::CACHE_CONTROL, "no-cache"))
        // nginx would otherwise hold events back to fill its buffer.
        .insert_header(("X-Accel-Buffering", "no"))
        .streaming(body))
}

const EVENT_STREAM: &str = "text/event-stream";

/// One event of the live stream as an SSE parser (a browser's `EventSource`) reads it.
// The stream writes its frames itself (`event_frame`, `end_frame`); this type only
// describes them in the OpenAPI document.
#[derive(ToSchema)]
#[schema(example = json!({
    "event": "message", "id": "0193e4a2-7c41-7d2e-9b1f-3c2a1e0f4d5b",
    "data": "{\"id\":\"0193e4a2-7c41-7d2e-9b1f-3c2a1e0f4d5b\",\"requestId\":\"req_01J9Z3K4\",\"model\":\"gpt-4o\",\"status\":\"success\",\"cost\":\"0.0042\"}"
}))]
#[allow(dead_code)] // never built: see above
pub struct LiveEvent {
    event: LiveEventKind,
    /// `message`: the call's spend-log row (the list's row shape) as JSON. `end`:
    /// `{"reason": "expired" | "too_slow" | "shutdown" | "unavailable"}`.
    data: String,
    /// The call's id (`message` events only).
    id: Option<String>,
}

/// `message` (sent without an `event:` line) for each call, `end` once, last.
#[derive(ToSchema)]
#[schema(rename_all = "lowercase")]
#[allow(dead_code)] // never built: see `LiveEvent`
pub enum LiveEventKind {
    Message,
    End,
}

/// The person behind the request: a bearer JWT when one is sent, else the ticket.
async fn caller(req: &HttpRequest, state: &AppState, ticket: Option<&str>, org_id: Uuid) -> AppResult<Caller> {
    let ticket = ticket.filter(|_| !req.headers().contains_key(header::AUTHORIZATION));
    let Some(ticket) = ticket else {
        return Ok(AuthUser::extract(req).await?.0);
    };
    let grant = state.live.redeem_ticket(ticket, org_id).await?;
    let mut conn = state.conn().await?;
    // The account may have been deleted since the ticket was issued.
    let user = store::users::find(&mut conn, grant.user_id)
        .await?
        .ok_or_else(|| AppError::unauthorized("the stream ticket is invalid, used or expired"))?;
    Ok(user.caller())
}

/// One open stream: what it waits for and what it sends.
struct Feed {
    state: std::sync::Arc<AppState>,
    subscription: Subscription,
    access: OrgAccess,
    filter: LogFilter,
    not_before: DateTime<Utc>,
    heartbeat: tokio::time::Interval,
    deadline: tokio::time::Instant,
    ended: bool,
}

impl Feed {
    /// The next chunk of the response: events, a heartbeat, or the final `end`.
    async fn step(mut self) -> Option<(Result<Bytes, Infallible>, Self)> {
        if self.ended {
            return None;
        }
        loop {
            let frame = tokio::select! {
                next = self.subscription.next(READ_AT_MOST) => match next {
                    Next::Ids(ids) => match self.frames(&ids).await {
                        Ok(frames) if frames.is_empty() => continue,
                        Ok(frames) => {
                            self.heartbeat.reset();
                            frames
                        }
                        Err(e) => {
                            tracing::warn!(error = %e, "live stream could not read new events");
                            self.end(EndReason::Unavailable)
                        }
                    },
                    Next::End(reason) => self.end(reason),
                },
                _ = self.heartbeat.tick() => ": keep-alive\n\n".to_owned(),
                _ = tokio::time::sleep_until(self.deadline) => self.end(EndReason::Expired),
            };
            return Some((Ok(Bytes::from(frame)), self));
        }
    }

    fn end(&mut self, reason: EndReason) -> String {
        self.ended = true;
        end_frame(reason)
    }

    /// The events among `ids` that pass the filter, as SSE frames.
    async fn frames(&self, ids: &[Uuid]) -> AppResult<String> {
        let mut conn = self.state.conn().await?;
        let rows = store::live::by_ids(&mut conn, &self.access, ids, self.not_before, &self.filter).await?;
        drop(conn);
        let mut text = String::new();
        for row in &rows {
            let data = serde_json::to_string(&SpendLogEntry::from(row)).map_err(AppError::internal)?;
            text.push_str(&event_frame(row.event.id, &data));
        }
        Ok(text)
    }
}

/// One event: `data` is one line of JSON (serde escapes newlines inside strings).
fn event_frame(id: Uuid, data: &str) -> String {
    format!("id: {id}\ndata: {data}\n\n")
}

fn end_frame(reason: EndReason) -> String {
    format!(
        "event: end\ndata: {}\n\n",
        serde_json::json!({ "reason": reason.as_str() })
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn frames_are_server_sent_events() {
        let id = Uuid::from_u128(1);
        assert_eq!(
            event_frame(id, r#"{"a":"x\ny"}"#),
            "id: 00000000-0000-0000-0000-000000000001\ndata: {\"a\":\"x\\ny\"}\n\n"
        );
        assert_eq!(
            end_frame(EndReason::TooSlow),
            "event: end\ndata: {\"reason\":\"too_slow\"}\n\n"
        );
    }
}
