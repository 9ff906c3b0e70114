//! The live request log: a stream sees calls recorded after it opened, on any
//! instance, filtered like the list, never another tenant's; tickets work once; the
//! stream ends for the documented reasons; no Redis, no stream.

use std::time::Duration;

use reqwest::{Method, StatusCode};
use serde_json::{json, Value};
use sha2::{Digest, Sha256};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use uuid::Uuid;

use crate::{
    helpers::{expect_json, expect_problem, uuid, Tenant, TestApp, TestUser},
    redis_server::RedisServer,
};

/// One Server-Sent Events frame; `comment` frames carry only comment lines.
#[derive(Debug, Clone, Default)]
struct Frame {
    event: Option<String>,
    id: Option<String>,
    data: String,
    comment: bool,
}

impl Frame {
    fn json(&self) -> Value {
        serde_json::from_str(&self.data).unwrap_or_else(|e| panic!("data is not JSON ({e}): {self:?}"))
    }
}

fn parse_frame(text: &str) -> Frame {
    let mut frame = Frame::default();
    let mut data = Vec::new();
    for line in text.lines() {
        if line.starts_with(':') {
            frame.comment = true;
        } else if let Some(v) = line.strip_prefix("event: ") {
            frame.event = Some(v.to_owned());
        } else if let Some(v) = line.strip_prefix("id: ") {
            frame.id = Some(v.to_owned());
        } else if let Some(v) = line.strip_prefix("data: ") {
            data.push(v);
        } else {
            panic!("unexpected line {line:?} in {text:?}");
        }
    }
    frame.data = data.join("\n");
    frame.comment &= frame.event.is_none() && frame.id.is_none() && frame.data.is_empty();
    frame
}

/// A stream as a client reads it.
struct Sse {
    response: reqwest::Response,
    buffer: String,
}

impl Sse {
    /// The next frame, comments included; `None` when the stream is over.
    async fn frame(&mut self) -> Option<Frame> {
        loop {
            if let Some(end) = self.buffer.find("\n\n") {
                let text: String = self.buffer.drain(..end + 2).collect();
                return Some(parse_frame(text.trim_end()));
            }
            let chunk = tokio::time::timeout(Duration::from_secs(15), self.response.chunk())
                .await
                .expect("the stream went silent")
                .expect("read the stream")?;
            self.buffer.push_str(std::str::from_utf8(&chunk).expect("UTF-8"));
        }
    }

    /// The next frame that is not a comment.
    async fn event(&mut self) -> Frame {
        loop {
            let frame = self.frame().await.expect("the stream ended without an end event");
            if !frame.comment {
                return frame;
            }
        }
    }

    /// Reads until the `end` event; the events before it and its reason.
    async fn until_end(&mut self) -> (Vec<Frame>, String) {
        let mut events = Vec::new();
        loop {
            let frame = self.event().await;
            if frame.event.as_deref() == Some("end") {
                assert!(self.frame().await.is_none(), "nothing follows the end event");
                return (events, frame.json()["reason"].as_str().unwrap().to_owned());
            }
            events.push(frame);
        }
    }
}

fn stream_path(tenant: &Tenant, query: &str) -> String {
    format!("/v1/orgs/{}/spend-logs/stream?{query}", tenant.org_id)
}

async fn open_response(response: reqwest::Response) -> Sse {
    let status = response.status();
    if status != StatusCode::OK {
        panic!(
            "stream answered {status}: {}",
            response.text().await.unwrap_or_default()
        );
    }
    assert_eq!(response.headers()["content-type"], "text/event-stream");
    assert_eq!(response.headers()["cache-control"], "no-cache");
    let mut sse = Sse {
        response,
        buffer: String::new(),
    };
    let first = sse.frame().await.expect("a first frame");
    assert!(first.comment, "the stream opens with a comment: {first:?}");
    sse
}

