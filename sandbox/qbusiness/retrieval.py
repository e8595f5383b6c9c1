"""Answers built only from the documents a caller may read: BM25 ranking, then an extractive answer.

The caller's readable set is chosen before anything is ranked, so nothing about a restricted document (not
even its term statistics) can shape another user's answer. The answer quotes the best sentences of up to
three documents, each followed by its citation marker, with segment offsets that point into the answer
text the way Q Business's textMessageSegments do.
"""

from __future__ import annotations

import math
import re
from collections import OrderedDict
from collections.abc import Sequence
from dataclasses import dataclass

from rank_bm25 import BM25Okapi

from sandbox.qbusiness.corpus import Document

NO_ANSWER = "Sorry, I couldn't find enough information to answer."
MAX_SOURCES = 3
MAX_ANSWER_CHARS = 2048
# A document must hold this share of the question's weight (IDF) to count as relevant at all.
MIN_COVERAGE = 0.5
# Weaker sources are cited only when they score at least this share of the best one.
MIN_RELATIVE_SCORE = 0.3

STOPWORDS = frozenset(
    """a about after all also am an and any are as at be been being before but by can could did do does
    doing for from get gets got had has have having he her here his how i if in into is it its just know
    like many me might more most much must my need no not now of on one or other our out over please
    same she should so some such tell than that the their them then there these they this those to too
    up us very want was we were what when where which while who whom whose why will with would you your
    find give show explain describe happen happened use used work works""".split()
)
BACK_REFERENCES = frozenset({"it", "its", "this", "that", "they", "them", "those", "these", "there"})

_WORD = re.compile(r"[a-z0-9]+")
_SENTENCE_END = re.compile(r"(?<=[.!?])\s+(?=[A-Z0-9\"'(])")
_LIST_MARKER = re.compile(r"^\s*(?:[-*+]|\d+[.)])\s+")
_LINK = re.compile(r"\[([^\]]+)\]\([^)]*\)")


def stem(word: str) -> str:
    """Just enough stemming that 'days' finds 'day', 'launches' 'launch', 'deployment' 'deploy'."""
    if len(word) > 4 and word.endswith("ies"):
        return word[:-3] + "y"
    if len(word) > 4 and word.endswith(("ches", "shes", "xes", "sses", "zes")):
        word = word[:-2]
    elif len(word) > 3 and word.endswith("s") and not word.endswith(("ss", "us", "is")):
        word = word[:-1]
    if len(word) > 7 and word.endswith("ment"):
        word = word[:-4]
    elif len(word) > 5 and word.endswith("ed"):
        word = word[:-2]
    elif len(word) > 5 and word.endswith("ing"):
        word = word[:-3]
    return word[:-1] if len(word) > 4 and word.endswith("e") else word


def terms(text: str) -> list[str]:
    return [stem(word) for word in _WORD.findall(text.lower()) if word not in STOPWORDS]


def sentences(markdown: str) -> list[str]:
    """Readable sentences of a markdown body: headings dropped, list items and paragraphs split."""
    found: list[str] = []
    paragraph: list[str] = []

    def flush() -> None:
        if paragraph:
            found.extend(s.strip() for s in _SENTENCE_END.split(" ".join(paragraph)) if s.strip())
            paragraph.clear()

    for line in markdown.splitlines():
        text = _LINK.sub(r"\1", line).replace("**", "").replace("`", "").strip()
        if not text or text.startswith("#") or set(text) <= {"-", "|", ":", " "}:
            flush()
            continue
        if _LIST_MARKER.match(text):
            flush()
            paragraph.append(_LIST_MARKER.sub("", text))
            flush()
            continue
        paragraph.append(text)
    flush()
    return found


@dataclass(frozen=True)
class Citation:
    number: int
    document: Document
    excerpt: str
    begin: int
    end: int


@dataclass(frozen=True)
class Answer:
    text: str
    citations: tuple[Citation, ...] = ()


