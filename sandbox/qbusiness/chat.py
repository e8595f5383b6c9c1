"""One ChatSync turn: idempotent by clientToken, continuing a conversation at its latest answer, reading the
attached files as documents only the asker may read, and answering from what the asker may read.

The chat mode decides what an answer may draw on: RETRIEVAL_MODE (the default) the index documents the asker
may read that pass the turn's attributeFilter, plus the conversation's files; CREATOR_MODE only the
conversation's files, else the model's general knowledge, so it never cites an index document.

The service (`service`) has authenticated the caller and checked the application before a turn is taken;
a turn only ever sees the caller's own email.
"""

from __future__ import annotations

import hashlib
import json
import re
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import PurePosixPath
from typing import Any

from sandbox.qbusiness.controlplane import Application
from sandbox.qbusiness.conversations import ClientTokens, Conversation, ConversationStore, Message, new_id
from sandbox.qbusiness.corpus import Acl, Document
from sandbox.qbusiness.errors import CONVERSATION_GONE, from_request
from sandbox.qbusiness.filters import check_chat_mode, check_filter, matches
from sandbox.qbusiness.plugins import SandboxPlugins, Turn
from sandbox.qbusiness.restjson import ServiceError, not_found, validation_error
from sandbox.qbusiness.retrieval import Answer, AnswerEngine, Citation, answer_from_files, compose, general_answer

TEXT_ATTACHMENTS = frozenset({".txt", ".text", ".md", ".markdown", ".csv", ".json", ".html", ".htm"})


