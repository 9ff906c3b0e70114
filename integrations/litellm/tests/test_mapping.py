"""The mapping from LiteLLM's StandardLoggingPayload to a Meterplane usage event.

fixtures/payloads.json holds payloads a real LiteLLM proxy (1.108.7, mock models) posted
through its generic_api logger: a chat call with client metadata, a streaming call, a
call with cached tokens, a provider error, a router fallback (a failed attempt and the
success, one call id), a call the Meterplane callback refused, and an A2A call with the
model call its agent made. fixtures/expected.json is what both this package and the
server (src/http/litellm.rs, whose unit tests read the same files) make of them.
"""

import json
import os
import sys
import unittest
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent))
os.environ.setdefault("LITELLM_LOCAL_MODEL_COST_MAP", "True")

from meterplane_litellm.mapping import (  # noqa: E402
    MAX_METADATA_BYTES,
    _compact_size,
    link_batch,
    map_payload,
    timestamp,
)

PAYLOADS = {x["name"]: x["payload"] for x in json.loads((HERE / "fixtures" / "payloads.json").read_text())}
EXPECTED = json.loads((HERE / "fixtures" / "expected.json").read_text())


class SinglePayloads(unittest.TestCase):
    def test_every_fixture_maps_to_the_expected_event(self):
        for name, payload in PAYLOADS.items():
            with self.subTest(name):
                self.assertEqual(map_payload(payload), EXPECTED["events"][name])

    def test_the_request_id_is_the_call_id_not_the_response_id(self):
        chat = PAYLOADS["chat"]
        event = map_payload(chat)
        self.assertEqual(event["requestId"], chat["litellm_call_id"])
        self.assertNotEqual(event["requestId"], chat["id"])
        self.assertEqual(event["metadata"]["litellm"]["responseId"], chat["id"])
        self.assertEqual(map_payload(PAYLOADS["error"])["requestId"], PAYLOADS["error"]["litellm_call_id"])

    def test_the_model_loses_its_provider_prefix_and_the_alias_goes_to_metadata(self):
        event = map_payload(PAYLOADS["cached"])
        self.assertEqual((event["provider"], event["model"]), ("openai", "gpt-4o"))
        self.assertEqual(event["metadata"]["litellm"]["modelGroup"], "cached")

    def test_gemini_calls_count_under_the_catalogs_google(self):
        gemini = dict(PAYLOADS["chat"], custom_llm_provider="gemini", model="gemini/gemini-2.5-pro")
        event = map_payload(gemini)
        self.assertEqual((event["provider"], event["model"]), ("google", "gemini-2.5-pro"))
        unknown = dict(PAYLOADS["chat"], custom_llm_provider="Bedrock", model="bedrock/amazon.nova-pro-v1:0")
        self.assertEqual((map_payload(unknown)["provider"], map_payload(unknown)["model"]), ("bedrock", "amazon.nova-pro-v1:0"))

    def test_cached_tokens_come_from_the_usage_object(self):
        event = map_payload(PAYLOADS["cached"])
        self.assertEqual((event["promptTokens"], event["cachedTokens"], event["completionTokens"]), (2000, 1500, 100))

    def test_cache_writes_reasoning_and_audio_tokens_come_from_the_usage_object(self):
        claude = dict(PAYLOADS["cached"], prompt_tokens=50000, completion_tokens=1000)
        claude["metadata"] = dict(claude["metadata"], usage_object={
            "prompt_tokens_details": {
                "cached_tokens": 30000, "cache_creation_tokens": 10000,
                "cache_creation_token_details": {"ephemeral_5m_input_tokens": 8000, "ephemeral_1h_input_tokens": 2000},
            },
            "completion_tokens_details": {"reasoning_tokens": 400},
        })
        event = map_payload(claude)
        parts = ("cachedTokens", "cacheWrite5mTokens", "cacheWrite1hTokens", "reasoningTokens")
        self.assertEqual([event[k] for k in parts], [30000, 8000, 2000, 400])
        self.assertNotIn("audioInputTokens", event)
        # Without durations, a cache write is a 5-minute write; parts never exceed their total.
        audio = dict(PAYLOADS["cached"], prompt_tokens=1500, completion_tokens=900)
        audio["metadata"] = dict(audio["metadata"], usage_object={
            "cache_creation_input_tokens": 100,
            "prompt_tokens_details": {"audio_tokens": 1600},
            "completion_tokens_details": {"audio_tokens": 700, "reasoning_tokens": 300},
        })
        event = map_payload(audio)
        self.assertEqual(
            [event.get(k) for k in ("cachedTokens", "cacheWrite5mTokens", "audioInputTokens", "reasoningTokens", "audioOutputTokens")],
            [0, 100, 1400, 300, 600],
        )

    def test_time_to_first_token_only_for_streaming_calls(self):
        stream = PAYLOADS["stream"]
        event = map_payload(stream)
        expected = int((stream["completionStartTime"] - stream["startTime"]) * 1000 + 0.5)
        self.assertEqual(event["timeToFirstTokenMs"], expected)
        self.assertGreater(event["timeToFirstTokenMs"], 0)
        self.assertNotIn("timeToFirstTokenMs", map_payload(PAYLOADS["chat"]))

    def test_user_route_and_client_metadata(self):
        event = map_payload(PAYLOADS["chat"])
        self.assertEqual((event["user"], event["endpoint"]), ("cust-1", "/chat/completions"))
        self.assertEqual(event["metadata"]["feature"], "search")
        self.assertNotIn("headers", event["metadata"])
        self.assertIn("beta", event["metadata"]["litellm"]["tags"])

    def test_retries_and_fallbacks(self):
        payload = json.loads(json.dumps(PAYLOADS["fallback_success"]))
        payload["hidden_params"]["additional_headers"]["x-litellm-attempted-retries"] = 2
        event = map_payload(payload)
        self.assertEqual(event["retries"], 2)
        self.assertEqual(event["metadata"]["litellm"]["attemptedFallbacks"], 1)

    def test_an_error_keeps_its_class_status_and_message(self):
        event = map_payload(PAYLOADS["error"])
        self.assertEqual((event["status"], event["errorCode"]), ("error", "InternalServerError"))
        self.assertEqual(event["metadata"]["litellm"]["errorStatus"], "500")

    def test_an_a2a_call_alone_names_its_agent_by_route(self):
        event = map_payload(PAYLOADS["a2a_call"])
        self.assertEqual((event["endpoint"], event["user"]), ("/a2a/planner", "cust-a2a"))
        self.assertEqual(event["promptTokens"], 0)

    def test_bodies_only_on_request(self):
        self.assertNotIn("requestBody", map_payload(PAYLOADS["chat"]))
        event = map_payload(PAYLOADS["chat"], store_bodies=True)
        self.assertEqual(event["responseBody"]["choices"][0]["message"]["content"], "Hello from the mock")

    def test_metadata_stays_within_the_server_limit(self):
        payload = json.loads(json.dumps(PAYLOADS["chat"]))
        payload["metadata"]["requester_metadata"]["blob"] = "x" * (MAX_METADATA_BYTES + 10)
        event = map_payload(payload)
        self.assertLessEqual(_compact_size(event["metadata"]), MAX_METADATA_BYTES)
        self.assertNotIn("blob", event["metadata"])
        self.assertEqual(event["metadata"]["litellm"]["modelGroup"], "chat")

    def test_timestamps_are_rfc3339_microseconds(self):
        self.assertEqual(timestamp(1796222732.081241), "2026-12-02T14:45:32.081241Z")
        self.assertIsNone(timestamp(None))
        self.assertIsNone(timestamp("soon"))

    def test_garbage_does_not_raise(self):
        event = map_payload({"status": "failure", "prompt_tokens": -3, "startTime": "x", "metadata": []})
        self.assertEqual((event["provider"], event["model"], event["promptTokens"]), ("unknown", "unknown", 0))