/// Opens `tenant`'s stream as `user` with a bearer token; returns once it is live.
async fn open(app: &TestApp, user: &TestUser, tenant: &Tenant, query: &str) -> Sse {
    let response = app
        .as_user(Method::GET, &stream_path(tenant, query), user)
        .send()
        .await
        .expect("open the stream");
    open_response(response).await
}

async fn ticket(app: &TestApp, user: &TestUser, tenant: &Tenant) -> String {
    let response = app
        .as_user(
            Method::POST,
            &format!("/v1/orgs/{}/stream-tickets", tenant.org_id),
            user,
        )
        .send()
        .await
        .unwrap();
    let body = expect_json(response, StatusCode::CREATED).await;
    let expires: chrono::DateTime<chrono::Utc> = body["expiresAt"].as_str().unwrap().parse().unwrap();
    let left = (expires - chrono::Utc::now()).num_seconds();
    assert!((55..=60).contains(&left), "a ticket lasts 60 s, {left} s left");
    body["ticket"].as_str().unwrap().to_owned()
}

async fn with_ticket(app: &TestApp, tenant: &Tenant, ticket: &str) -> reqwest::Response {
    app.request(Method::GET, &stream_path(tenant, &format!("ticket={ticket}")))
        .send()
        .await
        .unwrap()
}

/// The call as the spend-log list shows it.
async fn listed(app: &TestApp, tenant: &Tenant, event_id: Uuid) -> Value {
    let page = app
        .get_json(
            &tenant.owner,
            &format!("/v1/orgs/{}/spend-logs?limit=500", tenant.org_id),
        )
        .await;
    page["data"]
        .as_array()
        .unwrap()
        .iter()
        .find(|e| uuid(&e["id"]) == event_id)
        .cloned()
        .unwrap_or_else(|| panic!("{event_id} is not in the list"))
}

#[tokio::test]
async fn a_stream_sends_calls_recorded_after_it_opened_on_any_instance() {
    let app = TestApp::spawn().await;
    let other = app.another_instance().await;
    let tenant = app.tenant().await;
    let before = app.record_event(&tenant, json!({"requestId": "before"})).await;

    let mut sse = open(&app, &tenant.owner, &tenant, "").await;
    let here = app.record_event(&tenant, json!({"requestId": "here"})).await;
    let frame = sse.event().await;
    assert_eq!(frame.event, None, "calls are unnamed events (`onmessage`)");
    assert_eq!(frame.id, Some(here.to_string()));
    // Field for field the row the list shows, cost included.
    assert_eq!(frame.json(), listed(&app, &tenant, here).await);

    // Recorded through another instance: it reaches this instance's stream through Redis.
    let there = other
        .record_event(&tenant, json!({"requestId": "there", "model": "gpt-4o-mini"}))
        .await;
    let frame = sse.event().await;
    assert_eq!(frame.id, Some(there.to_string()));
    assert_eq!(frame.json(), listed(&app, &tenant, there).await);
    assert_eq!(frame.json()["model"], "gpt-4o-mini");

    // And a stream held on the other instance sees a batch recorded here, in order.
    let mut remote = open(&other, &tenant.owner, &tenant, "").await;
    let batch: Vec<Value> = (0..3)
        .map(|i| json!({"requestId": format!("b{i}"), "endpoint": "/chat/completions", "provider": "openai", "model": "gpt-4o", "promptTokens": 10 + i, "completionTokens": 1}))
        .collect();
    let (status, body) = app.send_batch(&tenant.key_secret, json!(batch)).await;
    assert_eq!((status, body["accepted"].clone()), (StatusCode::OK, json!(3)));
    for stream in [&mut sse, &mut remote] {
        let mut seen = Vec::new();
        for _ in 0..3 {
            seen.push(stream.event().await.json()["requestId"].as_str().unwrap().to_owned());
        }
        seen.sort();
        assert_eq!(seen, ["b0", "b1", "b2"]);
    }
    // A retried request id is not a new call: nothing is sent for it.
    app.record_event(&tenant, json!({"requestId": "here"})).await;
    let last = app.record_event(&tenant, json!({"requestId": "last"})).await;
    assert_eq!(sse.event().await.id, Some(last.to_string()));
    assert_ne!(before, here);
}

