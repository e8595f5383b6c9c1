"""The application's plugins, as Q Business runs them in a ChatSync turn: a ticketing action and an OAuth one.

- `jira` (type JIRA): asked to create a ticket (chatMode PLUGIN_MODE with its id, or a question that asks to
  create one), it answers with an `actionReview`: the ticket's fields, with display names and order,
  descriptions, types (STRING, NUMBER, ARRAY, BOOLEAN), allowed values, required or not, and current values.
  The client runs it with `actionExecution` in the same conversation, on the reviewed message: the payload is
  checked against the review (every required field, known fields only, types, allowed values) and recorded
  with the caller's email; anything else is a ValidationException and nothing is run.
- `salesforce` (type SALESFORCE): until the caller has authorized it, a turn answers with an
  `authChallengeRequest` whose authorizationUrl is this stand-in's own consent page; approving it redirects
  the browser to the client's callback (`redirect_uri`) with a one-time code and the challenge's state. The
  client sends both back as `authChallengeResponse.responseMap`: the code is redeemed (once, by the caller the
  challenge was for, in its conversation) and the original request is answered.

Everything is kept per caller (email): a review, challenge or code of someone else's looks like none at all.
"""

from __future__ import annotations

import html
import secrets
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any
from urllib.parse import urlencode

from aiohttp import web

from sandbox.qbusiness.restjson import not_found, validation_error

JIRA = "jira"
SALESFORCE = "salesforce"
AUTHORIZE_PATH = "/plugins/oauth/authorize"
DEFAULT_REDIRECT_URI = "http://127.0.0.1:3978/auth/plugin/callback"  # the bot's callback, in the default sandbox
CHALLENGE_SECONDS = 600.0
SEPARATOR = "."
PROJECTS = (("IT", "IT Help Desk"), ("ENG", "Engineering"), ("HR", "People Team"))
LABELS = ("access", "hardware", "software", "urgent")
WANTS_TICKET = ("create a ticket", "open a ticket", "file a ticket", "raise a ticket", "create a jira", "new ticket")


@dataclass(frozen=True)
class Plugin:
    plugin_id: str
    name: str
    type: str
    server_url: str
    created_at: datetime

    def as_wire(self) -> dict[str, Any]:
        return {
            "pluginId": self.plugin_id,
            "displayName": self.name,
            "type": self.type,
            "serverUrl": self.server_url,
            "state": "ENABLED",
            "buildStatus": "READY",
            "createdAt": self.created_at,
            "updatedAt": self.created_at,
        }


@dataclass(frozen=True)
class PluginExecution:
    """One action run, as received: what tests assert the client sent."""

    email: str
    plugin_id: str
    conversation_id: str
    payload: dict[str, Any]


@dataclass(frozen=True)
class PendingReview:
    email: str
    plugin_id: str
    fields: dict[str, dict[str, Any]]


@dataclass(frozen=True)
class Challenge:
    email: str
    application_id: str
    plugin_id: str
    conversation_id: str
    question: str
    expires: float


@dataclass(frozen=True)
class Turn:
    """What a plugin answers a turn with: the system message and the response members it adds."""

    text: str
    members: dict[str, Any] = field(default_factory=dict)


def plugin_id(application_id: str, name: str) -> str:
    return str(uuid.uuid5(uuid.NAMESPACE_URL, f"plugin/{application_id}/{name}"))


