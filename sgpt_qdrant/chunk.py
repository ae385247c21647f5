"""Text → chunks of at most ``max_tokens`` model tokens, counted on the exact text that is embedded.

The encoder strips each text before tokenising it, so a chunk's text is stripped here and its
tokens are counted with the model's own tokenizer (no BOS/EOS), never estimated.

Structure first: the text is cut into *units* by :mod:`blocks` rules for Markdown and reST
(paragraphs, list items, table rows, admonitions and directives, code blocks); a heading is glued
to the unit it heads. Whole units are packed together while they fit. A unit too long for one
chunk starts a chunk of its own and is split inside itself (inner paragraphs, nested items,
sentences or lines, then token windows); the pieces of one unit are never packed with another
unit, so the end of one list item never shares a chunk with the start of the next.

Coverage: every non-whitespace character of the text is in some chunk, except on *pure markup
lines* (only ``-=_*~^+#:|/``` `` and spaces: rules, table separators, ``///`` closers) that fall
between chunks; those carry no words and are dropped.

Cost is linear in the text and memory bounded: the tokenizer only ever sees pieces of at most
``max_tokens * longest_token`` characters (a longer span cannot fit, so it is split without
being counted), and over-long spans are cut in bounded token windows.
"""

from __future__ import annotations

import bisect
import re
import weakref
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from .blocks import Unit, is_markup, units

#: Part of every document's ingest version: bump it when boundaries change, so stores rebuild.
CHUNKER_VERSION = "2"

#: Separators tried, in order, inside a unit too long for one chunk.
_LEVELS = [
    re.compile(r"\n[ \t]*\n\s*"),  # inner paragraphs (of a list item, admonition, code block)
    re.compile(r"\n(?=[ \t]*(?:[-*+•]|\d{1,9}[.)])[ \t])"),  # nested list items
    re.compile(r"(?<=[.!?…。])[\"')\]]*\s+|\n"),  # sentences, lines
]


#: A heading followed by at most this many tokens before a split (a directive line, a label)
#: is still carried into the next piece, so it is not left nearly alone.
_HEAD_WORDS = 8


@dataclass(frozen=True)
class Chunk:
    index: int
    text: str  # stripped, exactly text[start:end]
    start: int  # character offsets into the document text
    end: int
    n_tokens: int
    meta: Mapping[str, Any] | None = None  # where in the file: the page, slide or chapter (see chunk_sections)
    #: the model's token ids of ``text`` (stripped, no special tokens), as the chunker counted them:
    #: what the encoder would make of the text, so it need not tokenise it again
    token_ids: Sequence[int] | None = field(default=None, compare=False, repr=False)


