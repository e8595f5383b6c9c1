"""The documents a Q Business index holds, each with the access control list it was ingested with and the
document attributes a ChatSync `attributeFilter` selects on.

Sample documents live in `sandbox/corpus/*.md` with a small front matter block:

    ---
    title: Paid time off policy
    url: https://intranet.example.com/hr/pto
    updated: 2025-11-03
    access: public                      # or: allow_groups / allow_users (comma-separated)
    _data_source_id: sharepoint         # attributes: any other key; [a, b] is a string list, digits a long
    _category: policy
    department: hr
    _authors: [Dana Lee]
    ---

A document must say who may read it: a file with neither `access: public` nor an allow list is refused at
load time rather than silently becoming readable by everyone. It must also name the data source it came
from (`_data_source_id`), as every document a connector indexes does, so a filter on the source decides
about every document. The reserved `_document_title`, `_source_uri` and `_last_updated_at` attributes are
derived from title, url and updated, as Q Business derives them.
"""

from __future__ import annotations

from collections.abc import Collection, Iterable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path

SAMPLE_CORPUS = Path(__file__).resolve().parents[1] / "corpus"  # sandbox/corpus, package data
DATA_SOURCE = "_data_source_id"
_NOT_ATTRIBUTES = frozenset({"title", "url", "updated", "access", "allow_groups", "allow_users"})

# A document attribute value: stringValue, stringListValue, longValue or dateValue.
AttributeValue = str | tuple[str, ...] | int | datetime


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
    attributes: Mapping[str, AttributeValue] = field(default_factory=dict, compare=False)


class CorpusError(ValueError):
    pass


def parse_document(document_id: str, text: str) -> Document:
    meta, body = _split_front_matter(document_id, text)
    acl = _acl(document_id, meta)
    if "title" not in meta:
        raise CorpusError(f"{document_id}: front matter needs a title")
    updated = datetime.fromisoformat(meta["updated"]).replace(tzinfo=UTC) if "updated" in meta else None
    attributes = _attributes(document_id, meta)
    derived: dict[str, AttributeValue] = {"_document_title": meta["title"]}
    if "url" in meta:
        derived["_source_uri"] = meta["url"]
    if updated is not None:
        derived["_last_updated_at"] = updated
    return Document(document_id, meta["title"], body.strip(), acl, meta.get("url"), updated, {**derived, **attributes})


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


def _attributes(document_id: str, meta: dict[str, str]) -> dict[str, AttributeValue]:
    attributes: dict[str, AttributeValue] = {}
    for key, value in meta.items():
        if key in _NOT_ATTRIBUTES:
            continue
        if value.startswith("[") and value.endswith("]"):
            attributes[key] = tuple(_items(value[1:-1]))
        else:
            attributes[key] = int(value) if value.isdigit() else value
    if not isinstance(attributes.get(DATA_SOURCE), str) or not attributes[DATA_SOURCE]:
        raise CorpusError(f"{document_id}: say which data source it came from ({DATA_SOURCE}: <id>)")
    return attributes


def _items(value: str) -> Iterable[str]:
    return (item.strip() for item in value.split(",") if item.strip())
