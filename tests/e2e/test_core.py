"""The core's own decisions, each pinned by a test that fails when it is removed (mutation testing of bot/core.py):
what a channel's policy sends to Q, who sees what, what is counted. A whole bot, real Redis, the sandbox.
"""

from __future__ import annotations

import hashlib
import time
from typing import Any

from bot.attachments import DownloadBudget, FileRoom
from bot.channel_policy import KEY, ChannelPolicies, ChannelPolicy, channel_field
from bot.commands import CONSOLE_HELP_TEXT, HELP_TEXT, Command
from bot.core import FEEDBACK_THANKS, SIGN_IN_IS_THE_LINK, Core
from bot.errors import NotLinked, ProfileEmailUnknown
from bot.model import (
    Answer,
    ChatFile,
    ChatIdentity,
    FailedAttachment,
    IncomingMessage,
    Notice,
    NoticeKind,
    OfferedFile,
    PlacedReply,
    ProfileEmail,
    SharedAnswer,
    Usefulness,
)
from bot.plugins import PLUGIN_USAGE
from bot.turn_lock import TurnLock
from tests.bot.test_plugins import alices_values
from tests.bot.test_qbusiness import DIRECTOR, PRICING, from_source
from tests.e2e.conftest import RunningBot
from tests.e2e.test_chain import AURORA, link
from tests.e2e.test_turn import ZEPHYR, PlatformTurn, message

ALICE = ChatIdentity("test", "T1", "U-ALICE")
SLACK_ALICE = ChatIdentity("slack", "T1", "U-ALICE")  # channel policies are per platform (Slack, Teams)
SLACK_BOB = ChatIdentity("slack", "T1", "U-BOB")
TICKET = "Please open a ticket: my monitor flickers"  # Q picks the Jira plugin itself
GONE = "This answer was already shared, or is more than a day old: ask again to share it."


def in_channel(bot: RunningBot, text: str, channel: str, message_id: str) -> object:
    asked = IncomingMessage(SLACK_ALICE, text, channel=channel, thread="t1", message_id=message_id, shared=True)
    return bot.run(bot.core.handle(asked))


def test_a_channels_filter_and_chat_mode_reach_q(bot: RunningBot) -> None:
    link(bot, SLACK_ALICE, "alice")
    policies = ChannelPolicies(bot.graph.redis)
    bot.run(policies.set("slack", "C0WIKI", ChannelPolicy(reply="thread", attribute_filter=from_source("confluence"))))
    bot.run(policies.set("slack", "C0DRAFTS", ChannelPolicy(reply="thread", chat_mode="CREATOR_MODE")))

    anywhere = in_channel(bot, DIRECTOR, "C0OPEN", "m1")
    assert isinstance(anywhere, Answer) and len(anywhere.sources) > 1
    wiki = in_channel(bot, DIRECTOR, "C0WIKI", "m2")  # only the channel's source is searched
    assert isinstance(wiki, Answer) and [s.url for s in wiki.sources] == [PRICING]
    drafts = in_channel(bot, AURORA, "C0DRAFTS", "m3")  # creator mode: no index document is cited
    assert isinstance(drafts, Answer) and drafts.text and drafts.sources == ()


def test_a_channel_whose_policy_cannot_be_read_is_not_answered_and_says_why_in_the_thread(bot: RunningBot) -> None:
    """Its restriction must not silently fall away: nobody is answered there, and everyone sees why."""
    link(bot, SLACK_ALICE, "alice")
    bot.run(bot.graph.redis.hset(KEY, channel_field("slack", "C0BROKEN"), "{not json"))
    refused = in_channel(bot, DIRECTOR, "C0BROKEN", "m1")
    assert isinstance(refused, Notice) and refused.kind is NoticeKind.ERROR and not refused.private
    assert refused.text == ("This channel's qbot settings can't be read, so I won't answer here. Please tell your "
                            "administrator (qbot doctor shows the problem).")
    assert bot.sandbox.q.stats.operations["ChatSync"] == 0


def test_qplugin_without_a_request_is_told_how_privately(bot: RunningBot) -> None:
    link(bot, ALICE, "alice")
    usage = bot.ask(ALICE, "qplugin jira")
    assert isinstance(usage, Notice) and (usage.kind, usage.text, usage.private) == (
        NoticeKind.INFO, PLUGIN_USAGE, True)
    assert bot.sandbox.q.stats.operations["ChatSync"] == 0


def test_a_question_q_answers_with_an_action_is_kept_for_its_asker_without_qplugin(bot: RunningBot) -> None:
    """Q may pick a plugin itself (a question asking for a ticket): the review is kept and private all the same."""
    link(bot, ALICE, "alice")
    answer = bot.ask(ALICE, TICKET)
    assert isinstance(answer, Answer) and answer.action_review is not None and answer.private
    review = answer.action_review
    assert review.review_id and bot.run(bot.core.action_review(ALICE, review.review_id)) == review


