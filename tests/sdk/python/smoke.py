"""End-to-end smoke test of the Python client generated from openapi/openapi.json.

deploy/sdk-check.sh generates the client with openapi-python-client (package
`meterplane_client`), installs it, starts a release build and runs this script. It uses
nothing but the generated client: every request, body and answer goes through the
generated functions and models, so a document the generator misreads fails here.

Environment: MP_BASE_URL (the server), MP_DATA_STORAGE_PRICE_PER_MTOK (the server's
data-storage price, default 0.01). Exits non-zero on the first broken expectation.
"""

from __future__ import annotations

import datetime as dt
import os
import re
import secrets
import sys
import uuid
from decimal import ROUND_HALF_UP, Decimal
from typing import Any

from meterplane_client import AuthenticatedClient, Client
from meterplane_client.api.api_keys import create_api_key, get_api_key
from meterplane_client.api.auth import login, me, signup
from meterplane_client.api.gateway import whoami
from meterplane_client.api.invoices import finalize_invoice, generate_invoices, invoice_csv
from meterplane_client.api.operations import healthz
from meterplane_client.api.organizations import create_organization, get_organization
from meterplane_client.api.pricing import list_prices
from meterplane_client.api.projects import create_project, get_project
from meterplane_client.api.spend_logs import get_spend_log, list_spend_logs
from meterplane_client.api.usage import record_usage, record_usage_batch
from meterplane_client.models import (
    ApiKeyView,
    BatchResponse,
    CreateApiKey,
    CreatedApiKey,
    CreateOrganization,
    CreateProject,
    ErrorCode,
    EventResult,
    EventResultStatus,
    EventStatus,
    GeneratedInvoices,
    GenerateInvoices,
    HealthStatus,
    InvoiceStatus,
    InvoiceView,
    KeyIdentityView,
    LoginRequest,
    MeResponse,
    OrganizationView,
    PriceView,
    Problem,
    ProjectMode,
    ProjectView,
    SignupRequest,
    CheckEmailResponse,
    SpendLogDetail,
    SpendLogPage,
    TokenResponse,
    UsageBatchRequest,
    UsageEventRequest,
)
from meterplane_client.types import Response

BASE_URL = os.environ.get("MP_BASE_URL", "http://127.0.0.1:8080")
STORAGE_PER_MTOK = Decimal(os.environ.get("MP_DATA_STORAGE_PRICE_PER_MTOK", "0.01"))
MONEY = re.compile(r"^-?[0-9]+(\.[0-9]+)?$")
TEN_PLACES = Decimal("0.0000000001")
MILLION = Decimal(1_000_000)

checks = 0


def step(message: str) -> None:
    print(f"smoke: {message}", flush=True)


def check(condition: bool, message: str) -> None:
    global checks
    checks += 1
    if not condition:
        raise AssertionError(message)


def expect(response: Response[Any], status: int, kind: type) -> Any:
    """The parsed body of a response that must have `status` and parse as `kind`."""
    body = response.content.decode("utf-8", "replace")[:500]
    check(
        response.status_code == status,
        f"expected HTTP {status}, got {int(response.status_code)}: {body}",
    )
    check(
        isinstance(response.parsed, kind),
        f"HTTP {status} did not parse as {kind.__name__} (got {type(response.parsed).__name__}): {body}",
    )
    return response.parsed


def expect_problem(response: Response[Any], status: int, code: ErrorCode) -> Problem:
    problem = expect(response, status, Problem)
    check(problem.status == status, f"problem.status {problem.status} != {status}")
    check(problem.code == code, f"problem.code {problem.code!r} != {code!r}")
    check(isinstance(problem.code, ErrorCode), "problem.code is not the generated ErrorCode enum")
    check(problem.type_ == f"urn:meterplane:problem:{code.value}", f"problem.type {problem.type_!r}")
    check(bool(problem.title) and bool(problem.detail), "problem without title or detail")
    return problem