class Counter:
    """Token counts of stripped text with the model's tokenizer, never on an unbounded string."""

    def __init__(self, tokenizer, max_tokens: int) -> None:
        self.tokenizer = tokenizer
        self.max_tokens = max_tokens
        facts = _facts(tokenizer)
        self.char_limit = max_tokens * facts.longest
        self._core = facts.core
        #: token ids add up across a whitespace boundary (see :meth:`extend` and :meth:`join`)
        self.additive = facts.additive
        self._gaps: dict[str, list[int]] = {}

    def _encode(self, text: str):
        """The core's encoding of ``text`` as it is, without special tokens. Through ``encode_batch``:
        it lets go of the GIL while it works (``encode`` holds it), so the ingest's reading thread
        chunks while the main thread builds payloads, at the same cost per call (measured 67 vs 74 us)."""
        return self._core.encode_batch([text], add_special_tokens=False)[0]

    def ids(self, text: str) -> list[int]:
        """Token ids of the stripped ``text``."""
        if self._core is not None:
            return self._encode(text.strip()).ids
        return self.tokenizer(text.strip(), add_special_tokens=False)["input_ids"]

    def count(self, text: str) -> int:
        return len(self.ids(text))

    def encode(self, text: str) -> tuple[list[int], Any]:
        """The ids of ``text`` (already stripped) and the tokenizer's encoding (``None`` without a core)."""
        if self._core is None:
            return self.ids(text), None
        encoding = self._encode(text)
        return encoding.ids, encoding

    def cut(self, ids: list[int], encoding: Any, length: int, following: str) -> list[int] | None:
        """The ids of the first ``length`` characters of an encoded text (they end in a non-space)
        where the next character, ``following``, is ASCII whitespace: by :meth:`extend`'s rule they
        are the tokens that start before ``length``. ``None`` otherwise."""
        if not self.additive or following not in _ASCII_SPACE:
            return None
        return ids[:bisect.bisect_left([a for a, _ in encoding.offsets], length)]

    def extend(self, ids: list[int], rest: str) -> list[int] | None:
        """The ids of ``A + rest`` from ``ids``, those of ``A`` (stripped: it ends in a non-space),
        where ``rest`` starts with ASCII whitespace; ``None`` where the tokenizer cannot tell them so.

        Why it is exact: GPT-2's byte-level pre-tokenizer (no normaliser, no prefix space) cuts
        text with a regex none of whose pieces runs from a non-space into a space, and the pieces
        of what follows depend only on what follows; BPE merges stay inside a piece. So the tokens
        of ``A + rest`` are those of ``A``, then those of ``rest`` alone (tests/test_chunk.py checks
        it against whole encodings). It spares the chunker re-tokenising a growing chunk for every
        unit it adds: 1.1M tokens encoded for 1.5 MB of real docs became 0.6M."""
        if not self.additive or not rest or rest[0] not in _ASCII_SPACE:
            return None
        return ids + self._encode(rest).ids

    def join(self, ids: list[int], gap: str, after: list[int]) -> list[int] | None:
        """The ids of ``A + gap + B`` from those of ``A`` and of ``B`` (both stripped), where ``gap``
        is ASCII whitespace not ending in a space (which would join the first word of ``B``), so no
        text is encoded twice; ``None`` otherwise.

        Why it is exact: in context the pre-tokenizer cuts such a gap into all but its last
        character, then the last one (``\\s+(?!\\S)`` leaves it, ``\\s+`` takes it), then ``B`` as alone."""
        if not self.additive or not gap or gap[-1] == " " or not _ASCII_SPACE.issuperset(gap):
            return None
        between = self._gaps.get(gap)
        if between is None:
            between = (self._encode(gap[:-1]).ids if len(gap) > 1 else []) + self._encode(gap[-1]).ids
            if len(self._gaps) < 256:
                self._gaps[gap] = between
        return ids + between + after

    def fits(self, text: str) -> bool:
        """Whether the stripped ``text`` is at most ``max_tokens`` tokens (long text is not tokenised)."""
        text = text.strip()
        return len(text) <= self.char_limit and self.count(text) <= self.max_tokens

    def offsets(self, text: str) -> list[tuple[int, int]]:
        if self._core is not None:
            return self._encode(text).offsets
        return self.tokenizer(text, add_special_tokens=False, return_offsets_mapping=True)["offset_mapping"]


_ASCII_SPACE = frozenset(" \t\n\r\x0b\x0c")


@dataclass(frozen=True)
class _Facts:
    """What the chunker learns once per tokenizer."""

    core: Any  # a private copy of the Rust core, or None (the wrapper is called instead)
    longest: int  # characters of the longest vocabulary entry
    additive: bool  # counts add up across whitespace (GPT-2's byte-level pre-tokenizer, see count_after)


_FACTS: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()


def _facts(tokenizer) -> _Facts:
    """The tokenizer's :class:`_Facts`, cached while the tokenizer lives (keyed by the object, not
    its ``id``, which a later tokenizer may reuse)."""
    try:
        return _FACTS[tokenizer]
    except (KeyError, TypeError):
        pass
    core, config = _private_core(tokenizer)
    facts = _Facts(core, _longest_token(tokenizer), core is not None and _byte_level(config))
    try:
        _FACTS[tokenizer] = facts
    except TypeError:  # not weakly referenceable: worked out for each document instead
        pass
    return facts


