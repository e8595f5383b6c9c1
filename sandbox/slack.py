"""A stand-in for Slack on loopback: the Web API methods qbot calls, file downloads, response_urls and a
Socket Mode websocket. It records every call and answers like Slack, including its refusals: a wrong token
is `invalid_auth`, and messages over Block Kit's limits are refused (`invalid_blocks`,
`msg_blocks_too_long`). It is stricter than Slack in one way: a message without a plain `text` fallback is
refused (`no_text`), since qbot promises one on every message.

Faults, as Slack shows them (`fail_next`): a 429 with Retry-After and `ratelimited` (nothing was done), or a
5xx error page or a dropped connection, either before the call is carried out or after it (`applied`: Slack
did the work and the answer was lost on the way back, so the caller cannot know). Reading a thread back
(`conversations.replies`) needs the history scope of its conversation type; the bot is granted `im:history` only.

Slack's AI-app surface: `assistant.threads.setStatus` (`chat:write` or `assistant:write`), `setSuggestedPrompts`
and `setTitle` (`assistant:write`) check the scope, the channel, the thread (an assistant thread that
`start_assistant_thread` opened, for titles and threaded prompts) and Slack's limits (one to four prompts, each
with a title and a message; at most ten loading messages), and keep what each thread shows (`assistant`). As in
Slack, a message the bot posts in a thread clears that thread's status.
"""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import itertools
import json
import re
import threading
import time
import urllib.parse
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from aiohttp import web

BOT_TOKEN = "xoxb-test-bot-token"
APP_TOKEN = "xapp-1-test-app-token"
SIGNING_SECRET = "8f742231b10e8888abcd99yyyzzz85a5"
TEAM = "T0TEST"
BOT_USER = "UQBOT"
BOT_ID = "BQBOT"

USERS = {
    "U_ALICE": "alice@example.com",
    "U_BOB": "bob@example.com",
    "U_CAROL": "carol@example.com",
}


@dataclass
class Fault:
    """How Slack answers one call that fails: HTTP `status`, after doing the work when `applied`."""

    status: int  # 0: the connection closes without an answer
    applied: bool = False
    retry_after: int = 1

    def response(self, request: web.Request) -> web.Response:
        if self.status == 0 and request.transport is not None:
            request.transport.close()  # the client sees the connection drop; what follows is never sent
            return web.Response(status=500)
        if self.status == 429:
            return web.json_response({"ok": False, "error": "ratelimited"}, status=429,
                                     headers={"Retry-After": str(self.retry_after)})
        return web.Response(status=self.status, text="<html><body>Slack is having trouble</body></html>",
                            content_type="text/html")


# What each conversation type's history scope is, by the first letter of its id.
HISTORY_SCOPES = {"C": "channels:history", "G": "groups:history", "D": "im:history"}
MAX_PROMPTS = 4
MAX_LOADING_MESSAGES = 10
TS_FORMAT = re.compile(r"^\d{10}\.\d{6}$")


@dataclass
class AssistantThread:
    """What one thread of the app's DM shows of Slack's AI-app surface."""

    status: str = ""
    loading_messages: list[str] = field(default_factory=list)
    title: str = ""
    prompts: list[dict[str, str]] = field(default_factory=list)
    prompts_title: str = ""


@dataclass
class Call:
    method: str  # a Web API method, "response" (a response_url) or "file" (a download)
    args: dict[str, Any]
    token: str | None
    at: float = field(default_factory=time.monotonic)


def signature(secret: str, timestamp: str, body: str) -> str:
    base = f"v0:{timestamp}:{body}".encode()
    return "v0=" + hmac.new(secret.encode(), base, hashlib.sha256).hexdigest()


def signed_headers(body: str, content_type: str, *, secret: str = SIGNING_SECRET,
                   timestamp: int | None = None) -> dict[str, str]:
    ts = str(int(time.time()) if timestamp is None else timestamp)
    return {
        "Content-Type": content_type,
        "X-Slack-Request-Timestamp": ts,
        "X-Slack-Signature": signature(secret, ts, body),
    }


