"""The dashboard in headless Chromium, end to end, against a running server with the
demo data (deploy/ui-check.sh starts one). Each step is a thing a person would check;
the numbers on screen are compared with what the API answers for the same question.

Environment: MP_BASE_URL, MP_DEMO_KEY (the demo's API key, to record a call while
Live is on), MP_UI_SCREENSHOTS (folder for the screenshots), MP_CHROMIUM and
MP_CHROMEDRIVER (paths; Debian's by default).
"""

import json
import os
import sys
import tempfile
import time
import urllib.error
import urllib.request
import uuid
from datetime import datetime, timedelta, timezone
from decimal import Decimal

from selenium import webdriver
from selenium.common.exceptions import NoSuchElementException, StaleElementReferenceException, TimeoutException
from selenium.webdriver.chrome.service import Service
from selenium.webdriver.common.by import By
from selenium.webdriver.common.keys import Keys
from selenium.webdriver.support.ui import Select, WebDriverWait

BASE = os.environ.get("MP_BASE_URL", "http://127.0.0.1:8080").rstrip("/")
SHOTS = os.environ.get("MP_UI_SCREENSHOTS", "target/ui-screenshots")
DEMO_KEY = os.environ["MP_DEMO_KEY"]
ADMIN = ("demo@meterplane.local", "meterplane-demo")
VIEWER = ("viewer@meterplane.local", "meterplane-demo")
WAIT = float(os.environ.get("MP_UI_WAIT_SECONDS", "20"))

AXE_JS = os.environ["MP_AXE_JS"]
timings = []
audited = []  # (screen, violations that fail the check)


# --- the API, as the test's own witness ----------------------------------------------

def call(method, path, token=None, body=None, key=None):
    headers = {"accept": "application/json"}
    data = None
    if body is not None:
        data = json.dumps(body).encode()
        headers["content-type"] = "application/json"
    if token:
        headers["authorization"] = f"Bearer {token}"
    if key:
        headers["x-api-key"] = key
    req = urllib.request.Request(BASE + path, data=data, headers=headers, method=method)
    try:
        with urllib.request.urlopen(req, timeout=30) as res:
            return json.loads(res.read() or b"null")
    except urllib.error.HTTPError as e:
        raise AssertionError(f"{method} {path}: {e.code} {e.read()[:300]!r}") from None


def call_text(path, token):
    req = urllib.request.Request(BASE + path, headers={"authorization": f"Bearer {token}"})
    with urllib.request.urlopen(req, timeout=30) as res:
        return res.read().decode()


def login(email, password):
    return call("POST", "/v1/auth/login", body={"email": email, "password": password})["accessToken"]


# --- the browser ---------------------------------------------------------------------

def browser():
    options = webdriver.ChromeOptions()
    options.binary_location = os.environ.get("MP_CHROMIUM", "/usr/bin/chromium")
    for arg in ("--headless=new", "--no-sandbox", "--disable-dev-shm-usage", "--disable-gpu",
                "--window-size=1280,1000", "--lang=en-US", "--no-first-run",
                "--disable-extensions", "--disable-background-networking"):
        options.add_argument(arg)
    options.add_experimental_option("prefs", {"intl.accept_languages": "en-US"})
    options.set_capability("goog:loggingPrefs", {"browser": "ALL"})
    service = Service(executable_path=os.environ.get("MP_CHROMEDRIVER", "/usr/bin/chromedriver"))
    driver = webdriver.Chrome(options=options, service=service)
    driver.set_page_load_timeout(30)
    return driver


def wait(driver, condition, what, seconds=WAIT):
    # Elements found a moment ago may have been re-rendered since: look again.
    ignored = (StaleElementReferenceException, NoSuchElementException)
    try:
        return WebDriverWait(driver, seconds, poll_frequency=0.1, ignored_exceptions=ignored).until(condition)
    except TimeoutException:
        shot(driver, f"failed-{what.replace(' ', '-')[:40]}")
        for entry in driver.get_log("browser"):
            print(f"ui-check: browser console: {entry.get('level')} {entry.get('message')}", file=sys.stderr)
        raise AssertionError(f"timed out after {seconds}s waiting for: {what}") from None


def find(driver, css):
    found = driver.find_elements(By.CSS_SELECTOR, css)
    return found[0] if found else None


def shown(driver, css):
    el = find(driver, css)
    return el if el is not None and el.is_displayed() else None


def shot(driver, name):
    os.makedirs(SHOTS, exist_ok=True)
    driver.save_screenshot(os.path.join(SHOTS, f"{name}.png"))


def card(driver, name):
    el = find(driver, f"#card-{name}")
    if el is None:
        return None
    return {
        "raw": el.get_attribute("data-value"),
        "value": el.find_element(By.CSS_SELECTOR, ".stat-value").text,
        "sub": el.find_element(By.CSS_SELECTOR, ".stat-sub").text,
    }


def console_problems(driver):
    bad = []
    for entry in driver.get_log("browser"):
        text = entry.get("message", "")
        if "Content Security Policy" in text or "Uncaught" in text or "SyntaxError" in text:
            bad.append(text)
    return bad


AXE_RUN = """
const done = arguments[arguments.length - 1];
axe.run(document, { resultTypes: ['violations'] })
  .then((r) => done(r.violations.map((v) => ({ id: v.id, impact: v.impact, help: v.help,
    nodes: v.nodes.slice(0, 4).map((n) => n.target.join(' ') + (n.failureSummary ? ' — ' + n.failureSummary.split('\\n').slice(1, 2).join('') : '')) }))))
  .catch((e) => done([{ id: 'axe-error', impact: 'critical', help: String(e), nodes: [] }]));
"""


