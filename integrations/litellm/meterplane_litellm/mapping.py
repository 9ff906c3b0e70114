"""LiteLLM's StandardLoggingPayload -> a Meterplane usage event.

Pure functions, no I/O. The Meterplane server applies the same rules to the payloads
LiteLLM's `generic_api` logger posts (`POST /v1/integrations/litellm/logs`,
src/http/litellm.rs); both are checked against tests/fixtures/expected.json.

The event is the JSON object `POST /v1/usage/batch` takes (camelCase fields):

    requestId          litellm_call_id (the payload's `id` is the provider's response id
                       on success but the call id on failure)
    endpoint           metadata.user_api_key_request_route, else the call type's route
    provider           custom_llm_provider, else the model's prefix; `gemini` becomes
                       `google`, the price catalog's name (catalog_provider)
    model              `model` without its `provider/` prefix (the alias the client
                       asked for, `model_group`, goes to metadata)
    user               end_user, else metadata.user_api_key_end_user_id
    agentId            the `{agent}` of an `/a2a/{agent}` route (Meterplane reads it from
                       the endpoint)
    status, errorCode  success / error; the error class (InternalServerError, ...)
    promptTokens, completionTokens
    cachedTokens       metadata.usage_object.prompt_tokens_details.cached_tokens
                       (or cache_read_input_tokens), at most promptTokens
    cacheWrite5mTokens, cacheWrite1hTokens
                       prompt_tokens_details.cache_creation_token_details (or Anthropic's
                       cache_creation) by duration; else cache_write_tokens (or
                       cache_creation_input_tokens) as 5-minute writes
    audioInputTokens   prompt_tokens_details.audio_tokens
    reasoningTokens    completion_tokens_details.reasoning_tokens
    audioOutputTokens  completion_tokens_details.audio_tokens
                       (each part fitted into what promptTokens or completionTokens has
                       left; sent only when not zero)
    latencyMs          endTime - startTime
    timeToFirstTokenMs completionStartTime - startTime, streaming calls only
    cacheHit           cache_hit
    retries            hidden_params.additional_headers["x-litellm-attempted-retries"]
    startedAt, endedAt startTime, endTime (epoch seconds -> RFC 3339, microseconds)
    metadata           the client's own request metadata, and under "litellm": the alias,
                       deployment, call type, trace and session ids, virtual key alias,
                       team, tags, LiteLLM's own cost figure, fallbacks, and for errors
                       the HTTP status and message
"""

from __future__ import annotations

import json
import math
from datetime import datetime, timedelta, timezone
from typing import Any, Mapping

# Marks a call that the Meterplane callback itself refused (see callback.py): LiteLLM
# logs such a call as a failure, but no provider was asked, so it is not usage.
DENIAL_MARKER = "meterplane_denied"

# Meterplane's limit on event metadata (compact JSON, bytes).
MAX_METADATA_BYTES = 16 * 1024
MAX_TEXT = 200
MAX_ERROR_MESSAGE = 500
MAX_TAGS = 20

# The route of a call type when the payload has none (calls made through the SDK,
# or by the proxy itself).
CALL_TYPE_ENDPOINTS = {
    "completion": "/chat/completions",
    "acompletion": "/chat/completions",
    "text_completion": "/completions",
    "atext_completion": "/completions",
    "embedding": "/embeddings",
    "aembedding": "/embeddings",
    "image_generation": "/images/generations",
    "aimage_generation": "/images/generations",
    "responses": "/responses",
    "aresponses": "/responses",
    "anthropic_messages": "/v1/messages",
    "rerank": "/rerank",
    "arerank": "/rerank",
    "transcription": "/audio/transcriptions",
    "atranscription": "/audio/transcriptions",
    "speech": "/audio/speech",
    "aspeech": "/audio/speech",
    "moderation": "/moderations",
    "amoderation": "/moderations",
}

A2A_CALL_TYPES = frozenset({"asend_message", "send_message"})

# Keys LiteLLM adds to the request metadata it logs; what is left is the client's own.
_INTERNAL_METADATA_KEYS = frozenset(
    {"headers", "used_client_oauth_token", "agent_id", "model_group", "model_info", "tags"}
)


def _text(value: Any) -> str | None:
    """A non-blank string, trimmed; anything else is None."""
    if isinstance(value, str):
        value = value.strip()
        return value or None
    return None


