"""The LiteLLM proxy callback: authorize before a call, record usage after it.

Add it to the proxy's config.yaml:

    litellm_settings:
      callbacks: ["meterplane_litellm.callback"]

and set METERPLANE_URL and METERPLANE_API_KEY (a project API key, `mp_...`). Settings
(environment; keyword arguments of `MeterplaneCallback` take precedence):

    METERPLANE_URL                      Meterplane's base URL (required)
    METERPLANE_API_KEY                  the project API key (required)
    METERPLANE_AUTHORIZE                "true" (default): ask POST /v1/gateway/authorize
                                        before each call; "false": record usage only
    METERPLANE_AUTHORIZE_TIMEOUT        seconds to wait for the answer (default 1.0)
    METERPLANE_FAIL_CLOSED              "false" (default): when Meterplane cannot be asked
                                        (down, slow, 5xx) the call goes ahead; "true":
                                        the call is refused with 503
    METERPLANE_COMPLETION_ESTIMATE      completion tokens reserved for a call that sets no
                                        max_tokens (default 256)
    METERPLANE_RECORD_USAGE             "true" (default): send usage events
    METERPLANE_STORE_BODIES             "false" (default): send request and response bodies
                                        (Meterplane stores them, and charges data storage)
    METERPLANE_BATCH_SIZE               events per POST /v1/usage/batch (default 200)
    METERPLANE_FLUSH_INTERVAL           seconds a batch waits to fill (default 1.0)
    METERPLANE_MAX_QUEUE                events held in memory at most (default 10000)
    METERPLANE_FAILURE_GRACE            seconds a failed attempt waits for the call's final
                                        outcome before it is recorded (default 30)

A denial answers the client 429 (budget or rate limit; `Retry-After` on a rate limit),
403 (blocked customer or agent, revoked or expired key) or 503 (Meterplane's counters
unavailable and the server set to deny): the error message starts with
`meterplane_denied: <reason>`, and the error body carries `reason` and `scope`.
"""

from __future__ import annotations

import contextvars
import logging
import os
import threading
import time
from dataclasses import dataclass, field
from typing import Any

import httpx

from . import mapping
from .sender import Sender

log = logging.getLogger("meterplane_litellm")

try:  # the proxy's base class; absent only where LiteLLM is not installed (unit tests)
    from litellm.integrations.custom_logger import CustomLogger
except ImportError:  # pragma: no cover
    CustomLogger = object  # type: ignore[assignment,misc]

# 403: the caller may not make calls at all; 503: Meterplane could not decide.
FORBIDDEN_REASONS = frozenset({"customer_blocked", "agent_blocked", "key_revoked", "key_expired"})
UNAVAILABLE_REASONS = frozenset({"counters_unavailable"})


def _flag(value: str | None, default: bool) -> bool:
    if value is None or value.strip() == "":
        return default
    return value.strip().lower() in ("1", "true", "yes", "on")


def _number(value: str | None, default: float) -> float:
    try:
        return float(value) if value not in (None, "") else default
    except ValueError:
        return default


@dataclass
class Settings:
    url: str
    api_key: str
    authorize: bool = True
    authorize_timeout: float = 1.0
    fail_closed: bool = False
    completion_estimate: int = 256
    record_usage: bool = True
    store_bodies: bool = False
    batch_size: int = 200
    flush_interval: float = 1.0
    max_queue: int = 10_000
    failure_grace: float = 30.0

    @classmethod
    def from_env(cls, **overrides: Any) -> "Settings":
        env = os.environ.get
        values: dict[str, Any] = {
            "url": env("METERPLANE_URL", ""),
            "api_key": env("METERPLANE_API_KEY", ""),
            "authorize": _flag(env("METERPLANE_AUTHORIZE"), True),
            "authorize_timeout": _number(env("METERPLANE_AUTHORIZE_TIMEOUT"), 1.0),
            "fail_closed": _flag(env("METERPLANE_FAIL_CLOSED"), False),
            "completion_estimate": int(_number(env("METERPLANE_COMPLETION_ESTIMATE"), 256)),
            "record_usage": _flag(env("METERPLANE_RECORD_USAGE"), True),
            "store_bodies": _flag(env("METERPLANE_STORE_BODIES"), False),
            "batch_size": int(_number(env("METERPLANE_BATCH_SIZE"), 200)),
            "flush_interval": _number(env("METERPLANE_FLUSH_INTERVAL"), 1.0),
            "max_queue": int(_number(env("METERPLANE_MAX_QUEUE"), 10_000)),
            "failure_grace": _number(env("METERPLANE_FAILURE_GRACE"), 30.0),
        }
        values.update({k: v for k, v in overrides.items() if v is not None})
        if not values["url"] or not values["api_key"]:
            raise ValueError("meterplane: set METERPLANE_URL and METERPLANE_API_KEY")
        return cls(**values)


