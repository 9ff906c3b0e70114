"""End to end: a real LiteLLM proxy (mock models, an A2A agent) with both Meterplane
integrations in front of a real Meterplane. Run by deploy/litellm-check.sh, which starts
both and passes, in the environment:

    MP_BASE_URL       Meterplane
    LITELLM_URL       the proxy; LITELLM_MASTER_KEY its key
    MP_CALLBACK_*     the tenant the callback (meterplane_litellm.callback) reports to:
                      _TOKEN (owner's access token), _ORG, _PROJECT
    MP_GENERIC_*      the tenant LiteLLM's generic_api logger reports to (the zero-code
                      option, POST /v1/integrations/litellm/logs): _TOKEN, _ORG, _PROJECT

Both see the same calls, so each check is made twice: what the callback recorded and
what the server made of LiteLLM's own payloads must be the same events, field by field,
at the same exact cost. Then budgets: a hard customer budget makes the proxy answer 429
with Meterplane's reason, a blocked customer 403.
"""

from __future__ import annotations

import asyncio
import os
import sys
import time
import uuid
from decimal import ROUND_HALF_UP, Decimal
from typing import Any

import httpx
import openai

BASE = os.environ["MP_BASE_URL"]
PROXY = os.environ["LITELLM_URL"]
MASTER = os.environ["LITELLM_MASTER_KEY"]
TENANTS = {
    name: {
        "token": os.environ[f"MP_{name.upper()}_TOKEN"],
        "org": os.environ[f"MP_{name.upper()}_ORG"],
        "project": os.environ[f"MP_{name.upper()}_PROJECT"],
    }
    for name in ("callback", "generic")
}
ROUTER_RETRIES = 2  # router_settings.num_retries in the proxy's config
WAIT_SECONDS = float(os.environ.get("MP_LITELLM_WAIT_SECONDS", "30"))
RUN = uuid.uuid4().hex[:8]  # customers of this run

failures: list[str] = []
checked = 0


def check(condition: bool, what: str) -> None:
    global checked
    checked += 1
    if not condition:
        failures.append(what)
        print(f"  FAIL {what}", flush=True)


def equal(actual: Any, expected: Any, what: str) -> None:
    check(actual == expected, f"{what}: expected {expected!r}, got {actual!r}")


mp = httpx.Client(base_url=BASE, timeout=10)


def api(tenant: str, method: str, path: str, **kw: Any) -> httpx.Response:
    t = TENANTS[tenant]
    return mp.request(method, path.format(org=t["org"]), headers={"Authorization": f"Bearer {t['token']}"}, **kw)


def spend_logs(tenant: str) -> list[dict[str, Any]]:
    r = api(tenant, "GET", "/v1/orgs/{org}/spend-logs", params={"projectId": TENANTS[tenant]["project"], "limit": 500})
    r.raise_for_status()
    return r.json()["data"]


def detail(tenant: str, event_id: str) -> dict[str, Any]:
    r = api(tenant, "GET", f"/v1/orgs/{{org}}/spend-logs/{event_id}")
    r.raise_for_status()
    return r.json()


def wait_for(tenant: str, request_ids: set[str]) -> dict[str, dict[str, Any]]:
    """Polls the spend log until every request id is there (bounded)."""
    deadline = time.monotonic() + WAIT_SECONDS
    while True:
        found = {e["requestId"]: e for e in spend_logs(tenant)}
        if request_ids <= found.keys() or time.monotonic() > deadline:
            missing = request_ids - found.keys()
            check(not missing, f"{tenant}: events recorded within {WAIT_SECONDS:.0f} s (missing {sorted(missing)})")
            return found
        time.sleep(0.25)


# ---- prices: the expected cost is computed here, from the catalog --------------------

PRICES = {(p["provider"], p["model"]): p for p in api("callback", "GET", "/v1/prices").json()}
TEN = Decimal("0.0000000001")


def expected_cost(model: str, prompt: int, cached: int, completion: int) -> str:
    p = PRICES[("openai", model)]

    def part(tokens: int, per_mtok: str) -> Decimal:
        return (Decimal(tokens) * Decimal(per_mtok) / Decimal(1_000_000)).quantize(TEN, rounding=ROUND_HALF_UP)

    total = (
        part(prompt - cached, p["inputPerMtok"])
        + part(cached, p["cachedInputPerMtok"])
        + part(completion, p["outputPerMtok"])
        + Decimal(p["perRequest"]).quantize(TEN, rounding=ROUND_HALF_UP)
    )
    return format(total.normalize(), "f")


