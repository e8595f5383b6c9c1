"""The web console in a real headless Chromium: sign in by clicking, ask, see the cited answer, rate it; the first
screen, scrolling, a phone in dark mode, waiting and stopping, retrying, and the history kept by Q.

Screenshots of each screen are kept in .artifacts/screenshots/ (not committed) for a person to look at."""

from __future__ import annotations

import re
import time
from collections.abc import Callable
from pathlib import Path
from typing import cast

from playwright.sync_api import Browser, Page, expect

from sandbox.world import APP_ID
from tests.adapters.web.conftest import WebBot, signed_in_page

AURORA_URL = "https://intranet.example.com/product/aurora-roadmap-2027"


SCREENSHOTS = Path(__file__).resolve().parents[3] / ".artifacts" / "screenshots"
PHONE = {"width": 390, "height": 844}


def _shot(page: Page, name: str) -> None:
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=str(SCREENSHOTS / f"{name}.png"))


def _newest_answer_in_view(page: Page) -> dict[str, float]:
    """Where the newest answer's buttons are against the visible part of the message list and the question box."""
    return cast(dict[str, float], page.evaluate(
        """() => {
            const all = document.querySelectorAll('[data-testid=answer-actions]');
            const buttons = all[all.length - 1].getBoundingClientRect();
            const list = document.getElementById('scroller').getBoundingClientRect();
            const box = document.getElementById('composer').getBoundingClientRect();
            return {top: buttons.top, bottom: buttons.bottom, list_top: list.top, list_bottom: list.bottom,
                    box_top: box.top, window: window.innerHeight};
        }"""
    ))


def _assert_newest_answer_visible(page: Page) -> None:
    place = _newest_answer_in_view(page)
    assert place["list_top"] <= place["top"] and place["bottom"] <= place["list_bottom"], place
    assert place["bottom"] <= place["box_top"] and place["box_top"] < place["window"], place  # not behind the box


def test_first_screen_scrolling_icons_and_right_to_left(web_bot: WebBot, chromium: Browser) -> None:
    page, problems = signed_in_page(chromium, web_bot, viewport={"width": 1280, "height": 720})
    expect(page.get_by_test_id("greeting")).to_contain_text("Alice")
    expect(page.get_by_test_id("example")).to_have_count(3)
    expect(page.get_by_test_id("intro")).to_contain_text("Your conversations are kept by Amazon Q")
    _shot(page, "desktop-first-screen")

    page.get_by_test_id("example").first.click()  # an example is asked at once
    expect(page.get_by_test_id("answer")).to_have_count(1)
    expect(page.get_by_test_id("intro")).to_be_hidden()
    for n, question in enumerate(["What is Project Aurora?", "When does it launch?", "Who leads it?"] * 2, 2):
        page.get_by_test_id("input").fill(question)
        page.get_by_test_id("input").press("Enter")
        expect(page.get_by_test_id("answer")).to_have_count(n)
        _assert_newest_answer_visible(page)
    scroller = page.get_by_test_id("scroller")
    assert scroller.evaluate("s => s.scrollHeight > s.clientHeight")  # the list did overflow: scrolling was needed
    _shot(page, "desktop-scrolled-to-newest-answer")

    # Icons are inline SVG (no emoji font needed), every message says which way its text runs.
    up = page.get_by_test_id("feedback-up").last
    expect(up.locator("svg")).to_have_count(1)
    assert up.get_attribute("aria-label") == "Helpful" and "👍" not in (up.text_content() or "")
    page.get_by_test_id("input").fill("מה זה פרויקט אורורה?")
    page.get_by_test_id("send").click()
    asked = page.get_by_test_id("question").last.locator("p")
    assert asked.get_attribute("dir") == "auto"
    assert asked.evaluate("p => getComputedStyle(p).direction") == "rtl"
    assert page.get_by_test_id("answer-text").last.get_attribute("dir") == "auto"
    assert page.get_by_test_id("input").get_attribute("dir") == "auto"
    expect(page.get_by_test_id("answer").or_(page.get_by_test_id("notice"))).to_have_count(8)
    assert problems == []
    page.context.close()


