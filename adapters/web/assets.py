"""The console page and its static files, served from the package with headers that pin them down.

The page runs only its own script and style, may call only this origin and can't be framed; Trusted Types
make any stray innerHTML assignment an error rather than an injection. Only the files named in `ASSET_TYPES`
exist; they are read once, at start.
"""

from __future__ import annotations

from importlib import resources

from aiohttp import web

PAGE_HEADERS = {
    "Cache-Control": "no-store",
    "Referrer-Policy": "no-referrer",
    "X-Frame-Options": "DENY",
    "X-Content-Type-Options": "nosniff",
    "Content-Security-Policy": (
        "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self'; connect-src 'self'; "
        "form-action 'self'; base-uri 'none'; frame-ancestors 'none'; require-trusted-types-for 'script'"
    ),
}
ASSET_HEADERS = {"Cache-Control": "no-cache", "X-Content-Type-Options": "nosniff"}
ASSET_TYPES = {
    "index.html": "text/html",
    "app.js": "text/javascript",
    "style.css": "text/css",
    "icon.svg": "image/svg+xml",
}


class PageAssets:
    """`GET /` (the page) and `GET /web/static/{name}` (its script, style and icon)."""

    def __init__(self) -> None:
        static = resources.files("adapters.web").joinpath("static")
        self._files = {name: static.joinpath(name).read_bytes() for name in ASSET_TYPES}

    async def index(self, request: web.Request) -> web.Response:
        return web.Response(
            body=self._files["index.html"], content_type="text/html", charset="utf-8", headers=PAGE_HEADERS
        )

    async def asset(self, request: web.Request) -> web.Response:
        name = request.match_info["name"]
        if name == "index.html" or name not in self._files:
            raise web.HTTPNotFound()
        content_type = ASSET_TYPES[name]
        charset = None if content_type.startswith("image/") else "utf-8"
        return web.Response(
            body=self._files[name], content_type=content_type, charset=charset, headers=ASSET_HEADERS
        )