def audit(driver, screen):
    """axe-core on what the page shows now (injected through WebDriver, not served by
    the binary); serious and critical violations fail the check at its end."""
    if not driver.execute_script("return typeof window.axe === 'object'"):
        with open(AXE_JS, encoding="utf-8") as f:
            driver.execute_script(f.read())
    driver.set_script_timeout(60)
    violations = driver.execute_async_script(AXE_RUN)
    bad = [v for v in violations if v["impact"] in ("serious", "critical")]
    for v in violations:
        print(f"ui-check:   axe [{screen}] {v['impact']}: {v['id']} ({v['help']}) {v['nodes']}", flush=True)
    audited.append((screen, bad))


# --- steps ---------------------------------------------------------------------------

def step(name):
    def wrap(fn):
        def run(*args):
            start = time.monotonic()
            print(f"ui-check: {name} …", flush=True)
            result = fn(*args)
            timings.append((name, time.monotonic() - start))
            return result
        return run
    return wrap


@step("sign in")
def sign_in(driver, email, password, shot_name=None, organization=None):
    driver.get(BASE + "/ui/")
    wait(driver, lambda d: shown(d, "#email"), "the sign-in form")
    if shot_name:
        shot(driver, shot_name)
        audit(driver, "sign-in")
    driver.find_element(By.ID, "email").send_keys(email)
    driver.find_element(By.ID, "password").send_keys(password + Keys.ENTER)
    if organization:
        # Members of several organizations choose one first.
        wait(driver, lambda d: shown(d, ".org-choice"), "the organization chooser")
        shot(driver, "01b-choose-organization")
        choice = next(b for b in driver.find_elements(By.CSS_SELECTOR, ".org-choice") if organization in b.text)
        choice.click()
    wait(driver, lambda d: shown(d, "#signout"), "the signed-in header")
    assert driver.find_element(By.ID, "signed-in-as").text == email


def cards_loaded(driver):
    c = card(driver, "requests")
    return c is not None and c["raw"] not in (None, "")


def shown_window(driver):
    """The window the page shows, as the API's from/to: instants for hourly windows,
    UTC days for daily ones (so a clock passing the hour between the page's request
    and the test's cannot make them differ)."""
    el = find(driver, "#window-range")
    if el is None:
        return None
    start, end = el.get_attribute("data-from"), el.get_attribute("data-to")
    hours = (datetime.fromisoformat(end) - datetime.fromisoformat(start)) / timedelta(hours=1)
    if hours <= 48:
        return f"from={start.replace('+00:00', 'Z')}&to={end.replace('+00:00', 'Z')}"
    last = (datetime.fromisoformat(end) - timedelta(days=1)).date().isoformat()
    return f"from={start[:10]}&to={last}"


def expect_cards(driver, org, token, what, filters="", shots=None):
    """Waits for the cards, then compares them with the API's summary of the window
    the page shows (same filters). Returns that summary."""
    seen = {}

    def matches(d):
        if not cards_loaded(d) or shown_window(d) is None:
            return False
        window = shown_window(d)
        if seen.get("window") != window:
            seen["window"] = window
            seen["summary"] = call("GET", f"/v1/orgs/{org}/activity/summary?{window}{filters}", token)
        t = seen["summary"]["totals"]
        return card(d, "requests")["raw"] == str(t["requestCount"]) and card(d, "spend")["raw"] == t["cost"]

    wait(driver, matches, f"cards showing {what}")
    summary = seen["summary"]
    t = summary["totals"]
    requests, tokens, spend, latency = (card(driver, n) for n in ("requests", "tokens", "spend", "latency"))
    # What a person reads: thousands separators, dollars and cents, the success rate.
    assert requests["value"] == f"{t['requestCount']:,}", requests
    assert f"{t['errorCount']:,} failed" in requests["sub"], requests
    rate = f"{t['successRate']:.1f}".rstrip("0").rstrip(".")
    assert requests["sub"].startswith(f"{rate}% success"), (requests, t["successRate"])
    assert tokens["value"] == f"{t['totalTokens']:,}", tokens
    assert tokens["sub"] == f"{t['inputTokens']:,} input · {t['outputTokens']:,} output", tokens
    shown_spend = Decimal(spend["value"].replace("$", "").replace(",", ""))
    assert abs(shown_spend - Decimal(t["cost"])) <= Decimal("0.005"), (spend, t["cost"])
    mean = summary["latency"]["meanMs"]
    if mean is not None:
        assert abs(float(latency["raw"]) - mean) < 1e-6, (latency, mean)
        p95 = summary["latency"]["p95Ms"]
        if p95 is not None:
            assert "p95" in latency["sub"], latency
    return summary


@step("summary cards equal the API's numbers (24 hours)")
def cards_match_api(driver, org, token):
    day = expect_cards(driver, org, token, "the 24-hour window")
    assert day["resolution"] == "hour" and len(day["series"]) == 24, day["series"]
    assert day["totals"]["requestCount"] > 0, "the demo data should have calls in the last 24 hours"
    wait(driver, lambda d: shown(d, "#requests-table tbody tr"), "the request log")
    wait(driver, lambda d: shown(d, ".chart canvas"), "the chart")
    shot(driver, "02-overview-24h")
    audit(driver, "overview")
    return day


