"""Creates the tenant that the schemathesis pass of deploy/sdk-check.sh runs as.

Standard library only (no generated client), so the fuzzing pass runs even when a
generator fails. Signs up a user, creates an organization, a project, two API keys
(one for the gateway operations, one that the fuzzer may revoke or rotate), a second
member and a pending invitation (which the fuzzer may remove or revoke instead of the
tenant's own membership), records a usage event, and logs in the operator, who adds a discount for the
organization. Writes `export NAME=value` lines to the file
given as the only argument (mode 0600); prints no secret.

Environment: MP_BASE_URL, MP_OPERATOR_EMAIL, MP_OPERATOR_PASSWORD.
"""

from __future__ import annotations

import datetime as dt
import json
import os
import secrets
import shlex
import sys
import urllib.error
import urllib.request
from typing import Any

BASE_URL = os.environ["MP_BASE_URL"].rstrip("/")


def call(method: str, path: str, body: Any = None, *, token: str | None = None, key: str | None = None) -> Any:
    headers = {"accept": "application/json"}
    data = None
    if body is not None:
        data = json.dumps(body).encode()
        headers["content-type"] = "application/json"
    if token:
        headers["authorization"] = f"Bearer {token}"
    if key:
        headers["x-api-key"] = key
    request = urllib.request.Request(BASE_URL + path, data=data, headers=headers, method=method)
    try:
        with urllib.request.urlopen(request, timeout=30) as response:
            return json.loads(response.read() or b"null")
    except urllib.error.HTTPError as error:
        raise SystemExit(f"fixture: {method} {path} answered {error.code}: {error.read()[:300]!r}") from None


def main() -> None:
    out = sys.argv[1]
    run = secrets.token_hex(4)
    email = f"sdk-fuzz-{run}@example.com"
    password = secrets.token_urlsafe(18)
    call("POST", "/v1/auth/signup", {"email": email, "password": password, "name": "SDK Fuzz"})
    token = call("POST", "/v1/auth/login", {"email": email, "password": password})["accessToken"]
    org = call("POST", "/v1/orgs", {"name": f"SDK Fuzz {run}"}, token=token)
    project = call("POST", f"/v1/orgs/{org['id']}/projects", {"name": "Fuzzed", "mode": "hybrid"}, token=token)
    keys = f"/v1/orgs/{org['id']}/projects/{project['id']}/keys"
    gateway_key = call("POST", keys, {"name": "gateway"}, token=token)
    spare_key = call("POST", keys, {"name": "spare"}, token=token)
    members = f"/v1/orgs/{org['id']}/members"
    # A provisioned viewer (201): the member the fuzzer may re-role or remove, never the tenant itself.
    member = call(
        "POST",
        members,
        {"email": f"sdk-fuzz-{run}-member@example.com", "password": secrets.token_urlsafe(18), "role": "viewer"},
        token=token,
    )
    # An email without an account and no password: a pending invitation (202).
    invitation = call("POST", members, {"email": f"sdk-fuzz-{run}-invitee@example.com", "role": "admin"}, token=token)
    started = (dt.datetime.now(dt.timezone.utc) - dt.timedelta(minutes=5)).isoformat()
    event = call(
        "POST",
        "/v1/usage",
        {
            "requestId": f"fuzz-{run}",
            "endpoint": "/chat/completions",
            "provider": "openai",
            "model": "gpt-4o",
            "user": "customer-42",
            "promptTokens": 1200,
            "completionTokens": 300,
            "startedAt": started,
            "metadata": {"feature": "fuzz"},
        },
        key=gateway_key["secret"],
    )
    operator = call(
        "POST",
        "/v1/auth/login",
        {"email": os.environ["MP_OPERATOR_EMAIL"], "password": os.environ["MP_OPERATOR_PASSWORD"]},
    )["accessToken"]
    # An organization discount, for the operator's DELETE /v1/admin/discounts/{discountId}.
    discount = call(
        "POST", "/v1/admin/discounts", {"orgId": org["id"], "provider": "openai", "percent": "5"}, token=operator
    )
    values = {
        "MP_SDK_TENANT_TOKEN": token,
        "MP_SDK_OPERATOR_TOKEN": operator,
        "MP_SDK_API_KEY": gateway_key["secret"],
        "MP_SDK_USER_ID": member["userId"],
        "MP_SDK_INVITATION_ID": invitation["id"],
        "MP_SDK_ORG_ID": org["id"],
        "MP_SDK_PROJECT_ID": project["id"],
        "MP_SDK_KEY_ID": spare_key["id"],
        "MP_SDK_EVENT_ID": event["eventId"],
        "MP_SDK_DISCOUNT_ID": discount["id"],
    }
    fd = os.open(out, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as f:
        for name, value in values.items():
            f.write(f"export {name}={shlex.quote(str(value))}\n")
    print(f"fixture: organization {org['id']}, project {project['id']}, spare key {spare_key['id']}")


if __name__ == "__main__":
    main()