def test_a_phone_sized_screen_in_dark_mode(web_bot: WebBot, chromium: Browser) -> None:
    page, problems = signed_in_page(
        chromium, web_bot, viewport=PHONE, color_scheme="dark", has_touch=True, reduced_motion="reduce"
    )
    header = page.get_by_test_id("header")
    fits = header.evaluate("h => ({overflow: h.scrollWidth - h.clientWidth, height: h.offsetHeight})")
    assert fits["overflow"] <= 0 and fits["height"] < 64, fits  # one row, nothing pushed off screen
    assert page.evaluate("() => document.documentElement.scrollWidth") <= PHONE["width"]
    background = page.evaluate("() => getComputedStyle(document.body).backgroundColor")
    red, green, blue = (int(c) for c in background[background.index("(") + 1:-1].split(",")[:3])
    assert red + green + blue < 150, background  # the system's dark scheme is followed
    expect(page.get_by_test_id("history")).not_to_be_in_viewport()  # a drawer behind the menu button
    _shot(page, "phone-dark-first-screen")

    for n in (1, 2, 3):
        page.get_by_test_id("input").fill("What is Project Aurora?")
        page.get_by_test_id("send").click()
        expect(page.get_by_test_id("answer")).to_have_count(n)
        _assert_newest_answer_visible(page)
    _shot(page, "phone-dark-answers")
    page.get_by_test_id("toggle-history").click()
    expect(page.get_by_test_id("history")).to_be_in_viewport()
    expect(page.get_by_test_id("conversation")).to_have_text(["What is Project Aurora?"])
    _shot(page, "phone-dark-history")
    page.get_by_test_id("conversation").click()  # opening one closes the drawer
    expect(page.get_by_test_id("history")).not_to_be_in_viewport()
    expect(page.get_by_test_id("answer")).to_have_count(3)
    _assert_newest_answer_visible(page)
    assert problems == []
    page.context.close()


def test_markdown_answers_copy_and_an_over_long_question(web_bot: WebBot, chromium: Browser) -> None:
    page, problems = signed_in_page(chromium, web_bot)
    page.context.grant_permissions(["clipboard-read", "clipboard-write"], origin=web_bot.url)
    rendered = page.evaluate(
        """() => qbotMarkdown("| Plan | Days |\\n|:---|---:|\\n| Basic | **20** |\\n| Senior | 25 \\\\| more |\\n\\n"
            + "> Quoted *policy*\\n> second line\\n\\n```python\\nprint('<hi>')\\n```", [])"""
    )
    assert '<th class="align-left">' not in rendered and '<th class="align-right">Days</th>' in rendered
    assert "<td>Basic</td>" in rendered and "<strong>20</strong>" in rendered and "25 | more" in rendered
    assert "<blockquote><p>Quoted <em>policy</em><br>second line</p></blockquote>" in rendered
    assert "<pre><code>print('&lt;hi&gt;')</code></pre>" in rendered and 'data-testid="copy-code"' in rendered

    # Q's answers carry markdown the sandbox does not write: this answer is served to the page as Q could send it.
    answer = {
        "type": "answer",
        "text": "Use this:\n\n```\nqbot doctor --env-file .env\n```\n\n| a | b |\n|---|---|\n| 1 | 2 |",
        "sources": [], "conversation_id": "c" * 36, "message_id": "m" * 36, "failed_attachments": [],
    }
    page.route("**/web/api/ask", lambda route: route.fulfill(json=answer))
    page.get_by_test_id("input").fill("How do I check my configuration?")
    page.get_by_test_id("send").click()
    expect(page.locator("[data-testid=answer-text] table td")).to_have_text(["1", "2"])
    page.get_by_test_id("copy-code").click()
    expect(page.get_by_test_id("copy-code")).to_contain_text("Copied")
    assert page.evaluate("() => navigator.clipboard.readText()") == "qbot doctor --env-file .env"
    page.get_by_test_id("copy-answer").click()
    expect(page.get_by_test_id("copy-answer")).to_contain_text("Copied")
    assert page.evaluate("() => navigator.clipboard.readText()") == answer["text"]
    page.unroute("**/web/api/ask")

    # A 20,000-character paste is kept whole, and the page says what the limit is instead of cutting it.
    page.get_by_test_id("input").fill("x" * 20_000)
    assert page.get_by_test_id("input").evaluate("i => i.value.length") == 20_000
    expect(page.get_by_test_id("input-note")).to_have_text(
        "Your message is 20,000 characters; the limit is 8,000. Shorten it by 12,000 characters to send it."
    )
    expect(page.get_by_test_id("send")).to_be_disabled()
    page.get_by_test_id("input").press("Enter")
    expect(page.get_by_test_id("question")).to_have_count(1)  # only the earlier question: nothing was sent
    _shot(page, "desktop-over-long-question")
    page.get_by_test_id("input").fill("x" * 8_000)
    expect(page.get_by_test_id("send")).to_be_enabled()
    assert problems == []
    page.context.close()