@step("switching the window to 7 days changes the cards")
def switch_window(driver, org, token, day):
    driver.find_element(By.ID, "window-7d").click()
    wait(driver, lambda d: (shown_window(d) or "").startswith("from=20") and "T" not in shown_window(d), "a 7-day window")
    week = expect_cards(driver, org, token, "the 7-day window")
    assert week["resolution"] == "day" and len(week["series"]) == 7, week["series"]
    assert week["totals"]["requestCount"] > day["totals"]["requestCount"]
    assert card(driver, "requests")["value"] != f"{day['totals']['requestCount']:,}"
    shot(driver, "03-overview-7d")


def set_date(driver, element_id, value):
    # What typing into a date field does, without depending on the locale's format.
    driver.execute_script(
        "const el = document.getElementById(arguments[0]); el.value = arguments[1];"
        "el.dispatchEvent(new Event('input', {bubbles: true}));", element_id, value)


@step("custom dates; days the plan does not keep are refused")
def custom_window(driver, org, token):
    driver.find_element(By.ID, "window-custom").click()
    start = (datetime.now(timezone.utc) - timedelta(days=10)).date().isoformat()
    end = (datetime.now(timezone.utc) - timedelta(days=4)).date().isoformat()
    set_date(driver, "custom-from", start)
    set_date(driver, "custom-to", end)
    driver.find_element(By.CSS_SELECTOR, ".custom-range button[type=submit]").click()
    wait(driver, lambda d: shown_window(d) == f"from={start}&to={end}", "the custom window")
    custom = expect_cards(driver, org, token, "the custom dates")
    assert len(custom["series"]) == 7, custom["series"]
    retention = call("GET", f"/v1/orgs/{org}", token)["retentionDays"]
    note = driver.find_element(By.ID, "retention-note").text
    assert f"keeps {retention} days" in note, note
    too_old = (datetime.now(timezone.utc) - timedelta(days=retention + 30)).date().isoformat()
    set_date(driver, "custom-from", too_old)
    driver.find_element(By.CSS_SELECTOR, ".custom-range button[type=submit]").click()
    # The date field itself refuses days the plan does not keep (its minimum is the
    # oldest day kept), so the window stays as it was.
    refused = driver.execute_script("return document.getElementById('custom-from').validity.rangeUnderflow")
    assert refused, "a day before the retention is refused by the form"
    time.sleep(0.3)
    assert shown_window(driver) == f"from={start}&to={end}"
    shot(driver, "04-custom-dates-before-retention")
    driver.find_element(By.ID, "window-7d").click()
    wait(driver, cards_loaded, "the 7-day window again")


@step("an organization without calls shows empty states")
def empty_org(driver):
    Select(driver.find_element(By.ID, "org-switch")).select_by_visible_text("Second Org")
    wait(driver, lambda d: cards_loaded(d) and card(d, "requests")["raw"] == "0", "the empty organization's cards")
    wait(driver, lambda d: "No requests match" in d.find_element(By.ID, "request-log").text, "the empty request log")
    assert "No requests in this window" in driver.page_source
    shot(driver, "13-empty-organization")
    Select(driver.find_element(By.ID, "org-switch")).select_by_visible_text("Demo Org")
    wait(driver, lambda d: cards_loaded(d) and card(d, "requests")["raw"] != "0", "the demo organization again")


def log_rows(driver):
    return driver.find_elements(By.CSS_SELECTOR, "#requests-table tbody tr")


@step("the customer filter narrows the request log and the cards")
def customer_filter(driver, org, token):
    def customers_shown(d):
        return {r.find_element(By.CSS_SELECTOR, ".customer").text for r in log_rows(d)}

    wait(driver, lambda d: len(customers_shown(d)) > 1, "several customers in the unfiltered log")
    customer = "acme-corp"
    Select(driver.find_element(By.ID, "filter-customer")).select_by_value(customer)
    filtered = expect_cards(driver, org, token, f"customer {customer}", filters=f"&customer={customer}")

    def only_customer(d):
        rows = log_rows(d)
        return rows and all(r.find_element(By.CSS_SELECTOR, ".customer").text == customer for r in rows)

    wait(driver, only_customer, f"only {customer} in the request log")
    page = call("GET", f"/v1/orgs/{org}/spend-logs?customer={customer}&limit=25&from={filtered['from']}", token)
    shown_ids = [e["id"] for e in page["data"]]
    wait(driver, lambda d: [r.get_attribute("data-id") for r in log_rows(d)] == shown_ids,
         "the log to show the API's first page, newest first")
    # Cursor paging: the next page continues where the first ended.
    if page.get("nextCursor"):
        driver.find_element(By.ID, "page-older").click()
        second = call("GET", f"/v1/orgs/{org}/spend-logs?customer={customer}&limit=25&from={filtered['from']}"
                      f"&cursor={page['nextCursor']}", token)
        wait(driver, lambda d: [r.get_attribute("data-id") for r in log_rows(d)] == [e["id"] for e in second["data"]],
             "the second page of the log")
        driver.find_element(By.ID, "page-newer").click()
        wait(driver, lambda d: [r.get_attribute("data-id") for r in log_rows(d)] == shown_ids, "the first page again")
    shot(driver, "04-filtered-by-customer")