# ---- the calls -----------------------------------------------------------------------

client = openai.OpenAI(base_url=PROXY, api_key=MASTER, max_retries=0)
calls: dict[str, dict[str, Any]] = {}


def call_id(headers: Any) -> str:
    value = headers.get("x-litellm-call-id")
    assert value, "the proxy answers with x-litellm-call-id"
    return value


def plain() -> None:
    raw = client.chat.completions.with_raw_response.create(
        model="chat", messages=[{"role": "user", "content": "Hello"}], user=f"plain-{RUN}",
        extra_body={"metadata": {"feature": "search"}},
    )
    r = raw.parse()
    calls["plain"] = {"id": call_id(raw.headers), "user": f"plain-{RUN}", "model": "gpt-4o-mini", "group": "chat",
                      "prompt": r.usage.prompt_tokens, "completion": r.usage.completion_tokens, "cached": 0,
                      "status": "success"}


def streaming() -> None:
    raw = client.chat.completions.with_raw_response.create(
        model="chat", messages=[{"role": "user", "content": "Stream to me"}], user=f"stream-{RUN}",
        stream=True, stream_options={"include_usage": True},
    )
    usage = None
    for chunk in raw.parse():
        usage = chunk.usage or usage
    calls["stream"] = {"id": call_id(raw.headers), "user": f"stream-{RUN}", "model": "gpt-4o-mini", "group": "chat",
                       "prompt": usage.prompt_tokens, "completion": usage.completion_tokens, "cached": 0,
                       "status": "success", "stream": True}


def cached() -> None:
    raw = client.chat.completions.with_raw_response.create(
        model="cached", messages=[{"role": "user", "content": "The long shared prefix"}], user=f"cache-{RUN}",
    )
    r = raw.parse()
    calls["cached"] = {"id": call_id(raw.headers), "user": f"cache-{RUN}", "model": "gpt-4o", "group": "cached",
                       "prompt": r.usage.prompt_tokens, "completion": r.usage.completion_tokens,
                       "cached": r.usage.prompt_tokens_details.cached_tokens, "status": "success"}
    equal(calls["cached"]["cached"], 1500, "the mock reports cached tokens")


def error() -> None:
    try:
        client.chat.completions.create(model="broken", messages=[{"role": "user", "content": "x"}], user=f"err-{RUN}")
    except openai.APIStatusError as e:
        equal(e.status_code, 500, "a provider error reaches the client as 500")
        # The router retried (router_settings.num_retries: 2) before giving up; the
        # callback reads that from the final exception, LiteLLM's logged payloads do not
        # carry it.
        calls["error"] = {"id": call_id(e.response.headers), "user": f"err-{RUN}", "model": "gpt-4o-mini",
                          "group": "broken", "prompt": 0, "completion": 0, "cached": 0, "status": "error",
                          "errorCode": "InternalServerError",
                          "retries": {"callback": ROUTER_RETRIES, "generic": 0}}
    else:
        check(False, "the broken model fails")


def fallback() -> None:
    raw = client.chat.completions.with_raw_response.create(
        model="flaky", messages=[{"role": "user", "content": "x"}], user=f"flaky-{RUN}",
    )
    r = raw.parse()
    calls["fallback"] = {"id": call_id(raw.headers), "user": f"flaky-{RUN}", "model": "gpt-4o-mini", "group": "flaky",
                         "prompt": r.usage.prompt_tokens, "completion": r.usage.completion_tokens, "cached": 0,
                         "status": "success", "fallbacks": 1}