class _RankedSet:
    """BM25 over one readable set of documents, plus the document frequencies coverage needs."""

    def __init__(self, documents: Sequence[Document]) -> None:
        self.documents = list(documents)
        tokenized = [terms(f"{doc.title} {doc.title} {doc.body}") for doc in self.documents]
        self.bm25 = BM25Okapi(tokenized) if tokenized else None
        self.vocabulary = [set(tokens) for tokens in tokenized]

    def idf(self, term: str) -> float:
        count = sum(term in vocabulary for vocabulary in self.vocabulary)
        total = len(self.documents)
        return math.log((total - count + 0.5) / (count + 0.5) + 1)

    def relevant(self, query: Sequence[str]) -> list[Document]:
        """Documents that cover enough of the question, best first, weak tail dropped."""
        if self.bm25 is None or not query:
            return []
        weights = {term: self.idf(term) for term in set(query)}
        total = sum(weights.values())
        scores = self.bm25.get_scores(list(query))
        ranked = []
        for index, document in enumerate(self.documents):
            covered = sum(weight for term, weight in weights.items() if term in self.vocabulary[index])
            if scores[index] > 0 and covered / total >= MIN_COVERAGE:
                ranked.append((float(scores[index]), index, document))
        ranked.sort(key=lambda item: (-item[0], item[1]))
        if not ranked:
            return []
        best = ranked[0][0]
        return [doc for score, _, doc in ranked[:MAX_SOURCES] if score >= best * MIN_RELATIVE_SCORE]


class AnswerEngine:
    """Answers questions over readable sets; ranked sets are cached per set, as an index caches per ACL."""

    def __init__(self, cache_size: int = 64) -> None:
        self._cache: OrderedDict[frozenset[Document], _RankedSet] = OrderedDict()
        self._cache_size = cache_size

    def answer(self, question: str, readable: Sequence[Document], previous_question: str | None = None) -> Answer:
        """An extractive answer; a follow-up that says 'it' (or 'that', ...) borrows the last question's terms.

        A question on a new topic is answered on its own: no match means no answer, never the old topic.
        """
        query = terms(question)
        ranked = self._ranked(readable)
        refers_back = bool(BACK_REFERENCES & set(_WORD.findall(question.lower())))
        if previous_question and refers_back:
            query = query + terms(previous_question)
        documents = ranked.relevant(query)
        return compose(documents, query) if documents else Answer(NO_ANSWER)

    def _ranked(self, readable: Sequence[Document]) -> _RankedSet:
        key = frozenset(readable)
        if key in self._cache:
            self._cache.move_to_end(key)
            return self._cache[key]
        ranked = _RankedSet(sorted(readable, key=lambda doc: doc.document_id))
        self._cache[key] = ranked
        if len(self._cache) > self._cache_size:
            self._cache.popitem(last=False)
        return ranked


def answer_from_files(question: str, files: Sequence[Document]) -> Answer:
    """An answer from a conversation's files alone: too few documents to rank, so a file counts when it holds
    enough of the question's terms (the share MIN_COVERAGE asks of ranked documents)."""
    query = terms(question)
    wanted = set(query)
    relevant = [
        file
        for file in files
        if wanted and len(wanted & set(terms(f"{file.title} {file.body}"))) >= MIN_COVERAGE * len(wanted)
    ]
    return compose(relevant[:MAX_SOURCES], query) if relevant else Answer(NO_ANSWER)


def general_answer(question: str) -> Answer:
    """CREATOR_MODE's answer without files: the model's own knowledge, so it cites nothing."""
    topic = " ".join(question.split())
    topic = topic if len(topic) <= 200 else topic[:197] + "..."
    return Answer(
        f"From general knowledge, without your company's documents: \"{topic}\" depends on your organization's "
        "own rules, so treat this as a starting point and check the details with the team that owns them."
    )


def best_sentences(document: Document, query: Sequence[str]) -> list[str]:
    """The lead sentence (it usually says what the document is about) and the one that best matches."""
    wanted = set(query)
    candidates = sentences(document.body) or [document.title]
    scores = [len(wanted & set(terms(text))) for text in candidates]
    best = max(range(len(candidates)), key=lambda index: (scores[index], -index))
    return candidates[:1] if best == 0 or scores[best] == 0 else [candidates[0], candidates[best]]


def compose(documents: Sequence[Document], query: Sequence[str]) -> Answer:
    text = ""
    citations: list[Citation] = []
    for number, document in enumerate(documents, 1):
        excerpt = " ".join(best_sentences(document, query))
        marker = f" [{number}]"
        separator = " " if text else ""
        if len(text) + len(separator) + len(excerpt) + len(marker) > MAX_ANSWER_CHARS:
            break
        begin = len(text) + len(separator)
        text = text + separator + excerpt + marker
        citations.append(Citation(number, document, excerpt, begin, begin + len(excerpt)))
    return Answer(text, tuple(citations)) if citations else Answer(NO_ANSWER)