def _private_core(tokenizer) -> tuple[Any, dict]:
    """A private copy of a fast tokenizer's Rust core, without truncation or padding, and its JSON
    description (``(None, {})`` for a tokenizer without one: the wrapper is called instead).

    Why: a call through transformers' wrapper spends 0.1-0.3 ms in Python per text and the chunker
    counts every unit (2.5x faster measured on real docs); a private copy, because the wrapper
    leaves its last call's truncation set on the core it shares with its copies (an encoder's
    ``truncation=True`` would cap these counts at 75), and another thread may be encoding with it.
    Copied once per tokenizer (a fraction of a second: the vocabulary is parsed again)."""
    backend = getattr(tokenizer, "backend_tokenizer", None)
    if backend is None or not hasattr(backend, "to_str"):
        return None, {}
    import json

    from tokenizers import Tokenizer

    described = backend.to_str()
    core = Tokenizer.from_str(described)
    core.no_truncation()
    core.no_padding()
    return core, json.loads(described)


def _byte_level(config: dict) -> bool:
    """GPT-2's pre-tokenization exactly: byte-level with its regex, no prefix space, no normaliser."""
    pre = config.get("pre_tokenizer") or {}
    return (config.get("normalizer") is None and pre.get("type") == "ByteLevel" and pre.get("use_regex", True)
            and not pre.get("add_prefix_space", False) and (config.get("model") or {}).get("type") == "BPE"
            and not (config.get("model") or {}).get("dropout"))


def _longest_token(tokenizer) -> int:
    """Characters of the longest vocabulary entry: more than ``n`` times that cannot be ``n`` tokens."""
    try:
        return max(8, max(len(t) for t in tokenizer.get_vocab()))
    except Exception:  # a tokenizer without a vocabulary: assume a generous bound
        return 256


def _trim(text: str, start: int, end: int) -> tuple[int, int] | None:
    """``[start, end)`` without surrounding whitespace; ``None`` when blank (no copy of long text)."""
    while start < end and text[start].isspace():
        start += 1
    while end > start and text[end - 1].isspace():
        end -= 1
    return (start, end) if start < end else None


def _fragments(text: str, start: int, end: int, pattern: re.Pattern) -> Iterator[tuple[int, int]]:
    """Non-blank pieces of ``text[start:end]`` between matches of ``pattern`` (lazily)."""
    pos = start
    for match in pattern.finditer(text, start, end):
        span = _trim(text, pos, match.start())
        if span:
            yield span
        pos = match.end()
    span = _trim(text, pos, end)
    if span:
        yield span