def _block_text_size(block: dict[str, Any]) -> int:
    if block.get("type") == "section":
        return len(block.get("text", {}).get("text", ""))
    if block.get("type") == "context":
        return sum(len(e.get("text", "")) for e in block.get("elements", []))
    return 0


def block_problem(blocks: Any) -> str | None:
    """Slack's Block Kit limits, as Slack enforces them on chat.postMessage/update/postEphemeral."""
    if blocks is None:
        return None
    if isinstance(blocks, str):
        blocks = json.loads(blocks)
    if not isinstance(blocks, list) or len(blocks) > 50:
        return "invalid_blocks"
    for block in blocks:
        kind = block.get("type")
        if kind == "section":
            text = block.get("text", {})
            if text.get("type") not in ("mrkdwn", "plain_text") or not 1 <= len(text.get("text", "")) <= 3000:
                return "invalid_blocks"
        elif kind == "context":
            elements = block.get("elements", [])
            if not 1 <= len(elements) <= 10 or any(len(e.get("text", "")) > 3000 for e in elements):
                return "invalid_blocks"
        elif kind == "actions":
            elements = block.get("elements", [])
            if not 1 <= len(elements) <= 25:
                return "invalid_blocks"
            for element in elements:
                if len(element.get("text", {}).get("text", "")) > 75 or len(element.get("value", "")) > 2000:
                    return "invalid_blocks"
        else:
            return "invalid_blocks"
    if sum(_block_text_size(b) for b in blocks) > 13_000:
        return "msg_blocks_too_long"
    return None


def _plain(text: Any, limit: int) -> bool:
    return isinstance(text, dict) and text.get("type") == "plain_text" and 0 < len(str(text.get("text", ""))) <= limit


CHOICE_ELEMENTS = ("radio_buttons", "static_select", "multi_static_select", "checkboxes")


def _input_problem(block: dict[str, Any]) -> str | None:
    element = block.get("element") or {}
    if not _plain(block.get("label"), 2000) or not element.get("action_id"):
        return "input blocks need a plain_text label and an element with an action_id"
    if element.get("type") in CHOICE_ELEMENTS:
        options = element.get("options") or []
        limit = 10 if element["type"] in ("radio_buttons", "checkboxes") else 100
        if not 1 <= len(options) <= limit:
            return f"{element['type']} takes 1 to {limit} options"
        if any(not _plain(o.get("text"), 75) or not 0 < len(str(o.get("value", ""))) <= 150 for o in options):
            return "options need a plain_text text of at most 75 characters and a value of at most 150"
        initial = [element["initial_option"]] if "initial_option" in element else element.get("initial_options", [])
        if any(choice not in options for choice in initial):
            return "initial options must be among the options"
    elif element.get("type") == "plain_text_input":
        if not 0 <= int(element.get("max_length", 3000)) <= 3000:
            return "plain_text_input max_length is at most 3000"
    elif element.get("type") == "number_input":
        if not isinstance(element.get("is_decimal_allowed"), bool):
            return "number_input needs is_decimal_allowed"
    else:
        return f"unsupported input element {element.get('type')!r}"
    return None


def view_problem(view: Any) -> str | None:
    """Slack's checks on a modal (views.open), as far as qbot's modals go."""
    if not isinstance(view, dict) or view.get("type") != "modal":
        return "view must be a modal"
    if not _plain(view.get("title"), 24):
        return "title must be plain_text of 1 to 24 characters"
    blocks = view.get("blocks")
    if not isinstance(blocks, list) or not 1 <= len(blocks) <= 100:
        return "blocks must hold 1 to 100 blocks"
    if len(str(view.get("callback_id", ""))) > 255 or len(str(view.get("private_metadata", ""))) > 3000:
        return "callback_id is at most 255 characters and private_metadata at most 3000"
    inputs = [b for b in blocks if b.get("type") == "input"]
    if inputs and not _plain(view.get("submit"), 24):
        return "a modal with inputs needs a submit button"
    if any(key in view and not _plain(view[key], 24) for key in ("submit", "close")):
        return "submit and close must be plain_text of 1 to 24 characters"
    for block in inputs:
        problem = _input_problem(block)
        if problem:
            return problem
    return block_problem([b for b in blocks if b.get("type") != "input"] or None)