def ticket_fields(summary: str) -> dict[str, dict[str, Any]]:
    """The review's payload: every field type, required and optional ones, choices and current values."""
    summary = " ".join(summary.split())[:200] or "New ticket"
    return {
        f"fields{SEPARATOR}summary": {
            "displayName": "Summary", "displayOrder": 1, "type": "STRING", "required": True, "value": summary,
            "displayDescription": "A one-line title for the ticket.",
        },
        f"fields{SEPARATOR}project": {
            "displayName": "Project", "displayOrder": 2, "type": "STRING", "required": True, "value": "IT",
            "allowedValues": [{"value": key, "displayValue": label} for key, label in PROJECTS],
        },
        f"fields{SEPARATOR}priority": {
            "displayName": "Priority", "displayOrder": 3, "type": "NUMBER", "required": False, "value": 3,
            "displayDescription": "1 (highest) to 5 (lowest).",
        },
        f"fields{SEPARATOR}labels": {
            "displayName": "Labels", "displayOrder": 4, "type": "ARRAY", "required": False, "value": [],
            "allowedValues": [{"value": label, "displayValue": label.title()} for label in LABELS],
            "arrayItemJsonSchema": {"type": "string"},
        },
        f"fields{SEPARATOR}notifyWatchers": {
            "displayName": "Notify watchers", "displayOrder": 5, "type": "BOOLEAN", "required": False, "value": True,
        },
        f"fields{SEPARATOR}description": {
            "displayName": "Description", "displayOrder": 6, "type": "STRING", "required": False,
            "displayDescription": "What happened, and what you need.",
        },
    }


