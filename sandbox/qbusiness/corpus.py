"""The documents a Q Business index holds, each with the access control list it was ingested with.

Sample documents live in `sandbox/corpus/*.md` with a small front matter block:

    ---
    title: Paid time off policy
    url: https://intranet.example.com/hr/pto
    updated: 2025-11-03
    access: public                      # or: allow_groups / allow_users (comma-separated)
    ---

A document must say who may read it: a file with neither `access: public` nor an allow list is refused at
load time rather than silently becoming readable by everyone.
"""

from __future__ import annotations

from collections.abc import Collection, Iterable
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

SAMPLE_CORPUS = Path(__file__).resolve().parents[1] / "corpus"  # sandbox/corpus, package data


@dataclass(frozen=True)
class Acl:
    """Who may read a document: everyone, or the listed groups and users (emails, case-insensitive)."""

    public: bool = False
    groups: frozenset[str] = frozenset()
    users: frozenset[str] = frozenset()

    def allows(self, email: str, groups: Collection[str]) -> bool:
        if self.public or email.lower() in self.users:
            return True
        return any(group in self.groups for group in groups)

    @classmethod
    def only(cls, email: str) -> Acl:
        return cls(users=frozenset({email.lower()}))


@dataclass(frozen=True)
class Document:
    document_id: str
    title: str
    body: str
    acl: Acl
    url: str | None = None
    updated: datetime | None = None


class CorpusError(ValueError):
    pass


def parse_document(document_id: str, text: str) -> Document:
    meta, body = _split_front_matter(document_id, text)
    acl = _acl(document_id, meta)
    if "title" not in meta:
        raise CorpusError(f"{document_id}: front matter needs a title")
    updated = datetime.fromisoformat(meta["updated"]).replace(tzinfo=UTC) if "updated" in meta else None
    return Document(document_id, meta["title"], body.strip(), acl, meta.get("url"), updated)


def load_corpus(directory: Path = SAMPLE_CORPUS) -> list[Document]:
    return [parse_document(path.stem, path.read_text(encoding="utf-8")) for path in sorted(directory.glob("*.md"))]


def _split_front_matter(document_id: str, text: str) -> tuple[dict[str, str], str]:
    lines = text.splitlines()
    if not lines or lines[0].strip() != "---":
        raise CorpusError(f"{document_id}: missing front matter")
    try:
        end = next(index for index, line in enumerate(lines[1:], 1) if line.strip() == "---")
    except StopIteration as exc:
        raise CorpusError(f"{document_id}: unterminated front matter") from exc
    meta = {}
    for line in lines[1:end]:
        key, sep, value = line.partition(":")
        if sep:
            meta[key.strip()] = value.split("#", 1)[0].strip() if key.strip() != "url" else value.strip()
    return meta, "\n".join(lines[end + 1 :])


def _acl(document_id: str, meta: dict[str, str]) -> Acl:
    groups = frozenset(_items(meta.get("allow_groups", "")))
    users = frozenset(item.lower() for item in _items(meta.get("allow_users", "")))
    public = meta.get("access") == "public"
    if not public and not groups and not users:
        raise CorpusError(f"{document_id}: say who may read it (access: public, allow_groups or allow_users)")
    return Acl(public=public, groups=groups, users=users)


def _items(value: str) -> Iterable[str]:
    return (item.strip() for item in value.split(",") if item.strip())
