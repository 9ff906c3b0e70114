"""The callback's behaviour around the call: what it sends, what it holds back, and
that a Meterplane that cannot be reached neither slows nor fails the user's call.

Nothing here imitates Meterplane: "down" is a loopback port nobody listens on, and the
events the callback decides to send are read from a recording queue in place of the
HTTP sender. deploy/litellm-check.sh runs the same callback in a real LiteLLM proxy
against a real Meterplane.
"""

import asyncio
import contextvars
import json
import os
import socket
import sys
import time
import unittest
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent))
os.environ.setdefault("LITELLM_LOCAL_MODEL_COST_MAP", "True")

from meterplane_litellm import callback as callback_module  # noqa: E402
from meterplane_litellm.callback import MeterplaneCallback, denial_exception  # noqa: E402
from meterplane_litellm.sender import Sender  # noqa: E402

PAYLOADS = {x["name"]: x["payload"] for x in json.loads((HERE / "fixtures" / "payloads.json").read_text())}


def dead_url() -> str:
    """A loopback port with nothing listening on it."""
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()
    return f"http://127.0.0.1:{port}"


class Recording(MeterplaneCallback):
    def __init__(self, **kw):
        super().__init__(url="http://127.0.0.1:9", api_key="mp_test", **kw)
        self.sent = []

    def _submit(self, event):
        self.sent.append(event)


def kwargs(name, **extra):
    return {"standard_logging_object": PAYLOADS[name], **extra}


class Events(unittest.TestCase):
    def test_a_success_is_sent(self):
        cb = Recording()
        cb._on_event(kwargs("chat"))
        self.assertEqual([e["requestId"] for e in cb.sent], [PAYLOADS["chat"]["litellm_call_id"]])

    def test_a_failed_attempt_followed_by_success_is_not_an_error(self):
        cb = Recording()
        cb._on_event(kwargs("fallback_failed_attempt"))
        cb._on_event(kwargs("fallback_success"))
        time.sleep(0.1)
        self.assertEqual([e["status"] for e in cb.sent], ["success"])
        self.assertEqual(cb._pending_failures, {})

    def test_a_failed_call_is_sent_once_the_proxy_reports_it_failed(self):
        cb = Recording()
        cb._on_event(kwargs("error"))
        self.assertEqual(cb.sent, [])
        call_id = PAYLOADS["error"]["litellm_call_id"]
        asyncio.run(cb.async_post_call_failure_hook({"litellm_call_id": call_id}, RuntimeError("x"), None))
        self.assertEqual([(e["requestId"], e["status"]) for e in cb.sent], [(call_id, "error")])

    def test_a_failed_call_carries_the_routers_retries(self):
        cb = Recording()
        cb._on_event(kwargs("error"))
        failure = RuntimeError("failed after retries")
        failure.num_retries = 2
        call_id = PAYLOADS["error"]["litellm_call_id"]
        asyncio.run(cb.async_post_call_failure_hook({"litellm_call_id": call_id}, failure, None))
        self.assertEqual([e["retries"] for e in cb.sent], [2])

    def test_the_outcome_may_come_before_the_failure_event(self):
        cb = Recording()
        call_id = PAYLOADS["error"]["litellm_call_id"]
        asyncio.run(cb.async_post_call_failure_hook({"litellm_call_id": call_id}, RuntimeError("x"), None))
        cb._on_event(kwargs("error"))
        self.assertEqual([e["status"] for e in cb.sent], ["error"])

    def test_a_failure_with_no_outcome_is_sent_after_the_grace_period(self):
        cb = Recording(failure_grace=0.2)
        cb._on_event(kwargs("error"))
        deadline = time.monotonic() + 3
        while not cb.sent and time.monotonic() < deadline:
            time.sleep(0.05)
        self.assertEqual([e["status"] for e in cb.sent], ["error"])

    def test_its_own_denial_is_not_usage(self):
        cb = Recording()
        denial = denial_exception({"allowed": False, "reason": "budget_exceeded", "decidingScope": "customer"})
        cb._on_event(kwargs("denied", exception=denial))
        self.assertEqual(cb.sent, [])

    def test_an_a2a_call_counts_once_with_its_agents_model_call(self):
        cb = Recording()
        outer = PAYLOADS["a2a_call"]

        cb.settings.authorize = False

        def request():
            # The proxy awaits the hook in the request's own task: drive it in this context.
            hook = cb.async_pre_call_hook(
                None, None,
                {"litellm_call_id": outer["litellm_call_id"], "agent_id": "hash",
                 "metadata": {"user_api_key_request_route": "/a2a/planner", "user_api_key_end_user_id": "cust-a2a"}},
                "asend_message",
            )
            with self.assertRaises(StopIteration):
                hook.send(None)
            cb.log_pre_api_call("gpt-4o-mini", [], {"litellm_call_id": PAYLOADS["a2a_model_call"]["litellm_call_id"]})
            # The outer event may be handled before the model call's: it is still held back.
            cb._on_event(kwargs("a2a_call"))
            cb._on_event(kwargs("a2a_model_call"))

        contextvars.copy_context().run(request)
        self.assertEqual(len(cb.sent), 1)
        event = cb.sent[0]
        self.assertEqual(event["requestId"], outer["litellm_call_id"])
        self.assertEqual((event["endpoint"], event["user"], event["model"]), ("/a2a/planner", "cust-a2a", "gpt-4o-mini"))
        self.assertEqual((event["promptTokens"], event["completionTokens"]), (10, 20))

    def test_an_a2a_call_without_model_calls_is_recorded_alone(self):
        cb = Recording()
        cb._on_event(kwargs("a2a_call"))
        self.assertEqual([e["endpoint"] for e in cb.sent], ["/a2a/planner"])


