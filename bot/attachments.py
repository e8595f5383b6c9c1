"""Which files a chat message may hand to ChatSync, and how many bytes of them the process may hold at once.

One policy for every adapter, with the notes users see. Adapters download files themselves (each platform has
its own way), but ask here first which ones to take: at most `MAX_FILES` per message, only types Amazon Q
Business reads, each at most `MAX_FILE_BYTES` (checked again while downloading, since a platform may not say a
file's size up front). A skipped file becomes a `FailedAttachment` with the reason, so adapters render it
exactly like a file Q itself refused.

`DownloadBudget` bounds the memory files take: every byte an adapter downloads is reserved first, against a
process-wide total (`QBOT_FILE_BUDGET_MB`) and a per-user cap (`QBOT_FILE_BUDGET_PER_USER_MB`), and stays
reserved until the turn that uses the files has ended (ChatSync answered or failed). A message whose files
don't fit waits, in arrival order, at most `QBOT_FILE_WAIT_SECONDS`; files still without room are left out
with a note that says why. So however many users send files at once, the bytes held never exceed the budget.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections import deque
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping, Sequence
from contextlib import asynccontextmanager
from dataclasses import dataclass
from pathlib import PurePosixPath

from bot.config import env_int
from bot.model import ChatFile, FailedAttachment, OfferedFile

log = logging.getLogger(__name__)

MAX_FILES = 5
MAX_FILE_BYTES = 10 * 1024 * 1024
MB = 1024 * 1024
# The document types Amazon Q Business accepts as chat attachments.
SUPPORTED_SUFFIXES = frozenset(
    {
        ".txt", ".text", ".md", ".markdown", ".csv", ".json", ".xml", ".html", ".htm", ".rtf",
        ".pdf", ".docx", ".xlsx", ".pptx",
    }
)
# One message's worth of files. Sending files to Q costs about five times their size more while ChatSync
# serialises them (base64, then JSON): 50 MB of files keep the process's peak within +400 MB (bench/files.py).
DEFAULT_BUDGET_MB = MAX_FILES * MAX_FILE_BYTES // MB
DEFAULT_PER_USER_MB = DEFAULT_BUDGET_MB
DEFAULT_WAIT_SECONDS = 60
BUSY = "not read: I'm busy reading other files right now; send it again in a minute."


def file_problem(name: str, size: int | None = None) -> str | None:
    """Why this file can't go to Q (None: it can), from its name and, when known, its size in bytes."""
    suffix = PurePosixPath(name).suffix.lower()
    if suffix not in SUPPORTED_SUFFIXES:
        kinds = ", ".join(sorted(s.lstrip(".") for s in SUPPORTED_SUFFIXES))
        return f"{suffix.lstrip('.') or 'this'} files aren't supported; send one of: {kinds}."
    if size is not None and size > MAX_FILE_BYTES:
        return too_large()
    return None


def too_large() -> str:
    return f"larger than the {MAX_FILE_BYTES // MB} MB limit per file."


def too_many(name: str) -> FailedAttachment:
    return FailedAttachment(name, f"skipped: at most {MAX_FILES} files per message.")


def choose_files(offered: Sequence[OfferedFile]) -> tuple[list[OfferedFile], list[FailedAttachment]]:
    """The offered files worth reading (at most `MAX_FILES`, of types Q reads, not too large), and a note for
    every other one: the one selection policy of every platform."""
    wanted: list[OfferedFile] = []
    notes: list[FailedAttachment] = []
    for file in offered:
        problem = file.unreadable or (
            f"not read: {reason}" if (reason := file_problem(file.name, file.size)) else None
        )
        if problem:
            notes.append(FailedAttachment(file.name, problem))
        elif len(wanted) >= MAX_FILES:
            notes.append(too_many(file.name))
        else:
            wanted.append(file)
    return wanted, notes


def announced(file: OfferedFile) -> int:
    """The room to reserve for a file before reading it: its announced size, or the most a file may be."""
    size = file.size
    return size if size is not None and 0 <= size <= MAX_FILE_BYTES else MAX_FILE_BYTES


