"""authlib's authorization server on aiohttp: requests read up front, responses as aiohttp's, and the routes.

authlib ships integrations for Flask, Django and Starlette, not aiohttp, and its grants read the request
synchronously; so each handler reads the whole request first (ReadRequest), then lets authlib decide. This is
the only part of the IdP that knows aiohttp's request type.
"""

from __future__ import annotations

import asyncio
import json
import logging
from collections import defaultdict
from collections.abc import Awaitable, Callable, Iterable
from typing import TYPE_CHECKING, Any

from aiohttp import web
from authlib.oauth2.rfc6749 import (
    AuthorizationServer,
    InvalidRequestError,
    JsonPayload,
    JsonRequest,
    OAuth2Error,
    OAuth2Payload,
    OAuth2Request,
)
from multidict import CIMultiDictProxy, MultiDict, MultiDictProxy, MultiMapping

from sandbox.idp.discovery import SCOPES_SUPPORTED
from sandbox.idp.pages import error_page, login_page
from sandbox.idp.records import RegisteredClient

if TYPE_CHECKING:
    from sandbox.idp.grants import CodeGrant
    from sandbox.idp.provider import SandboxIdP

log = logging.getLogger(__name__)


class _Params(OAuth2Payload):
    def __init__(self, params: MultiMapping[str]) -> None:
        self._params = params

    @property
    def data(self) -> MultiMapping[str]:
        return self._params

    @property
    def datalist(self) -> defaultdict[str, list[str]]:
        values: defaultdict[str, list[str]] = defaultdict(list)
        for key, value in self._params.items():
            values[key].append(value)
        return values


class _JsonBody(JsonPayload):
    def __init__(self, body: Any) -> None:
        self._body = body

    @property
    def data(self) -> Any:
        return self._body


class ReadRequest(OAuth2Request):
    """An aiohttp request whose body was read up front, because authlib's grants read it synchronously.

    Parameters come from the query string of a GET and from the form body of a POST, never a mix: a token
    request must not pick up credentials from its URL.
    """

    def __init__(
        self,
        method: str,
        uri: str,
        headers: CIMultiDictProxy[str],
        query: MultiMapping[str],
        form: MultiDictProxy[str],
        json_body: Any = None,
    ) -> None:
        super().__init__(method, uri, headers=headers)
        self._query = query
        self._form = form
        self.json_body = json_body
        self.payload = _Params(form if method == "POST" else query)

    @property
    def args(self) -> MultiMapping[str]:
        return self._query

    @property
    def form(self) -> MultiDictProxy[str]:
        return self._form


async def read_request(request: web.Request, issuer: str) -> ReadRequest:
    form: MultiDict[str] = MultiDict()
    json_body: Any = None
    if request.method == "POST":
        if request.content_type == "application/json":
            json_body = _json_or_none(await request.text())
        else:
            posted = await request.post()
            form.extend((key, value) for key, value in posted.items() if isinstance(value, str))
    return ReadRequest(
        request.method,
        issuer + request.path_qs,
        request.headers,
        request.query,
        MultiDictProxy(form),
        json_body,
    )


def _json_or_none(text: str) -> Any:
    try:
        return json.loads(text)
    except ValueError:
        return None


class AiohttpAuthorizationServer(AuthorizationServer):
    """authlib's AuthorizationServer answering with aiohttp responses, backed by the IdP's memory."""

    def __init__(self, idp: SandboxIdP) -> None:
        super().__init__(scopes_supported=SCOPES_SUPPORTED)
        self.idp = idp
        self.register_token_generator("default", idp.generate_token)

    def query_client(self, client_id: str) -> RegisteredClient | None:
        return self.idp.clients.get(client_id)

    def save_token(self, token: dict[str, Any], request: OAuth2Request) -> None:
        self.idp.record_token(token, request)

    def authenticate_client(self, request: OAuth2Request, methods: list[str], endpoint: str = "token") -> Any:
        """Refuse two client authentications in one request (RFC 6749 §2.3); authlib would take the first."""
        if request.headers.get("Authorization") and request.form.get("client_secret"):
            raise InvalidRequestError("Use one client authentication method, not two.")
        return super().authenticate_client(request, methods, endpoint)

    def create_oauth2_request(self, request: Any) -> OAuth2Request:
        if isinstance(request, OAuth2Request):
            return request
        raise TypeError("pass a ReadRequest: aiohttp bodies must be read before authlib sees them")

    def create_json_request(self, request: Any) -> JsonRequest:
        if not isinstance(request, ReadRequest):
            raise TypeError("pass a ReadRequest: aiohttp bodies must be read before authlib sees them")
        json_request = JsonRequest(request.method, request.uri, request.headers)
        json_request.payload = _JsonBody(request.json_body)
        return json_request

    def handle_response(self, status: int, body: Any, headers: Iterable[tuple[str, str]]) -> web.Response:
        if isinstance(body, dict):
            body = json.dumps(body)
        return web.Response(status=status, body=body.encode() if body else None, headers=list(headers))

    def send_signal(self, name: str, *args: Any, **kwargs: Any) -> None:
        """Nothing listens: the IdP's own bookkeeping happens where tokens are saved and revoked."""