class _Splitter:
    def __init__(self, text: str, counter: Counter) -> None:
        self.text = text
        self.counter = counter
        self.max_tokens = counter.max_tokens
        self.window_chars = 16 * self.max_tokens
        #: start -> (end, ids, its encoding when it was encoded whole) of the last span counted there
        self._from: dict[int, tuple[int, list[int], Any]] = {}
        self._to: dict[int, tuple[int, list[int]]] = {}  # end -> (start, ids) of the last span counted to it

    def fits(self, start: int, end: int) -> bool:
        span = _trim(self.text, start, end)
        if span is None:
            return True
        return span[1] - span[0] <= self.counter.char_limit and self.count(*span) <= self.max_tokens

    def count(self, start: int, end: int) -> int:
        return len(self.ids(start, end))

    def ids(self, start: int, end: int) -> list[int]:
        """Token ids of the stripped ``text[start:end]``, from spans counted before where it can:
        the one counted last from the same start (the chunk being grown) and the one counted
        last up to the same end (the unit being added), see :meth:`Counter.extend` / :meth:`Counter.join`."""
        span = _trim(self.text, start, end)
        if span is None:
            return []
        start, end = span
        head = self._from.get(start)
        if head is not None and head[0] == end:
            return head[1]
        ids, encoding = None, None
        if head is not None and head[0] < end:
            tail = self._to.get(end)
            if tail is not None and head[0] < tail[0]:
                ids = self.counter.join(head[1], self.text[head[0]:tail[0]], tail[1])
            if ids is None:
                ids = self.counter.extend(head[1], self.text[head[0]:end])
        elif head is not None and head[2] is not None:
            ids = self.counter.cut(head[1], head[2], end - start, self.text[end])
        if ids is None:
            ids, encoding = self.counter.encode(self.text[start:end])
        if encoding is not None or len(ids) <= self.max_tokens:  # a grown span that overflows is not kept:
            self._from[start] = (end, ids, encoding)  # the chunk it would have grown is asked for again
        self._to[end] = (start, ids)
        return ids

    def split(self, start: int, end: int, lead: int | None = None, level: int = 0) -> Iterator[tuple[int, int]]:
        """Pieces of the over-long span ``[start, end)``, each within the limit.

        ``lead`` is the start of a heading that must stay with the first piece.
        """
        for depth in range(level, len(_LEVELS)):
            frags = _fragments(self.text, start, end, _LEVELS[depth])
            first = next(frags, None)
            second = next(frags, None)
            if first is None:
                return
            if second is None:  # no separator at this level
                continue
            yield from self._pack(_chain(first, second, frags), lead, depth)
            return
        yield from self._windows(start, end, lead)

    def _pack(self, frags: Iterator[tuple[int, int]], lead: int | None, depth: int) -> Iterator[tuple[int, int]]:
        """Greedy packing of fragments; an over-long fragment is split one level finer."""
        cur: tuple[int, int] | None = None
        body: int | None = None  # where the text after the heading starts, while only a little follows it
        for a, b in frags:
            if cur is not None and self.fits(cur[0], b):
                cur = (cur[0], b)
                continue
            if cur is not None and is_markup(self.text, a, b):
                continue  # a closer or rule that does not fit: dropped, not a chunk of its own
            if body is not None and self.counter.count(self.text[body:cur[1]]) <= _HEAD_WORDS:
                lead, cur = cur[0], None  # heading + ".. note::": still a heading, keep it with text
            body = None
            if cur is not None:
                yield cur
                cur = None
            head = lead if lead is not None else a
            lead = None
            if self.fits(head, b):
                cur = (head, b)
                body = a if head != a else None
            else:
                yield from self.split(a, b, head if head != a else None, depth + 1)
        if cur is not None:
            yield cur

    def _windows(self, start: int, end: int, lead: int | None) -> Iterator[tuple[int, int]]:
        """Token windows over one over-long span, tokenising bounded windows (linear time)."""
        text, limit = self.text, self.max_tokens
        pos = start
        while pos < end:
            head = lead if lead is not None else pos
            lead = None
            width = self.window_chars
            while True:
                seg_end = min(end, pos + width)
                offsets = [(x + pos, y + pos) for x, y in self.counter.offsets(text[pos:seg_end]) if y > x]
                if seg_end == end or len(offsets) > limit + 1:
                    break
                width *= 2
            if not offsets:
                break
            budget = limit - (self.counter.count(text[head:pos]) if head < pos else 0)
            if budget < 1:  # a heading too long to share a chunk: it is cut alone
                yield from self._windows(head, pos, None)
                head, budget = pos, limit
            n = len(offsets)
            take = min(budget, n)
            if seg_end == end and head == pos and limit < n < 2 * limit:
                take = (n + 1) // 2  # two even pieces rather than a full one and a crumb
            span = None
            while take >= 1:
                cut = end if take >= n else offsets[take][0]
                if take < n and not text[cut - 1].isspace() and not text[cut].isspace():
                    space = max(text.rfind(" ", pos, cut), text.rfind("\n", pos, cut))
                    if space > pos + (cut - pos) // 2:
                        cut = space  # end at a word boundary when one is near
                span = _trim(text, head, cut)
                if span is None or self.fits(*span):
                    break
                take -= 1
            if span is None:
                pos = cut
                continue
            if not self.fits(*span):  # one token alone over the limit: cut by characters
                span, cut = self._char_fallback(span)
            yield span
            # the next window: about twice what this one used, so tokenising stays linear
            self.window_chars = max(4 * limit, 2 * (cut - pos) + 64)
            pos = cut

    def _char_fallback(self, span: tuple[int, int]) -> tuple[tuple[int, int], int]:
        a, b = span
        while b - a > 1 and not self.fits(a, b):
            b -= 1
        return (_trim(self.text, a, b) or (a, a + 1)), b