async def a2a() -> None:
    from a2a.client import ClientConfig, create_client
    from a2a.types import Message, Part, Role, SendMessageRequest

    headers = {"Authorization": f"Bearer {MASTER}", "x-litellm-end-user-id": f"a2a-{RUN}"}
    async with httpx.AsyncClient(headers=headers, timeout=30) as http:
        agent = await create_client(f"{PROXY}/a2a/planner", client_config=ClientConfig(httpx_client=http, streaming=False),
                                    resolver_http_kwargs={"headers": headers})
        message = Message(role=Role.ROLE_USER, message_id=uuid.uuid4().hex, parts=[Part(text="Plan a trip")])
        texts = []
        async for event in agent.send_message(SendMessageRequest(message=message)):
            texts.append(str(event))
    check(any("plan: step 1" in t for t in texts), "the A2A agent answers through the proxy")


# ---- what was recorded ---------------------------------------------------------------


def verify(tenant: str) -> dict[str, dict[str, Any]]:
    print(f"[{tenant}] spend logs", flush=True)
    logs = wait_for(tenant, {c["id"] for c in calls.values()})
    # The A2A call: one request, under the A2A call's id, carrying its agent's tokens.
    deadline = time.monotonic() + WAIT_SECONDS
    a2a_events = []
    while time.monotonic() < deadline:
        a2a_events = [e for e in spend_logs(tenant) if e["endpoint"] == "/a2a/planner"]
        if a2a_events:
            break
        time.sleep(0.25)
    equal(len(a2a_events), 1, f"{tenant}: one A2A call is one request")
    logs = {e["requestId"]: e for e in spend_logs(tenant)}
    denied_ids = {c["id"] for c in denied_calls}
    check(not denied_ids & logs.keys(), f"{tenant}: calls refused before the provider are not usage")
    for name, c in calls.items():
        e = logs.get(c["id"])
        if e is None:
            continue
        d = detail(tenant, e["id"])
        what = f"{tenant} {name}"
        equal(d["requestId"], c["id"], f"{what}: requestId is the call id")
        equal((d["endpoint"], d["provider"], d["model"]), ("/chat/completions", "openai", c["model"]),
              f"{what}: endpoint, provider, model without prefix")
        equal(d["user"], c["user"], f"{what}: user")
        equal(d["status"], c["status"], f"{what}: status")
        equal(d.get("errorCode"), c.get("errorCode"), f"{what}: error code")
        equal((d["promptTokens"], d["completionTokens"], d["cachedTokens"]), (c["prompt"], c["completion"], c["cached"]),
              f"{what}: tokens")
        equal(d["cost"], expected_cost(c["model"], c["prompt"], c["cached"], c["completion"]), f"{what}: exact cost")
        equal(d["costBreakdown"]["dataStorage"], "0", f"{what}: no bodies stored, no storage charge")
        equal(d["metadata"]["litellm"]["modelGroup"], c["group"], f"{what}: the alias is kept in metadata")
        equal(d["retries"], c.get("retries", {}).get(tenant, 0), f"{what}: retries")
        check(d["latencyMs"] is not None and d["startedAt"] is not None and d["endedAt"] is not None,
              f"{what}: latency and times")
        if c.get("stream"):
            ttft = d["timeToFirstTokenMs"]
            check(ttft is not None and 0 < ttft <= d["latencyMs"], f"{what}: time to first token {ttft}")
        else:
            equal(d["timeToFirstTokenMs"], None, f"{what}: no time to first token")
        if c.get("fallbacks"):
            equal(d["metadata"]["litellm"].get("attemptedFallbacks"), 1, f"{what}: fallback in metadata")
        if name == "plain":
            equal(d["metadata"].get("feature"), "search", f"{what}: the client's metadata is kept")
    if a2a_events:
        d = detail(tenant, a2a_events[0]["id"])
        what = f"{tenant} a2a"
        equal((d["user"], d["agentId"]), (f"a2a-{RUN}", "planner"), f"{what}: customer and agent")
        equal((d["provider"], d["model"]), ("openai", "gpt-4o-mini"), f"{what}: the agent's model")
        check(d["promptTokens"] > 0 and d["completionTokens"] > 0, f"{what}: the agent's tokens count")
        equal(d["cost"], expected_cost("gpt-4o-mini", d["promptTokens"], 0, d["completionTokens"]), f"{what}: exact cost")
        equal(d["metadata"]["litellm"].get("a2aCallId"), d["requestId"], f"{what}: linked to the A2A call")
        agent = api(tenant, "GET", "/v1/orgs/{org}/agents", params={"externalId": "planner"}).json()["data"]
        equal(len(agent), 1, f"{what}: the agent exists")
        logs[d["requestId"]] = d
    return logs


