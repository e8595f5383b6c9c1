"""The mrkdwn dialect: Q's markdown as Slack mrkdwn, and a user's Slack markup as plain text."""

from __future__ import annotations

import pytest

from adapters.slack.mrkdwn import commands_as_slash, from_slack_text, to_mrkdwn


@pytest.mark.parametrize(
    ("markdown", "mrkdwn"),
    [
        ("**bold** and __also bold__", "*bold* and *also bold*"),
        ("*italic* and _italic_", "_italic_ and _italic_"),
        ("***both***", "*_both_*"),
        ("~~gone~~", "~gone~"),
        ("see [the docs](https://example.com/a_b?x=1&y=2)", "see <https://example.com/a_b?x=1&y=2|the docs>"),
        ("[**bold link**](https://e.com)", "<https://e.com|*bold link*>"),
        ("<https://e.com/x>", "<https://e.com/x|https://e.com/x>"),
        ("[evil](javascript:alert(1))", "evil)"),
        ("[data](data:text/html,x) [mail](mailto:a@b.c) <mailto:a@b.c>", "data mail mailto:a@b.c"),
        ("[creds](https://u:p@e.com/x) [rel](/wiki/x)", "creds rel"),
        ("# Title\n## Sub *title*", "*Title*\n*Sub _title_*"),
        ("- one\n- two\n  - nested\n* star", "• one\n• two\n    ◦ nested\n• star"),
        ("1. first\n2) second", "1. first\n2. second"),
        ("> quoted **text**", ">quoted *text*"),
        ("`a**b**c` stays", "`a**b**c` stays"),
        ("```python\nx = a < b && c\n**not bold**\n```", "```\nx = a &lt; b &amp;&amp; c\n**not bold**\n```"),
        ("```\nunclosed", "```\nunclosed\n```"),
        ("a < b & c > d", "a &lt; b &amp; c &gt; d"),
        ("<!channel> ping <@U123>", "&lt;!channel&gt; ping &lt;@U123&gt;"),
        ("Aurora launches in Q3 [1][2].", "Aurora launches in Q3 [1][2]."),
        ("snake_case_name stays", "snake_case_name stays"),
        ("---", "──────────"),
    ],
)
def test_markdown_becomes_mrkdwn(markdown: str, mrkdwn: str) -> None:
    assert to_mrkdwn(markdown) == mrkdwn


def test_user_text_loses_the_bot_mention_and_slack_markup() -> None:
    text = "<@UQBOT> compare <https://a.example/x|the plan> with <#C1|general>, cc <@U2|bob> &lt;3 &amp; <!here>"
    assert from_slack_text(text, "UQBOT") == "compare the plan (https://a.example/x) with #general, cc @bob <3 & @here"
    assert from_slack_text("<mailto:a@b.c|a@b.c> <https://x.y>", None) == "a@b.c https://x.y"


def test_core_command_words_become_slash_commands() -> None:
    assert commands_as_slash("Run qlink to sign in; /qlink works; qlinks no") == (
        "Run /qlink to sign in; /qlink works; qlinks no"
    )
