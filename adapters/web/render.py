"""The core's neutral replies as the JSON the console page renders (static/app.js escapes all of it).

Source and notice URLs are passed on as the core made them: a source's URL was checked where the Answer was
built (bot.urls.safe_link), a notice's URL is the bot's own sign-in link.
"""

from __future__ import annotations

from typing import Any

from bot.history import PastMessage, PastQuestion
from bot.model import ActionReview, Answer, FieldType, Notice, PluginAuth, Reply


def render_reply(reply: Reply) -> dict[str, Any]:
    if isinstance(reply, Answer):
        return {
            "type": "answer",
            "text": reply.text,
            "sources": [
                {"number": s.number, "title": s.title, "url": s.url, "snippet": s.snippet} for s in reply.sources
            ],
            "conversation_id": reply.conversation_id,
            "message_id": reply.message_id,
            "failed_attachments": [{"name": f.name, "error": f.error} for f in reply.failed_attachments],
            "action_review": render_review(reply.action_review) if reply.action_review else None,
            "plugin_auth": render_plugin_auth(reply.plugin_auth) if reply.plugin_auth else None,
        }
    return render_notice(reply)


def render_review(review: ActionReview) -> dict[str, Any] | None:
    """A proposed plugin action as the form the page builds: fields in Q's order, each with its kind, whether it
    is required, Q's current value (a choice's token for fields with allowed values) and the choices."""
    if not review.review_id:
        return None
    fields = []
    for field in review.fields:
        current = field.value if isinstance(field.value, list) else [field.value]
        value: Any = field.value
        if field.choices:
            value = [c.token for c in field.choices if c.value in current]
        elif field.type is FieldType.ARRAY and isinstance(field.value, list):
            value = "\n".join(str(item) for item in field.value)
        elif field.type is FieldType.BOOLEAN:
            value = field.value is True
        elif not isinstance(field.value, str | int | float) or isinstance(field.value, bool):
            value = None
        fields.append({
            "key": field.key, "label": field.label, "type": field.type.value, "required": field.required,
            "description": field.description, "value": value,
            "choices": [{"value": c.token, "label": c.label} for c in field.choices],
        })
    return {"review_id": review.review_id, "plugin_type": review.plugin_type, "fields": fields}


def render_plugin_auth(auth: PluginAuth) -> dict[str, Any] | None:
    """The plugin's consent: the core's one-time start URL (the bot's own), never Q's URL directly."""
    return {"plugin": auth.plugin, "url": auth.start_url} if auth.start_url else None


def render_notice(notice: Notice) -> dict[str, Any]:
    return {"type": notice.kind.value, "text": notice.text, "url": notice.url}


def render_past(message: PastMessage) -> dict[str, Any]:
    """A message of a conversation opened from the history: the user's question, or an answer as above."""
    if isinstance(message, PastQuestion):
        return {"type": "question", "text": message.text}
    return render_reply(message)