def test_every_refused_share_is_said_privately_in_words_that_say_why(bot: RunningBot) -> None:
    link(bot, SLACK_ALICE, "alice")
    answer = in_channel(bot, AURORA, "C0OPEN", "m1")
    assert isinstance(answer, Answer) and answer.private
    ids = (answer.conversation_id, answer.message_id)
    by_bob = bot.run(bot.core.share(SLACK_BOB, *ids))
    assert by_bob == Notice(NoticeKind.REFUSED, "Only the person who asked can share this answer.", private=True)
    assert isinstance(bot.run(bot.core.share(SLACK_ALICE, *ids)), SharedAnswer)
    assert bot.run(bot.core.share(SLACK_ALICE, *ids)) == Notice(NoticeKind.INFO, GONE, private=True)
    assert bot.run(bot.core.share(SLACK_BOB, *ids)) == Notice(NoticeKind.INFO, GONE, private=True)
    never_kept = bot.run(bot.core.share(SLACK_ALICE, answer.conversation_id, "no-such-message"))
    assert never_kept == Notice(NoticeKind.INFO, GONE, private=True)


def test_feedback_is_thanked_or_refused_privately_and_only_what_q_took_is_counted(bot: RunningBot) -> None:
    link(bot, ALICE, "alice")
    answer = bot.ask(ALICE, AURORA)
    assert isinstance(answer, Answer)

    def rate(reason: str | None = None) -> Notice:
        return bot.run(bot.core.feedback(
            ALICE, answer.conversation_id, answer.message_id, Usefulness.USEFUL, reason=reason))

    assert rate("HELPFUL") == Notice(NoticeKind.INFO, FEEDBACK_THANKS, private=True)  # a reason a 👍 may give
    assert bot.sandbox.q.stats.feedback[-1].reason == "HELPFUL"
    bot.run(bot.graph.broker.forget(ALICE))  # the rating needs fresh credentials...
    bot.sandbox.sts.faults.outage = "ServiceUnavailable"  # ... and AWS is not issuing any
    outage = rate()
    assert outage.kind is NoticeKind.ERROR and outage.private and outage.details["request_id"]
    assert outage.text == ("AWS is not issuing credentials right now. Please try again in a minute. "
                           f"(request id {outage.details['request_id']})")
    bot.sandbox.sts.faults.outage = None
    bot.sandbox.idp.revoke_user("alice")  # the sign-in ends at the IdP: the link is gone
    unlinked = rate()
    assert unlinked.kind is NoticeKind.NOT_LINKED and unlinked.private and "qlink" in unlinked.text
    assert len(bot.sandbox.q.stats.feedback) == 1
    labels = {"platform": "test", "usefulness": "USEFUL", "reason": "HELPFUL"}
    assert bot.graph.metrics.registry.get_sample_value("qbot_feedback_total", labels) == 1


def test_qlink_where_signing_in_is_the_link_hands_out_no_link(bot: RunningBot) -> None:
    """The web console: a link could be forwarded to someone else's browser, and signing in is the link there."""
    console = PlatformTurn(bot.sandbox, email="alice@example.com", signs_in_itself=True)
    before = bot.run(bot.core.handle(message("qlink"), console))
    assert before == Notice(NoticeKind.NOT_LINKED, SIGN_IN_IS_THE_LINK, private=True)
    link(bot, ALICE, "alice")
    after = bot.run(bot.core.handle(message("qlink", message_id="m2"), console))
    assert after == Notice(NoticeKind.INFO, "You're already signed in as alice@example.com; that is your link. "
                           "To use another account, sign out and sign in again.", private=True)
    assert bot.run(bot.graph.redis.keys("qbot:link:*")) == []
    assert bot.run(bot.core.handle(message("help", message_id="m3"), console)).text == CONSOLE_HELP_TEXT
    assert bot.run(bot.core.handle(message("help", message_id="m4"), PlatformTurn(bot.sandbox))).text == HELP_TEXT


class SilentProfileTurn(PlatformTurn):
    """A platform that gives no email and no reason why."""

    async def profile_email(self) -> ProfileEmail:
        return ProfileEmail(None, "")


