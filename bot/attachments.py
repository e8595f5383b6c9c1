"""Which files a chat message may hand to ChatSync: one policy for every adapter, with the notes users see.

Adapters download files themselves (each platform has its own way), but ask here first which ones to take:
at most `MAX_FILES` per message, only types Amazon Q Business reads, each at most `MAX_FILE_BYTES` (checked
again while downloading, since a platform may not say a file's size up front). A skipped file becomes a
`FailedAttachment` with the reason, so adapters render it exactly like a file Q itself refused.
"""

from __future__ import annotations

from pathlib import PurePosixPath

from bot.model import FailedAttachment

MAX_FILES = 5
MAX_FILE_BYTES = 10 * 1024 * 1024
# The document types Amazon Q Business accepts as chat attachments.
SUPPORTED_SUFFIXES = frozenset(
    {
        ".txt", ".text", ".md", ".markdown", ".csv", ".json", ".xml", ".html", ".htm", ".rtf",
        ".pdf", ".docx", ".xlsx", ".pptx",
    }
)


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
    return f"larger than the {MAX_FILE_BYTES // (1024 * 1024)} MB limit per file."


def too_many(name: str) -> FailedAttachment:
    return FailedAttachment(name, f"skipped: at most {MAX_FILES} files per message.")