#[tokio::test]
async fn filters_apply_and_another_tenants_calls_never_appear() {
    let app = TestApp::spawn().await;
    let other = app.another_instance().await;
    let tenant = app.tenant().await;
    let stranger = app.tenant().await;
    let viewer = app.member(&tenant, "viewer").await;

    let mut all = open(&app, &viewer, &tenant, "").await;
    // The model in any case, as on the list.
    let mut failed_mini = open(&other, &tenant.owner, &tenant, "model=GPT-4o-Mini&status=error").await;
    let mut bob = open(&app, &tenant.owner, &tenant, "customer=bob&provider=OpenAI").await;
    let mut theirs = open(&other, &stranger.owner, &stranger, "").await;

    let calls = [
        ("t1", &tenant, json!({"model": "gpt-4o", "user": "alice"})),
        (
            "s1",
            &stranger,
            json!({"model": "gpt-4o-mini", "status": "error", "user": "bob"}),
        ),
        (
            "t2",
            &tenant,
            json!({"model": "gpt-4o-mini", "status": "success", "user": "bob"}),
        ),
        (
            "t3",
            &tenant,
            json!({"model": "gpt-4o-mini", "status": "error", "errorCode": "rate_limit_exceeded", "user": "alice"}),
        ),
        ("s2", &stranger, json!({"model": "gpt-4o", "user": "alice"})),
        (
            "t4",
            &tenant,
            json!({"model": "gpt-4o-mini", "status": "error", "user": "bob"}),
        ),
    ];
    for (i, (name, who, mut fields)) in calls.into_iter().enumerate() {
        fields["requestId"] = json!(name);
        // Alternate instances: where a call is recorded does not matter.
        let via = if i % 2 == 0 { &app } else { &other };
        via.record_event(who, fields).await;
    }
    async fn names(sse: &mut Sse, n: usize) -> Vec<String> {
        let mut names = Vec::new();
        for _ in 0..n {
            names.push(sse.event().await.json()["requestId"].as_str().unwrap().to_owned());
        }
        names
    }
    assert_eq!(names(&mut all, 4).await, ["t1", "t2", "t3", "t4"]);
    assert_eq!(names(&mut failed_mini, 2).await, ["t3", "t4"]);
    assert_eq!(names(&mut bob, 2).await, ["t2", "t4"]);
    assert_eq!(names(&mut theirs, 2).await, ["s1", "s2"]);

    // Nothing else was sent: a sentinel every stream sees comes next on each.
    app.record_event(
        &tenant,
        json!({"requestId": "t5", "model": "gpt-4o-mini", "status": "error", "user": "bob"}),
    )
    .await;
    app.record_event(&stranger, json!({"requestId": "s3"})).await;
    for sse in [&mut all, &mut failed_mini, &mut bob] {
        assert_eq!(names(sse, 1).await, ["t5"]);
    }
    assert_eq!(names(&mut theirs, 1).await, ["s3"]);

    // The stranger cannot open the tenant's stream, nor can anyone without credentials.
    let response = app
        .as_user(Method::GET, &stream_path(&tenant, ""), &stranger.owner)
        .send()
        .await
        .unwrap();
    expect_problem(response, StatusCode::NOT_FOUND, "not_found").await;
    let response = app
        .request(Method::GET, &stream_path(&tenant, ""))
        .send()
        .await
        .unwrap();
    expect_problem(response, StatusCode::UNAUTHORIZED, "unauthorized").await;
    // Filters are checked like the list's.
    for query in [
        "status=lost",
        "from=2026-12-02T00:00:00Z&to=2026-12-01T00:00:00Z",
        "model=%0A",
        "limit=5",
    ] {
        let response = app
            .as_user(Method::GET, &stream_path(&tenant, query), &tenant.owner)
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), StatusCode::BAD_REQUEST, "{query}");
    }
}