def check_drawer(driver, org, token, event_id):
    wait(driver, lambda d: shown(d, "#drawer #cost-breakdown"), "the request drawer")
    detail = call("GET", f"/v1/orgs/{org}/spend-logs/{event_id}", token)
    drawer = driver.find_element(By.ID, "drawer")
    parts = drawer.find_elements(By.CSS_SELECTOR, "#cost-breakdown tr.component")
    sum_parts = sum((Decimal(p.get_attribute("data-value")) for p in parts), Decimal(0))
    subtotal = Decimal(drawer.find_element(By.CSS_SELECTOR, "#cost-breakdown tr.subtotal").get_attribute("data-value"))
    total = Decimal(drawer.find_element(By.CSS_SELECTOR, "#cost-breakdown tr.total").get_attribute("data-value"))
    assert sum_parts == subtotal, f"the breakdown adds up: {sum_parts} != {subtotal}"
    assert subtotal == Decimal(detail["costBeforeDiscount"]), (subtotal, detail["costBeforeDiscount"])
    assert total == Decimal(detail["cost"]), (total, detail["cost"])
    nonzero = {k for k, v in detail["costBreakdown"].items() if Decimal(v) != 0}
    shown_parts = {p.get_attribute("data-component") for p in parts}
    assert shown_parts == nonzero, f"the drawer shows the nonzero parts: {shown_parts} != {nonzero}"
    assert detail["requestId"] in drawer.text and detail["model"] in drawer.text
    return detail


@step("a request row opens its drawer; the cost breakdown adds up")
def open_drawer(driver, org, token):
    # The newest priced call: the demo also has failed and unpriced calls, which cost nothing.
    def cost_of(row):
        return Decimal(call("GET", f"/v1/orgs/{org}/spend-logs/{row.get_attribute('data-id')}", token)["cost"])
    row = next(r for r in log_rows(driver) if cost_of(r) > 0)
    event_id = row.get_attribute("data-id")
    # By keyboard: a row takes the focus and Enter opens it.
    driver.execute_script("arguments[0].focus()", row)
    row.send_keys(Keys.ENTER)
    detail = check_drawer(driver, org, token, event_id)
    shot(driver, "05-request-drawer")
    audit(driver, "request drawer")
    driver.find_element(By.TAG_NAME, "body").send_keys(Keys.ESCAPE)
    wait(driver, lambda d: find(d, "#drawer") is None, "the drawer to close on Escape")


@step("Live shows a call recorded after it was turned on")
def live(driver, org, token):
    driver.find_element(By.ID, "live-toggle").click()
    wait(driver, lambda d: shown(d, "#live-banner"), "the live banner")
    wait(driver, lambda d: "Connecting" not in d.find_element(By.ID, "live-banner").text, "the stream to open")
    time.sleep(0.5)
    request_id = f"ui-live-{uuid.uuid4()}"
    now = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
    call("POST", "/v1/usage", key=DEMO_KEY, body={
        "requestId": request_id, "endpoint": "/chat/completions", "provider": "openai", "model": "gpt-4o",
        "user": "acme-corp", "status": "success", "promptTokens": 1200, "completionTokens": 300,
        "cachedTokens": 400, "latencyMs": 840, "timeToFirstTokenMs": 190, "startedAt": now,
        "metadata": {"feature": "ui-check"}, "tags": ["ui-check"],
        "requestBody": {"model": "gpt-4o", "messages": [{"role": "user", "content": "How much did this cost?"}]},
        "responseBody": {"choices": [{"message": {"role": "assistant", "content": "Open the drawer and see."}}]},
    })
    selector = f'#requests-table tr[data-request-id="{request_id}"]'
    wait(driver, lambda d: shown(d, selector), "the new call in the live log")
    assert "1 so far" in driver.find_element(By.ID, "live-banner").text
    shot(driver, "06-live")
    driver.find_element(By.CSS_SELECTOR, selector).click()
    check_drawer(driver, org, token, driver.find_element(By.CSS_SELECTOR, selector).get_attribute("data-id"))
    wait(driver, lambda d: "How much did this cost?" in d.find_element(By.ID, "drawer").text, "the request body")
    shot(driver, "07-drawer-bodies")
    driver.find_element(By.TAG_NAME, "body").send_keys(Keys.ESCAPE)
    driver.find_element(By.ID, "live-stop").click()
    wait(driver, lambda d: find(d, "#live-banner") is None, "the banner to go when Live stops")
    assert shown(driver, "#live-toggle")


@step("the log's status, agent and provider filters: every row matches, as many as the API's")
def log_filters(driver, org, token):
    Select(driver.find_element(By.ID, "filter-customer")).select_by_value("")
    start = find(driver, "#window-range").get_attribute("data-from").replace("+00:00", "Z")

    def expect(query, what):
        page = call("GET", f"/v1/orgs/{org}/spend-logs?limit=25&from={start}&{query}", token)["data"]
        assert page, f"the demo has calls for {query}"
        wait(driver, lambda d: [r.get_attribute("data-id") for r in log_rows(d)] == [e["id"] for e in page],
             f"the log to show the API's page for {what}")
        return page

    Select(driver.find_element(By.ID, "filter-status")).select_by_value("error")
    rows = expect("status=error", "failed calls")
    assert all(r.get_attribute("data-status") == "error" for r in log_rows(driver)) and len(log_rows(driver)) == len(rows)
    Select(driver.find_element(By.ID, "filter-status")).select_by_value("")
    Select(driver.find_element(By.ID, "filter-agent")).select_by_value("triage")
    Select(driver.find_element(By.ID, "filter-provider")).select_by_value("anthropic")
    rows = expect("agent=triage&provider=anthropic", "triage's Anthropic calls")
    shown_rows = log_rows(driver)
    assert len(shown_rows) == len(rows)
    assert all(r.get_attribute("data-agent") == "triage" and r.get_attribute("data-provider") == "anthropic" for r in shown_rows)
    shot(driver, "04b-log-filters")
    Select(driver.find_element(By.ID, "filter-agent")).select_by_value("")
    Select(driver.find_element(By.ID, "filter-provider")).select_by_value("")
    wait(driver, lambda d: len({r.get_attribute("data-provider") for r in log_rows(d)}) > 1, "the unfiltered log again")