def _count(value: Any) -> int:
    """A non-negative whole count; anything else is 0."""
    if isinstance(value, bool):
        return 0
    if isinstance(value, int):
        return max(value, 0)
    if isinstance(value, float) and math.isfinite(value) and value >= 0:
        return int(value)
    if isinstance(value, str) and value.strip().isdigit():
        return int(value.strip())
    return 0


def _number(value: Any) -> float | None:
    if isinstance(value, bool):
        return None
    if isinstance(value, (int, float)) and math.isfinite(value):
        return float(value)
    return None


def _dict(value: Any) -> Mapping[str, Any]:
    return value if isinstance(value, Mapping) else {}


def _millis(seconds: float) -> int:
    """Whole milliseconds, half up (the server computes it the same way)."""
    return int(math.floor(seconds * 1000.0 + 0.5))


def timestamp(seconds: Any) -> str | None:
    """Epoch seconds -> RFC 3339 UTC with microseconds."""
    value = _number(seconds)
    if value is None or value <= 0:
        return None
    micros = int(math.floor(value * 1_000_000.0 + 0.5))
    try:
        moment = datetime(1970, 1, 1, tzinfo=timezone.utc) + timedelta(microseconds=micros)
    except OverflowError:
        return None
    return moment.strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def provider_of(payload: Mapping[str, Any]) -> str:
    provider = _text(payload.get("custom_llm_provider"))
    if provider:
        return provider.lower()
    hidden = _dict(payload.get("hidden_params"))
    for name in (payload.get("model"), hidden.get("litellm_model_name")):
        name = _text(name)
        if name and "/" in name:
            return name.split("/", 1)[0].lower()
    return "unknown"


# LiteLLM's provider names in the words of Meterplane's price catalog (Google AI Studio
# is `gemini` in LiteLLM, `google` in the catalog); the same table as the service's
# import of LiteLLM price maps.
CATALOG_PROVIDERS = {"gemini": "google", "text-completion-openai": "openai"}


def catalog_provider(litellm_provider: str) -> str:
    provider = litellm_provider.lower()
    return CATALOG_PROVIDERS.get(provider, provider)


def model_of(payload: Mapping[str, Any], provider: str) -> str:
    hidden = _dict(payload.get("hidden_params"))
    model = (
        _text(payload.get("model"))
        or _text(hidden.get("litellm_model_name"))
        or _text(payload.get("model_group"))
        or "unknown"
    )
    prefix = provider + "/"
    if model.lower().startswith(prefix) and len(model) > len(prefix):
        model = model[len(prefix):]
    return model


def usage_object(payload: Mapping[str, Any]) -> Mapping[str, Any]:
    metadata = _dict(payload.get("metadata"))
    hidden = _dict(payload.get("hidden_params"))
    for candidate in (metadata.get("usage_object"), hidden.get("usage_object")):
        if isinstance(candidate, Mapping) and candidate:
            return candidate
    response = payload.get("response")
    if isinstance(response, Mapping) and isinstance(response.get("usage"), Mapping):
        return response["usage"]
    return {}


def cached_tokens_of(usage: Mapping[str, Any]) -> int:
    details = _dict(usage.get("prompt_tokens_details"))
    return _count(details.get("cached_tokens")) or _count(usage.get("cache_read_input_tokens"))


def cache_write_tokens_of(usage: Mapping[str, Any]) -> int:
    details = _dict(usage.get("prompt_tokens_details"))
    return _count(details.get("cache_write_tokens")) or _count(usage.get("cache_creation_input_tokens"))


def reasoning_tokens_of(usage: Mapping[str, Any]) -> int:
    return _count(_dict(usage.get("completion_tokens_details")).get("reasoning_tokens"))