@dataclass(frozen=True)
class Admitted:
    """The answer to a reservation: the first `count` files have room; `refusal` says why the rest don't."""

    count: int
    refusal: str = ""

    def notes(self, names: Sequence[str]) -> tuple[FailedAttachment, ...]:
        return tuple(FailedAttachment(name, self.refusal) for name in names[self.count:])


@dataclass
class _Waiter:
    owner: str
    size: int
    granted: asyncio.Future[None]


class DownloadBudget:
    """Bytes of downloaded chat files held by this process, bounded in total and per user.

    Guarantees: `held <= total_bytes` and, per owner, `held_by(owner) <= per_user_bytes`, at every moment;
    waiters are served first come, first served (a later, smaller request never overtakes one blocked by the
    process total); room taken in a `turn` is given back when the turn ends, whatever happened in it.
    `high_water` is the most ever held at once, for tests and metrics.
    """

    def __init__(self, total_bytes: int, per_user_bytes: int, wait_seconds: float) -> None:
        self.total_bytes = total_bytes
        self.per_user_bytes = min(per_user_bytes, total_bytes)
        self.wait_seconds = wait_seconds
        self.held = 0
        self.high_water = 0
        self._by_owner: dict[str, int] = {}
        self._waiters: deque[_Waiter] = deque()

    @classmethod
    def from_env(cls, env: Mapping[str, str]) -> DownloadBudget:
        total = env_int(env, "QBOT_FILE_BUDGET_MB", DEFAULT_BUDGET_MB, 1)
        per_user = env_int(env, "QBOT_FILE_BUDGET_PER_USER_MB", min(DEFAULT_PER_USER_MB, total), 1)
        wait = env_int(env, "QBOT_FILE_WAIT_SECONDS", DEFAULT_WAIT_SECONDS, 0)
        return cls(total * MB, per_user * MB, wait)

    def held_by(self, owner: str) -> int:
        return self._by_owner.get(owner, 0)

    @asynccontextmanager
    async def turn(self, owner: str) -> AsyncIterator[FileAllowance]:
        """Room for one message's files, all of it given back when the block ends."""
        allowance = FileAllowance(self, owner)
        try:
            yield allowance
        finally:
            allowance.give_back(allowance.reserved)

    # -- accounting (single-threaded: one event loop) ----------------------------------------------------

    def _fits(self, owner: str, size: int) -> bool:
        return self.held + size <= self.total_bytes and self.held_by(owner) + size <= self.per_user_bytes

    def _take(self, owner: str, size: int) -> None:
        self.held += size
        self._by_owner[owner] = self.held_by(owner) + size
        self.high_water = max(self.high_water, self.held)

    def _put_back(self, owner: str, size: int) -> None:
        self.held -= size
        left = self.held_by(owner) - size
        if left > 0:
            self._by_owner[owner] = left
        else:
            self._by_owner.pop(owner, None)
        self._wake()

    def _wake(self) -> None:
        """Grant waiters in arrival order; one blocked by the process total keeps everyone behind it waiting."""
        for waiter in list(self._waiters):
            if waiter.granted.done():  # gave up (timed out or cancelled)
                self._waiters.remove(waiter)
            elif self._fits(waiter.owner, waiter.size):
                self._take(waiter.owner, waiter.size)
                waiter.granted.set_result(None)
                self._waiters.remove(waiter)
            elif self.held + waiter.size > self.total_bytes:
                return

    async def _acquire(self, owner: str, size: int, deadline: float) -> bool:
        if not self._waiters and self._fits(owner, size):
            self._take(owner, size)
            return True
        waiter = _Waiter(owner, size, asyncio.get_running_loop().create_future())
        self._waiters.append(waiter)
        try:
            await asyncio.wait_for(asyncio.shield(waiter.granted), max(0.0, deadline - time.monotonic()))
            return True
        except TimeoutError:
            if waiter.granted.done() and not waiter.granted.cancelled():
                return True  # granted just as the wait ran out
            waiter.granted.cancel()
            self._wake()  # those queued behind it may fit now
            return False
        except asyncio.CancelledError:
            if waiter.granted.done() and not waiter.granted.cancelled():
                self._put_back(owner, size)
            else:
                waiter.granted.cancel()
                self._wake()
            raise