class SandboxPlugins:
    """The plugins of each application, the reviews and challenges pending per caller, the actions run."""

    def __init__(self, clock: Callable[[], float] = time.monotonic) -> None:
        self.redirect_uri = DEFAULT_REDIRECT_URI  # where the consent page sends the browser back (the bot)
        self.base_url = "http://127.0.0.1:3981"  # this stand-in's address, as its last caller reached it
        self.executed: list[PluginExecution] = []
        self.authorized: set[tuple[str, str, str]] = set()  # (application, email, plugin id)
        self._clock = clock
        self._plugins: dict[str, dict[str, Plugin]] = {}
        self._reviews: dict[tuple[str, str], PendingReview] = {}  # (conversation, system message) -> review
        self._challenges: dict[str, Challenge] = {}  # state -> challenge
        self._codes: dict[str, str] = {}  # one-time code -> state

    # -- the control plane's part ---------------------------------------------------------------------------

    def install(self, application_id: str) -> None:
        now = datetime.now(UTC)
        self._plugins[application_id] = {
            plugin.plugin_id: plugin
            for plugin in (
                Plugin(plugin_id(application_id, JIRA), JIRA, "JIRA", "https://jira.example.com", now),
                Plugin(plugin_id(application_id, SALESFORCE), SALESFORCE, "SALESFORCE",
                       "https://example.my.salesforce.com", now),
            )
        }

    def of(self, application_id: str) -> list[Plugin]:
        return list(self._plugins.get(application_id, {}).values())

    def find(self, application_id: str, plugin: str) -> Plugin | None:
        return self._plugins.get(application_id, {}).get(plugin)

    # -- a turn ----------------------------------------------------------------------------------------------

    def chosen(self, application_id: str, params: dict[str, Any]) -> Plugin | None:
        """The plugin this turn runs: PLUGIN_MODE's (which must exist), else jira when the question asks for a
        ticket, else none."""
        if params.get("chatMode") == "PLUGIN_MODE":
            wanted = params["chatModeConfiguration"]["pluginConfiguration"]["pluginId"]
            plugin = self.find(application_id, wanted)
            if plugin is None:
                raise not_found(f"Plugin {wanted} not found.", wanted, "Plugin")
            return plugin
        question = " ".join(str(params.get("userMessage") or "").lower().split())
        if any(phrase in question for phrase in WANTS_TICKET):
            return self.find(application_id, plugin_id(application_id, JIRA))
        return None

    def ask(self, application_id: str, email: str, plugin: Plugin, question: str) -> Turn:
        """The plugin's answer to a question (the review or challenge is pending once `recorded`)."""
        if plugin.name == JIRA:
            review = {
                "pluginId": plugin.plugin_id, "pluginType": plugin.type, "payloadFieldNameSeparator": SEPARATOR,
                "payload": ticket_fields(question),
            }
            return Turn("Review the ticket below, then confirm to create it in Jira.", {"actionReview": review})
        if (application_id, email, plugin.plugin_id) in self.authorized:
            return Turn(_salesforce_answer(email, question))
        state = secrets.token_urlsafe(24)
        query = urlencode({"response_type": "code", "client_id": "qbusiness", "redirect_uri": self.redirect_uri,
                           "state": state})
        url = f"{self.base_url}{AUTHORIZE_PATH}?{query}"
        return Turn("Salesforce needs your authorization first.", {"authChallengeRequest": {"authorizationUrl": url}})

    def recorded(
        self, application_id: str, email: str, question: str, conversation_id: str, message_id: str, turn: Turn
    ) -> None:
        """The turn is in the conversation: its review waits on `message_id`, its challenge on its state."""
        review = turn.members.get("actionReview")
        if review is not None:
            self._reviews[(conversation_id, message_id)] = PendingReview(email, review["pluginId"], review["payload"])
        challenge = turn.members.get("authChallengeRequest")
        if challenge is not None:
            state = challenge["authorizationUrl"].rpartition("state=")[2]
            self._challenges[state] = Challenge(
                email, application_id, plugin_id(application_id, SALESFORCE), conversation_id, question,
                self._clock() + CHALLENGE_SECONDS,
            )

    def execute(self, application_id: str, email: str, params: dict[str, Any]) -> Turn:
        """`actionExecution` on the conversation's reviewed message: checked, recorded, confirmed."""
        execution = params["actionExecution"]
        wanted = execution["pluginId"]
        if self.find(application_id, wanted) is None:
            raise validation_error(
                f"Plugin {wanted} is not a plugin of this application.", ("actionExecution.pluginId", "unknown plugin")
            )
        conversation_id = params.get("conversationId")
        review = self._reviews.get((conversation_id or "", params.get("parentMessageId") or ""))
        if review is None or review.email != email or review.plugin_id != wanted:
            raise validation_error(
                "No action of this plugin is awaiting review on the parent message of this conversation.",
                ("actionExecution", "must run the action reviewed in this conversation"),
            )
        if execution["payloadFieldNameSeparator"] != SEPARATOR:
            raise validation_error(
                f"payloadFieldNameSeparator must be '{SEPARATOR}', as in the action review.",
                ("actionExecution.payloadFieldNameSeparator", "must match the review"),
            )
        payload = {key: item.get("value") for key, item in execution["payload"].items()}
        problems = payload_problems(review.fields, payload)
        if problems:
            raise validation_error("The action payload is not valid: " + "; ".join(problems) + ".",
                                   *[("actionExecution.payload", problem) for problem in problems])
        del self._reviews[(conversation_id or "", params.get("parentMessageId") or "")]
        self.executed.append(PluginExecution(email, wanted, conversation_id or "", payload))
        key = f"{payload[f'fields{SEPARATOR}project']}-{100 + len(self.executed)}"
        return Turn(f"Created Jira ticket {key}: {payload[f'fields{SEPARATOR}summary']}")

    def authorize(self, application_id: str, email: str, params: dict[str, Any]) -> Turn:
        """`authChallengeResponse`: the consent's code for the caller's own challenge, in its conversation; the
        plugin is then authorized and the original question answered (returned with it)."""
        response = params["authChallengeResponse"]["responseMap"]
        state, code = response.get("state", ""), response.get("code", "")
        challenge = self._challenges.get(state)
        fits = (
            challenge is not None and challenge.email == email and challenge.application_id == application_id
            and challenge.conversation_id == params.get("conversationId") and challenge.expires > self._clock()
        )
        if challenge is None or not fits:
            raise validation_error(
                "The authorization response does not answer a pending challenge of this conversation.",
                ("authChallengeResponse.responseMap", "unknown or expired state"),
            )
        if not code or self._codes.get(code) != state:
            raise validation_error(
                "The authorization code is not valid.", ("authChallengeResponse.responseMap", "invalid code")
            )
        del self._codes[code], self._challenges[state]
        self.authorized.add((application_id, email, challenge.plugin_id))
        return Turn(_salesforce_answer(email, challenge.question))

    # -- the consent page (HTTP, unsigned: a browser calls it) ------------------------------------------------

    def routes(self) -> list[web.RouteDef]:
        return [web.get(AUTHORIZE_PATH, self._consent_page), web.post(AUTHORIZE_PATH, self._consent)]

    def _pending_state(self, state: str, redirect_uri: str) -> Challenge | None:
        challenge = self._challenges.get(state)
        if challenge is None or challenge.expires <= self._clock() or redirect_uri != self.redirect_uri:
            return None
        return challenge

    async def _consent_page(self, request: web.Request) -> web.Response:
        state, redirect_uri = request.query.get("state", ""), request.query.get("redirect_uri", "")
        if self._pending_state(state, redirect_uri) is None:
            return web.Response(status=400, text="This authorization request is unknown or has expired.")
        fields_html = "".join(
            f'<input type="hidden" name="{name}" value="{html.escape(value)}">'
            for name, value in (("state", state), ("redirect_uri", redirect_uri))
        )
        body = (
            "<!doctype html><title>Salesforce (sandbox)</title><h1>Allow Amazon Q Business to use Salesforce?</h1>"
            f"<p>It will read your opportunities and accounts.</p><form method=post>{fields_html}"
            '<button name=decision value=approve>Allow</button> <button name=decision value=deny>Deny</button></form>'
        )
        return web.Response(text=body, content_type="text/html")

    async def _consent(self, request: web.Request) -> web.Response:
        form = await request.post()
        state, redirect_uri = str(form.get("state", "")), str(form.get("redirect_uri", ""))
        if self._pending_state(state, redirect_uri) is None:
            return web.Response(status=400, text="This authorization request is unknown or has expired.")
        if form.get("decision") != "approve":
            raise web.HTTPFound(f"{redirect_uri}?{urlencode({'error': 'access_denied', 'state': state})}")
        code = secrets.token_urlsafe(24)
        self._codes[code] = state
        raise web.HTTPFound(f"{redirect_uri}?{urlencode({'code': code, 'state': state})}")