class ChatTurns:
    """Takes ChatSync turns against the conversations and the answer engine the service owns."""

    def __init__(
        self,
        conversations: ConversationStore,
        engine: AnswerEngine,
        max_attachment_bytes: Callable[[], int],
        plugins: SandboxPlugins | None = None,
    ) -> None:
        self.conversations = conversations
        self.engine = engine
        self.plugins = plugins or SandboxPlugins()
        self._max_attachment_bytes = max_attachment_bytes
        self._client_tokens = ClientTokens()

    def take(self, app: Application, email: str, params: dict[str, Any], request_id: str) -> dict[str, Any]:
        """One turn: remembered if its clientToken was seen, else continue or start the conversation."""
        check_chat_mode(params)
        if params.get("attributeFilter") is not None:
            check_filter(params["attributeFilter"])
        token = params.get("clientToken")
        fingerprint = _fingerprint(params)
        if token:
            remembered = self._client_tokens.recall(app.id, email, token)
            if remembered is not None:
                if remembered.fingerprint != fingerprint:
                    raise ServiceError(
                        "ConflictException",
                        f"The clientToken {token} was already used with different request parameters.",
                        409,
                        resourceId=token,
                        resourceType="ClientToken",
                    )
                return remembered.response
        if params.get("actionExecution") is not None or params.get("authChallengeResponse") is not None:
            response = self._plugin_turn(app, email, params, request_id)
        else:
            response = self._question_turn(app, email, params, request_id)
        if token:
            self._client_tokens.remember(app.id, email, token, fingerprint, response)
        return response

    def _question_turn(self, app: Application, email: str, params: dict[str, Any], request_id: str) -> dict[str, Any]:
        """A question (and files): answered from what the asker may read, or by the plugin it calls for."""
        message = params.get("userMessage") or ""
        if not message.strip() and not params.get("attachments"):
            raise validation_error(
                "Either userMessage or attachments must be provided.", ("userMessage", "Member must not be blank")
            )
        plugin = self.plugins.chosen(app.id, params)
        conversation = self._continued(app, email, params, request_id)
        if plugin is not None and message.strip():
            turn = self.plugins.ask(app.id, email, plugin, message)
            response = self._record_turn(app, email, conversation, message, [], [], Answer(turn.text), turn.members)
            self.plugins.recorded(
                app.id, email, message, response["conversationId"], response["systemMessageId"], turn
            )
            return response
        accepted, failed = self._read_attachments(app, email, params.get("attachments", []))
        earlier = conversation.attachments if conversation else []
        answer = self._answer(app, email, message, [*earlier, *accepted], conversation, params)
        return self._record_turn(app, email, conversation, message, accepted, failed, answer)

    def _plugin_turn(self, app: Application, email: str, params: dict[str, Any], request_id: str) -> dict[str, Any]:
        """The reviewed action run (actionExecution), or the plugin's authorization completed
        (authChallengeResponse) and the question it held up answered: always in the conversation asked in."""
        if params.get("actionExecution") is not None and params.get("authChallengeResponse") is not None:
            raise validation_error(
                "actionExecution and authChallengeResponse cannot be sent together.",
                ("authChallengeResponse", "Member must be null with actionExecution"),
            )
        if params.get("conversationId") is None or params.get("parentMessageId") is None:
            raise validation_error(
                "A plugin action or authorization continues a conversation: conversationId and parentMessageId "
                "are required.", ("conversationId", "Member must not be null"),
            )
        conversation = self._continued(app, email, params, request_id)
        turn: Turn
        if params.get("actionExecution") is not None:
            turn = self.plugins.execute(app.id, email, params)
        else:
            turn = self.plugins.authorize(app.id, email, params)
        message = params.get("userMessage") or ""
        return self._record_turn(app, email, conversation, message, [], [], Answer(turn.text), turn.members)

    def _continued(self, app: Application, email: str, params: dict[str, Any], request_id: str) -> Conversation | None:
        """The conversation this turn continues (None: a new one), its parent message checked."""
        conversation_id = params.get("conversationId")
        parent = params.get("parentMessageId")
        if conversation_id is None:
            if parent is not None:
                raise validation_error(
                    "parentMessageId is only valid together with conversationId.",
                    ("parentMessageId", "requires conversationId"),
                )
            return None
        conversation = self.conversations.find(app.id, email, conversation_id)
        if conversation is None:
            raise not_found(from_request(request_id, CONVERSATION_GONE), conversation_id, "Conversation")
        latest = conversation.latest_system_message()
        if parent is not None and (latest is None or parent != latest.message_id):
            raise validation_error(
                f"parentMessageId {parent} is not the latest system message of conversation {conversation_id}.",
                ("parentMessageId", "must be the conversation's latest system message id"),
            )
        return conversation

    def _read_attachments(
        self, app: Application, email: str, attachments: list[dict[str, Any]]
    ) -> tuple[list[Document], list[dict[str, Any]]]:
        """Text-like files become documents only this user can read; anything else is reported FAILED."""
        accepted: list[Document] = []
        failed: list[dict[str, Any]] = []
        enabled = (app.spec.get("attachmentsConfiguration") or {}).get("attachmentsControlMode") != "DISABLED"
        for attachment in attachments:
            name = attachment.get("name") or "attachment"
            problem = self._attachment_problem(name, attachment, enabled)
            text = None if problem else _attachment_text(name, attachment["data"])
            if problem is None and text is None:
                problem = f"{name} could not be read as UTF-8 text."
            if problem is not None or text is None:
                failed.append(
                    {
                        "name": name,
                        "status": "FAILED",
                        "error": {"errorCode": "InvalidRequest", "errorMessage": problem},
                        "attachmentId": new_id(),
                    }
                )
                continue
            accepted.append(Document(f"attachment-{new_id()}", name, text, Acl.only(email), None, datetime.now(UTC)))
        return accepted, failed

    def _attachment_problem(self, name: str, attachment: dict[str, Any], enabled: bool) -> str | None:
        if not enabled:
            return "File uploads are disabled for this application."
        if "data" not in attachment:
            return f"{name} has no data; copying attachments from another conversation is not supported here."
        if len(attachment["data"]) > self._max_attachment_bytes():
            limit = self._max_attachment_bytes() // (1024 * 1024)
            return f"{name} is larger than the {limit} MB size limit for a file uploaded to a conversation."
        if PurePosixPath(name).suffix.lower() not in TEXT_ATTACHMENTS:
            return f"The file type of {name} is not supported. Upload a .txt, .md, .csv, .json or .html file."
        return None

    def _answer(
        self,
        app: Application,
        email: str,
        message: str,
        attachments: list[Document],
        conversation: Conversation | None,
        params: dict[str, Any],
    ) -> Answer:
        if not message.strip():
            return compose(attachments, [])
        previous = conversation.latest_question() if conversation else None
        if params.get("chatMode") == "CREATOR_MODE":
            from_files = answer_from_files(message, attachments)
            return from_files if from_files.citations else general_answer(message)
        scope = params.get("attributeFilter")
        readable = [
            document
            for index in app.native_indices()
            for document in index.documents
            if document.acl.allows(email, index.groups_of(email))
            and (scope is None or matches(scope, document.attributes))
        ]
        return self.engine.answer(message, [*readable, *attachments], previous)

    def _record_turn(
        self,
        app: Application,
        email: str,
        conversation: Conversation | None,
        message: str,
        accepted: list[Document],
        failed: list[dict[str, Any]],
        answer: Answer,
        members: dict[str, Any] | None = None,
    ) -> dict[str, Any]:
        if conversation is None:
            conversation = self.conversations.start(app.id, email, message or (accepted[0].title if accepted else ""))
        now = datetime.now(UTC)
        conversation.attachments.extend(accepted)
        attached = [
            {
                "name": doc.title,
                "status": "SUCCESS",
                "attachmentId": doc.document_id.removeprefix("attachment-"),
                "conversationId": conversation.conversation_id,
            }
            for doc in accepted
        ] + [{**item, "conversationId": conversation.conversation_id} for item in failed]
        user_message = Message(new_id(), "USER", message, now, attachments=attached)
        sources = [_source(citation, app) for citation in answer.citations]
        system_message = Message(new_id(), "SYSTEM", answer.text, now, source_attributions=sources)
        conversation.messages.extend([user_message, system_message])
        self.conversations.touch(conversation)
        return {
            "conversationId": conversation.conversation_id,
            "systemMessage": answer.text,
            "systemMessageId": system_message.message_id,
            "userMessageId": user_message.message_id,
            "sourceAttributions": sources,
            "failedAttachments": [{**item, "conversationId": conversation.conversation_id} for item in failed],
            **(members or {}),
        }