def test_qlink_without_a_profile_email_says_so_privately_with_the_platforms_reason(bot: RunningBot) -> None:
    hidden = bot.run(bot.core.handle(message("qlink"), PlatformTurn(bot.sandbox)))
    assert hidden == Notice(
        NoticeKind.ERROR, f"{ProfileEmailUnknown.user_message} (the profile hides its email.)", private=True)
    silent = bot.run(bot.core.handle(message("qlink", message_id="m2"), SilentProfileTurn(bot.sandbox)))
    assert silent == Notice(NoticeKind.ERROR, ProfileEmailUnknown.user_message, private=True)
    told = bot.run(bot.core.handle(message("qlink", message_id="m3", profile_email="alice@example.com"),
                                   SilentProfileTurn(bot.sandbox)))  # an email the platform sent with the message
    assert isinstance(told, Notice) and told.kind is NoticeKind.LINK and told.url
    no_platform = bot.run(bot.core.run_command(Command.LINK, message("qlink", message_id="m4")))  # no turn at all
    shows_none = f"{ProfileEmailUnknown.user_message} (the chat profile shows no email address.)"
    assert no_platform == Notice(NoticeKind.ERROR, shows_none, private=True)


def test_a_question_before_any_link_is_told_to_link_and_nothing_is_kept(bot: RunningBot) -> None:
    """Only an expired SAML sign-in gets a one-click link with the question kept: never a user who never linked."""
    reply = bot.ask(ALICE, AURORA, profile_email="alice@example.com")
    assert reply == Notice(NoticeKind.NOT_LINKED, NotLinked.user_message, private=True)
    assert bot.run(bot.core.take_pending_question(ALICE)) is None
    assert bot.run(bot.graph.redis.keys("qbot:link:*")) == []


def test_qnew_says_the_next_question_starts_afresh(bot: RunningBot) -> None:
    link(bot, ALICE, "alice")
    first = bot.ask(ALICE, AURORA)
    assert bot.ask(ALICE, "qnew") == Notice(NoticeKind.INFO, "Started a new conversation. Ask away.")
    fresh = bot.ask(ALICE, AURORA)
    assert isinstance(first, Answer) and isinstance(fresh, Answer) and fresh.conversation_id != first.conversation_id


def test_the_answer_latency_metric_records_each_answers_own_duration(bot: RunningBot) -> None:
    """One observation per answer, never more than the time the whole call took (a bound, not a speed)."""
    link(bot, ALICE, "alice")
    registry = bot.graph.metrics.registry
    started = time.perf_counter()
    assert isinstance(bot.ask(ALICE, AURORA), Answer)
    took = time.perf_counter() - started
    assert registry.get_sample_value("qbot_answer_latency_seconds_count") == 1
    assert 0 < registry.get_sample_value("qbot_answer_latency_seconds_sum") <= took


def test_a_run_action_counts_as_answered_and_one_whose_link_is_gone_asks_to_link(bot: RunningBot) -> None:
    link(bot, ALICE, "alice")
    registry = bot.graph.metrics.registry
    first = bot.ask(ALICE, TICKET, thread="t1")
    second = bot.ask(ALICE, TICKET, thread="t2")
    assert isinstance(first, Answer) and first.action_review and isinstance(second, Answer) and second.action_review

    placed = bot.run(bot.core.submit_action(ALICE, first.action_review.review_id, alices_values(first.action_review)))
    assert isinstance(placed, PlacedReply) and isinstance(placed.reply, Answer)
    answered = {"platform": "test", "outcome": "answered"}
    assert registry.get_sample_value("qbot_messages_total", answered) == 3  # two questions, one action

    bot.run(bot.core.accounts.vault.delete(ALICE))  # the link (and its credentials) went meanwhile
    gone = bot.run(bot.core.submit_action(ALICE, second.action_review.review_id, alices_values(second.action_review)))
    assert gone == Notice(NoticeKind.NOT_LINKED, NotLinked.user_message, private=True)
    assert len(bot.sandbox.q.plugin_actions) == 1
    assert registry.get_sample_value("qbot_messages_total", answered) == 3


def test_a_delivery_id_is_one_platforms_own(bot: RunningBot) -> None:
    """Slack's and Teams' ids are separate namespaces: the same id from two platforms is two messages."""
    teams_alice = ChatIdentity("teams", "T1", "U-ALICE")
    for identity in (ALICE, teams_alice):
        link(bot, identity, "alice")
    for identity in (ALICE, teams_alice):
        asked = IncomingMessage(identity, AURORA, channel="c1", thread="t1", message_id="m1", delivery_ids=("Ev1",))
        assert isinstance(bot.run(bot.core.handle(asked)), Answer)
    assert sum(bot.sandbox.q.stats.chat_calls.values()) == 2


class BudgetWatchingTurn(PlatformTurn):
    """A platform that notes, as each file is read, how many bytes the download budget holds for the asker."""

    held: list[int]
    budget: DownloadBudget

    async def download(self, file: OfferedFile, room: FileRoom) -> ChatFile | FailedAttachment:
        self.held.append(self.budget.held_by(ALICE.key))
        return await super().download(file, room)