def money(value: Any, what: str) -> Decimal:
    """A money field: a decimal string, never a float."""
    check(isinstance(value, str), f"{what} is {type(value).__name__}, not a decimal string")
    check(MONEY.match(value) is not None, f"{what} = {value!r} is not a plain decimal string")
    return Decimal(value)


def round_money(value: Decimal) -> Decimal:
    return value.quantize(TEN_PLACES, rounding=ROUND_HALF_UP)


def per_token(count: int, per_mtok: Decimal) -> Decimal:
    return round_money(Decimal(count) * per_mtok / MILLION)


def main() -> None:
    run = secrets.token_hex(4)
    public = Client(base_url=BASE_URL, raise_on_unexpected_status=True, timeout=30.0)

    step("GET /healthz")
    health = expect(healthz.sync_detailed(client=public), 200, HealthStatus)
    check(health.status == "ok", f"healthz status {health.status!r}")

    # --- sign up and log in -------------------------------------------------------
    email = f"sdk-smoke-{run}@example.com"
    password = secrets.token_urlsafe(18)
    step("sign up")
    signed_up = expect(
        signup.sync_detailed(
            client=public,
            body=SignupRequest(email=email, password=password, name="SDK Smoke"),
        ),
        202,
        CheckEmailResponse,
    )
    check(signed_up.status == "check_email", f"sign-up status {signed_up.status!r}")

    step("sign up again with the same email: the same 202, nothing revealed")
    again = expect(
        signup.sync_detailed(client=public, body=SignupRequest(email=email, password=password)),
        202,
        CheckEmailResponse,
    )
    check(again.to_dict() == signed_up.to_dict(), "a taken address must answer like a new one")

    step("log in with a wrong password: 401 invalid_credentials")
    expect_problem(
        login.sync_detailed(client=public, body=LoginRequest(email=email, password=password + "x")),
        401,
        ErrorCode.INVALID_CREDENTIALS,
    )

    step("log in")
    logged_in = login.sync_detailed(client=public, body=LoginRequest(email=email, password=password))
    token = expect(logged_in, 200, TokenResponse)
    check(len(token.access_token.split(".")) == 3, "the access token is not a JWT")
    tenant = AuthenticatedClient(
        base_url=BASE_URL, token=token.access_token, raise_on_unexpected_status=True, timeout=30.0
    )
    profile = expect(me.sync_detailed(client=tenant), 200, MeResponse)
    check(profile.user.email == email, f"GET /v1/me is another user: {profile.user.email!r}")
    check(profile.memberships == [], "a new account without organization has memberships")

    # --- organization, project, key -----------------------------------------------
    step("create an organization")
    org = expect(
        create_organization.sync_detailed(
            client=tenant,
            body=CreateOrganization(name=f"SDK Smoke {run}", alert_emails=[f"billing-{run}@example.com"]),
        ),
        201,
        OrganizationView,
    )
    check(isinstance(org.id, uuid.UUID), "organization id is not a UUID")
    check(org.plan.value == "free" and org.retention_days == 3, f"plan {org.plan} / {org.retention_days} days")
    check(org.slug == f"sdk-smoke-{run}", f"slug {org.slug!r}")
    fetched = expect(get_organization.sync_detailed(org.id, client=tenant), 200, OrganizationView)
    check(fetched.id == org.id and fetched.name == org.name, "GET organization differs from the created one")

    step("create a project")
    project = expect(
        create_project.sync_detailed(
            org.id, client=tenant, body=CreateProject(name="Checkout", mode=ProjectMode.CREDITS)
        ),
        201,
        ProjectView,
    )
    check(project.org_id == org.id and project.mode == ProjectMode.CREDITS, "project fields")
    expect(get_project.sync_detailed(org.id, project.id, client=tenant), 200, ProjectView)

    step("create an API key")
    created_key = expect(
        create_api_key.sync_detailed(org.id, project.id, client=tenant, body=CreateApiKey(name="gateway")),
        201,
        CreatedApiKey,
    )
    check(re.fullmatch(r"mp_[0-9A-Za-z]{40}", created_key.secret) is not None, "key secret format")
    check(created_key.secret.startswith(created_key.prefix), "the key prefix does not start the secret")
    listed_key = expect(get_api_key.sync_detailed(org.id, project.id, created_key.id, client=tenant), 200, ApiKeyView)
    check(listed_key.prefix == created_key.prefix and "secret" not in listed_key.to_dict(), "secret readable again")

    gateway = AuthenticatedClient(
        base_url=BASE_URL,
        token=created_key.secret,
        prefix="",
        auth_header_name="X-Api-Key",
        raise_on_unexpected_status=True,
        timeout=30.0,
    )
    identity = expect(whoami.sync_detailed(client=gateway), 200, KeyIdentityView)
    check(identity.project_id == project.id and identity.org_id == org.id, "whoami names another project")

    step("a wrong API key: 401 invalid_api_key")
    wrong = AuthenticatedClient(
        base_url=BASE_URL,
        token="mp_" + "0" * 40,
        prefix="",
        auth_header_name="X-Api-Key",
        raise_on_unexpected_status=True,
    )
    expect_problem(whoami.sync_detailed(client=wrong), 401, ErrorCode.INVALID_API_KEY)

    # --- prices, for the expected costs ---------------------------------------------
    prices = expect(list_prices.sync_detailed(client=tenant), 200, list)
    check(prices and all(isinstance(p, PriceView) for p in prices), "GET /v1/prices is not a list of PriceView")
    gpt4o = [p for p in prices if p.provider == "openai" and p.model == "gpt-4o" and not p.valid_until]
    check(len(gpt4o) == 1, "the catalog has no current openai/gpt-4o price")
    price = gpt4o[0]
    for field in ("input_per_mtok", "output_per_mtok", "cached_input_per_mtok", "per_request", "per_image"):
        money(getattr(price, field), f"price.{field}")

    # --- usage: one event -------------------------------------------------------------
    now = dt.datetime.now(dt.timezone.utc).replace(microsecond=0)
    single_request_id = f"smoke-{run}-single"
    single = {
        "requestId": single_request_id,
        "endpoint": "/chat/completions",
        "provider": "openai",
        "model": "gpt-4o",
        "user": "customer-a",
        "status": "success",
        "promptTokens": 1200,
        "cachedTokens": 200,
        "completionTokens": 300,
        "latencyMs": 840,
        "timeToFirstTokenMs": 210,
        "startedAt": (now - dt.timedelta(minutes=3)).isoformat(),
        "requestBody": {"messages": [{"role": "user", "content": "What does a token cost?"}]},
        "responseBody": {"choices": [{"message": {"role": "assistant", "content": "Very little."}}]},
        "metadata": {"feature": "search", "tier": 2, "tags": ["smoke"]},
    }
    event = UsageEventRequest.from_dict(single)
    check(event.to_dict() == single, f"the generated model does not round-trip an event: {event.to_dict()}")

    step("POST /v1/usage: recorded (201)")
    recorded = expect(record_usage.sync_detailed(client=gateway, body=event), 201, EventResult)
    check(recorded.status == EventResultStatus.ACCEPTED, f"status {recorded.status}")
    check(recorded.request_id == single_request_id, "requestId not echoed")
    check(isinstance(recorded.event_id, uuid.UUID), "no event id")
    check(recorded.unpriced is False, "gpt-4o came back unpriced")
    cost = money(recorded.cost, "EventResult.cost")
    inp = Decimal(price.input_per_mtok)
    out = Decimal(price.output_per_mtok)
    cached = Decimal(price.cached_input_per_mtok)
    expected_components = {  # keyed by the JSON names of CostBreakdown
        "input": per_token(1000, inp),
        "cachedInput": per_token(200, cached),
        "output": per_token(300, out),
        "request": round_money(Decimal(price.per_request)),
        "image": Decimal(0),
        "dataStorage": per_token(1500, STORAGE_PER_MTOK),
    }
    expected_cost = sum(expected_components.values(), Decimal(0))
    # `image` is their sum: images sent and images generated, apart (no images here).
    expected_components.update({"imageInput": Decimal(0), "imageOutput": Decimal(0)})
    # Components the call does not use are present, at zero: cache writes of both
    # durations, reasoning and audio tokens.
    for unused in ("cacheWrite5m", "cacheWrite1h", "reasoning", "audioInput", "audioOutput"):
        expected_components[unused] = Decimal(0)
    check(cost == expected_cost, f"cost {cost} != expected {expected_cost}")

    step("POST /v1/usage again: duplicate (200), same event")
    again = expect(record_usage.sync_detailed(client=gateway, body=event), 200, EventResult)
    check(again.status == EventResultStatus.DUPLICATE, f"status {again.status}")
    check(again.event_id == recorded.event_id, "a duplicate names another event")

    step("POST /v1/usage with a negative token count: 422 validation_failed")
    bad = dict(single, requestId=f"smoke-{run}-bad", promptTokens=-1, cachedTokens=0)
    problem = expect_problem(
        record_usage.sync_detailed(client=gateway, body=UsageEventRequest.from_dict(bad)),
        422,
        ErrorCode.VALIDATION_FAILED,
    )
    check(isinstance(problem.errors, list) and problem.errors, "validation problem without errors")
    check(any(e.field == "promptTokens" for e in problem.errors), f"errors {[e.to_dict() for e in problem.errors]}")

    # --- usage: a batch ---------------------------------------------------------------
    batch_events = [
        {  # accepted, priced, an agent call
            "requestId": f"smoke-{run}-b1",
            "endpoint": "/a2a/planner",
            "provider": "anthropic",
            "model": "claude-sonnet-4-5",
            "user": "customer-b",
            "promptTokens": 900,
            "completionTokens": 150,
            "startedAt": (now - dt.timedelta(minutes=2)).isoformat(),
            "metadata": {"feature": "planner"},
        },
        {  # accepted, unpriced in-house model, failed call
            "requestId": f"smoke-{run}-b2",
            "endpoint": "/chat/completions",
            "provider": "acme",
            "model": "in-house-7b",
            "user": "customer-b",
            "status": "error",
            "errorCode": "upstream_timeout",
            "promptTokens": 10,
            "startedAt": (now - dt.timedelta(minutes=1)).isoformat(),
            "redactBodies": True,
        },
        single,  # duplicate of the single event
        {  # rejected: negative completion tokens
            "requestId": f"smoke-{run}-b3",
            "endpoint": "/chat/completions",
            "provider": "openai",
            "model": "gpt-4o",
            "completionTokens": -5,
        },
    ]
    step("POST /v1/usage/batch: 2 accepted, 1 duplicate, 1 rejected")
    batch = expect(
        record_usage_batch.sync_detailed(client=gateway, body=UsageBatchRequest.from_dict({"events": batch_events})),
        200,
        BatchResponse,
    )
    check(
        (batch.accepted, batch.duplicates, batch.rejected) == (2, 1, 1),
        f"batch counts {(batch.accepted, batch.duplicates, batch.rejected)}",
    )
    by_index = {r.index: r for r in batch.results}
    check(sorted(by_index) == [0, 1, 2, 3], f"result indexes {sorted(by_index)}")
    check(by_index[0].status == EventResultStatus.ACCEPTED, "event 0 not accepted")
    check(money(by_index[0].cost, "results[0].cost") > 0, "a priced event cost nothing")
    check(by_index[1].status == EventResultStatus.ACCEPTED and by_index[1].unpriced is True, "event 1")
    check(money(by_index[1].cost, "results[1].cost") == 0, "an unpriced event has a cost")
    check(by_index[2].status == EventResultStatus.DUPLICATE, "event 2 not a duplicate")
    check(by_index[2].event_id == recorded.event_id, "the duplicate names another event")
    check(by_index[3].status == EventResultStatus.REJECTED, "event 3 not rejected")
    check(any(e.field == "completionTokens" for e in by_index[3].errors), "rejection does not name the field")
    check(by_index[3].event_id is None or by_index[3].event_id.__class__.__name__ == "Unset", "rejected id")

    # --- spend logs ---------------------------------------------------------------------
    step("page the spend logs two at a time")
    seen: list[Any] = []
    cursor: Any = None
    pages = 0
    while True:
        kwargs: dict[str, Any] = {"limit": 2}
        if cursor:
            kwargs["cursor"] = cursor
        page = expect(list_spend_logs.sync_detailed(org.id, client=tenant, **kwargs), 200, SpendLogPage)
        pages += 1
        check(page.clamped is False, "an unfiltered page says clamped")
        check(len(page.data) <= 2, f"page of {len(page.data)} entries with limit 2")
        seen.extend(page.data)
        cursor = page.next_cursor if isinstance(page.next_cursor, str) else None
        if not cursor:
            break
        check(pages < 10, "pagination does not end")
    check(len(seen) == 3 and pages == 2, f"{len(seen)} entries on {pages} pages, expected 3 on 2")
    check(len({e.id for e in seen}) == 3, "an entry appears on two pages")
    times = [e.occurred_at for e in seen]
    check(times == sorted(times, reverse=True), "spend logs are not newest first")
    check([e.request_id for e in seen] == [f"smoke-{run}-b2", f"smoke-{run}-b1", single_request_id], "order")
    for entry in seen:
        for field in ("cost", "cost_before_discount", "discount_savings"):
            money(getattr(entry, field), f"SpendLogEntry.{field}")
        check(entry.project_id == project.id and entry.api_key_id == created_key.id, "entry project/key")
        check(entry.total_tokens == entry.prompt_tokens + entry.completion_tokens, "totalTokens")

    step("filter the spend logs: customer-b, status error")
    filtered = expect(
        list_spend_logs.sync_detailed(
            org.id, client=tenant, customer="customer-b", status=EventStatus.ERROR, project_id=project.id
        ),
        200,
        SpendLogPage,
    )
    check(len(filtered.data) == 1, f"{len(filtered.data)} entries for customer-b/error, expected 1")
    failed = filtered.data[0]
    check(failed.request_id == f"smoke-{run}-b2" and failed.unpriced is True, "filtered entry")
    check(failed.error_code == "upstream_timeout", f"errorCode {failed.error_code!r}")
    check(str(getattr(failed.status, "value", failed.status)) == "error", f"status {failed.status!r}")

    by_customer = expect(list_spend_logs.sync_detailed(org.id, client=tenant, customer="customer-a"), 200, SpendLogPage)
    check([e.id for e in by_customer.data] == [recorded.event_id], "customer-a filter")

    step("read one spend-log entry in detail")
    detail = expect(get_spend_log.sync_detailed(org.id, recorded.event_id, client=tenant), 200, SpendLogDetail)
    check(detail.id == recorded.event_id and detail.request_id == single_request_id, "detail identity")
    check(money(detail.cost, "detail.cost") == expected_cost, f"detail cost {detail.cost} != {expected_cost}")
    breakdown = detail.cost_breakdown.to_dict()
    check(sorted(breakdown) == sorted(expected_components), f"costBreakdown fields {sorted(breakdown)}")
    for name, value in expected_components.items():
        got = money(breakdown[name], f"costBreakdown.{name}")
        check(got == value, f"costBreakdown.{name} {got} != {value}")
    check(money(detail.cost_before_discount, "costBeforeDiscount") == expected_cost, "costBeforeDiscount")
    check(money(detail.discount_percent, "discountPercent") == 0, "discountPercent")
    check(detail.price_id == price.id, "detail names another price version")
    metadata = detail.metadata
    metadata = metadata.to_dict() if hasattr(metadata, "to_dict") else metadata
    check(metadata == single["metadata"], f"metadata {metadata!r}")
    check(isinstance(detail.request_body, str) and "What does a token cost?" in detail.request_body, "body")
    check(detail.bodies_truncated is False, "bodies flagged truncated")
    check(detail.prompt_tokens == 1200 and detail.cached_tokens == 200, "token counts")
    check(detail.latency_ms == 840 and detail.time_to_first_token_ms == 210, "latencies")

    # --- invoices -----------------------------------------------------------------------
    step("POST /v1/orgs/{orgId}/invoice-runs: a draft per customer with usage today")
    today = dt.datetime.now(dt.timezone.utc).date()
    run_result = expect(
        generate_invoices.sync_detailed(
            org.id, client=tenant, body=GenerateInvoices(period_start=today, period_end=today)
        ),
        200,
        GeneratedInvoices,
    )
    check(len(run_result.created) == 2, f"{len(run_result.created)} drafts, expected customer-a and customer-b")
    draft = next(i for i in run_result.created if i.customer_external_id == "customer-a")
    check(draft.status == InvoiceStatus.DRAFT and not isinstance(draft.number, str), "a draft has no number")
    step("finalize it: a number, and total = subtotal + tax with every line rounded to cents")
    issued = expect(finalize_invoice.sync_detailed(org.id, draft.id, client=tenant), 200, InvoiceView)
    check(re.fullmatch(r"INV-\d{4}-\d{6}", str(issued.number)) is not None, f"number {issued.number}")
    amounts = [money(line.amount, "InvoiceLineView.amount") for line in issued.lines]
    check(all(a == a.quantize(Decimal("0.01")) for a in amounts), f"line amounts {amounts}")
    subtotal = money(issued.subtotal, "subtotal")
    check(sum(amounts, Decimal(0)) == subtotal, "subtotal is the sum of the lines")
    check(money(issued.total, "total") == subtotal + money(issued.tax, "tax"), "total")
    step("GET the invoice as CSV: one row per line")
    csv_response = invoice_csv.sync_detailed(org.id, issued.id, client=tenant)
    check(csv_response.status_code == 200, f"CSV answered {csv_response.status_code}")
    rows = csv_response.content.decode().strip().splitlines()
    check(len(rows) == 1 + len(issued.lines), f"{len(rows)} CSV rows for {len(issued.lines)} lines")

    # --- typed problems -----------------------------------------------------------------
    step("an unknown spend-log entry: 404 not_found")
    expect_problem(get_spend_log.sync_detailed(org.id, uuid.uuid4(), client=tenant), 404, ErrorCode.NOT_FOUND)
    step("another tenant's view of this organization: 404 not_found")
    expect_problem(get_organization.sync_detailed(uuid.uuid4(), client=tenant), 404, ErrorCode.NOT_FOUND)
    step("a project with an empty name: 422 validation_failed")
    problem = expect_problem(
        create_project.sync_detailed(org.id, client=tenant, body=CreateProject(name="", mode=ProjectMode.HYBRID)),
        422,
        ErrorCode.VALIDATION_FAILED,
    )
    check(any(e.field == "name" for e in problem.errors), f"errors {[e.to_dict() for e in problem.errors]}")

    print(f"smoke: {checks} passed, 0 failed", flush=True)


if __name__ == "__main__":
    try:
        main()
    except AssertionError as failure:
        print(f"smoke: FAILED after {checks - 1} checks: {failure}", file=sys.stderr, flush=True)
        sys.exit(1)