#[tokio::test]
async fn a_ticket_opens_one_stream_of_its_organization_within_a_minute() {
    let app = TestApp::spawn().await;
    let tenant = app.tenant().await;
    let stranger = app.tenant().await;
    let viewer = app.member(&tenant, "viewer").await;

    // A viewer may watch, so a viewer may have a ticket; no header is needed with it.
    let secret = ticket(&app, &viewer, &tenant).await;
    let mut sse = open_response(with_ticket(&app, &tenant, &secret).await).await;
    let id = app.record_event(&tenant, json!({})).await;
    assert_eq!(sse.event().await.id, Some(id.to_string()));
    // Once.
    let again = with_ticket(&app, &tenant, &secret).await;
    expect_problem(again, StatusCode::UNAUTHORIZED, "unauthorized").await;

    // Redis holds its digest, never the ticket, and only for a minute.
    let mut redis = redis_conn(&app).await;
    let fresh = ticket(&app, &tenant.owner, &tenant).await;
    let key = format!(
        "{}live:ticket:{}",
        app.state.config.redis.key_prefix,
        hex::encode(Sha256::digest(fresh.as_bytes()))
    );
    let ttl: i64 = redis::cmd("TTL").arg(&key).query_async(&mut redis).await.unwrap();
    assert!((55..=60).contains(&ttl), "ttl {ttl}");
    let stored: String = redis::cmd("GET").arg(&key).query_async(&mut redis).await.unwrap();
    assert!(!stored.contains(&fresh[4..]));
    // Expired: as Redis lets it go after its minute.
    let _: () = redis::cmd("PEXPIRE")
        .arg(&key)
        .arg(1)
        .query_async(&mut redis)
        .await
        .unwrap();
    tokio::time::sleep(Duration::from_millis(20)).await;
    expect_problem(
        with_ticket(&app, &tenant, &fresh).await,
        StatusCode::UNAUTHORIZED,
        "unauthorized",
    )
    .await;

    // For another organization: refused, and used up by the attempt.
    let theirs = ticket(&app, &tenant.owner, &tenant).await;
    expect_problem(
        with_ticket(&app, &stranger, &theirs).await,
        StatusCode::UNAUTHORIZED,
        "unauthorized",
    )
    .await;
    expect_problem(
        with_ticket(&app, &tenant, &theirs).await,
        StatusCode::UNAUTHORIZED,
        "unauthorized",
    )
    .await;
    // Made up, or malformed.
    let made_up = format!("mpt_{}", "0".repeat(64));
    for junk in [made_up.as_str(), "abc", ""] {
        expect_problem(
            with_ticket(&app, &tenant, junk).await,
            StatusCode::UNAUTHORIZED,
            "unauthorized",
        )
        .await;
    }
    // Someone who left the organization after getting one cannot use it.
    let leaver = app.member(&tenant, "viewer").await;
    let kept = ticket(&app, &leaver, &tenant).await;
    let response = app
        .as_user(
            Method::DELETE,
            &format!("/v1/orgs/{}/members/{}", tenant.org_id, leaver.id),
            &tenant.owner,
        )
        .send()
        .await
        .unwrap();
    assert!(response.status().is_success());
    expect_problem(
        with_ticket(&app, &tenant, &kept).await,
        StatusCode::NOT_FOUND,
        "not_found",
    )
    .await;
    // Tickets are for members only.
    let response = app
        .as_user(
            Method::POST,
            &format!("/v1/orgs/{}/stream-tickets", tenant.org_id),
            &stranger.owner,
        )
        .send()
        .await
        .unwrap();
    expect_problem(response, StatusCode::NOT_FOUND, "not_found").await;
}