def entity_names(driver):
    return [r.get_attribute("data-name") for r in driver.find_elements(By.CSS_SELECTOR, "#entity-table tbody tr")]


@step("customers tab: pages of 50 with the API's offset; a selection across pages is reported by ids")
def entity_paging(driver, org, token):
    # More customers than one page holds: one small call each, today.
    now = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
    call("POST", "/v1/usage/batch", key=DEMO_KEY, body={"events": [{
        "requestId": f"ui-many-{uuid.uuid4()}", "endpoint": "/chat/completions", "provider": "openai",
        "model": "gpt-4o-mini", "user": f"many-{n:03}", "status": "success", "promptTokens": 100 + n,
        "completionTokens": 10, "startedAt": now} for n in range(60)]})
    driver.find_element(By.ID, "refresh").click()
    driver.find_element(By.ID, "tab-customers").click()
    window = "days=7"
    first = call("GET", f"/v1/orgs/{org}/activity/customers?{window}&sort=spend&limit=50", token)
    assert len(first["data"]) == 50 and first.get("nextOffset") == 50, first.get("nextOffset")
    wait(driver, lambda d: entity_names(d) == [e.get("name") or "" for e in first["data"]], "the first page of customers")
    driver.find_element(By.ID, "entity-older").click()
    second = call("GET", f"/v1/orgs/{org}/activity/customers?{window}&sort=spend&limit=50&offset=50", token)
    wait(driver, lambda d: entity_names(d) == [e.get("name") or "" for e in second["data"]], "the second page of customers")
    picked = [second["data"][0]["name"], first["data"][0]["name"]]
    driver.find_element(By.CSS_SELECTOR, f'#entity-table tr[data-name="{picked[0]}"] input').click()
    driver.find_element(By.ID, "entity-newer").click()
    wait(driver, lambda d: entity_names(d) == [e.get("name") or "" for e in first["data"]], "the first page again")
    driver.find_element(By.CSS_SELECTOR, f'#entity-table tr[data-name="{picked[1]}"] input').click()
    report = call("GET", f"/v1/orgs/{org}/activity/customers?{window}&sort=spend&limit=100&ids={','.join(picked)}", token)
    models = {(m["provider"], m["id"]) for e in report["data"] for m in e["modelBreakdown"]}
    wait(driver, lambda d: "2 selected" in d.page_source
         and len(d.find_elements(By.CSS_SELECTOR, "#entity-models tbody tr")) == len(models), "the selection's models")
    shot(driver, "08b-customers-selection")
    driver.find_element(By.XPATH, "//button[starts-with(normalize-space(), 'Clear selection')]").click()


@step("the customer, agent and endpoint tabs and budgets (admin)")
def tabs_as_admin(driver, org, token):
    for tab, name in (("customers", "08-customers"), ("agents", None), ("endpoints", None)):
        driver.find_element(By.ID, f"tab-{tab}").click()
        wait(driver, lambda d: shown(d, "#entity-table tbody tr"), f"the {tab} table")
        if name:
            wait(driver, lambda d: shown(d, ".chart canvas"), "the trend chart")
            shot(driver, name)
            audit(driver, tab)
    driver.find_element(By.ID, "tab-budgets").click()
    wait(driver, lambda d: shown(d, "#budgets-customers tbody tr"), "the customers' budgets")
    assert driver.find_elements(By.CSS_SELECTOR, ".edit-control"), "an admin sees Set budget"
    # Set a budget the way an admin would, and see it in the table and in the API.
    row = driver.find_element(By.CSS_SELECTOR, "#budgets-customers tbody tr")
    customer = row.find_element(By.CSS_SELECTOR, "td").text
    row.find_element(By.CSS_SELECTOR, ".edit-control").click()
    amount = wait(driver, lambda d: shown(d, "#budgets-customers .budget-form input[name=amount]"), "the budget form")
    amount.clear()
    amount.send_keys("25" + Keys.ENTER)
    wait(driver, lambda d: not d.find_elements(By.CSS_SELECTOR, ".budget-form")
         and "$25.00" in d.find_element(By.CSS_SELECTOR, "#budgets-customers tbody tr").text, "the new budget in the table")
    customers = call("GET", f"/v1/orgs/{org}/customers?externalId={customer}", token)["data"]
    assert customers[0]["budget"]["amount"] == "25", customers
    shot(driver, "09-budgets-admin")
    audit(driver, "budgets")
    budget_controls(driver, org, token, customer)
    driver.find_element(By.ID, "tab-overview").click()
    wait(driver, lambda d: cards_loaded(d), "the overview again")


def confirm(driver, what, reason=None):
    wait(driver, lambda d: shown(d, "#confirm #confirm-ok"), f"the confirmation to {what}")
    if reason is not None:
        driver.find_element(By.ID, "confirm-reason").send_keys(reason)
    driver.find_element(By.ID, "confirm-ok").click()
    wait(driver, lambda d: find(d, "#confirm") is None, f"the confirmation to {what} to close")