def token_parts(usage: Mapping[str, Any], prompt: int, completion: int) -> list[tuple[str, int]]:
    """The parts of a call's prompt and completion that are priced apart, as event
    fields. LiteLLM counts as Meterplane does (promptTokens includes cache reads and
    writes and audio, completionTokens reasoning and audio). Each part is fitted into
    what its total has left, in this order, so a payload that counts otherwise cannot
    make the event invalid. Cache writes are split by duration when the usage says
    (cache_creation_token_details or Anthropic's cache_creation); a write of unknown
    duration is a 5-minute write, the providers' default."""
    prompt_details = _dict(usage.get("prompt_tokens_details"))
    durations = _dict(prompt_details.get("cache_creation_token_details")) or _dict(usage.get("cache_creation"))
    write_5m = _count(durations.get("ephemeral_5m_input_tokens"))
    write_1h = _count(durations.get("ephemeral_1h_input_tokens"))
    if write_5m == 0 and write_1h == 0:
        write_5m = cache_write_tokens_of(usage)
    left = {"prompt": prompt, "completion": completion}

    def fit(total: str, wanted: int) -> int:
        part = min(wanted, left[total])
        left[total] -= part
        return part

    return [
        ("cachedTokens", fit("prompt", cached_tokens_of(usage))),
        ("cacheWrite5mTokens", fit("prompt", write_5m)),
        ("cacheWrite1hTokens", fit("prompt", write_1h)),
        ("audioInputTokens", fit("prompt", _count(prompt_details.get("audio_tokens")))),
        ("reasoningTokens", fit("completion", reasoning_tokens_of(usage))),
        ("audioOutputTokens", fit("completion", _count(_dict(usage.get("completion_tokens_details")).get("audio_tokens")))),
    ]


def endpoint_of(payload: Mapping[str, Any]) -> str:
    route = _text(_dict(payload.get("metadata")).get("user_api_key_request_route"))
    if route:
        return route[:512]
    call_type = _text(payload.get("call_type")) or "unknown"
    return CALL_TYPE_ENDPOINTS.get(call_type, "/" + call_type)[:512]


def agent_of_endpoint(endpoint: str) -> str | None:
    """The `{agent}` of `/a2a/{agent}[/...]`, as the server reads it."""
    if not endpoint.startswith("/a2a/"):
        return None
    agent = endpoint[len("/a2a/"):].split("/", 1)[0].split("?", 1)[0]
    return agent or None


def is_a2a_call(payload: Mapping[str, Any]) -> bool:
    """The outer event of an A2A call (`/a2a/{agent}`): route, user and agent, no tokens."""
    if _text(payload.get("call_type")) in A2A_CALL_TYPES:
        return True
    route = _text(_dict(payload.get("metadata")).get("user_api_key_request_route")) or ""
    return route.startswith("/a2a/")


def is_internal_call(payload: Mapping[str, Any]) -> bool:
    """A model call the proxy made itself (an A2A agent's completion bridge): no route,
    no virtual key, not an A2A call."""
    metadata = _dict(payload.get("metadata"))
    return (
        not is_a2a_call(payload)
        and _text(metadata.get("user_api_key_request_route")) is None
        and _text(metadata.get("user_api_key_hash")) is None
    )


def error_text(payload: Mapping[str, Any]) -> str:
    info = _dict(payload.get("error_information"))
    return " ".join(t for t in (_text(payload.get("error_str")), _text(info.get("error_message"))) if t)


def is_denial(payload: Mapping[str, Any]) -> bool:
    """A failure LiteLLM logged for a call the Meterplane callback refused."""
    return payload.get("status") != "success" and DENIAL_MARKER in error_text(payload)


def _client_metadata(metadata: Mapping[str, Any]) -> dict[str, Any]:
    requester = _dict(metadata.get("requester_metadata"))
    own = {
        k: v
        for k, v in requester.items()
        if isinstance(k, str) and k not in _INTERNAL_METADATA_KEYS and not k.startswith("user_api_key")
    }
    spend_logs = metadata.get("spend_logs_metadata")
    if isinstance(spend_logs, Mapping) and spend_logs:
        own["spendLogsMetadata"] = dict(spend_logs)
    return own


def _compact_size(value: Any) -> int:
    return len(json.dumps(value, separators=(",", ":"), ensure_ascii=False).encode("utf-8"))