async fn redis_conn(app: &TestApp) -> redis::aio::MultiplexedConnection {
    redis::Client::open(app.state.config.redis.url.expose())
        .unwrap()
        .get_multiplexed_async_connection()
        .await
        .unwrap()
}

#[tokio::test]
async fn without_redis_there_is_no_stream_and_open_streams_end_as_unavailable() {
    let mut redis = RedisServer::start().await;
    let url = redis.url();
    let app = TestApp::spawn_with(|c| c.redis.url = meterplane::config::Secret::new(url)).await;
    let tenant = app.tenant().await;
    let mut sse = open(&app, &tenant.owner, &tenant, "").await;

    redis.kill();
    let (events, reason) = sse.until_end().await;
    assert_eq!((events.len(), reason.as_str()), (0, "unavailable"));

    for response in [
        app.as_user(Method::GET, &stream_path(&tenant, ""), &tenant.owner)
            .send()
            .await
            .unwrap(),
        app.as_user(
            Method::POST,
            &format!("/v1/orgs/{}/stream-tickets", tenant.org_id),
            &tenant.owner,
        )
        .send()
        .await
        .unwrap(),
    ] {
        assert_eq!(response.headers()["retry-after"], "5");
        expect_problem(response, StatusCode::SERVICE_UNAVAILABLE, "service_unavailable").await;
    }
    // Recording usage does not depend on it.
    app.record_event(&tenant, json!({})).await;

    // Back: the instance subscribes again by itself and streams work.
    redis.restart().await;
    let response = crate::helpers::eventually("the stream to open again", Duration::from_secs(10), || async {
        let response = app
            .as_user(Method::GET, &stream_path(&tenant, ""), &tenant.owner)
            .send()
            .await
            .ok()?;
        (response.status() == StatusCode::OK).then_some(response)
    })
    .await;
    let mut sse = open_response(response).await;
    let id = app.record_event(&tenant, json!({})).await;
    assert_eq!(sse.event().await.id, Some(id.to_string()));
}

#[tokio::test]
async fn streams_keep_alive_and_end_when_they_expire_or_the_instance_stops() {
    let app = TestApp::spawn_with(|c| {
        c.live.heartbeat = Duration::from_millis(100);
        c.live.max_stream = Duration::from_millis(1200);
    })
    .await;
    let tenant = app.tenant().await;
    let mut sse = open(&app, &tenant.owner, &tenant, "").await;
    let opened = std::time::Instant::now();
    let mut heartbeats = 0;
    let reason = loop {
        let frame = sse.frame().await.expect("a frame");
        if frame.comment {
            heartbeats += 1;
        } else {
            assert_eq!(frame.event.as_deref(), Some("end"));
            break frame.json()["reason"].as_str().unwrap().to_owned();
        }
    };
    let lasted = opened.elapsed();
    assert_eq!(reason, "expired");
    assert!(
        lasted >= Duration::from_millis(1100) && lasted < Duration::from_secs(5),
        "{lasted:?}"
    );
    assert!((5..=13).contains(&heartbeats), "{heartbeats} heartbeats in {lasted:?}");
    assert!(sse.frame().await.is_none());

    // Stopping the instance ends its streams at once rather than waiting for them.
    let mut sse = open(&app, &tenant.owner, &tenant, "").await;
    let stopping = std::time::Instant::now();
    let (stop, (events, reason)) = tokio::join!(app.stop(), sse.until_end());
    let _: () = stop;
    assert_eq!((events.len(), reason.as_str()), (0, "shutdown"));
    assert!(stopping.elapsed() < Duration::from_secs(10), "{:?}", stopping.elapsed());
}