@step("budget controls: thresholds, reset, remove, block and unblock (admin)")
def budget_controls(driver, org, token, customer):
    row_css = f'#budgets-customers tr[data-external-id="{customer}"]'

    def row():
        return driver.find_element(By.CSS_SELECTOR, row_css)

    def party():
        return call("GET", f"/v1/orgs/{org}/customers?externalId={customer}", token)["data"][0]

    # Thresholds (PATCH of the own budget).
    row().find_element(By.CSS_SELECTOR, ".edit-control").click()
    field = wait(driver, lambda d: shown(d, f"{row_css} input[name=thresholds]"), "the thresholds field")
    field.clear()
    field.send_keys("60, 90" + Keys.ENTER)
    wait(driver, lambda d: row().find_element(By.CSS_SELECTOR, ".thresholds").text == "60 %, 90 %", "the new thresholds")
    assert party()["budget"]["thresholds"] == [60, 90]

    # Cancelling a confirmation changes nothing.
    before = party()["spent"]
    row().find_element(By.CSS_SELECTOR, ".reset-control").click()
    wait(driver, lambda d: shown(d, "#confirm-cancel"), "the reset confirmation")
    audit(driver, "confirmation dialog")
    driver.find_element(By.ID, "confirm-cancel").click()
    wait(driver, lambda d: find(d, "#confirm") is None, "the confirmation to close")
    assert party()["spent"] == before and party()["resetAt"] is None

    row().find_element(By.CSS_SELECTOR, ".reset-control").click()
    confirm(driver, "reset the spend")
    wait(driver, lambda d: "reset" in row().find_element(By.CSS_SELECTOR, ".spent").text, "the reset in the table")
    after = party()
    assert after["resetAt"] is not None and Decimal(after["spent"]) < Decimal(before), (before, after)
    assert Decimal(row().find_element(By.CSS_SELECTOR, ".spent").get_attribute("data-value")) == Decimal(after["spent"])

    row().find_element(By.CSS_SELECTOR, ".block-control").click()
    confirm(driver, "block", reason="invoice overdue")
    wait(driver, lambda d: row().find_element(By.CSS_SELECTOR, ".pill").text == "blocked", "the blocked status")
    blocked = party()
    assert blocked["status"] == "blocked" and blocked["blockReason"] == "invoice overdue", blocked
    shot(driver, "09b-budgets-blocked")
    row().find_element(By.CSS_SELECTOR, ".unblock-control").click()
    confirm(driver, "unblock")
    wait(driver, lambda d: row().find_element(By.CSS_SELECTOR, ".pill").text == "active", "the active status again")
    assert party()["status"] == "active"

    row().find_element(By.CSS_SELECTOR, ".remove-control").click()
    confirm(driver, "remove the budget")
    wait(driver, lambda d: not row().find_elements(By.CSS_SELECTOR, ".remove-control"), "the budget to go")
    gone = party()["budget"]
    assert gone is None or gone["source"] != "own", gone


def invoice_matches_api(driver, org, token, invoice_id):
    """The open invoice's lines and totals are the API's, to the cent."""
    api_invoice = call("GET", f"/v1/orgs/{org}/invoices/{invoice_id}", token)
    detail = driver.find_element(By.ID, "invoice-detail")
    amounts = [r.get_attribute("data-amount") for r in detail.find_elements(By.CSS_SELECTOR, "#invoice-lines tr.line")]
    assert amounts == [line["amount"] for line in api_invoice["lines"]], (amounts, api_invoice["lines"])
    for name, key in (("subtotal", "subtotal"), ("discount", "discountTotal"), ("tax", "tax"), ("total", "total")):
        shown_value = detail.find_element(By.CSS_SELECTOR, f"#invoice-totals tr.{name}").get_attribute("data-value")
        assert Decimal(shown_value) == Decimal(api_invoice[key]), (name, shown_value, api_invoice[key])
    total_text = driver.find_element(By.ID, "invoice-total").text
    assert Decimal(total_text.replace("$", "").replace(",", "")) == Decimal(api_invoice["total"]), (total_text, api_invoice["total"])
    return api_invoice


def money_text(text):
    return Decimal(text.replace("$", "").replace(",", "").strip())


