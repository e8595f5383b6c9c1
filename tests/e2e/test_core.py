"""The core's own decisions, each pinned by a test that fails when it is removed (mutation testing of bot/core.py):
what a channel's policy sends to Q, who sees what, what is counted. A whole bot, real Redis, the sandbox.
"""

from __future__ import annotations

from bot.channel_policy import ChannelPolicies, ChannelPolicy
from bot.model import Answer, ChatIdentity, IncomingMessage, Notice, NoticeKind
from bot.plugins import PLUGIN_USAGE
from tests.bot.test_qbusiness import DIRECTOR, PRICING, from_source
from tests.e2e.conftest import RunningBot
from tests.e2e.test_chain import AURORA, link

ALICE = ChatIdentity("test", "T1", "U-ALICE")
SLACK_ALICE = ChatIdentity("slack", "T1", "U-ALICE")  # channel policies are per platform (Slack, Teams)


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