denied_calls: list[dict[str, Any]] = []


def customer_id(tenant: str, external_id: str) -> str:
    rows = api(tenant, "GET", "/v1/orgs/{org}/customers", params={"externalId": external_id}).json()["data"]
    assert rows, f"customer {external_id} exists"
    return rows[0]["id"]


def budgets() -> None:
    print("[budgets] a hard customer budget, then a block", flush=True)
    user = f"budget-{RUN}"
    raw = client.chat.completions.with_raw_response.create(
        model="chat", messages=[{"role": "user", "content": "first"}], user=user)
    first = call_id(raw.headers)
    wait_for("callback", {first})
    cid = customer_id("callback", user)
    r = api("callback", "PUT", f"/v1/orgs/{{org}}/budgets/customer/{cid}",
            json={"amount": "0.00001", "period": "monthly", "hardLimit": True})
    check(r.status_code in (200, 201), f"set the customer budget: {r.status_code} {r.text[:200]}")
    try:
        client.chat.completions.create(model="chat", messages=[{"role": "user", "content": "second"}], user=user)
        check(False, "a call over a hard budget is refused")
    except openai.APIStatusError as e:
        equal(e.status_code, 429, "over budget: 429")
        body = e.response.json()
        message = body.get("error", {}).get("message", "")
        check(message.startswith("meterplane_denied: budget_exceeded"), f"the reason reaches the client: {message!r}")
        equal(body["error"].get("provider_specific_fields", {}).get("reason"), "budget_exceeded", "reason field")
        denied_calls.append({"id": call_id(e.response.headers)})
    deadline, logged = time.monotonic() + WAIT_SECONDS, False
    while not logged and time.monotonic() < deadline:
        decisions = api("callback", "GET", "/v1/orgs/{org}/decisions", params={"allowed": "false"}).json()["data"]
        logged = any(d.get("reason") == "budget_exceeded" and d.get("customer") == user for d in decisions)
        time.sleep(0.0 if logged else 0.25)
    check(logged, "the denial is in the decision log")

    blocked = f"blocked-{RUN}"
    client.chat.completions.create(model="chat", messages=[{"role": "user", "content": "hi"}], user=blocked)
    bid = customer_id("callback", blocked)
    r = api("callback", "POST", f"/v1/orgs/{{org}}/customers/{bid}/block", json={"reason": "invoice overdue"})
    check(r.status_code in (200, 204), f"block the customer: {r.status_code} {r.text[:200]}")
    try:
        client.chat.completions.create(model="chat", messages=[{"role": "user", "content": "hi"}], user=blocked)
        check(False, "a blocked customer is refused")
    except openai.APIStatusError as e:
        equal(e.status_code, 403, "blocked customer: 403")
        check(e.response.json()["error"]["message"].startswith("meterplane_denied: customer_blocked"),
              "blocked: the reason reaches the client")
        denied_calls.append({"id": call_id(e.response.headers)})


def main() -> int:
    started = time.monotonic()
    print("[calls] plain, streaming, cached tokens, a provider error, a router fallback, an A2A agent", flush=True)
    plain()
    streaming()
    cached()
    error()
    fallback()
    asyncio.run(a2a())
    budgets()
    recorded = {tenant: verify(tenant) for tenant in ("callback", "generic")}
    print("[same] the callback and the generic_api endpoint recorded the same events", flush=True)
    fields = ("requestId", "endpoint", "provider", "model", "user", "agentId", "status", "errorCode",
              "promptTokens", "completionTokens", "cachedTokens", "cost")
    ids = [c["id"] for c in calls.values()] + [
        r for r, e in recorded["callback"].items() if e.get("endpoint") == "/a2a/planner"]
    for request_id in ids:
        a, b = recorded["callback"].get(request_id), recorded["generic"].get(request_id)
        check(a is not None and b is not None, f"{request_id} recorded by both")
        if a and b:
            equal({f: b.get(f) for f in fields}, {f: a.get(f) for f in fields}, f"{request_id}: same event")
    print(f"litellm-check: {checked - len(failures)} passed, {len(failures)} failed "
          f"({time.monotonic() - started:.1f}s)", flush=True)
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
