"""The few HTML pages a user sees in the browser during linking: short, escaped, never a stack trace."""

from __future__ import annotations

from html import escape

from aiohttp import web

# The link token travels in the /auth/start URL: no referrer may carry it anywhere, nothing is cached.
SECURITY_HEADERS = {
    "Cache-Control": "no-store",
    "Referrer-Policy": "no-referrer",
    "X-Frame-Options": "DENY",
    "X-Content-Type-Options": "nosniff",
    "Content-Security-Policy": "default-src 'none'; style-src 'unsafe-inline'; frame-ancestors 'none'",
}

_PAGE = """<!doctype html>
<html lang="en"><head><meta charset="utf-8"><meta name="viewport" content="width=device-width">
<title>{title} · qbot</title>
<style>body{{font:16px system-ui,sans-serif;max-width:34rem;margin:4rem auto;padding:0 1rem;color:#222}}
h1{{font-size:1.4rem}} .ok{{color:#1a7f37}} .err{{color:#b42318}}</style></head>
<body><h1 class="{css}">{title}</h1><p>{message}</p>{extra}</body></html>
"""


def page(title: str, message: str, *, status: int = 200, ok: bool = True, extra_html: str = "") -> web.Response:
    body = _PAGE.format(
        title=escape(title), message=escape(message), css="ok" if ok else "err", extra=extra_html
    )
    return web.Response(text=body, status=status, content_type="text/html", headers=SECURITY_HEADERS)


def error_page(message: str, *, status: int = 400) -> web.Response:
    return page("Sign-in failed", message, status=status, ok=False)
