"""The web console in a real headless Chromium: sign in by clicking, ask, see the cited answer, rate it."""

from __future__ import annotations

import shutil
from collections.abc import Iterator

import pytest
from playwright.sync_api import Browser, expect, sync_playwright

from tests.adapters.web.conftest import WebBot

CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = [
    "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
    "--disable-background-networking", "--disable-component-update", "--disable-sync",
]  # fmt: skip
AURORA_URL = "https://intranet.example.com/product/aurora-roadmap-2027"


@pytest.fixture(scope="module")
def chromium() -> Iterator[Browser]:
    """Debian's chromium, driven by Playwright (no `playwright install`: no browser download)."""
    executable = CHROMIUM if shutil.which(CHROMIUM) else shutil.which("chromium")
    if executable is None:
        pytest.fail("the browser tests need Debian's chromium: apt-get install -y chromium")
    with sync_playwright() as driver:
        browser = driver.chromium.launch(executable_path=executable, args=CHROMIUM_ARGS, timeout=30_000)
        yield browser
        browser.close()


def test_sign_in_ask_see_citation_and_rate(web_bot: WebBot, chromium: Browser) -> None:
    context = chromium.new_context()
    context.set_default_timeout(10_000)
    page = context.new_page()
    problems: list[str] = []
    page.on("console", lambda message: problems.append(message.text) if message.type == "error" else None)
    page.on("pageerror", lambda error: problems.append(str(error)))

    page.goto(web_bot.url + "/")
    page.get_by_test_id("sign-in").click()
    page.wait_for_url(lambda url: url.startswith(web_bot.sandbox.idp_url + "/authorize"))
    page.click('button[name="username"][value="alice"]')
    page.wait_for_url(web_bot.url + "/")
    expect(page.get_by_test_id("signed-in-as")).to_have_text("Signed in as alice@example.com")

    page.get_by_test_id("input").fill("What is Project Aurora?")
    page.get_by_test_id("send").click()
    answer = page.get_by_test_id("answer-text")
    expect(answer).to_contain_text("next-generation analytics platform")
    expect(answer.locator("a.cite")).to_have_attribute("href", AURORA_URL)
    source = page.get_by_test_id("source-link")
    expect(source).to_have_text("Project Aurora - 2027 product roadmap")
    expect(source).to_have_attribute("href", AURORA_URL)
    expect(page.get_by_test_id("thinking")).to_have_count(0)

    page.get_by_test_id("feedback-up").click()
    expect(page.get_by_test_id("feedback-thanks")).to_have_text("Thanks for the feedback")

    page.get_by_test_id("new-conversation").click()
    expect(page.get_by_test_id("answer")).to_have_count(0)
    page.get_by_test_id("input").press_sequentially("qstatus")
    page.get_by_test_id("input").press("Enter")
    expect(page.get_by_test_id("notice-text").last).to_contain_text("Linked as alice@example.com")

    page.get_by_test_id("input").fill("qunlink")
    page.get_by_test_id("send").click()
    expect(page.get_by_test_id("welcome-note")).to_contain_text("Unlinked alice@example.com")
    expect(page.get_by_test_id("sign-in")).to_be_visible()
    expect(page.get_by_test_id("sign-out")).to_be_hidden()

    page.get_by_test_id("sign-in").click()  # a fresh session; the IdP asks again
    page.click('button[name="username"][value="bob"]')
    expect(page.get_by_test_id("signed-in-as")).to_have_text("Signed in as bob@example.com")
    page.get_by_test_id("sign-out").click()
    expect(page.get_by_test_id("sign-in")).to_be_visible()
    expect(page.get_by_test_id("signed-in-as")).to_be_hidden()
    assert problems == []
    context.close()


def test_thumbs_down_asks_why_inline_and_sends_the_reason_and_comment(web_bot: WebBot, chromium: Browser) -> None:
    context = chromium.new_context()
    context.set_default_timeout(10_000)
    page = context.new_page()
    problems: list[str] = []
    page.on("pageerror", lambda error: problems.append(str(error)))
    page.goto(web_bot.url + "/")
    page.get_by_test_id("sign-in").click()
    page.click('button[name="username"][value="alice"]')
    expect(page.get_by_test_id("signed-in-as")).to_have_text("Signed in as alice@example.com")
    page.get_by_test_id("input").fill("What is Project Aurora?")
    page.get_by_test_id("send").click()
    expect(page.get_by_test_id("answer-text")).to_contain_text("next-generation analytics platform")

    page.get_by_test_id("feedback-down").click()
    expect(page.get_by_test_id("feedback-up")).to_be_disabled()
    page.get_by_test_id("feedback-cancel").click()  # changed their mind: the buttons are back, nothing sent
    expect(page.get_by_test_id("feedback-why")).to_have_count(0)
    expect(page.get_by_test_id("feedback-up")).to_be_enabled()

    page.get_by_test_id("feedback-down").click()
    page.get_by_test_id("feedback-send").click()  # no reason picked: the browser asks for one first
    assert page.get_by_test_id("feedback-reason").evaluate("select => select.validity.valueMissing")
    expect(page.get_by_test_id("feedback-why")).to_be_visible()
    page.get_by_test_id("feedback-reason").select_option(label="Wrong or missing sources")
    page.get_by_test_id("feedback-comment").fill("The roadmap link\nis outdated.")
    page.get_by_test_id("feedback-send").click()
    expect(page.get_by_test_id("feedback-thanks")).to_have_text("Thanks for the feedback")
    [record] = web_bot.sandbox.q.stats.feedback
    assert (record.rating, record.reason, record.comment) == (
        "NOT_USEFUL", "INCORRECT_OR_MISSING_SOURCES", "The roadmap link is outdated."
    )
    assert problems == []
    context.close()


def test_markdown_is_rendered_without_letting_html_or_scripts_through(web_bot: WebBot, chromium: Browser) -> None:
    page = chromium.new_page()
    page.goto(web_bot.url + "/")
    rendered = page.evaluate(
        """() => qbotMarkdown(
            "**Bold** and *it* and _also_ snake_case_name `<code>` <img src=x onerror=alert(1)>\\n"
            + "[docs](https://example.com/a?b=1&c=2) [evil](javascript:alert(1)) [bad](javascript:void0)"
            + " see [1] and [2]\\n\\n- one\\n- two",
            [{number: 1, title: "One", url: "https://example.com/one"}, {number: 2, title: "Two", url: null}])"""
    )
    assert "<strong>Bold</strong>" in rendered and "<em>it</em>" in rendered and "<em>also</em>" in rendered
    assert "snake_case_name" in rendered
    assert "<code>&lt;code&gt;</code>" in rendered
    assert "&lt;img src=x onerror=alert(1)&gt;" in rendered and "<img" not in rendered
    assert '<a href="https://example.com/a?b=1&amp;c=2" target="_blank" rel="noopener noreferrer">docs</a>' in rendered
    assert 'href="javascript' not in rendered and "[evil](javascript:alert(1))" in rendered  # left as text
    assert "javascript:void0" not in rendered and " bad " in rendered  # the label, without the link
    assert 'class="cite" title="One">[1]</a>' in rendered and '<span class="cite">[2]</span>' in rendered
    assert "<br>" in rendered and "<ul><li>one</li><li>two</li></ul>" in rendered
    # The page's Trusted Types policy makes an HTML sink throw instead of parsing.
    assert page.evaluate(
        "() => { try { document.body.innerHTML = '<b>x</b>'; return 'parsed'; } catch (e) { return e.name; } }"
    ) == "TypeError"
    page.close()
