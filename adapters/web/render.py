"""The core's neutral replies as the JSON the console page renders (static/app.js escapes all of it).

Source and notice URLs are passed on as the core made them: a source's URL was checked where the Answer was
built (bot.urls.safe_link), a notice's URL is the bot's own sign-in link.
"""

from __future__ import annotations

from typing import Any

from bot.history import PastMessage, PastQuestion
from bot.model import Answer, Notice, Reply


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
        }
    return render_notice(reply)


def render_notice(notice: Notice) -> dict[str, Any]:
    return {"type": notice.kind.value, "text": notice.text, "url": notice.url}


def render_past(message: PastMessage) -> dict[str, Any]:
    """A message of a conversation opened from the history: the user's question, or an answer as above."""
    if isinstance(message, PastQuestion):
        return {"type": "question", "text": message.text}
    return render_reply(message)
