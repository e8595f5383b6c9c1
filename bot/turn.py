"""The turn port: what the core may ask of the chat platform while it answers one message.

`Core.handle(message, turn)` drives every message the same way, whatever the platform: de-duplication, the
command, the email rule, who may see the reply, progress for linked users, which files are read and when.
Each adapter implements this small protocol (in the spirit of the Agents SDK's TurnContext) and renders the
reply `handle` returns; it decides nothing else.
"""

from __future__ import annotations

from typing import Protocol

from bot.attachments import FileRoom
from bot.model import ChatFile, FailedAttachment, IncomingMessage, OfferedFile, ProfileEmail


class Turn(Protocol):
    #: the platform's own sign-in is the account link (the web console): `qlink` hands out no link there
    signs_in_itself: bool

    async def show_progress(self, *, private: bool) -> None:
        """Show the asker that the question is being worked on (a placeholder, typing): only the asker when
        `private`. Best effort: the core carries on if it fails."""
        ...

    async def profile_email(self) -> ProfileEmail:
        """The email of the asker's chat profile, read when they link (for the email rule)."""
        ...

    async def download(self, file: OfferedFile, room: FileRoom) -> ChatFile | FailedAttachment:
        """Read one offered file, asking `room.refuse(size)` as its bytes arrive; a note says why not."""
        ...

    def address(self) -> str:
        """The adapter's note of where to answer this message later, out of turn (a question kept while its
        asker signs in again); the core keeps it sealed and hands it back. "" when the message says enough."""
        ...


class QuietTurn:
    """A turn with nothing to show or fetch, whose profile email is the message's own: for callers without a
    platform (benchmarks, tests of the core) and platforms that read nothing more (the web console)."""

    signs_in_itself = False

    def __init__(self, message: IncomingMessage) -> None:
        self._email = message.profile_email

    async def show_progress(self, *, private: bool) -> None:
        """Nothing to show."""

    async def profile_email(self) -> ProfileEmail:
        return ProfileEmail(self._email, "" if self._email else "the chat profile shows no email address")

    async def download(self, file: OfferedFile, room: FileRoom) -> ChatFile | FailedAttachment:
        return FailedAttachment(file.name, "not read: this chat cannot hand files over.")

    def address(self) -> str:
        return ""