def _litellm_metadata(payload: Mapping[str, Any], request_id: str) -> dict[str, Any]:
    metadata = _dict(payload.get("metadata"))
    hidden = _dict(payload.get("hidden_params"))
    headers = _dict(hidden.get("additional_headers"))
    info = _dict(payload.get("error_information"))
    out: dict[str, Any] = {}

    def put(key: str, value: Any) -> None:
        if value is None or value == "" or value == [] or value == 0:
            return
        if isinstance(value, str):
            value = value[:MAX_TEXT]
        out[key] = value

    put("modelGroup", _text(payload.get("model_group")))
    put("deploymentId", _text(payload.get("model_id")))
    put("callType", _text(payload.get("call_type")))
    response_id = _text(payload.get("id"))
    if response_id != request_id:
        put("responseId", response_id)
    put("traceId", _text(payload.get("trace_id")))
    put("sessionId", _text(payload.get("session_id")))
    put("keyAlias", _text(metadata.get("user_api_key_alias")))
    put("keyUserId", _text(metadata.get("user_api_key_user_id")))
    put("teamId", _text(metadata.get("user_api_key_team_id")))
    put("teamAlias", _text(metadata.get("user_api_key_team_alias")))
    put("orgId", _text(metadata.get("user_api_key_org_id")))
    tags = payload.get("request_tags")
    if isinstance(tags, list):
        put("tags", [t[:MAX_TEXT] for t in tags if isinstance(t, str)][:MAX_TAGS])
    cost = _number(payload.get("response_cost"))
    if cost is not None and cost > 0:
        out["cost"] = cost
    put("attemptedFallbacks", _count(headers.get("x-litellm-attempted-fallbacks")))
    requester = _dict(metadata.get("requester_metadata"))
    put("agentId", _text(requester.get("agent_id")))
    if payload.get("status") != "success":
        put("errorStatus", _text(info.get("error_code")))
        message = _text(info.get("error_message")) or _text(payload.get("error_str"))
        if message:
            out["errorMessage"] = message[:MAX_ERROR_MESSAGE]
    return out


def event_metadata(payload: Mapping[str, Any], request_id: str) -> dict[str, Any]:
    """The client's metadata plus ours under "litellm", within Meterplane's 16 KiB."""
    ours = _litellm_metadata(payload, request_id)
    merged = {**_client_metadata(_dict(payload.get("metadata"))), "litellm": ours}
    if _compact_size(merged) <= MAX_METADATA_BYTES:
        return merged
    # Too large: the client's own metadata goes first, then the longest texts.
    merged = {"litellm": ours}
    for key in ("tags", "errorMessage"):
        if _compact_size(merged) <= MAX_METADATA_BYTES:
            break
        ours.pop(key, None)
    return merged


def map_payload(payload: Mapping[str, Any], store_bodies: bool = False) -> dict[str, Any]:
    """One StandardLoggingPayload as a Meterplane usage event (see the module doc)."""
    metadata = _dict(payload.get("metadata"))
    hidden = _dict(payload.get("hidden_params"))
    request_id = (_text(payload.get("litellm_call_id")) or _text(payload.get("id")) or "")[:255]
    provider = provider_of(payload)
    model = model_of(payload, provider)
    usage = usage_object(payload)
    prompt = _count(payload.get("prompt_tokens"))
    completion = _count(payload.get("completion_tokens"))
    event: dict[str, Any] = {
        "requestId": request_id,
        "endpoint": endpoint_of(payload),
        "provider": catalog_provider(provider)[:100],
        "model": model[:200],
    }
    user = _text(payload.get("end_user")) or _text(metadata.get("user_api_key_end_user_id"))
    if user:
        event["user"] = user[:256]
    success = payload.get("status") == "success"
    event["status"] = "success" if success else "error"
    if not success:
        info = _dict(payload.get("error_information"))
        event["errorCode"] = (_text(info.get("error_class")) or _text(info.get("error_code")) or "error")[:200]
    event["promptTokens"] = prompt
    event["completionTokens"] = completion
    for key, value in token_parts(usage, prompt, completion):
        # Cached tokens always; the other parts only when the call had them.
        if key == "cachedTokens" or value != 0:
            event[key] = value
    start, end = _number(payload.get("startTime")), _number(payload.get("endTime"))
    if start is not None and end is not None and end >= start:
        event["latencyMs"] = _millis(end - start)
        first = _number(payload.get("completionStartTime"))
        if payload.get("stream") is True and first is not None and start <= first <= end:
            event["timeToFirstTokenMs"] = _millis(first - start)
    event["cacheHit"] = payload.get("cache_hit") is True
    event["retries"] = min(_count(_dict(hidden.get("additional_headers")).get("x-litellm-attempted-retries")), 1000)
    started, ended = timestamp(start), timestamp(end)
    if started:
        event["startedAt"] = started
    if ended and (start is None or end is None or end >= start):
        event["endedAt"] = ended
    event["metadata"] = event_metadata(payload, request_id)
    if store_bodies:
        if payload.get("messages") is not None:
            event["requestBody"] = payload.get("messages")
        if payload.get("response") not in (None, {}, ""):
            event["responseBody"] = payload.get("response")
    return event