def _chain(first, second, rest):
    yield first
    yield second
    yield from rest


def iter_spans(text: str, tokenizer, max_tokens: int = 75) -> Iterator[tuple[int, int, bool]]:
    """``(start, end, continues)`` spans in order; ``continues``: the same unit as the span before."""
    return _spans(_Splitter(text, Counter(tokenizer, max_tokens)))


def _spans(splitter: _Splitter) -> Iterator[tuple[int, int, bool]]:
    cur: tuple[int, int] | None = None
    for unit in units(splitter.text):
        if unit.markup:
            continue  # a rule or stray closer: packed only if it lies inside a chunk
        if splitter.fits(unit.start, unit.end):
            if cur is not None and splitter.fits(cur[0], unit.end):
                cur = (cur[0], unit.end)
            else:
                if cur is not None:
                    yield cur[0], cur[1], False
                cur = (unit.start, unit.end)
            continue
        if cur is not None:
            yield cur[0], cur[1], False
            cur = None
        lead = unit.start if unit.body_start > unit.start else None
        for i, (a, b) in enumerate(splitter.split(unit.body_start, unit.end, lead)):
            yield a, b, i > 0
    if cur is not None:
        yield cur[0], cur[1], False


def chunk_text(text: str, tokenizer, max_tokens: int = 75, overlap: int = 0) -> list[Chunk]:
    """Chunks covering every non-blank character of ``text`` (bar pure markup lines), in order,
    each ≤ ``max_tokens``."""
    if max_tokens < 1:
        raise ValueError(f"max_tokens must be at least 1, got {max_tokens}")
    if not 0 <= overlap < max_tokens:
        raise ValueError(f"overlap must be in 0..{max_tokens - 1}, got {overlap}")
    counter = Counter(tokenizer, max_tokens)
    splitter = _Splitter(text, counter)
    chunks: list[Chunk] = []
    prev: tuple[int, int] | None = None
    for a, b, continues in _spans(splitter):
        if overlap and continues and prev is not None:
            a = _overlap_start(text, prev, a, b, overlap, counter)
        span = _trim(text, a, b)  # a unit starts at its line: no indentation or trailing blanks stored
        if span is None:
            continue
        a, b = span
        piece = text[a:b]
        ids = splitter.ids(a, b)
        chunks.append(Chunk(len(chunks), piece, a, b, len(ids), token_ids=ids))
        prev = (a, b)
    return chunks


def chunk_sections(text: str, sections: Sequence, tokenizer, max_tokens: int = 75, overlap: int = 0) -> list[Chunk]:
    """:func:`chunk_text` of each section (``start``, ``end``, ``meta``: a page, a slide) on its own, so no
    chunk spans two; offsets index ``text``, each chunk carries its section's ``meta``. No sections: the
    whole text."""
    if not sections:
        return chunk_text(text, tokenizer, max_tokens, overlap)
    chunks: list[Chunk] = []
    for section in sections:
        for c in chunk_text(text[section.start:section.end], tokenizer, max_tokens, overlap):
            chunks.append(Chunk(len(chunks), c.text, c.start + section.start, c.end + section.start, c.n_tokens,
                                section.meta or None, c.token_ids))
    return chunks


def _overlap_start(text: str, prev: tuple[int, int], a: int, b: int, overlap: int, counter: Counter) -> int:
    """Start of the next chunk moved back into ``prev`` by up to ``overlap`` tokens, if it fits."""
    offsets = [(x + prev[0], y + prev[0]) for x, y in counter.offsets(text[prev[0]:prev[1]]) if y > x]
    for n in range(min(overlap, len(offsets) - 1), 0, -1):
        span = _trim(text, offsets[-n][0], b)
        if span and span[0] < a and counter.fits(text[span[0]:span[1]]):
            return span[0]
    return a


__all__ = ["CHUNKER_VERSION", "Chunk", "Counter", "Unit", "chunk_sections", "chunk_text", "iter_spans"]