def test_waiting_can_be_stopped_and_failures_retried(web_bot: WebBot, chromium: Browser) -> None:
    page, problems = signed_in_page(chromium, web_bot)
    q = web_bot.sandbox.q
    q.faults.held.add("alice@example.com")  # a slow answer: Q holds it until the test lets go
    page.get_by_test_id("input").fill("What is Project Aurora?")
    page.get_by_test_id("send").click()
    thinking = page.get_by_test_id("thinking")
    expect(thinking.locator(".dots i")).to_have_count(3)
    expect(page.get_by_test_id("elapsed")).to_have_text(re.compile(r"^[1-9][0-9]* s$"))  # the clock runs
    _shot(page, "desktop-waiting")
    page.get_by_test_id("stop").click()
    expect(thinking).to_have_count(0)
    expect(page.get_by_test_id("notice-text")).to_have_text("Stopped. The answer, if it comes, will not be shown.")
    expect(page.get_by_test_id("send")).to_be_enabled()
    q.faults.held.clear()
    _wait_until(lambda: q.stats.chat_calls["alice@example.com"] == 1 and q.stats.in_flight == 0)
    page.get_by_test_id("retry").click()  # the same question again: Q hands back the answer it finished
    expect(page.get_by_test_id("answer-text")).to_contain_text("next-generation analytics platform")
    expect(page.get_by_test_id("answer")).to_have_count(1)  # the stopped request's answer never showed
    expect(page.get_by_test_id("notice")).to_have_count(0)

    q.faults.internal_error_next = 100  # Q is down: the core's error, with a way to try again
    page.get_by_test_id("input").fill("When does it launch?")
    page.get_by_test_id("send").click()
    expect(page.get_by_test_id("notice-text")).to_contain_text("Amazon Q is not answering right now")
    q.faults.internal_error_next = 0
    page.get_by_test_id("retry").click()
    expect(page.get_by_test_id("answer")).to_have_count(2)

    # A proxy in front of qbot answers 502 with a page, not JSON: a readable message, and Retry.
    page.route("**/web/api/ask", lambda route: route.fulfill(status=502, body="<h1>Bad gateway</h1>",
                                                             content_type="text/html"), times=1)
    page.get_by_test_id("input").fill("What is Project Aurora?")
    page.get_by_test_id("send").click()
    notice = page.get_by_test_id("notice-text")
    expect(notice).to_have_text(
        "qbot can't be reached right now (the server in front of it answered 502). Retry in a moment."
    )
    _shot(page, "desktop-retry")
    page.get_by_test_id("retry").click()
    expect(page.get_by_test_id("answer")).to_have_count(3)
    expect(page.get_by_test_id("notice")).to_have_count(0)

    # The network is gone altogether (qbot's API unreachable): the conversation stays on screen, with Retry.
    page.route("**/web/api/**", lambda route: route.abort())
    page.get_by_test_id("input").fill("When does it launch?")
    page.get_by_test_id("send").click()
    expect(notice).to_have_text("Could not reach qbot. Check your connection, then retry.")
    expect(page.get_by_test_id("answer")).to_have_count(3)
    expect(page.get_by_test_id("welcome")).to_be_hidden()
    page.unroute("**/web/api/**")
    page.get_by_test_id("retry").click()
    expect(page.get_by_test_id("answer")).to_have_count(4)
    assert set(problems) == {
        "Failed to load resource: the server responded with a status of 502 (Bad Gateway)",
        "Failed to load resource: net::ERR_FAILED",
    }
    page.context.close()