def attribute_to_a2a_call(event: dict[str, Any], call: Mapping[str, Any], position: int) -> dict[str, Any]:
    """Makes a model call an A2A agent made count as that A2A call: its request id (the
    first model call; a later one gets `<id>:<n>`), route, user and agent."""
    inner_id = event["requestId"]
    event["requestId"] = call["requestId"] if position == 0 else f"{call['requestId']}:{position}"
    event["endpoint"] = call["endpoint"]
    if call.get("user"):
        event["user"] = call["user"]
    litellm_md = event["metadata"].setdefault("litellm", {})
    litellm_md["a2aCallId"] = call["requestId"]
    litellm_md["modelCallId"] = inner_id
    agent_hash = call.get("agentHash")
    if agent_hash:
        litellm_md["agentId"] = agent_hash
    return event


def _call_of(outer: Mapping[str, Any]) -> dict[str, Any]:
    mapped = map_payload(outer)
    return {
        "requestId": mapped["requestId"],
        "endpoint": mapped["endpoint"],
        "user": mapped.get("user"),
        "agentHash": mapped["metadata"].get("litellm", {}).get("agentId"),
    }


def _spans(outer: Mapping[str, Any], start: float, end: float) -> bool:
    outer_start, outer_end = _number(outer.get("startTime")), _number(outer.get("endTime"))
    return outer_start is not None and outer_end is not None and outer_start <= start and end <= outer_end


def link_batch(payloads: list[Any], store_bodies: bool = False) -> list[tuple[str, Any]]:
    """What to do with each payload of one batch, in order, as the server does it:

    ("event", event)         record it
    ("ignored", reason)      not usage, or counted under another entry
    ("invalid", reason)      not a JSON object

    - A failure the Meterplane callback caused (a denial) is ignored.
    - A failure followed in the batch by a success with the same call id (a router retry
      or fallback) is ignored: the success carries the call.
    - An A2A call and the model calls its agent made inside it (internal calls whose
      time span lies inside the A2A call's, when exactly one A2A call spans them) are
      one request: the model calls take the A2A call's request id, route, user and
      agent, and the A2A call itself is ignored. An A2A call without such model calls
      is recorded as it is (no tokens).
    """
    mapped: list[tuple[str, Any]] = [("event", None)] * len(payloads)
    succeeded = {
        _text(p.get("litellm_call_id"))
        for p in payloads
        if isinstance(p, Mapping) and p.get("status") == "success"
    }
    outers = [i for i, p in enumerate(payloads) if isinstance(p, Mapping) and is_a2a_call(p)]
    linked: dict[int, list[int]] = {}
    for i, p in enumerate(payloads):
        if not isinstance(p, Mapping) or not is_internal_call(p):
            continue
        start, end = _number(p.get("startTime")), _number(p.get("endTime"))
        if start is None or end is None:
            continue
        spans = [o for o in outers if _spans(payloads[o], start, end)]
        if len(spans) == 1:
            linked.setdefault(spans[0], []).append(i)
    inner_of = {i: o for o, inners in linked.items() for i in inners}
    for i, p in enumerate(payloads):
        if not isinstance(p, Mapping):
            mapped[i] = ("invalid", "not a JSON object")
        elif is_denial(p):
            mapped[i] = ("ignored", "refused by the Meterplane callback; no provider was called")
        elif p.get("status") != "success" and _text(p.get("litellm_call_id")) in succeeded:
            mapped[i] = ("ignored", "a failed attempt of a call that succeeded later in this batch")
        elif i in linked:
            mapped[i] = ("ignored", "an A2A call counted with its agent's model calls")
        elif i in inner_of:
            o = inner_of[i]
            ordered = sorted(linked[o], key=lambda j: (_number(payloads[j].get("startTime")) or 0.0, j))
            mapped[i] = ("event", attribute_to_a2a_call(map_payload(p, store_bodies), _call_of(payloads[o]), ordered.index(i)))
        else:
            mapped[i] = ("event", map_payload(p, store_bodies))
    return mapped
