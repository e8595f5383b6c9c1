"""`QBOT_METRICS_TOKEN` reaches `/metrics` of a bot built by the app factory (qbot serve's own graph)."""

from __future__ import annotations

from collections.abc import Callable

import httpx

from tests.e2e.conftest import RunningBot


def test_a_bot_with_a_metrics_token_refuses_scrapes_without_it(make_bot: Callable[..., RunningBot]) -> None:
    bot = make_bot(QBOT_METRICS_TOKEN="prometheus-scrape-credential")
    assert httpx.get(bot.url + "/metrics").status_code == 401
    scraped = httpx.get(bot.url + "/metrics", headers={"Authorization": "Bearer prometheus-scrape-credential"})
    assert scraped.status_code == 200 and "qbot_" in scraped.text
    assert httpx.get(bot.url + "/readyz").status_code == 200