class IdPRoutes:
    """The IdP's HTTP endpoints. A failure inside answers a bare OAuth server_error; details go to the log."""

    def __init__(self, idp: SandboxIdP) -> None:
        self.idp = idp

    def app(self) -> web.Application:
        app = web.Application(middlewares=[_no_stack_traces])
        app.router.add_get("/.well-known/openid-configuration", self._discovery)
        app.router.add_get("/jwks", self._jwks)
        app.router.add_get("/authorize", self._authorize_page)
        app.router.add_post("/authorize", self._authorize_sign_in)
        app.router.add_post("/token", self._token)
        app.router.add_route("*", "/userinfo", self._userinfo)
        app.router.add_post("/revoke", self._revoke)
        return app

    async def _discovery(self, request: web.Request) -> web.Response:
        return web.json_response(self.idp.metadata())

    async def _jwks(self, request: web.Request) -> web.Response:
        self.idp.stats.jwks_fetches += 1
        return web.json_response(self.idp.jwks())

    async def _authorize_page(self, request: web.Request) -> web.Response:
        oauth_request = await read_request(request, self.idp.issuer)
        try:
            grant = self.idp.server.get_consent_grant(oauth_request)
            self._raise_authorize_fault(grant)
        except OAuth2Error as error:
            return self._authorization_error(oauth_request, error)
        return login_page(oauth_request.payload.data, self.idp.directory.users.values())

    async def _authorize_sign_in(self, request: web.Request) -> web.Response:
        oauth_request = await read_request(request, self.idp.issuer)
        try:
            grant = self.idp.server.get_consent_grant(oauth_request)
            self._raise_authorize_fault(grant)
        except OAuth2Error as error:
            return self._authorization_error(oauth_request, error)
        username = oauth_request.form.get("username", "").strip()
        user = self.idp.directory.by_username(username)
        if user is None:
            problem = f"No user named {username!r} in this directory."
            return login_page(oauth_request.payload.data, self.idp.directory.users.values(), problem)
        response: web.Response = self.idp.server.create_authorization_response(
            oauth_request, grant_user=user, grant=grant
        )
        return response

    async def _token(self, request: web.Request) -> web.Response:
        oauth_request = await read_request(request, self.idp.issuer)
        await self._answer_late()
        response: web.Response = self.idp.server.create_token_response(oauth_request)
        return response

    async def _answer_late(self) -> None:
        """`faults.token_delay_seconds`: a slow IdP. The fault is read on every tick, so switching it off releases
        the requests already waiting (a sleep would hold them, and the sandbox's shutdown, to the end)."""
        if self.idp.faults.token_delay_seconds <= 0:
            return
        self.idp.stats.token_requests_delayed += 1
        loop = asyncio.get_running_loop()
        started = loop.time()
        while loop.time() - started < self.idp.faults.token_delay_seconds:  # noqa: ASYNC110 - tests switch it from their own thread
            await asyncio.sleep(0.01)

    async def _userinfo(self, request: web.Request) -> web.Response:
        if request.method not in ("GET", "POST"):
            raise web.HTTPMethodNotAllowed(request.method, ["GET", "POST"])
        oauth_request = await read_request(request, self.idp.issuer)
        response: web.Response = self.idp.server.create_endpoint_response("userinfo", oauth_request)
        return response

    async def _revoke(self, request: web.Request) -> web.Response:
        oauth_request = await read_request(request, self.idp.issuer)
        response: web.Response = self.idp.server.create_endpoint_response("revocation", oauth_request)
        return response

    def _raise_authorize_fault(self, grant: CodeGrant) -> None:
        if error := self.idp.faults.authorize_error:
            raise OAuth2Error(
                error=error, description="Refused by a sandbox fault switch.", redirect_uri=grant.redirect_uri
            )

    def _authorization_error(self, request: ReadRequest, error: OAuth2Error) -> web.Response:
        """Redirect only to a redirect_uri validated for a known client; otherwise tell the user instead."""
        if error.redirect_uri:
            error.state = request.payload.state
            response: web.Response = self.idp.server.handle_error_response(request, error)
            return response
        return error_page(error.error, error.description or "The sign-in request is not valid.")


@web.middleware
async def _no_stack_traces(
    request: web.Request, handler: Callable[[web.Request], Awaitable[web.StreamResponse]]
) -> web.StreamResponse:
    """A failure inside the IdP answers a bare OAuth server_error; the details go to the log only."""
    try:
        return await handler(request)
    except web.HTTPException:
        raise
    except Exception:
        log.exception("sandbox IdP failed on %s %s", request.method, request.path)
        return web.json_response({"error": "server_error"}, status=500)
