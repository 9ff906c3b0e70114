"""Delivers usage events to Meterplane in the background, batched, off the call path.

`submit()` never blocks and never raises: it puts the event on a bounded in-memory
queue (or drops it when the queue is full). One daemon thread takes up to `batch_size`
events at a time (waiting at most `flush_interval` seconds for a batch to fill) and
posts them to `POST /v1/usage/batch`.

Loss policy:
- While the queue has room, no event is lost: a batch that fails to reach Meterplane
  (connection refused, timeout, 408, 429, 5xx) is sent again, the same batch, with
  exponential backoff (0.5 s doubling to 30 s, jittered), until it is answered. Every
  event keeps its requestId, so a retry of a batch Meterplane had in fact stored is
  answered "duplicate" and stored once.
- When the queue is full (Meterplane down or slow for long enough to fill it), new
  events are dropped and counted (`stats()["dropped"]`), with a warning at most once
  a minute.
- A batch Meterplane refuses as a whole (400, 401, 403, 413, 422: a wrong key or a
  malformed request, which a retry cannot fix) is dropped and logged; single events it
  rejects inside a 200 answer are logged and counted (`rejected`).
- At exit, the thread gets `shutdown_timeout` seconds to send what is queued; what is
  still queued after that is lost.
"""

from __future__ import annotations

import atexit
import logging
import queue
import random
import threading
import time
from typing import Any

import httpx

log = logging.getLogger("meterplane_litellm")

RETRYABLE_STATUS = frozenset({408, 425, 429, 500, 502, 503, 504})


class Sender:
    def __init__(
        self,
        base_url: str,
        api_key: str,
        *,
        batch_size: int = 200,
        flush_interval: float = 1.0,
        max_queue: int = 10_000,
        timeout: float = 10.0,
        backoff_initial: float = 0.5,
        backoff_max: float = 30.0,
        shutdown_timeout: float = 5.0,
    ) -> None:
        self.url = base_url.rstrip("/") + "/v1/usage/batch"
        self.api_key = api_key
        self.batch_size = max(1, min(batch_size, 1000))
        self.flush_interval = flush_interval
        self.timeout = timeout
        self.backoff_initial = backoff_initial
        self.backoff_max = backoff_max
        self.shutdown_timeout = shutdown_timeout
        self._queue: queue.Queue[dict[str, Any]] = queue.Queue(maxsize=max(1, max_queue))
        self._lock = threading.Lock()
        self._idle = threading.Condition(self._lock)
        self._pending = 0  # queued or being sent
        self._stopping = threading.Event()
        self._thread: threading.Thread | None = None
        self._last_drop_warning = 0.0
        self._stats = {
            "submitted": 0,
            "accepted": 0,
            "duplicates": 0,
            "rejected": 0,
            "dropped": 0,
            "failed_batches": 0,
            "retries": 0,
        }

    # -- the call path ------------------------------------------------------------

    def submit(self, event: dict[str, Any]) -> bool:
        """Queues one event; False when the queue was full and the event was dropped."""
        self._ensure_started()
        with self._lock:
            self._pending += 1
            self._stats["submitted"] += 1
        try:
            self._queue.put_nowait(event)
        except queue.Full:
            with self._lock:
                self._pending -= 1
                self._stats["submitted"] -= 1
                self._stats["dropped"] += 1
                now = time.monotonic()
                warn = now - self._last_drop_warning > 60
                if warn:
                    self._last_drop_warning = now
            if warn:
                log.warning(
                    "meterplane: usage queue full (%d events): dropping events until Meterplane catches up",
                    self._queue.maxsize,
                )
            return False
        return True

    # -- observability and tests ----------------------------------------------------

    def stats(self) -> dict[str, int]:
        with self._lock:
            return {**self._stats, "pending": self._pending}

    def flush(self, timeout: float = 10.0) -> bool:
        """Waits until everything queued has been answered; False on timeout."""
        deadline = time.monotonic() + timeout
        with self._idle:
            while self._pending:
                left = deadline - time.monotonic()
                if left <= 0:
                    return False
                self._idle.wait(min(left, 0.05))
        return True

    def close(self) -> None:
        """Sends what is queued for at most `shutdown_timeout` seconds, then stops."""
        if self._thread is None:
            return
        self.flush(self.shutdown_timeout)
        self._stopping.set()
        self._thread.join(1.0)

    # -- the worker -----------------------------------------------------------------

    def _ensure_started(self) -> None:
        if self._thread is not None:
            return
        with self._lock:
            if self._thread is not None:
                return
            self._thread = threading.Thread(target=self._run, name="meterplane-usage", daemon=True)
            self._thread.start()
            atexit.register(self.close)

    def _take_batch(self) -> list[dict[str, Any]]:
        batch: list[dict[str, Any]] = []
        try:
            first = self._queue.get(timeout=0.2)
        except queue.Empty:
            return batch
        batch.append(first)
        deadline = time.monotonic() + self.flush_interval
        while len(batch) < self.batch_size:
            left = deadline - time.monotonic()
            try:
                item = self._queue.get(timeout=left) if left > 0 else self._queue.get_nowait()
            except queue.Empty:
                break
            batch.append(item)
        return batch

    def _run(self) -> None:
        with httpx.Client(timeout=self.timeout, headers={"X-Api-Key": self.api_key}) as client:
            while not self._stopping.is_set():
                batch = self._take_batch()
                if not batch:
                    continue
                try:
                    self._deliver(client, batch)
                except Exception:  # never let the worker die
                    log.exception("meterplane: unexpected error while sending usage; batch dropped")
                    with self._lock:
                        self._stats["failed_batches"] += 1
                finally:
                    with self._idle:
                        self._pending -= len(batch)
                        self._idle.notify_all()

    def _deliver(self, client: httpx.Client, batch: list[dict[str, Any]]) -> None:
        delay = self.backoff_initial
        while True:
            try:
                response = client.post(self.url, json={"events": batch})
            except httpx.HTTPError as e:
                problem = f"{type(e).__name__}: {e}"
            else:
                if response.status_code == 200:
                    self._count(batch, response)
                    return
                if response.status_code not in RETRYABLE_STATUS:
                    log.error(
                        "meterplane: %d events refused with %d (not retried): %s",
                        len(batch),
                        response.status_code,
                        response.text[:500],
                    )
                    with self._lock:
                        self._stats["failed_batches"] += 1
                        self._stats["rejected"] += len(batch)
                    return
                problem = f"HTTP {response.status_code}"
            if self._stopping.is_set():
                log.error("meterplane: stopping with %d events unsent (%s)", len(batch), problem)
                return
            with self._lock:
                self._stats["retries"] += 1
            log.warning("meterplane: usage batch not delivered (%s); retrying in %.1f s", problem, delay)
            self._stopping.wait(delay * random.uniform(0.5, 1.0))
            delay = min(delay * 2, self.backoff_max)

    def _count(self, batch: list[dict[str, Any]], response: httpx.Response) -> None:
        try:
            body = response.json()
        except ValueError:
            body = {}
        with self._lock:
            self._stats["accepted"] += int(body.get("accepted", 0))
            self._stats["duplicates"] += int(body.get("duplicates", 0))
            self._stats["rejected"] += int(body.get("rejected", 0))
        for result in body.get("results", []):
            if result.get("status") == "rejected":
                log.warning(
                    "meterplane: event %s rejected: %s",
                    result.get("requestId"),
                    "; ".join(f"{e.get('field')}: {e.get('message')}" for e in result.get("errors", [])),
                )