@dataclass
class A2ACall:
    """An `/a2a/{agent}` call in progress, seen by the model calls its agent makes."""

    request_id: str
    endpoint: str
    user: str | None
    agent_hash: str | None
    model_calls_started: int = 0
    model_calls_logged: int = 0
    lock: threading.Lock = field(default_factory=threading.Lock)

    def as_call(self) -> dict[str, Any]:
        return {
            "requestId": self.request_id,
            "endpoint": self.endpoint,
            "user": self.user,
            "agentHash": self.agent_hash,
        }


# Set by the pre-call hook of an A2A call; the model calls its agent makes run in a copy
# of that request's context (LiteLLM's logging worker keeps the caller's context), so
# they see it.
_A2A_CALL: contextvars.ContextVar[A2ACall | None] = contextvars.ContextVar("meterplane_a2a_call", default=None)


def denial_exception(decision: dict[str, Any]) -> Exception:
    """The HTTPException the proxy answers a denied call with."""
    from fastapi import HTTPException

    reason = str(decision.get("reason") or "denied")
    scope = decision.get("decidingScope")
    status = 403 if reason in FORBIDDEN_REASONS else 503 if reason in UNAVAILABLE_REASONS else 429
    message = f"{mapping.DENIAL_MARKER}: {reason}" + (f" ({scope} scope)" if scope else "")
    detail: dict[str, Any] = {"error": message, "type": mapping.DENIAL_MARKER, "reason": reason, "scope": scope}
    headers = None
    retry_after = decision.get("retryAfterSeconds")
    if isinstance(retry_after, int) and retry_after > 0:
        detail["retryAfterSeconds"] = retry_after
        headers = {"Retry-After": str(retry_after)}
    return HTTPException(status_code=status, detail=detail, headers=headers)


def _deployment(model_group: Any) -> tuple[str | None, str | None, str | None]:
    """(provider, model, litellm model) of the first deployment serving a model group."""
    if not isinstance(model_group, str) or not model_group:
        return None, None, None
    try:
        from litellm.proxy.proxy_server import llm_router  # type: ignore[attr-defined]

        deployments = llm_router.get_model_list(model_name=model_group) if llm_router else None
    except Exception:
        deployments = None
    params = (deployments or [{}])[0].get("litellm_params") or {}
    litellm_model = params.get("model") if isinstance(params.get("model"), str) else None
    if not litellm_model:
        return None, None, None
    provider = params.get("custom_llm_provider")
    if not isinstance(provider, str) or not provider:
        provider = litellm_model.split("/", 1)[0] if "/" in litellm_model else None
    if not provider:
        return None, None, litellm_model
    model = litellm_model[len(provider) + 1:] if litellm_model.startswith(provider + "/") else litellm_model
    return mapping.catalog_provider(provider), model, litellm_model


