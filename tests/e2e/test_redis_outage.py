"""Redis goes away and comes back, as an operator meets it: the bot on a redis-server of the test's own, which the
test stops and starts again on the same port (empty: the embedded Redis keeps nothing), never the shared one.

- An answer Q already computed is delivered though Redis died before the turn could save the conversation or
  release its lock (the lease lapses by itself).
- After Redis is back, the first questions are answered: stale pooled connections are retried, not failed.
- `/metrics` shows the outage: turns that failed are counted even when no reply came back from the core, and
  failures are counted by stage (credentials, q, turn); a sign-in that merely expired is not a failure.
"""

from __future__ import annotations

import asyncio
import socket
from collections.abc import Iterator
from concurrent.futures import Future

import httpx
import pytest
from prometheus_client.parser import text_string_to_metric_families
from redis.exceptions import ConnectionError as RedisConnectionError

from bot.model import Answer, ChatIdentity, IncomingMessage, Notice, NoticeKind, Reply
from qbot.embedded_redis import EmbeddedRedis
from sandbox.serving import url_of
from sandbox.world import Sandbox, SandboxPorts
from tests.conftest import LoopThread, until
from tests.e2e.conftest import RunningBot, start_bot
from tests.e2e.test_chain import AURORA, cites_aurora, link
from tests.saml_signin import Browser

ALICE = ChatIdentity("test", "T1", "U-ALICE")


@pytest.fixture
def bot(
    servers: LoopThread, sandbox: Sandbox, bot_socket: socket.socket, private_redis: EmbeddedRedis
) -> Iterator[RunningBot]:
    running = start_bot(servers, sandbox, bot_socket, private_redis.url)
    yield running
    servers.run(running._served.stop())  # type: ignore[attr-defined]


def ask_in_background(bot: RunningBot, text: str, thread: str, *, shared: bool = False) -> Future[Reply | None]:
    message = IncomingMessage(ALICE, text, channel="c1", thread=thread, message_id=f"m-{thread}", shared=shared)
    return asyncio.run_coroutine_threadsafe(bot.core.handle(message), bot.servers.loop)


def sample(bot: RunningBot, name: str, **labels: str) -> float:
    """One sample of the bot's real /metrics text (0 when absent)."""
    text = httpx.get(bot.url + "/metrics").text
    for family in text_string_to_metric_families(text):
        for found in family.samples:
            if found.name == name and found.labels == labels:
                return float(found.value)
    return 0.0


def test_answers_q_computed_are_delivered_though_redis_died_before_they_were_saved(
    bot: RunningBot, private_redis: EmbeddedRedis
) -> None:
    link(bot, ALICE, "alice")
    bot.sandbox.q.faults.held.add("alice@example.com")  # Q takes a while: Redis dies while it answers
    asking = [ask_in_background(bot, AURORA, thread=f"t{n}") for n in range(4)]
    # in a channel the answer is private, and kept for "Share in thread": Redis cannot keep it now
    asking.append(ask_in_background(bot, AURORA, thread="in a channel", shared=True))
    bot.run(until(lambda: bot.sandbox.q.stats.in_flight == 5))
    private_redis.stop()
    bot.sandbox.q.faults.held.clear()

    replies = [question.result(60) for question in asking]
    assert all(isinstance(reply, Answer) and cites_aurora(reply) for reply in replies)  # not "Something went wrong"
    assert isinstance(replies[-1], Answer) and replies[-1].private
    assert sample(bot, "qbot_messages_total", platform="test", outcome="answered") == 5
    private_redis.start()


def test_the_first_questions_after_redis_restarts_are_answered(
    bot: RunningBot, private_redis: EmbeddedRedis
) -> None:
    link(bot, ALICE, "alice")
    # Twenty questions at once fill the pool with connections...
    assert all(cites_aurora(reply.result(60)) for reply in [ask_in_background(bot, AURORA, f"a{n}") for n in range(20)])
    private_redis.stop()  # ... that all go stale when Redis restarts
    private_redis.start()  # (empty: nothing persists in the embedded Redis, so alice links again)

    link(bot, ALICE, "alice")
    replies = [question.result(60) for question in [ask_in_background(bot, AURORA, f"b{n}") for n in range(20)]]
    assert all(isinstance(reply, Answer) and cites_aurora(reply) for reply in replies)


def test_metrics_count_the_turns_redis_being_down_failed(bot: RunningBot, private_redis: EmbeddedRedis) -> None:
    link(bot, ALICE, "alice")
    private_redis.stop()
    with pytest.raises(RedisConnectionError):  # the adapter tells the user; the core has no reply to return
        bot.ask(ALICE, AURORA)
    assert sample(bot, "qbot_messages_total", platform="test", outcome="error") == 1
    assert sample(bot, "qbot_failures_total", stage="turn", platform="test") == 1
    private_redis.start()


def test_metrics_count_failures_by_stage(bot: RunningBot) -> None:
    link(bot, ALICE, "alice")
    bot.sandbox.q.faults.internal_error_next = 100  # Q fails, however often the client retries
    q_failed = bot.ask(ALICE, AURORA, thread="t1")
    assert isinstance(q_failed, Notice) and q_failed.kind is NoticeKind.ERROR
    assert sample(bot, "qbot_failures_total", stage="q", platform="test") == 1

    bot.sandbox.q.faults.reset()
    bot.run(bot.graph.broker.forget(ALICE))  # the next question mints credentials...
    bot.sandbox.sts.faults.error_next.append("AccessDenied")  # ... and STS refuses them
    refused = bot.ask(ALICE, AURORA, thread="t2")
    assert isinstance(refused, Notice) and refused.kind is NoticeKind.ERROR and "AWS refused" in refused.text
    assert sample(bot, "qbot_failures_total", stage="credentials", platform="test") == 1
    assert sample(bot, "qbot_failures_total", stage="q", platform="test") == 1  # each failure counted once

    assert isinstance(bot.ask(ALICE, AURORA, thread="t3"), Answer)
    assert sample(bot, "qbot_messages_total", platform="test", outcome="error") == 2


def test_a_saml_sign_in_that_expired_is_not_counted_as_a_failure(
    servers: LoopThread, bot_socket: socket.socket, redis_url: str
) -> None:
    """The user is asked to sign in again (SignInExpired, from the broker): expected, not an outage."""
    world = Sandbox(ports=SandboxPorts(idp=0, sts=0, q=0), bot_public_url=url_of(bot_socket), saml=True)
    servers.run(world.start())
    bot = start_bot(servers, world, bot_socket, redis_url)
    browser = Browser()
    try:
        link_notice = bot.ask(ALICE, "qlink", profile_email="alice@example.com")
        assert isinstance(link_notice, Notice) and link_notice.url
        browser.sign_in(link_notice.url)
        bot.run(bot.graph.core.accounts.vault.delete_credentials(ALICE))  # as when they expire
        reply = bot.ask(ALICE, AURORA)
        assert isinstance(reply, Notice) and reply.kind is NoticeKind.NOT_LINKED
        assert sample(bot, "qbot_messages_total", platform="test", outcome="not_linked") == 1
        assert sample(bot, "qbot_failures_total", stage="credentials", platform="test") == 0
    finally:
        browser.close()
        servers.run(bot._served.stop())  # type: ignore[attr-defined]
        servers.run(world.stop())