def test_files_are_held_under_the_askers_own_share_of_the_download_budget(bot: RunningBot) -> None:
    link(bot, ALICE, "alice")
    turn = BudgetWatchingTurn(bot.sandbox, files={"0": b"a" * 10, "1": b"b" * 20})
    turn.held, turn.budget = [], bot.core.downloads
    offered = (OfferedFile("a.txt", 10, None, "0"), OfferedFile("b.txt", 20, None, "1"))
    reply = bot.run(bot.core.handle(message("Summarize these", offered=offered), turn))
    assert isinstance(reply, Answer)
    assert turn.held == [30, 30]  # both files' room, reserved before either is read, is the asker's
    assert bot.core.downloads.held_by(ALICE.key) == 0  # all given back when the turn ended


class LockWatchingTurn(PlatformTurn):
    """A platform that notes, as a file is read (inside the turn), what holds the asker's thread in Redis."""

    holders: list[str | None]
    redis: Any

    async def download(self, file: OfferedFile, room: FileRoom) -> ChatFile | FailedAttachment:
        held = await self.redis.get(TurnLock.key(ALICE.key, "c1", "t1"))
        self.holders.append(held.decode() if held else None)
        return await super().download(file, room)


def test_the_turn_is_the_askers_thread_held_in_the_messages_own_name(bot: RunningBot) -> None:
    """Held under the message's name, a turn run again (its first worker died) takes over at once."""
    link(bot, ALICE, "alice")
    turn = LockWatchingTurn(bot.sandbox, files={"0": ZEPHYR})
    turn.holders, turn.redis = [], bot.graph.redis
    asked = message("Summarize this", offered=(OfferedFile("z.txt", len(ZEPHYR), None, "0"),))
    assert isinstance(bot.run(bot.core.handle(asked, turn)), Answer)
    named = hashlib.sha256(Core._client_token(asked).encode()).hexdigest()[:32]
    assert turn.holders == [named]
    assert bot.run(bot.graph.redis.exists(TurnLock.key(ALICE.key, "c1", "t1"))) == 0  # let go when it ended


def test_an_action_proposed_where_answers_are_private_runs_privately_back_to_where_it_was_asked(
    bot: RunningBot,
) -> None:
    link(bot, ALICE, "alice")
    turn = PlatformTurn(bot.sandbox)
    proposed = bot.run(bot.core.handle(message(TICKET, shared=True), turn))  # a channel, private by default
    assert isinstance(proposed, Answer) and proposed.action_review is not None and proposed.private
    review = proposed.action_review
    placed = bot.run(bot.core.submit_action(ALICE, review.review_id, alices_values(review)))
    assert isinstance(placed, PlacedReply) and isinstance(placed.reply, Answer) and placed.reply.private
    assert (placed.channel, placed.thread, placed.shared, placed.address) == ("c1", "t1", True, turn.address())


def test_qplugin_asks_the_named_plugin_and_keeps_the_places_privacy(bot: RunningBot) -> None:
    link(bot, ALICE, "alice")
    asked = message("qplugin jira my monitor flickers", shared=True)  # no ticket words: only the name picks Jira
    proposed = bot.run(bot.core.handle(asked, PlatformTurn(bot.sandbox)))
    assert isinstance(proposed, Answer) and proposed.action_review is not None
    review = proposed.action_review
    assert review.fields[0].value == "my monitor flickers"
    placed = bot.run(bot.core.submit_action(ALICE, review.review_id, alices_values(review)))
    assert isinstance(placed, PlacedReply) and placed.reply.private  # the channel's answers are private


def test_an_answer_says_which_of_its_files_were_not_read(bot: RunningBot) -> None:
    link(bot, ALICE, "alice")
    offered = (OfferedFile("z.txt", len(ZEPHYR), None, "0"),
               OfferedFile("chan.docx", None, "not read: in a channel", "1"))
    reply = bot.run(bot.core.handle(message("What is Zephyr's codename?", offered=offered),
                                    PlatformTurn(bot.sandbox, files={"0": ZEPHYR})))
    assert isinstance(reply, Answer) and "BLUEBIRD" in reply.text
    assert reply.failed_attachments == (FailedAttachment("chan.docx", "not read: in a channel"),)


def test_credentials_q_rejects_mid_thread_are_replaced_and_the_thread_goes_on(bot: RunningBot) -> None:
    link(bot, ALICE, "alice")
    first = bot.ask(ALICE, AURORA, thread="t1")
    cached = bot.run(bot.core.accounts.vault.load_credentials(ALICE))
    assert isinstance(first, Answer) and cached is not None
    bot.sandbox.credentials.revoke(cached.access_key_id)  # revoked at AWS, still cached by the bot
    follow_up = bot.ask(ALICE, "When does it launch?", thread="t1")
    assert isinstance(follow_up, Answer) and follow_up.conversation_id == first.conversation_id
    assert bot.sandbox.sts.stats.calls["alice@example.com"] == 2
