"""A whole bot (real aiohttp server, real Redis) wired to a fresh sandbox, and a cookie-keeping HTTP client
that signs in through the web console the way a browser does."""

from __future__ import annotations

import shutil
import socket
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any

import httpx
import pytest
from cryptography.fernet import Fernet
from playwright.sync_api import Browser, Page, expect, sync_playwright

from bot.config import Settings
from bot.tls import tls_context
from qbot.app import GRAPH, BotGraph, build_app
from sandbox.serving import Served, url_of
from sandbox.world import Sandbox
from tests.conftest import LoopThread
from tests.signin import sign_in_at_idp

CSRF_HEADER = "X-QBot-CSRF"


@dataclass
class WebBot:
    url: str
    graph: BotGraph
    sandbox: Sandbox
    servers: LoopThread
    clients: list[httpx.Client] = field(default_factory=list)

    def browser(self) -> httpx.Client:
        """A fresh 'browser': its own cookie jar, redirects followed by hand so each hop can be checked."""
        client = httpx.Client(base_url=self.url, follow_redirects=False, timeout=15, verify=tls_context())
        self.clients.append(client)
        return client

    def sign_in(self, http: httpx.Client, username: str) -> dict[str, Any]:
        """/web/login -> IdP login as `username` -> /auth/callback -> /; returns /web/api/me."""
        login = http.get("/web/login")
        assert login.status_code == 302, login.text
        assert login.headers["location"].startswith(self.sandbox.idp_url + "/")
        idp = sign_in_at_idp(http, login.headers["location"], username)
        assert idp.status_code == 302, idp.text
        callback = http.get(idp.headers["location"])
        assert callback.status_code == 302, callback.text
        assert callback.headers["location"] == "/"
        assert http.get("/").status_code == 200
        return self.me(http)

    @staticmethod
    def me(http: httpx.Client) -> dict[str, Any]:
        response = http.get("/web/api/me")
        assert response.status_code == 200
        body: dict[str, Any] = response.json()
        return body

    def post(
        self, http: httpx.Client, path: str, body: Any, *, csrf: str | None, origin: str | None = "self"
    ) -> httpx.Response:
        headers = {}
        if csrf is not None:
            headers[CSRF_HEADER] = csrf
        if origin is not None:
            headers["Origin"] = self.url if origin == "self" else origin
        return http.post(path, json=body, headers=headers)


@pytest.fixture
def make_web_bot(
    servers: LoopThread, sandbox: Sandbox, bot_socket: socket.socket, redis_url: str
) -> Iterator[Callable[..., WebBot]]:
    """Start the bot (once per test) with extra QBOT_* settings, on the socket whose URL the sandbox IdP
    registered as redirect URI."""
    started: list[tuple[Served, WebBot]] = []

    def make(**env: str) -> WebBot:
        assert not started, "one bot per test: the IdP knows one redirect URI"
        settings = Settings.from_env(
            {
                **sandbox.env(),
                "QBOT_REDIS_URL": redis_url,
                "QBOT_TOKEN_KEYS": Fernet.generate_key().decode(),
                "QBOT_PUBLIC_URL": url_of(bot_socket),
                **env,
            }
        )
        app = build_app(settings)
        served = Served(app, bot_socket)
        servers.run(served.start())
        running = WebBot(served.url, app[GRAPH], sandbox, servers)
        started.append((served, running))
        return running

    yield make
    for served, running in started:
        for client in running.clients:
            client.close()
        servers.run(served.stop())


@pytest.fixture
def web_bot(make_web_bot: Callable[..., WebBot]) -> WebBot:
    return make_web_bot()


CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = [
    "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
    "--disable-background-networking", "--disable-component-update", "--disable-sync",
]  # fmt: skip


@pytest.fixture(scope="module")
def chromium() -> Iterator[Browser]:
    """Debian's chromium, driven by Playwright (no `playwright install`: no browser download); one per module."""
    executable = CHROMIUM if shutil.which(CHROMIUM) else shutil.which("chromium")
    if executable is None:
        pytest.fail("the browser tests need Debian's chromium: apt-get install -y chromium")
    with sync_playwright() as driver:
        browser = driver.chromium.launch(executable_path=executable, args=CHROMIUM_ARGS, timeout=30_000)
        yield browser
        browser.close()


def signed_in_page(chromium: Browser, web_bot: WebBot, user: str = "alice", **options: Any) -> tuple[Page, list[str]]:
    """A new browser context signed in as `user` by clicking; the page's errors collect in the list returned."""
    context = chromium.new_context(**options)
    context.set_default_timeout(10_000)
    page = context.new_page()
    problems: list[str] = []
    page.on("pageerror", lambda error: problems.append(str(error)))
    page.on("console", lambda message: problems.append(message.text) if message.type == "error" else None)
    page.goto(web_bot.url + "/")
    page.get_by_test_id("sign-in").click()
    page.click(f'button[name="username"][value="{user}"]')
    expect(page.get_by_test_id("signed-in-as")).to_have_text(f"Signed in as {user}@example.com")
    return page, problems