def test_history_comes_from_q_on_every_device(web_bot: WebBot, chromium: Browser) -> None:
    laptop, problems = signed_in_page(chromium, web_bot)
    expect(laptop.get_by_test_id("history-note")).to_have_text("No conversations yet.")
    laptop.get_by_test_id("input").fill("What is Project Aurora?")
    laptop.get_by_test_id("send").click()
    expect(laptop.get_by_test_id("conversation")).to_have_text(["What is Project Aurora?"])
    expect(laptop.get_by_test_id("conversation-group")).to_have_text(["Today"])
    expect(laptop.locator(".conversation-row.active")).to_have_count(1)

    phone, phone_problems = signed_in_page(chromium, web_bot, viewport=PHONE)  # another device, another session
    phone.get_by_test_id("toggle-history").click()
    phone.get_by_test_id("conversation").click()
    expect(phone.get_by_test_id("question")).to_have_text(["What is Project Aurora?"])
    expect(phone.get_by_test_id("answer-text")).to_contain_text("next-generation analytics platform")
    phone.get_by_test_id("input").fill("When does it launch?")  # continues the same Q conversation
    phone.get_by_test_id("send").click()
    expect(phone.get_by_test_id("answer")).to_have_count(2)
    phone.get_by_test_id("feedback-up").first.click()  # an answer from before this session can be rated
    expect(phone.get_by_test_id("feedback-thanks")).to_have_text("Thanks for the feedback")
    _shot(phone, "phone-opened-from-history")

    laptop.reload()  # a reload opens the same conversation again, now as Q has it: two turns long
    expect(laptop.get_by_test_id("question")).to_have_text(["What is Project Aurora?", "When does it launch?"])
    expect(laptop.get_by_test_id("conversation")).to_have_count(1)
    expect(laptop.locator(".conversation-row.active")).to_have_count(1)
    _shot(laptop, "desktop-history")
    laptop.get_by_test_id("delete-conversation").click()
    laptop.get_by_test_id("cancel-delete").click()
    expect(laptop.get_by_test_id("conversation")).to_have_count(1)
    laptop.get_by_test_id("delete-conversation").click()
    laptop.get_by_test_id("confirm-delete").click()
    expect(laptop.get_by_test_id("history-note")).to_have_text("No conversations yet.")
    expect(laptop.get_by_test_id("answer")).to_have_count(0)  # the open conversation went with it
    expect(laptop.get_by_test_id("intro")).to_be_visible()
    assert web_bot.sandbox.q.conversations.of(APP_ID, "alice@example.com") == []

    for n in range(101):  # a long history: Q lists 100 at a time, the rest a click away
        web_bot.sandbox.q.conversations.start(APP_ID, "alice@example.com", f"Question {n}")
    laptop.reload()
    expect(laptop.get_by_test_id("conversation")).to_have_count(100)
    laptop.get_by_test_id("more-conversations").click()
    expect(laptop.get_by_test_id("conversation")).to_have_count(101)
    expect(laptop.get_by_test_id("more-conversations")).to_have_count(0)
    expect(laptop.get_by_test_id("conversation-group")).to_have_text(["Today"])  # one heading across pages
    periods = laptop.evaluate(
        "() => [0, 1, 3, 10, 400].map((days) => qbotPeriodOf(new Date(Date.now() - days * 864e5).toISOString()))"
    )
    assert periods[:4] == ["Today", "Yesterday", "Previous 7 days", "Previous 30 days"] and periods[4][-4:].isdigit()
    assert problems == [] and phone_problems == []
    laptop.context.close()
    phone.context.close()


def _wait_until(condition: Callable[[], bool], timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, "the condition did not come true in time"
        time.sleep(0.02)
