"""The core's own decisions, each pinned by a test that fails when it is removed (mutation testing of bot/core.py):
what a channel's policy sends to Q, who sees what, what is counted. A whole bot, real Redis, the sandbox.
"""

from __future__ import annotations

from bot.channel_policy import KEY, ChannelPolicies, ChannelPolicy, channel_field
from bot.model import Answer, ChatIdentity, IncomingMessage, Notice, NoticeKind, SharedAnswer
from bot.plugins import PLUGIN_USAGE
from tests.bot.test_qbusiness import DIRECTOR, PRICING, from_source
from tests.e2e.conftest import RunningBot
from tests.e2e.test_chain import AURORA, link

ALICE = ChatIdentity("test", "T1", "U-ALICE")
SLACK_ALICE = ChatIdentity("slack", "T1", "U-ALICE")  # channel policies are per platform (Slack, Teams)
SLACK_BOB = ChatIdentity("slack", "T1", "U-BOB")
GONE = "This answer was already shared, or is more than a day old: ask again to share it."


def in_channel(bot: RunningBot, text: str, channel: str, message_id: str) -> object:
    message = IncomingMessage(SLACK_ALICE, text, channel=channel, thread="t1", message_id=message_id, shared=True)
    return bot.run(bot.core.handle(message))


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
    answer = bot.ask(ALICE, "Please open a ticket: my monitor flickers")
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