class FileAllowance:
    """One turn's share of the budget: reserve before downloading, adjust to the real size, all back at the end."""

    def __init__(self, budget: DownloadBudget, owner: str) -> None:
        self.budget = budget
        self.owner = owner
        self.reserved = 0

    async def reserve(self, sizes: Sequence[int]) -> Admitted:
        """Room for the first files of `sizes` (bytes each; the most a file may be when its size is unknown).

        As many leading files as the per-user cap allows are reserved together (one wait, so two messages never
        each hold half of what both need); if no room frees up within the wait, none are.
        """
        budget = self.budget
        count, total = 0, 0
        for size in sizes:
            if self.reserved + total + size > budget.per_user_bytes:
                break
            count, total = count + 1, total + size
        refusal = (
            f"not read: the files of one message may total at most {budget.per_user_bytes // MB} MB; "
            "send the rest in another message."
        )
        if count == 0:
            return Admitted(0, refusal)
        if not await budget._acquire(self.owner, total, time.monotonic() + budget.wait_seconds):
            return Admitted(0, BUSY)
        self.reserved += total
        return Admitted(count, refusal if count < len(sizes) else "")

    def try_more(self, size: int) -> bool:
        """Room for `size` more bytes now, without waiting (a file turned out larger than announced)."""
        budget = self.budget
        if budget._waiters or not budget._fits(self.owner, size):
            return False
        budget._take(self.owner, size)
        self.reserved += size
        return True

    def give_back(self, size: int) -> None:
        """Return room not needed (a file smaller than reserved, or one that failed)."""
        size = min(size, self.reserved)
        if size > 0:
            self.reserved -= size
            self.budget._put_back(self.owner, size)


class FileRoom:
    """The room reserved for one file while an adapter reads it. `refuse(size)` is asked as bytes arrive: a file
    larger than announced grows its room only if there is some to spare at once; `settle(kept)` gives back
    whatever the file did not keep (all of it when it was not read)."""

    def __init__(self, allowance: FileAllowance, reserved: int) -> None:
        self._allowance = allowance
        self.reserved = reserved

    def refuse(self, size: int) -> str | None:
        """Why a file that has reached `size` bytes cannot be kept (None: it can)."""
        if size > MAX_FILE_BYTES:
            return f"not read: {too_large()}"
        if size > self.reserved:
            if not self._allowance.try_more(size - self.reserved):
                return BUSY
            self.reserved = size
        return None

    def settle(self, kept: int) -> None:
        self._allowance.give_back(self.reserved - kept)
        self.reserved = kept


Download = Callable[[OfferedFile, FileRoom], Awaitable[ChatFile | FailedAttachment]]
DOWNLOAD_FAILED = "not read: the download failed. Try sending it again."


async def read_files(
    offered: Sequence[OfferedFile], allowance: FileAllowance, download: Download
) -> tuple[tuple[ChatFile, ...], tuple[FailedAttachment, ...]]:
    """The offered files worth reading, read with `download` within the allowance; a note for each file left
    out, saying why. Every byte is reserved before it is read, and what a file did not keep goes back."""
    wanted, notes = choose_files(offered)
    if not wanted:
        return (), tuple(notes)
    admitted = await allowance.reserve([announced(file) for file in wanted])
    notes.extend(admitted.notes([file.name for file in wanted]))
    reading = [(file, FileRoom(allowance, announced(file))) for file in wanted[: admitted.count]]
    results = await asyncio.gather(*(_read_one(download, file, room) for file, room in reading))
    notes.extend(r for r in results if isinstance(r, FailedAttachment))
    return tuple(r for r in results if isinstance(r, ChatFile)), tuple(notes)


async def _read_one(download: Download, file: OfferedFile, room: FileRoom) -> ChatFile | FailedAttachment:
    result: ChatFile | FailedAttachment = FailedAttachment(file.name, DOWNLOAD_FAILED)
    try:
        result = await download(file, room)
    except Exception as exc:  # a platform failure costs this file, not the question
        log.warning("reading a file failed: %s", type(exc).__name__)
    finally:
        room.settle(len(result.data) if isinstance(result, ChatFile) else 0)
    return result