def _fingerprint(params: dict[str, Any]) -> str:
    def plain(value: Any) -> Any:
        if isinstance(value, bytes):
            return hashlib.sha256(value).hexdigest()
        if isinstance(value, datetime):
            return value.isoformat()
        if isinstance(value, dict):
            return {key: plain(item) for key, item in value.items()}
        if isinstance(value, list):
            return [plain(item) for item in value]
        return value

    significant = {key: value for key, value in params.items() if key != "clientToken"}
    return hashlib.sha256(json.dumps(plain(significant), sort_keys=True).encode()).hexdigest()


def _attachment_text(name: str, data: bytes) -> str | None:
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError:
        return None
    if PurePosixPath(name).suffix.lower() in (".html", ".htm"):
        text = re.sub(r"<(script|style)\b.*?</\1>", " ", text, flags=re.DOTALL | re.IGNORECASE)
        text = re.sub(r"<[^>]+>", "\n", text)
    return text


def _source(citation: Citation, app: Application) -> dict[str, Any]:
    document = citation.document
    index_id = next((index.id for index in app.indices.values() if document in index.documents), None)
    return {
        "title": document.title,
        "snippet": citation.excerpt,
        "url": document.url,
        "citationNumber": citation.number,
        "updatedAt": document.updated,
        "documentId": document.document_id,
        "indexId": index_id,
        "textMessageSegments": [
            {
                "beginOffset": citation.begin,
                "endOffset": citation.end,
                "snippetExcerpt": {"text": citation.excerpt},
            }
        ],
    }