class Batches(unittest.TestCase):
    def test_the_fixture_batch_links_as_expected(self):
        batch = [[o, v] for o, v in link_batch(list(PAYLOADS.values()))]
        self.assertEqual(batch, [[x["outcome"], x["value"]] for x in EXPECTED["batch"]])

    def test_a_failed_attempt_is_ignored_when_its_call_succeeded(self):
        outcome = link_batch([PAYLOADS["fallback_failed_attempt"], PAYLOADS["fallback_success"]])
        self.assertEqual(outcome[0][0], "ignored")
        self.assertEqual((outcome[1][0], outcome[1][1]["status"]), ("event", "success"))

    def test_a_denial_is_not_usage(self):
        self.assertEqual(link_batch([PAYLOADS["denied"]])[0][0], "ignored")

    def test_an_a2a_call_and_its_model_call_are_one_request(self):
        outcome = link_batch([PAYLOADS["a2a_model_call"], PAYLOADS["a2a_call"]])
        kind, event = outcome[0]
        self.assertEqual(kind, "event")
        self.assertEqual(event["requestId"], PAYLOADS["a2a_call"]["litellm_call_id"])
        self.assertEqual((event["endpoint"], event["user"]), ("/a2a/planner", "cust-a2a"))
        self.assertEqual((event["model"], event["promptTokens"], event["completionTokens"]), ("gpt-4o-mini", 10, 20))
        self.assertEqual(outcome[1][0], "ignored")

    def test_a_model_call_inside_two_a2a_calls_is_not_guessed(self):
        other = json.loads(json.dumps(PAYLOADS["a2a_call"]))
        other["litellm_call_id"] = "another-a2a-call"
        outcome = link_batch([PAYLOADS["a2a_model_call"], PAYLOADS["a2a_call"], other])
        self.assertEqual([o for o, _ in outcome], ["event", "event", "event"])
        self.assertEqual(outcome[0][1]["endpoint"], "/chat/completions")

    def test_not_an_object_is_invalid(self):
        self.assertEqual(link_batch([42])[0][0], "invalid")


if __name__ == "__main__":
    unittest.main()
