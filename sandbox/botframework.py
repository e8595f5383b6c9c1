"""A local stand-in for the Microsoft side of a Teams bot: the Bot Framework connector service (the
activity's serviceUrl) and login.botframework.com's OpenID metadata and signing keys.

It records every call the bot makes (replies, typing, new conversations, member lookups, card updates),
serves files behind `downloadUrl`s, and signs activity tokens with its own RSA key the way Bot Framework
does (RS256, iss https://api.botframework.com, aud = the app id, serviceurl claim).

Targeted messages (shown in a channel or group chat to one member only: `?isTargetedActivity=true` on the
send, with an `activityTreatment` entity of treatment `targeted` in the activity) are checked the way Teams
does: the conversation must be a channel or group chat the stand-in knows (`rooms`), not a personal chat, and
the recipient one of its members; `refuse_targeted` makes every targeted send fail, as in a tenant without
them. A refused send is kept in `refused`, never in `calls`: nobody saw it.

Streaming (an activity with a `streaminfo` entity) follows Teams' protocol as strictly: only in a personal chat
(elsewhere "Streaming API is not enabled"); a stream starts with a typing activity without a streamId, whose
response id becomes the stream's id; informative and streaming updates are typing activities with a rising
streamSequence (informative text of 1 to 1000 characters; streamed text that keeps what was streamed before);
the final one is a message naming the streamId, without a streamSequence, and ends the stream. Anything on an
ended, stopped (`stop_streams`) or expired stream (`stream_seconds`) is refused with ContentStreamNotAllowed.
`streams` keeps each stream: its updates and the message that ended it.
"""

from __future__ import annotations

import itertools
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from aiohttp import web
from cryptography.hazmat.primitives.asymmetric import rsa
from joserfc import jwt
from joserfc.jwk import RSAKey

ISSUER = "https://api.botframework.com"
CARD = "application/vnd.microsoft.card.adaptive"
_KEYS: dict[str, rsa.RSAPrivateKey] = {}


def rsa_key(name: str) -> rsa.RSAPrivateKey:
    """One RSA key per name for the whole run (generating them is the slow part)."""
    if name not in _KEYS:
        _KEYS[name] = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    return _KEYS[name]


@dataclass
class Call:
    method: str
    kind: str  # reply | send | update | create | member | file
    conversation_id: str = ""
    activity_id: str = ""
    body: Any = None
    authorization: str | None = None
    response_id: str = ""  # the id the connector gave a posted activity (what a later click's replyToId names)
    targeted: bool = False  # sent with ?isTargetedActivity=true: only `recipient` sees it

    @property
    def recipient(self) -> str:
        recipient = self.body.get("recipient") if isinstance(self.body, dict) else None
        return str(recipient.get("id") or "") if isinstance(recipient, dict) else ""

    @property
    def type(self) -> str:
        return str((self.body or {}).get("type", "")) if isinstance(self.body, dict) else ""

    @property
    def cards(self) -> list[dict[str, Any]]:
        if not isinstance(self.body, dict):
            return []
        return [a["content"] for a in self.body.get("attachments") or [] if a.get("contentType") == CARD]

    @property
    def text(self) -> str:
        return str(self.body.get("text") or "") if isinstance(self.body, dict) else ""


@dataclass
class Member:
    id: str
    aad: str
    name: str
    email: str | None


@dataclass
class Room:
    """A channel (its reply chains included) or a group chat, with who is in it."""

    kind: str  # channel | groupChat
    members: set[str] = field(default_factory=set)


INFORMATIVE_LIMIT = 1000  # characters of an informative update
STREAM_SECONDS = 120.0  # how long Teams keeps a stream open


@dataclass
class Stream:
    """One streamed response in a personal chat, as Teams tracks it."""

    id: str
    conversation_id: str
    sequence: int
    started: float = field(default_factory=time.monotonic)
    informative: list[str] = field(default_factory=list)  # the progress texts shown, in order
    streamed: str = ""  # the text streamed so far
    final: Call | None = None  # the message that ended it
    stopped: bool = False  # the user pressed Stop