def _prompt_estimate(litellm_model: str | None, data: dict[str, Any]) -> int:
    messages = data.get("messages")
    if not isinstance(messages, list) or not messages:
        return 0
    try:
        import litellm

        return int(litellm.token_counter(model=litellm_model or "gpt-4o", messages=messages))
    except Exception:
        return max(1, len(str(messages)) // 4)


def _with_retries(event: dict[str, Any], retries: int) -> dict[str, Any]:
    if retries > event.get("retries", 0):
        event["retries"] = min(retries, 1000)
    return event


class MeterplaneCallback(CustomLogger):  # type: ignore[misc,valid-type]
    def __init__(self, **settings: Any) -> None:
        super().__init__()
        self._overrides = settings
        self._settings: Settings | None = None
        self._sender: Sender | None = None
        self._http: httpx.AsyncClient | None = None
        self._lock = threading.Lock()
        # Failed attempts wait for the call's outcome: a router retry or fallback logs a
        # failure and then a success under the same call id.
        self._pending_failures: dict[str, tuple[float, dict[str, Any]]] = {}
        self._failed_calls: dict[str, tuple[float, int]] = {}  # call id -> (when, router retries)
        self._sweeper: threading.Thread | None = None
        self._last_unavailable_warning = 0.0

    # -- settings and clients --------------------------------------------------------

    @property
    def settings(self) -> Settings:
        if self._settings is None:
            self._settings = Settings.from_env(**self._overrides)
        return self._settings

    @property
    def sender(self) -> Sender:
        if self._sender is None:
            with self._lock:
                if self._sender is None:
                    s = self.settings
                    self._sender = Sender(
                        s.url,
                        s.api_key,
                        batch_size=s.batch_size,
                        flush_interval=s.flush_interval,
                        max_queue=s.max_queue,
                    )
        return self._sender

    def _client(self) -> httpx.AsyncClient:
        if self._http is None:
            s = self.settings
            self._http = httpx.AsyncClient(
                base_url=s.url.rstrip("/"),
                headers={"X-Api-Key": s.api_key},
                timeout=s.authorize_timeout,
            )
        return self._http

    # -- before the call ---------------------------------------------------------------

    async def async_pre_call_hook(self, user_api_key_dict: Any, cache: Any, data: dict, call_type: Any) -> Any:
        metadata = data.get("metadata") if isinstance(data.get("metadata"), dict) else {}
        request_id = data.get("litellm_call_id")
        endpoint = metadata.get("user_api_key_request_route") or mapping.CALL_TYPE_ENDPOINTS.get(
            str(call_type), "/" + str(call_type)
        )
        user = (
            getattr(user_api_key_dict, "end_user_id", None)
            or (data.get("user") if isinstance(data.get("user"), str) else None)
            or metadata.get("user_api_key_end_user_id")
        )
        is_a2a = str(call_type) in mapping.A2A_CALL_TYPES or str(endpoint).startswith("/a2a/")
        if is_a2a and isinstance(request_id, str):
            _A2A_CALL.set(A2ACall(request_id, str(endpoint), user, data.get("agent_id") or metadata.get("agent_id")))
        if not self.settings.authorize or not isinstance(request_id, str):
            return data
        body: dict[str, Any] = {"requestId": request_id, "endpoint": str(endpoint)}
        if user:
            body["user"] = user
        if not is_a2a:
            provider, model, litellm_model = _deployment(data.get("model"))
            if provider and model:
                body["provider"], body["model"] = provider, model
                body["estimatedPromptTokens"] = _prompt_estimate(litellm_model, data)
                limit = data.get("max_completion_tokens") or data.get("max_tokens")
                body["estimatedCompletionTokens"] = (
                    int(limit) if isinstance(limit, int) and limit > 0 else self.settings.completion_estimate
                )
        decision = await self._authorize(body)
        if decision is not None and decision.get("allowed") is False:
            raise denial_exception(decision)
        return data

    async def _authorize(self, body: dict[str, Any]) -> dict[str, Any] | None:
        """The decision, or None when Meterplane could not be asked (fail open)."""
        from fastapi import HTTPException

        problem: str
        try:
            response = await self._client().post("/v1/gateway/authorize", json=body)
            if response.status_code == 200:
                return response.json()
            problem = f"HTTP {response.status_code}: {response.text[:200]}"
        except (httpx.HTTPError, ValueError) as e:
            problem = f"{type(e).__name__}: {e}"
        now = time.monotonic()
        if now - self._last_unavailable_warning > 10:
            self._last_unavailable_warning = now
            log.warning("meterplane: authorize failed (%s); %s", problem,
                        "refusing calls" if self.settings.fail_closed else "letting calls through")
        if self.settings.fail_closed:
            raise HTTPException(
                status_code=503,
                detail={"error": f"{mapping.DENIAL_MARKER}: meterplane_unavailable", "type": mapping.DENIAL_MARKER,
                        "reason": "meterplane_unavailable", "scope": None},
            )
        return None

    # -- after the call ----------------------------------------------------------------

    def log_pre_api_call(self, model: Any, messages: Any, kwargs: dict) -> None:
        call = _A2A_CALL.get()
        if call is not None and kwargs.get("litellm_call_id") != call.request_id:
            with call.lock:
                call.model_calls_started += 1

    async def async_log_success_event(self, kwargs: dict, response_obj: Any, start_time: Any, end_time: Any) -> None:
        self._on_event(kwargs)

    async def async_log_failure_event(self, kwargs: dict, response_obj: Any, start_time: Any, end_time: Any) -> None:
        self._on_event(kwargs)

    async def async_post_call_failure_hook(self, request_data: dict, original_exception: Exception,
                                           user_api_key_dict: Any, traceback_str: str | None = None) -> Any:
        """The whole request failed: its failed attempt is its outcome, send it now."""
        request_id = request_data.get("litellm_call_id") if isinstance(request_data, dict) else None
        if isinstance(request_id, str):
            # The router's retries of a failed call are on the final exception only.
            retries = getattr(original_exception, "num_retries", None)
            retries = retries if isinstance(retries, int) and not isinstance(retries, bool) and retries > 0 else 0
            with self._lock:
                pending = self._pending_failures.pop(request_id, None)
                if pending is None:
                    self._failed_calls[request_id] = (time.monotonic(), retries)
            if pending is not None:
                self._submit(_with_retries(pending[1], retries))
        return None

    def _on_event(self, kwargs: dict) -> None:
        """Never raises: the user's call is not to fail because of metering."""
        try:
            if not self.settings.record_usage:
                return
            payload = kwargs.get("standard_logging_object")
            if not isinstance(payload, dict):
                return
            exception = kwargs.get("exception")
            if mapping.DENIAL_MARKER in str(getattr(exception, "detail", "")) or mapping.is_denial(payload):
                return  # refused by this callback: no provider was called
            event = mapping.map_payload(payload, self.settings.store_bodies)
            call = _A2A_CALL.get()
            if mapping.is_a2a_call(payload):
                if call is not None and call.request_id == event["requestId"]:
                    with call.lock:
                        counted = call.model_calls_started or call.model_calls_logged
                    if counted:
                        return  # its tokens are in the model calls, under its request id
                self._submit(event)
                return
            if call is not None and event["requestId"] != call.request_id:
                with call.lock:
                    position = call.model_calls_logged
                    call.model_calls_logged += 1
                    call.model_calls_started = max(call.model_calls_started, call.model_calls_logged)
                mapping.attribute_to_a2a_call(event, call.as_call(), position)
            if payload.get("status") == "success":
                with self._lock:
                    self._pending_failures.pop(event["requestId"], None)
                self._submit(event)
            else:
                self._hold_failure(event)
        except Exception:
            log.exception("meterplane: could not record a call")

    def _hold_failure(self, event: dict[str, Any]) -> None:
        now = time.monotonic()
        with self._lock:
            final = self._failed_calls.pop(event["requestId"], None)
            if final is None:
                self._pending_failures[event["requestId"]] = (now, event)
        if final is not None:
            self._submit(_with_retries(event, final[1]))
        else:
            self._ensure_sweeper()

    def _submit(self, event: dict[str, Any]) -> None:
        self.sender.submit(event)

    def _ensure_sweeper(self) -> None:
        if self._sweeper is not None:
            return
        with self._lock:
            if self._sweeper is None:
                self._sweeper = threading.Thread(target=self._sweep, name="meterplane-failures", daemon=True)
                self._sweeper.start()

    def _sweep(self) -> None:
        """Sends failed attempts whose call never reported an outcome (calls made
        outside the proxy's request path), and forgets old outcomes."""
        while True:
            time.sleep(0.5)
            now = time.monotonic()
            grace = self.settings.failure_grace
            with self._lock:
                due = [k for k, (t, _) in self._pending_failures.items() if now - t >= grace]
                events = [self._pending_failures.pop(k)[1] for k in due]
                for k in [k for k, (t, _) in self._failed_calls.items() if now - t >= 300]:
                    del self._failed_calls[k]
            for event in events:
                self._submit(event)

    def flush(self, timeout: float = 10.0) -> bool:
        return self._sender.flush(timeout) if self._sender is not None else True