class MeterplaneDown(unittest.TestCase):
    def test_submitting_never_blocks_and_a_full_queue_drops(self):
        sender = Sender(dead_url(), "mp_test", max_queue=5, flush_interval=0.05, backoff_initial=0.05)
        start = time.perf_counter()
        results = [sender.submit({"requestId": f"r{i}"}) for i in range(50)]
        elapsed = time.perf_counter() - start
        self.assertLess(elapsed, 0.05, "submit must not wait for the network")
        self.assertGreaterEqual(results.count(False), 44)
        time.sleep(0.3)
        stats = sender.stats()
        self.assertGreater(stats["retries"], 0, stats)
        self.assertGreaterEqual(stats["dropped"], 44)
        self.assertEqual(stats["accepted"], 0)
        sender.shutdown_timeout = 0.1
        sender.close()

    def test_authorize_lets_the_call_through_quickly(self):
        cb = MeterplaneCallback(url=dead_url(), api_key="mp_test", authorize_timeout=0.5)
        data = {"litellm_call_id": "c1", "model": "chat", "messages": [{"role": "user", "content": "hi"}]}
        asyncio.run(cb.async_pre_call_hook(None, None, dict(data), "acompletion"))  # imports LiteLLM once
        start = time.perf_counter()
        result = asyncio.run(cb.async_pre_call_hook(None, None, data, "acompletion"))
        self.assertIs(result, data)
        self.assertLess(time.perf_counter() - start, 0.6)

    def test_fail_closed_refuses_with_503(self):
        from fastapi import HTTPException

        cb = MeterplaneCallback(url=dead_url(), api_key="mp_test", authorize_timeout=0.5, fail_closed=True)
        with self.assertRaises(HTTPException) as raised:
            asyncio.run(cb.async_pre_call_hook(None, None, {"litellm_call_id": "c2"}, "acompletion"))
        self.assertEqual(raised.exception.status_code, 503)
        self.assertIn("meterplane_denied", raised.exception.detail["error"])


class Denials(unittest.TestCase):
    def test_statuses(self):
        cases = {"budget_exceeded": 429, "rate_limited_requests": 429, "customer_blocked": 403,
                 "agent_blocked": 403, "key_revoked": 403, "counters_unavailable": 503}
        for reason, status in cases.items():
            with self.subTest(reason):
                e = denial_exception({"allowed": False, "reason": reason, "decidingScope": "customer"})
                self.assertEqual(e.status_code, status)
                self.assertEqual(e.detail["reason"], reason)
                self.assertTrue(e.detail["error"].startswith(f"meterplane_denied: {reason}"))

    def test_a_rate_limit_says_when_to_retry(self):
        e = denial_exception({"allowed": False, "reason": "rate_limited_requests", "retryAfterSeconds": 17})
        self.assertEqual(e.headers, {"Retry-After": "17"})


if __name__ == "__main__":
    unittest.main()