class FakeSlack:
    def __init__(self) -> None:
        self.calls: list[Call] = []
        self.emails: dict[str, str | None] = dict(USERS)
        self.user_errors: dict[str, str] = {}  # users.info answers this error for these users
        self.files: dict[str, bytes] = {}
        self.fail: dict[str, str] = {}  # method -> error it answers until removed
        self.faults: dict[str, list[Fault]] = {}  # method -> how its next calls fail (see fail_next)
        # The scopes the bot token holds that the fake checks (the manifest's): history, and Slack's AI-app surface.
        self.scopes: set[str] = {"im:history", "chat:write", "assistant:write"}
        self.assistant: dict[tuple[str, str | None], AssistantThread] = {}  # (channel, thread_ts or None: the DM)
        self.assistant_threads: set[tuple[str, str]] = set()  # opened by the user (assistant view)
        self.messages: dict[tuple[str, str], dict[str, Any]] = {}
        self.socket_acks: list[dict[str, Any]] = []
        self.views: dict[str, dict[str, Any]] = {}  # modals opened with views.open, by view id
        self._exchanged: set[str] = set()  # trigger ids already used: each opens one view
        self._sockets: list[web.WebSocketResponse] = []
        self._ts = itertools.count(1)
        self._lock = threading.Lock()
        self.url = ""  # set once served

    # -- faults -----------------------------------------------------------------------------------------------

    def fail_next(self, method: str, status: int, count: int = 1, *, applied: bool = False,
                  retry_after: int = 1) -> None:
        """The next `count` calls of `method` answer HTTP `status`: 429 (with `retry_after`) before doing anything,
        a 5xx (or 0: the connection closes unanswered) before doing anything or, when `applied`, after doing the
        work (the outcome the caller cannot know)."""
        if status == 429 and applied:
            raise ValueError("a rate-limited call is never carried out")
        if not (status in (0, 429) or 500 <= status <= 599):
            raise ValueError("fail_next takes 429, a 5xx or 0 (no answer); `fail` sets Slack's ok=false errors")
        with self._lock:
            self.faults.setdefault(method, []).extend(Fault(status, applied, retry_after) for _ in range(count))

    def update_applies_then_500(self, count: int = 1) -> None:
        """chat.update changes the message, then Slack answers 500: the caller cannot tell it worked."""
        self.fail_next("chat.update", 500, count, applied=True)

    def _take_fault(self, method: str) -> Fault | None:
        with self._lock:
            pending = self.faults.get(method)
            return pending.pop(0) if pending else None

    def thread(self, channel: str, thread_ts: str) -> list[dict[str, Any]]:
        """The bot's messages in a thread, oldest first."""
        found = [m for (ch, _ts), m in list(self.messages.items()) if ch == channel and m.get("thread_ts") == thread_ts]
        return sorted(found, key=lambda m: m["ts"])

    # -- what tests look at ----------------------------------------------------------------------------------

    def api_url(self) -> str:
        return self.url + "/api/"

    def calls_to(self, *methods: str) -> list[Call]:
        with self._lock:
            return [c for c in self.calls if c.method in methods]

    def wait_for(self, predicate: Callable[[], Any], timeout: float = 10.0) -> Any:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            value = predicate()
            if value:
                return value
            time.sleep(0.01)
        raise AssertionError(f"timed out; calls so far: {[(c.method, c.args) for c in self.calls]}")

    def wait_calls(self, method: str, count: int = 1, timeout: float = 10.0) -> list[Call]:
        def arrived() -> list[Call] | None:
            calls = self.calls_to(method)
            return calls if len(calls) >= count else None

        return list(self.wait_for(arrived, timeout))

    def start_assistant_thread(self, user: str) -> dict[str, Any]:
        """The user opens a new assistant thread in the app's DM: the `assistant_thread_started` event Slack sends."""
        channel, ts = "D" + user, self._next_ts()
        self.assistant_threads.add((channel, ts))
        return {
            "type": "assistant_thread_started",
            "assistant_thread": {"user_id": user, "context": {"channel_id": "C0GENERAL", "team_id": TEAM},
                                 "channel_id": channel, "thread_ts": ts},
            "event_ts": ts,
        }

    def shown(self, channel: str, thread_ts: str | None) -> AssistantThread:
        return self.assistant.get((channel, thread_ts)) or AssistantThread()

    def file_url(self, file_id: str, name: str) -> str:
        return f"{self.url}/files-pri/{TEAM}-{file_id}/download/{urllib.parse.quote(name)}"

    def add_file(self, file_id: str, name: str, data: bytes, mimetype: str = "text/plain") -> dict[str, Any]:
        self.files[file_id] = data
        return {
            "id": file_id, "name": name, "title": name, "mimetype": mimetype, "filetype": name.rsplit(".", 1)[-1],
            "size": len(data), "mode": "hosted",
            "url_private": self.file_url(file_id, name), "url_private_download": self.file_url(file_id, name),
        }

    # -- the server -------------------------------------------------------------------------------------------

    def app(self) -> web.Application:
        app = web.Application()
        app.router.add_route("*", "/api/{method}", self._api)
        app.router.add_post("/response/{hook}", self._response)
        app.router.add_get("/files-pri/{file}/download/{name}", self._file)
        app.router.add_get("/socket", self._socket)
        return app

    def _record(self, method: str, args: dict[str, Any], token: str | None) -> None:
        with self._lock:
            self.calls.append(Call(method, args, token))

    async def _api(self, request: web.Request) -> web.Response:
        method = request.match_info["method"]
        args: dict[str, Any] = dict(request.query)
        if request.can_read_body:
            if request.content_type == "application/json":
                args.update(await request.json())
            else:
                args.update(dict(await request.post()))
        auth = request.headers.get("Authorization", "")
        token = auth.removeprefix("Bearer ") if auth.startswith("Bearer ") else args.get("token")
        self._record(method, args, token)
        expected = APP_TOKEN if method == "apps.connections.open" else BOT_TOKEN
        if token != expected:
            return web.json_response({"ok": False, "error": "invalid_auth" if token else "not_authed"})
        fault = self._take_fault(method)
        if fault is not None and not fault.applied:
            return fault.response(request)
        if method in self.fail:
            return web.json_response({"ok": False, "error": self.fail[method]})
        handler = getattr(self, "_" + method.replace(".", "_"), None)
        if handler is None:
            return web.json_response({"ok": False, "error": "unknown_method"})
        result: dict[str, Any] = handler(args, request)
        if fault is not None:  # done, but the answer is lost
            return fault.response(request)
        return web.json_response(result)

    def _next_ts(self) -> str:
        return f"1800000000.{next(self._ts):06d}"

    def _auth_test(self, args: dict[str, Any], request: web.Request) -> dict[str, Any]:
        return {"ok": True, "url": "https://test.slack.com/", "team": "Test", "user": "qbot", "team_id": TEAM,
                "user_id": BOT_USER, "bot_id": BOT_ID, "is_enterprise_install": False}

    def _message_problem(self, args: dict[str, Any]) -> str | None:
        if not args.get("channel"):
            return "channel_not_found"
        if not str(args.get("text") or "").strip():
            return "no_text"
        return block_problem(args.get("blocks"))

    def _chat_postMessage(self, args: dict[str, Any], request: web.Request) -> dict[str, Any]:
        problem = self._message_problem(args)
        if problem:
            return {"ok": False, "error": problem}
        ts = self._next_ts()
        message = {"type": "message", "ts": ts, "text": args["text"], "blocks": args.get("blocks"),
                   "thread_ts": args.get("thread_ts"), "bot_id": BOT_ID, "user": BOT_USER}
        self.messages[(args["channel"], ts)] = message
        shown = self.assistant.get((args["channel"], str(args.get("thread_ts"))))
        if shown is not None:  # the app replied in the thread: Slack clears its status
            shown.status, shown.loading_messages = "", []
        return {"ok": True, "channel": args["channel"], "ts": ts, "message": message}

    def _chat_update(self, args: dict[str, Any], request: web.Request) -> dict[str, Any]:
        problem = self._message_problem(args)
        if problem:
            return {"ok": False, "error": problem}
        key = (args["channel"], str(args.get("ts")))
        if key not in self.messages:
            return {"ok": False, "error": "message_not_found"}
        self.messages[key].update(text=args["text"], blocks=args.get("blocks"))
        return {"ok": True, "channel": args["channel"], "ts": args["ts"], "text": args["text"]}

    def _chat_delete(self, args: dict[str, Any], request: web.Request) -> dict[str, Any]:
        key = (str(args.get("channel")), str(args.get("ts")))
        if self.messages.pop(key, None) is None:
            return {"ok": False, "error": "message_not_found"}
        return {"ok": True, "channel": key[0], "ts": key[1]}

    def _chat_postEphemeral(self, args: dict[str, Any], request: web.Request) -> dict[str, Any]:
        problem = self._message_problem(args)
        if problem:
            return {"ok": False, "error": problem}
        if not args.get("user"):
            return {"ok": False, "error": "user_not_found"}
        return {"ok": True, "message_ts": self._next_ts()}

    def _conversations_replies(self, args: dict[str, Any], request: web.Request) -> dict[str, Any]:
        channel, ts = str(args.get("channel") or ""), str(args.get("ts") or "")
        needed = HISTORY_SCOPES.get(channel[:1])
        if needed is None:
            return {"ok": False, "error": "channel_not_found"}
        if needed not in self.scopes:
            return {"ok": False, "error": "missing_scope", "needed": needed, "provided": ",".join(sorted(self.scopes))}
        if not ts:
            return {"ok": False, "error": "invalid_arguments"}
        messages = [m for (ch, _ts), m in list(self.messages.items())
                    if ch == channel and ts in (m["ts"], m.get("thread_ts"))]
        if not messages:
            return {"ok": False, "error": "thread_not_found"}
        inclusive = str(args.get("inclusive", "")).lower() in ("1", "true")
        oldest, latest = args.get("oldest"), args.get("latest")
        if oldest:
            messages = [m for m in messages if m["ts"] > oldest or (inclusive and m["ts"] == oldest)]
        if latest:
            messages = [m for m in messages if m["ts"] < latest or (inclusive and m["ts"] == latest)]
        messages.sort(key=lambda m: m["ts"])
        limit = int(args.get("limit") or 1000)
        return {"ok": True, "messages": [dict(m) for m in messages[:limit]], "has_more": len(messages) > limit}

    # -- Slack's AI-app surface --------------------------------------------------------------------------------

    def _assistant_problem(self, args: dict[str, Any], scopes: tuple[str, ...]) -> dict[str, Any] | None:
        if not self.scopes.intersection(scopes):
            return {"ok": False, "error": "missing_scope", "needed": ",".join(scopes),
                    "provided": ",".join(sorted(self.scopes))}
        channel = str(args.get("channel_id") or "")
        if channel[:1] not in HISTORY_SCOPES or len(channel) < 2:
            return {"ok": False, "error": "channel_not_found"}
        thread = args.get("thread_ts")
        if thread is not None and not TS_FORMAT.match(str(thread)):
            return {"ok": False, "error": "invalid_thread_ts"}
        return None

    def _assistant_threads_setStatus(self, args: dict[str, Any], request: web.Request) -> dict[str, Any]:
        problem = self._assistant_problem(args, ("chat:write", "assistant:write"))
        if problem:
            return problem
        status, loading = args.get("status"), args.get("loading_messages") or []
        if args.get("thread_ts") is None or not isinstance(status, str):
            return {"ok": False, "error": "invalid_arguments"}
        if not isinstance(loading, list) or len(loading) > MAX_LOADING_MESSAGES or not all(
                isinstance(m, str) and m for m in loading):
            return {"ok": False, "error": "invalid_arguments"}
        shown = self.assistant.setdefault((args["channel_id"], str(args["thread_ts"])), AssistantThread())
        shown.status, shown.loading_messages = status, list(loading) if status else []
        return {"ok": True}

    def _assistant_threads_setSuggestedPrompts(self, args: dict[str, Any], request: web.Request) -> dict[str, Any]:
        problem = self._assistant_problem(args, ("assistant:write",))
        if problem:
            return problem
        thread = args.get("thread_ts")
        if thread is not None and (args["channel_id"], str(thread)) not in self.assistant_threads:
            return {"ok": False, "error": "invalid_thread_ts"}
        prompts = args.get("prompts")
        if not isinstance(prompts, list) or not 1 <= len(prompts) <= MAX_PROMPTS or not all(
                isinstance(p, dict) and set(p) == {"title", "message"}
                and all(isinstance(v, str) and v.strip() for v in p.values()) for p in prompts):
            return {"ok": False, "error": "invalid_arguments"}
        title = args.get("title")
        if title is not None and not isinstance(title, str):
            return {"ok": False, "error": "invalid_arguments"}
        shown = self.assistant.setdefault((args["channel_id"], None if thread is None else str(thread)),
                                          AssistantThread())
        shown.prompts, shown.prompts_title = [dict(p) for p in prompts], title or ""
        return {"ok": True}

    def _assistant_threads_setTitle(self, args: dict[str, Any], request: web.Request) -> dict[str, Any]:
        problem = self._assistant_problem(args, ("assistant:write",))
        if problem:
            return problem
        thread, title = args.get("thread_ts"), str(args.get("title") or "")
        if thread is None or (args["channel_id"], str(thread)) not in self.assistant_threads:
            return {"ok": False, "error": "invalid_thread_ts"}
        if not title.strip():
            return {"ok": False, "error": "invalid_arguments"}
        self.assistant.setdefault((args["channel_id"], str(thread)), AssistantThread()).title = title
        return {"ok": True}

    def _users_info(self, args: dict[str, Any], request: web.Request) -> dict[str, Any]:
        user = str(args.get("user"))
        if user in self.user_errors:
            return {"ok": False, "error": self.user_errors[user]}
        if user not in self.emails:
            return {"ok": False, "error": "user_not_found"}
        profile: dict[str, Any] = {"real_name": user, "display_name": user}
        if self.emails[user]:
            profile["email"] = self.emails[user]
        return {"ok": True, "user": {"id": user, "team_id": TEAM, "name": user.lower(), "profile": profile}}

    def _views_open(self, args: dict[str, Any], request: web.Request) -> dict[str, Any]:
        trigger = str(args.get("trigger_id") or "")
        if not trigger:
            return {"ok": False, "error": "invalid_arguments"}
        if trigger in self._exchanged:
            return {"ok": False, "error": "exchanged_trigger_id"}
        view = args.get("view")
        if isinstance(view, str):
            try:
                view = json.loads(view)
            except ValueError:
                view = None
        problem = view_problem(view)
        if problem:
            return {"ok": False, "error": "invalid_arguments", "response_metadata": {"messages": [problem]}}
        assert isinstance(view, dict)
        self._exchanged.add(trigger)
        view_id = f"V{next(self._ts):08d}"
        self.views[view_id] = {**view, "id": view_id, "team_id": TEAM, "state": {"values": {}}}
        return {"ok": True, "view": self.views[view_id]}

    def submission(self, view_id: str, user: str, values: dict[str, dict[str, Any]]) -> dict[str, Any]:
        """The view_submission payload Slack sends when `user` submits the modal `view_id` with `values`
        ({block_id: {action_id: value}}; a list of option values for multi-selects and checkboxes): a chosen value
        must be one of the modal's options, a number a number, and a required input must be filled, as Slack's
        client allows nothing else."""
        view = self.views[view_id]
        state: dict[str, dict[str, Any]] = {}
        for block in view["blocks"]:
            if block.get("type") != "input":
                continue
            element = block["element"]
            given = values.get(block["block_id"], {}).get(element["action_id"])
            if given in (None, ""):
                assert block.get("optional"), f"{block['block_id']} is required"
                given = None
            if element["type"] in ("radio_buttons", "static_select"):
                option = next((o for o in element["options"] if o["value"] == given), None)
                assert given is None or option is not None, f"{given!r} is not an option"
                entry: dict[str, Any] = {"type": element["type"], "selected_option": option}
            elif element["type"] in ("multi_static_select", "checkboxes"):  # `given`: a list of option values
                chosen = [o for o in element["options"] if o["value"] in (given or [])]
                assert len(chosen) == len(given or []), f"{given!r} are not all options"
                entry = {"type": element["type"], "selected_options": chosen}
            elif element["type"] == "number_input":
                assert given is None or float(given) == float(given), f"{given!r} is not a number"
                entry = {"type": element["type"], "value": given}
            else:
                max_length = int(element.get("max_length", 3000))
                assert given is None or len(given) <= max_length, "longer than the input allows"
                entry = {"type": element["type"], "value": given}
            state[block["block_id"]] = {element["action_id"]: entry}
        return {
            "type": "view_submission", "team": {"id": TEAM, "domain": "test"},
            "user": {"id": user, "team_id": TEAM, "username": user.lower()}, "api_app_id": "A0TEST",
            "trigger_id": f"trig-{view_id}-{user}", "view": {**view, "state": {"values": state}},
        }

    def _conversations_open(self, args: dict[str, Any], request: web.Request) -> dict[str, Any]:
        users = str(args.get("users") or "")
        if not users or "," in users:
            return {"ok": False, "error": "user_not_found"}
        return {"ok": True, "channel": {"id": "D" + users}}

    def _apps_connections_open(self, args: dict[str, Any], request: web.Request) -> dict[str, Any]:
        return {"ok": True, "url": self.url.replace("http://", "ws://") + "/socket"}

    async def _response(self, request: web.Request) -> web.Response:
        body = await request.json()
        self._record("response", {"hook": request.match_info["hook"], **body}, None)
        problem = None if not body.get("blocks") else block_problem(body["blocks"])
        if problem:
            return web.Response(status=400, text=problem)
        return web.Response(text="ok")

    async def _file(self, request: web.Request) -> web.StreamResponse:
        file_id = request.match_info["file"].removeprefix(f"{TEAM}-")
        auth = request.headers.get("Authorization", "")
        self._record("file", {"id": file_id}, auth.removeprefix("Bearer ") or None)
        if auth != f"Bearer {BOT_TOKEN}":
            # Slack answers an unauthorized download with its sign-in page.
            return web.Response(text="<html>sign in</html>", content_type="text/html")
        if file_id not in self.files:
            return web.Response(status=404)
        return web.Response(body=self.files[file_id], content_type="application/octet-stream")

    # -- Socket Mode --------------------------------------------------------------------------------------------

    async def _socket(self, request: web.Request) -> web.WebSocketResponse:
        ws = web.WebSocketResponse()
        await ws.prepare(request)
        self._sockets.append(ws)
        await ws.send_json({"type": "hello", "num_connections": 1, "connection_info": {"app_id": "A0TEST"}})
        async for message in ws:
            if message.type == web.WSMsgType.TEXT:
                with self._lock:
                    self.socket_acks.append(json.loads(message.data))
        return ws

    @property
    def socket_connected(self) -> bool:
        return any(not ws.closed for ws in self._sockets)

    async def send_envelope(self, envelope: dict[str, Any]) -> None:
        for ws in self._sockets:
            if not ws.closed:
                await ws.send_json(envelope)
                return
        raise AssertionError("no Socket Mode connection")

    async def close_sockets(self) -> None:
        await asyncio.gather(*(ws.close() for ws in self._sockets if not ws.closed))