#[tokio::test]
async fn a_client_that_stops_reading_is_ended_as_too_slow() {
    let app = TestApp::spawn_with(|c| {
        c.live.buffer = 20;
        c.live.heartbeat = Duration::from_secs(1);
        c.live.max_stream = Duration::from_secs(120);
    })
    .await;
    let tenant = app.tenant().await;

    // A client with a small receive window that reads the response head and then nothing.
    let socket = tokio::net::TcpSocket::new_v4().unwrap();
    socket.set_recv_buffer_size(4096).unwrap();
    let address = app.address.trim_start_matches("http://").parse().unwrap();
    let mut stream = socket.connect(address).await.unwrap();
    let request = format!(
        "GET {} HTTP/1.1\r\nHost: localhost\r\nAuthorization: Bearer {}\r\n\r\n",
        stream_path(&tenant, ""),
        tenant.owner.token
    );
    stream.write_all(request.as_bytes()).await.unwrap();
    let mut head = Vec::new();
    while !head.windows(4).any(|w| w == b"\r\n\r\n") {
        let mut byte = [0u8; 1];
        stream.read_exact(&mut byte).await.unwrap();
        head.push(byte[0]);
    }
    assert!(String::from_utf8_lossy(&head).starts_with("HTTP/1.1 200"));

    // Calls until the kernel's socket buffers, actix's write buffer and the stream's
    // backlog of 20 are full and the stream gives up on its client.
    let mut recorded = 0;
    for b in 0..100 {
        let events: Vec<Value> = (0..250)
            .map(|i| json!({"requestId": format!("slow-{b}-{i}"), "endpoint": "/chat/completions", "provider": "openai", "model": "gpt-4o", "user": format!("customer-{i}"), "promptTokens": 10, "completionTokens": 1}))
            .collect();
        let (status, _) = app.send_batch(&tenant.key_secret, json!(events)).await;
        assert_eq!(status, StatusCode::OK);
        recorded += 250;
        if app.state.live.streams_behind() == 1 {
            break;
        }
    }
    assert_eq!(
        app.state.live.streams_behind(),
        1,
        "{recorded} calls did not overflow the stream"
    );

    // Now read it all: the events it had sent, then the end.
    let mut body = Vec::new();
    let text = loop {
        let mut chunk = [0u8; 65536];
        let n = tokio::time::timeout(Duration::from_secs(15), stream.read(&mut chunk))
            .await
            .expect("the stream went silent")
            .unwrap();
        assert!(n > 0, "the connection closed before the end event");
        body.extend_from_slice(&chunk[..n]);
        let text = String::from_utf8_lossy(&body).into_owned();
        if text.contains("event: end") && text.contains("\r\n0\r\n\r\n") {
            break text;
        }
    };
    let sent = text.matches("\ndata: {\"id\"").count();
    assert!(
        text.contains("event: end\ndata: {\"reason\":\"too_slow\"}"),
        "{}",
        &text[text.len().saturating_sub(300)..]
    );
    assert!(sent < recorded, "{sent} of {recorded} events were sent");
    assert_eq!(app.state.live.streams_behind(), 0, "the ended stream is gone");
}

#[tokio::test]
async fn sigterm_ends_the_streams_of_the_process_and_it_exits_cleanly() {
    let app = TestApp::spawn().await;
    let tenant = app.tenant().await;
    let process = crate::server_process::ServerProcess::start(&app, &[]).await;
    let response = app
        .client
        .get(format!("{}{}", process.address, stream_path(&tenant, "")))
        .bearer_auth(&tenant.owner.token)
        .send()
        .await
        .unwrap();
    let mut sse = open_response(response).await;
    let id = app.record_event(&tenant, json!({})).await;
    assert_eq!(
        sse.event().await.id,
        Some(id.to_string()),
        "recorded elsewhere, seen here"
    );

    let stopping = std::time::Instant::now();
    let (exited, (events, reason)) = tokio::join!(process.terminate(), sse.until_end());
    assert_eq!((events.len(), reason.as_str()), (0, "shutdown"));
    assert!(exited, "the process exited cleanly");
    // Well before actix's 30 s graceful-stop timeout, which an open stream would hit.
    assert!(stopping.elapsed() < Duration::from_secs(10), "{:?}", stopping.elapsed());
}
