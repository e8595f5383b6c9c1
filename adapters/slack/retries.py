"""What the Slack Web API client repeats when a call fails, and how long it waits (slack_sdk's retry handlers).

- 429: Slack did nothing. Every method waits the Retry-After Slack asks for and tries again, unless Slack asks
  for more than `MAX_RETRY_AFTER` seconds: then the caller gets the error at once.
- No connection could be made: nothing was sent. Every method tries again after a short jittered backoff.
- 5xx, a connection dropped or a timeout once the request went out: the outcome is unknown. Only methods that
  change nothing when repeated are retried (chat.update of one ts with the same content, chat.delete, reads);
  chat.postMessage and chat.postEphemeral are not, since a repeat could show a message twice: their callers
  reconcile instead (`SlackReplies`).

At most `MAX_RETRIES` retries per call, so a call's total wait is bounded (about 2 s of backoff, or
`MAX_RETRIES` x `MAX_RETRY_AFTER` when rate limited).
"""

from __future__ import annotations

import random

import aiohttp
from slack_sdk.http_retry.async_handler import AsyncRetryHandler
from slack_sdk.http_retry.builtin_async_handlers import (
    AsyncConnectionErrorRetryHandler,
    AsyncRateLimitErrorRetryHandler,
)
from slack_sdk.http_retry.builtin_interval_calculators import BackoffRetryIntervalCalculator
from slack_sdk.http_retry.jitter import Jitter
from slack_sdk.http_retry.request import HttpRequest
from slack_sdk.http_retry.response import HttpResponse
from slack_sdk.http_retry.state import RetryState

MAX_RETRIES = 3
BACKOFF_SECONDS = 0.25  # 0.25, 0.5, 1 s, each spread by +-50%
MAX_RETRY_AFTER = 10

# Repeating these changes nothing: the same ts gets the same content, a deleted message stays deleted, a read
# reads, conversations.open returns the one DM.
REPEATABLE = frozenset({
    "chat.update", "chat.delete", "auth.test", "users.info", "conversations.open", "conversations.replies",
})
NOT_SENT: list[type[Exception]] = [aiohttp.ClientConnectorError, aiohttp.ConnectionTimeoutError]
OUTCOME_UNKNOWN: list[type[Exception]] = [aiohttp.ClientConnectionError, TimeoutError]


class _Spread(Jitter):
    """Backoff spread by +-50%, so clients that failed together do not retry together."""

    def recalculate(self, duration: float) -> float:
        return duration * random.uniform(0.5, 1.5)


BACKOFF = BackoffRetryIntervalCalculator(backoff_factor=BACKOFF_SECONDS, jitter=_Spread())


def method_of(request: HttpRequest) -> str:
    return request.url.split("?", 1)[0].rstrip("/").rsplit("/", 1)[-1]


def retry_after(response: HttpResponse) -> float | None:
    for name, values in response.headers.items():
        if name.lower() == "retry-after" and values:
            try:
                return float(values[0])
            except ValueError:
                return None
    return None


class _RateLimited(AsyncRateLimitErrorRetryHandler):
    """slack_sdk's 429 handler (waits Retry-After), refusing waits longer than `MAX_RETRY_AFTER`."""

    async def _can_retry_async(
        self, *, state: RetryState, request: HttpRequest, response: HttpResponse | None = None,
        error: Exception | None = None,
    ) -> bool:
        if response is None or response.status_code != 429:
            return False
        wait = retry_after(response)
        return wait is None or wait <= MAX_RETRY_AFTER


class _OutcomeUnknown(AsyncConnectionErrorRetryHandler):
    """A 5xx, or a connection lost once the request may have gone out: retried for repeatable methods only."""

    async def _can_retry_async(
        self, *, state: RetryState, request: HttpRequest, response: HttpResponse | None = None,
        error: Exception | None = None,
    ) -> bool:
        if method_of(request) not in REPEATABLE:
            return False
        if response is not None:
            return response.status_code >= 500
        return await super()._can_retry_async(state=state, request=request, response=response, error=error)


def retry_handlers() -> list[AsyncRetryHandler]:
    """For every AsyncWebClient the adapter builds (they share one RetryState per call, so `MAX_RETRIES` is the
    total over all causes)."""
    return [
        _RateLimited(max_retry_count=MAX_RETRIES),
        AsyncConnectionErrorRetryHandler(MAX_RETRIES, BACKOFF, error_types=NOT_SENT),
        _OutcomeUnknown(MAX_RETRIES, BACKOFF, error_types=OUTCOME_UNKNOWN),
    ]