@step("invoices: draft, compare with the API, finalize, printable, CSV, send, void (admin)")
def invoices_as_admin(driver, org, token):
    driver.find_element(By.ID, "tab-invoices").click()
    wait(driver, lambda d: shown(d, "#invoice-list") and "Demo Org Inc." in d.find_element(By.ID, "billing-settings").text,
         "the invoice list and the billing settings")
    today = datetime.now(timezone.utc).date()
    start, end = (today - timedelta(days=14)).isoformat(), (today - timedelta(days=8)).isoformat()
    customer = "globex"
    driver.find_element(By.ID, "generate-customer").send_keys(customer)
    set_date(driver, "generate-from", start)
    set_date(driver, "generate-to", end)
    driver.find_element(By.ID, "generate-draft").click()
    wait(driver, lambda d: (find(d, "#invoice-detail[data-status=draft]") is not None
                            and d.find_elements(By.CSS_SELECTOR, "#invoice-lines tr.line")), "the new draft with its lines")
    invoice_id = driver.find_element(By.ID, "invoice-detail").get_attribute("data-id")
    draft = invoice_matches_api(driver, org, token, invoice_id)
    assert draft["customerExternalId"] == customer and draft["periodStart"] == start and draft["periodEnd"] == end, draft
    assert Decimal(draft["total"]) > 0 and Decimal(draft["tax"]) > 0, "the demo's billing settings tax the invoice"
    shot(driver, "16-invoice-draft")
    audit(driver, "invoice")

    driver.find_element(By.ID, "invoice-finalize").click()
    wait(driver, lambda d: shown(d, "#confirm #confirm-ok"), "the finalize confirmation")
    driver.find_element(By.ID, "confirm-ok").click()
    wait(driver, lambda d: d.find_element(By.ID, "invoice-number").text.startswith("INV-"), "the invoice number")
    final = invoice_matches_api(driver, org, token, invoice_id)
    assert final["status"] == "finalized" and final["number"] == driver.find_element(By.ID, "invoice-number").text, final
    shot(driver, "17-invoice-finalized")

    # The printable document opens in a new tab, from a blob the page fetched with its token.
    home = driver.current_window_handle
    driver.find_element(By.ID, "invoice-html").click()
    wait(driver, lambda d: len(d.window_handles) == 2, "the printable invoice's tab")
    driver.switch_to.window(next(h for h in driver.window_handles if h != home))
    wait(driver, lambda d: find(d, "#total") is not None, "the printable invoice")
    assert money_text(driver.find_element(By.ID, "total").text) == Decimal(final["total"])
    assert driver.find_element(By.ID, "number").text == final["number"]
    # Its own stylesheet applies (the dashboard's policy allows it by hash).
    width = driver.execute_script("return getComputedStyle(document.querySelector('.sheet')).maxWidth")
    assert width == "820px", f"the printable invoice is styled (max-width {width})"
    shot(driver, "18-invoice-printable")
    driver.close()
    driver.switch_to.window(home)

    # The CSV downloads, byte for byte what the API sends.
    downloads = tempfile.mkdtemp(prefix="mp-ui-downloads-")
    driver.execute_cdp_cmd("Browser.setDownloadBehavior", {"behavior": "allow", "downloadPath": downloads})
    driver.find_element(By.ID, "invoice-csv").click()
    target = os.path.join(downloads, f"{final['number']}.csv")
    wait(driver, lambda d: os.path.exists(target), "the CSV download")
    with open(target, encoding="utf-8") as f:
        assert f.read() == call_text(f"/v1/orgs/{org}/invoices/{invoice_id}/csv", token)

    driver.find_element(By.ID, "invoice-send").click()
    wait(driver, lambda d: shown(d, "#confirm-ok"), "the send confirmation")
    driver.find_element(By.ID, "confirm-ok").click()
    wait(driver, lambda d: f"billing@{customer}.example" in (find(d, "#invoice-note").text if find(d, "#invoice-note") else ""), "the send note")

    driver.find_element(By.ID, "invoice-void").click()
    wait(driver, lambda d: shown(d, "#confirm-reason"), "the void confirmation with its reason")
    driver.find_element(By.ID, "confirm-reason").send_keys("Issued for the wrong period")
    driver.find_element(By.ID, "confirm-ok").click()
    wait(driver, lambda d: find(d, "#invoice-detail[data-status=void]") is not None, "the void invoice")
    voided = call("GET", f"/v1/orgs/{org}/invoices/{invoice_id}", token)
    assert voided["status"] == "void" and voided["voidReason"] == "Issued for the wrong period", voided

    # Drafts for every customer with usage in the last week, then the list and its filters.
    driver.find_element(By.ID, "invoice-back").click()
    wait(driver, lambda d: shown(d, "#invoices-table tbody tr"), "the invoice list")
    set_date(driver, "generate-from", (today - timedelta(days=7)).isoformat())
    set_date(driver, "generate-to", (today - timedelta(days=1)).isoformat())
    driver.find_element(By.ID, "generate-run").click()
    wait(driver, lambda d: "drafts made" in d.find_element(By.ID, "invoice-generate").text, "the run's note")
    drafts = call("GET", f"/v1/orgs/{org}/invoices?status=draft", token)["data"]
    assert len(drafts) >= 2, drafts
    Select(driver.find_element(By.ID, "invoice-status")).select_by_value("draft")
    wait(driver, lambda d: [r.get_attribute("data-id") for r in d.find_elements(By.CSS_SELECTOR, "#invoices-table tbody tr")]
         == [i["id"] for i in drafts], "the drafts, as the API lists them")
    shot(driver, "15-invoices")
    audit(driver, "invoices")
    Select(driver.find_element(By.ID, "invoice-status")).select_by_value("")
    field = driver.find_element(By.ID, "invoice-customer")
    field.send_keys(customer + Keys.TAB)
    ours = call("GET", f"/v1/orgs/{org}/invoices?customerId={draft['customerId']}", token)["data"]
    wait(driver, lambda d: [r.get_attribute("data-id") for r in d.find_elements(By.CSS_SELECTOR, "#invoices-table tbody tr")]
         == [i["id"] for i in ours], f"{customer}'s invoices only")
    assert len(ours) == 2, ours
    driver.find_element(By.ID, "tab-overview").click()
    wait(driver, lambda d: cards_loaded(d), "the overview again")