def payload_problems(fields: dict[str, dict[str, Any]], payload: dict[str, Any]) -> list[str]:
    """What makes an executed payload differ from its review: unknown fields, missing required ones, a value of
    the wrong type or outside the allowed values."""
    problems = [f"{key} is not a field of the reviewed action" for key in payload if key not in fields]
    for key, spec in fields.items():
        value = payload.get(key)
        if value is None or value == "" or value == []:
            if spec.get("required"):
                problems.append(f"{key} is required")
            continue
        kind = spec.get("type")
        items = value if kind == "ARRAY" and isinstance(value, list) else [value]
        typed = {
            "STRING": isinstance(value, str),
            "NUMBER": isinstance(value, int | float) and not isinstance(value, bool),
            "BOOLEAN": isinstance(value, bool),
            "ARRAY": isinstance(value, list),
        }.get(str(kind), False)
        if not typed:
            problems.append(f"{key} must be {'an array' if kind == 'ARRAY' else 'a ' + str(kind).lower()}")
            continue
        allowed = [choice.get("value") for choice in spec.get("allowedValues") or []]
        if allowed and any(item not in allowed for item in items):
            problems.append(f"{key} must be one of {', '.join(str(choice) for choice in allowed)}")
    return problems


def _salesforce_answer(email: str, question: str) -> str:
    return (
        f"From Salesforce, as {email}: 3 open opportunities (Acme renewal, 120,000 USD, closing this quarter; "
        "Globex expansion, 45,000 USD; Initech pilot, 12,000 USD). "
        f"Asked: {' '.join(question.split())[:200]}"
    )