def stream_info(body: Any) -> dict[str, Any] | None:
    entities = body.get("entities") if isinstance(body, dict) else None
    return next((e for e in entities or [] if isinstance(e, dict) and e.get("type") == "streaminfo"), None)


def _treatment_targeted(body: Any) -> bool:
    entities = body.get("entities") if isinstance(body, dict) else None
    return any(
        isinstance(e, dict) and e.get("type") == "activityTreatment" and e.get("treatment") == "targeted"
        for e in entities or []
    )


def _error(status: int, code: str, message: str) -> web.Response:
    return web.json_response({"error": {"code": code, "message": message}}, status=status)


@dataclass
class FakeBotFramework:
    url: str = ""
    calls: list[Call] = field(default_factory=list)
    members: dict[str, Member] = field(default_factory=dict)
    files: dict[str, bytes] = field(default_factory=dict)
    refuse_personal_chats: set[str] = field(default_factory=set)  # user ids Teams won't open a 1:1 with
    fail_card_posts: int = 0  # the next N posts carrying a card get a 500
    rooms: dict[str, Room] = field(default_factory=dict)  # channel and group chat ids (without ;messageid=)
    refuse_targeted: bool = False  # the tenant has no targeted messages: every targeted send is refused
    refused: list[Call] = field(default_factory=list)  # targeted and streaming sends the stand-in turned down
    streams: dict[str, Stream] = field(default_factory=dict)  # by stream id
    stream_seconds: float = STREAM_SECONDS
    kid: str = "bf-key-1"

    def __post_init__(self) -> None:
        self._lock = threading.Condition()
        self._ids = itertools.count(1)

    # -- signing --------------------------------------------------------------------------------

    def token(self, app_id: str, *, key: str = "bot-framework", kid: str | None = None, **claims: Any) -> str:
        now = int(time.time())
        payload = {
            "iss": ISSUER,
            "aud": app_id,
            "exp": now + 3600,
            "nbf": now - 60,
            "serviceurl": self.url + "/",
            **claims,
        }
        payload = {k: v for k, v in payload.items() if v is not None}
        header = {"alg": "RS256", "typ": "JWT", "kid": kid or self.kid}
        return jwt.encode(header, payload, RSAKey.import_key(rsa_key(key)), algorithms=["RS256"])

    # -- what tests look at ---------------------------------------------------------------------

    def _record(self, call: Call) -> None:
        with self._lock:
            self.calls.append(call)
            self._lock.notify_all()

    def wait_for(self, predicate: Callable[[list[Call]], Any], timeout: float = 10.0) -> Any:
        """Block (the test thread) until `predicate(calls)` is truthy; returns its value."""
        deadline = time.monotonic() + timeout
        with self._lock:
            while True:
                value = predicate(list(self.calls))
                if value:
                    return value
                left = deadline - time.monotonic()
                if left <= 0:
                    seen = [(c.kind, c.conversation_id) for c in self.calls]
                    raise AssertionError(f"timed out; calls so far: {seen}")
                self._lock.wait(left)

    def posted(self, conversation_id: str | None = None, *, kinds: tuple[str, ...] = ("reply", "send")) -> list[Call]:
        """Messages (not typing) the bot posted, optionally into one conversation."""
        return [
            c
            for c in self.calls
            if c.kind in kinds and c.type == "message" and conversation_id in (None, c.conversation_id)
        ]

    def targeted(self, user_id: str | None = None) -> list[Call]:
        """Targeted messages the bot posted, optionally those only `user_id` sees."""
        return [c for c in self.posted() if c.targeted and user_id in (None, c.recipient)]

    def public(self, conversation_id: str | None = None) -> list[Call]:
        """Messages everyone in their conversation sees (all but targeted ones)."""
        return [c for c in self.posted(conversation_id) if not c.targeted]

    def reset(self) -> None:
        with self._lock:
            self.calls.clear()
            self.refused.clear()

    # -- the server -----------------------------------------------------------------------------

    def app(self) -> web.Application:
        app = web.Application()
        app.add_routes(
            [
                web.get("/v1/.well-known/openidconfiguration", self._metadata),
                web.get("/v1/.well-known/keys", self._keys),
                web.post("/v3/conversations", self._create),
                web.post("/v3/conversations/{cid}/activities", self._send),
                web.post("/v3/conversations/{cid}/activities/{aid}", self._reply),
                web.put("/v3/conversations/{cid}/activities/{aid}", self._update),
                web.get("/v3/conversations/{cid}/members/{uid}", self._member),
                web.get("/files/{name}", self._file),
            ]
        )
        return app

    async def _metadata(self, request: web.Request) -> web.Response:
        return web.json_response(
            {
                "issuer": ISSUER,
                "authorization_endpoint": "https://invalid.botframework.com",
                "jwks_uri": self.url + "/v1/.well-known/keys",
                "id_token_signing_alg_values_supported": ["RS256"],
                "token_endpoint_auth_methods_supported": ["private_key_jwt"],
            }
        )

    async def _keys(self, request: web.Request) -> web.Response:
        jwk: dict[str, Any] = dict(RSAKey.import_key(rsa_key("bot-framework").public_key()).as_dict(private=False))
        jwk.update({"kid": self.kid, "use": "sig", "endorsements": ["msteams"]})
        return web.json_response({"keys": [jwk]})

    def _new_id(self) -> str:
        return f"bot-msg-{next(self._ids)}"

    async def _create(self, request: web.Request) -> web.Response:
        body = await request.json()
        self._record(Call("POST", "create", body=body, authorization=request.headers.get("Authorization")))
        user = ((body.get("members") or [{}])[0]).get("id", "")
        if user in self.refuse_personal_chats:
            return web.json_response({"error": {"code": "Forbidden", "message": "not installed"}}, status=403)
        return web.json_response({"id": f"a:personal-{user}", "activityId": self._new_id()}, status=201)

    async def _send(self, request: web.Request) -> web.Response:
        body = await request.json()
        cid, new = request.match_info["cid"], self._new_id()
        call = Call("POST", "send", cid, "", body, request.headers.get("Authorization"), new)
        return self._post(request, call)

    async def _reply(self, request: web.Request) -> web.Response:
        body = await request.json()
        cid, aid, new = request.match_info["cid"], request.match_info["aid"], self._new_id()
        call = Call("POST", "reply", cid, aid, body, request.headers.get("Authorization"), new)
        return self._post(request, call)

    def _post(self, request: web.Request, call: Call) -> web.Response:
        if call.cards and self.fail_card_posts > 0:
            self.fail_card_posts -= 1
            return _error(500, "ServiceError", "boom")
        if request.query.get("isTargetedActivity") == "true":
            call.targeted = True
            refusal = self._targeting_refusal(call)
            if refusal is not None:
                with self._lock:
                    self.refused.append(call)
                return refusal
        elif _treatment_targeted(call.body):  # marked for one member but sent to all: Teams would show it to all
            return _error(400, "BadArgument", "a targeted activity needs isTargetedActivity=true")
        info = stream_info(call.body)
        if info is not None:
            with self._lock:
                refusal = self._streaming_refusal(call, info)
                if refusal is not None:
                    self.refused.append(call)
                    return refusal
        self._record(call)
        return web.json_response({"id": call.response_id}, status=201)

    def stop_streams(self) -> None:
        """The user presses Stop on every open stream."""
        with self._lock:
            for stream in self.streams.values():
                stream.stopped = True

    def _streaming_refusal(self, call: Call, info: dict[str, Any]) -> web.Response | None:
        """Why Teams would refuse this streaming activity (None: taken, and the stream's state moved on)."""
        conversation = call.conversation_id.split(";", 1)[0]
        if conversation in self.rooms:
            return _error(400, "BadArgument", "Streaming API is not enabled for this conversation")
        kind, stream_id = info.get("streamType", "streaming"), info.get("streamId")
        sequence: Any = info.get("streamSequence")
        body = call.body
        if kind == "final":
            if call.type != "message" or not stream_id or sequence is not None:
                return _error(400, "BadArgument", "a final stream message is a message with a streamId and no sequence")
        elif kind in ("informative", "streaming"):
            if call.type != "typing" or not isinstance(sequence, int) or sequence < 1:
                return _error(400, "BadArgument", "a stream update is a typing activity with a streamSequence")
            text = str(body.get("text") or "")
            if kind == "informative" and not 0 < len(text) <= INFORMATIVE_LIMIT:
                return _error(400, "BadArgument", f"an informative update has 1 to {INFORMATIVE_LIMIT} characters")
        else:
            return _error(400, "BadArgument", f"unknown streamType {kind!r}")
        if not stream_id:  # a new stream (a final names its stream): its id is this activity's
            started = self.streams[call.response_id] = Stream(call.response_id, conversation, int(sequence))
            return self._apply(started, kind, body, call)
        stream = self.streams.get(str(stream_id))
        if stream is None or stream.conversation_id != conversation:
            return _error(404, "NotFound", "no such stream in this conversation")
        if stream.final is not None or stream.stopped:
            return _error(403, "ContentStreamNotAllowed", "Content stream was cancelled or has ended.")
        if time.monotonic() - stream.started > self.stream_seconds:
            return _error(403, "ContentStreamNotAllowed", "Content stream finished due to exceeded streaming time.")
        if kind != "final":
            if int(sequence) <= stream.sequence:
                return _error(400, "ContentStreamSequenceOrderPreConditionFailed", "streamSequence must rise")
            stream.sequence = int(sequence)
        return self._apply(stream, kind, body, call)

    @staticmethod
    def _apply(stream: Stream, kind: str, body: dict[str, Any], call: Call) -> web.Response | None:
        text = str(body.get("text") or "")
        if kind != "informative" and stream.streamed and not text.startswith(stream.streamed):
            return _error(403, "ContentStreamNotAllowed",
                          "Request streamed content should contain the previously streamed content")
        if kind == "informative":
            stream.informative.append(text)
        elif kind == "streaming":
            stream.streamed = text
        else:
            stream.final = call
        return None

    def _targeting_refusal(self, call: Call) -> web.Response | None:
        """Why Teams would not show this targeted message to its recipient only (None: it would)."""
        if self.refuse_targeted:
            return _error(403, "Forbidden", "targeted messages are not available in this conversation")
        if not _treatment_targeted(call.body):
            return _error(400, "BadArgument", "a targeted activity needs an activityTreatment entity")
        room = self.rooms.get(call.conversation_id.split(";", 1)[0])
        if room is None or room.kind not in ("channel", "groupChat"):  # a personal chat is private already
            return _error(400, "BadArgument", "targeted messages are for channels and group chats only")
        if not call.recipient or call.recipient not in room.members:
            return _error(400, "BadArgument", "the recipient of a targeted message must be a member")
        return None

    async def _update(self, request: web.Request) -> web.Response:
        body = await request.json()
        cid, aid = request.match_info["cid"], request.match_info["aid"]
        self._record(Call("PUT", "update", cid, aid, body, request.headers.get("Authorization")))
        return web.json_response({"id": aid})

    async def _member(self, request: web.Request) -> web.Response:
        cid, uid = request.match_info["cid"], request.match_info["uid"]
        self._record(Call("GET", "member", cid, uid))
        member = self.members.get(uid)
        if member is None:
            return web.json_response({"error": {"code": "MemberNotFoundInConversation"}}, status=404)
        body: dict[str, Any] = {"id": member.id, "name": member.name, "aadObjectId": member.aad}
        if member.email:
            body.update({"email": member.email, "userPrincipalName": member.email})
        return web.json_response(body)

    async def _file(self, request: web.Request) -> web.Response:
        name = request.match_info["name"]
        self._record(Call("GET", "file", activity_id=name))
        if name not in self.files:
            raise web.HTTPNotFound()
        return web.Response(body=self.files[name], content_type="application/octet-stream")