@step("phone width and dark mode")
def phone_and_dark(driver):
    driver.set_window_size(390, 844)
    wait(driver, lambda d: cards_loaded(d), "the overview at phone width")
    width = driver.execute_script("return document.documentElement.scrollWidth")
    assert width <= 400, f"no sideways scrolling at phone width (page is {width}px wide)"
    shot(driver, "10-phone")
    audit(driver, "overview at phone width")
    driver.set_window_size(1280, 1000)
    driver.execute_cdp_cmd("Emulation.setEmulatedMedia", {"features": [{"name": "prefers-color-scheme", "value": "dark"}]})
    driver.find_element(By.ID, "refresh").click()
    wait(driver, lambda d: cards_loaded(d) and shown(d, ".chart canvas"), "the overview in dark mode")
    shot(driver, "11-overview-dark")
    audit(driver, "overview, dark")
    driver.execute_cdp_cmd("Emulation.setEmulatedMedia", {"features": [{"name": "prefers-color-scheme", "value": "light"}]})


@step("sign out")
def sign_out(driver):
    driver.find_element(By.ID, "signout").click()
    wait(driver, lambda d: shown(d, "#email"), "the sign-in form after signing out")
    assert "signed out" in driver.page_source
    stored = driver.execute_script("return [localStorage.length, sessionStorage.length, document.cookie]")
    assert stored == [0, 0, ""], f"nothing kept in the browser: {stored}"
    driver.get(BASE + "/ui/")
    wait(driver, lambda d: shown(d, "#email"), "the sign-in form after a reload")


@step("a viewer sees no edit controls")
def viewer(driver):
    wait(driver, lambda d: cards_loaded(d), "the viewer's overview")
    assert "read only" in driver.find_element(By.ID, "role-badge").text.lower(), "the role badge says read only"
    driver.find_element(By.ID, "tab-budgets").click()
    wait(driver, lambda d: shown(d, "#budgets-customers tbody tr"), "the customers' budgets (viewer)")
    assert shown(driver, "#read-only-note")
    assert not driver.find_elements(By.CSS_SELECTOR, ".edit-control"), "a viewer sees no Set budget"
    assert not driver.find_elements(By.CSS_SELECTOR, ".budget-form"), "a viewer sees no budget form"
    shot(driver, "12-budgets-viewer")
    audit(driver, "budgets (viewer)")
    driver.find_element(By.ID, "tab-invoices").click()
    wait(driver, lambda d: shown(d, "#invoices-table tbody tr"), "the invoices (viewer)")
    assert not find(driver, "#invoice-generate"), "a viewer cannot draft invoices"
    driver.find_element(By.CSS_SELECTOR, "#invoices-table tbody tr").click()
    wait(driver, lambda d: shown(d, "#invoice-detail #invoice-html"), "an invoice (viewer)")
    assert not driver.find_elements(By.CSS_SELECTOR, ".manage-control"), "a viewer sees no finalize, void, send or delete"
    assert shown(driver, "#invoice-csv"), "a viewer can download the CSV"


@step("a session the server ends brings back the sign-in form, saying so")
def session_ends(driver):
    # Changing the password retires every token issued before, the page's included.
    token = login(*VIEWER)
    email, password = VIEWER
    interim = password + "-interim"
    call("POST", "/v1/auth/password", token, body={"currentPassword": password, "newPassword": interim})
    try:
        # The next call the page makes (opening the overview) is refused.
        driver.find_element(By.ID, "tab-overview").click()
        wait(driver, lambda d: shown(d, "#email"), "the sign-in form after the token was refused")
        assert "session has ended" in driver.find_element(By.CSS_SELECTOR, ".notice").text
        shot(driver, "14-session-ended")
    finally:
        call("POST", "/v1/auth/password", login(email, interim),
             body={"currentPassword": interim, "newPassword": password})


def main():
    start = time.monotonic()
    token = login(*ADMIN)
    me = call("GET", "/v1/me", token)
    org = next(m["organization"]["id"] for m in me["memberships"] if m["organization"]["name"] == "Demo Org")
    if not any(m["organization"]["name"] == "Second Org" for m in me["memberships"]):
        call("POST", "/v1/orgs", token, body={"name": "Second Org"})
    driver = browser()
    try:
        sign_in(driver, *ADMIN, "01-sign-in", "Demo Org")
        day = cards_match_api(driver, org, token)
        switch_window(driver, org, token, day)
        custom_window(driver, org, token)
        customer_filter(driver, org, token)
        open_drawer(driver, org, token)
        live(driver, org, token)
        log_filters(driver, org, token)
        entity_paging(driver, org, token)
        tabs_as_admin(driver, org, token)
        invoices_as_admin(driver, org, token)
        empty_org(driver)
        phone_and_dark(driver)
        sign_out(driver)
        sign_in(driver, *VIEWER)
        viewer(driver)
        session_ends(driver)
        failing = [(screen, bad) for screen, bad in audited if bad]
        assert not failing, "accessibility (axe-core, serious or critical): " + "; ".join(
            f"{screen}: " + ", ".join(f"{v['id']} {v['nodes']}" for v in bad) for screen, bad in failing)
        problems = console_problems(driver)
        assert not problems, "browser console: " + " | ".join(problems)
    finally:
        driver.quit()
    for name, seconds in timings:
        print(f"ui-check:   {seconds:5.1f}s  {name}")
    print(f"ui-check: accessibility: {len(audited)} screens audited by axe-core, none with serious or critical violations")
    print(f"ui-check: passed in {time.monotonic() - start:.1f}s; screenshots in {SHOTS}")


if __name__ == "__main__":
    try:
        main()
    except AssertionError as e:
        print(f"ui-check: FAILED: {e}", file=sys.stderr)
        sys.exit(1)
