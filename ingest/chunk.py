"""Text → chunks of at most ``max_tokens`` model tokens, counted on the exact text that is embedded.

The encoder strips each text before tokenising it, so a chunk's text is stripped here and its
tokens are counted with the model's own tokenizer (no BOS/EOS), never estimated. Metadata is not
part of the chunk text, so a long file path cannot shrink or break chunks.

Boundaries, best first: whole paragraphs (several per chunk when they fit), sentences of a
paragraph too long for one chunk, and token windows for a sentence that is itself too long.
``overlap`` repeats up to that many tokens of the end of the previous chunk at the start of the
next one inside a paragraph.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

_PARAGRAPH = re.compile(r"\n[ \t]*\n\s*")
_SENTENCE_END = re.compile(r"(?<=[.!?…。])[\"')\]]*\s+|\n")


@dataclass(frozen=True)
class Chunk:
    index: int
    text: str  # stripped, exactly text[start:end]
    start: int  # character offsets into the document text
    end: int
    n_tokens: int


class Counter:
    """Token counts of stripped text with the model's tokenizer."""

    def __init__(self, tokenizer) -> None:
        self.tokenizer = tokenizer

    def count(self, text: str) -> int:
        return len(self.tokenizer(text.strip(), add_special_tokens=False)["input_ids"])

    def offsets(self, text: str) -> list[tuple[int, int]]:
        return self.tokenizer(text, add_special_tokens=False, return_offsets_mapping=True)["offset_mapping"]


def _spans(text: str, start: int, end: int, pattern: re.Pattern) -> list[tuple[int, int]]:
    """Split text[start:end] at ``pattern`` into non-blank spans, whitespace trimmed."""
    out, pos = [], start
    for match in pattern.finditer(text, start, end):
        out.append((pos, match.start()))
        pos = match.end()
    out.append((pos, end))
    return [s for s in (_trim(text, a, b) for a, b in out) if s]


def _trim(text: str, start: int, end: int) -> tuple[int, int] | None:
    piece = text[start:end]
    stripped = piece.strip()
    if not stripped:
        return None
    lead = len(piece) - len(piece.lstrip())
    return start + lead, start + lead + len(stripped)


def _windows(text: str, start: int, end: int, max_tokens: int, counter: Counter) -> list[tuple[int, int]]:
    """Token windows over one over-long span; each re-counted (BPE may merge differently)."""
    out = []
    pos = start
    while pos < end:
        offsets = [(a + pos, b + pos) for a, b in counter.offsets(text[pos:end]) if b > a]
        if not offsets:
            break
        take = min(max_tokens, len(offsets))
        while True:
            cut = end if take == len(offsets) else offsets[take][0]
            span = _trim(text, pos, cut)
            if span is None or take == 1 or counter.count(text[span[0]:span[1]]) <= max_tokens:
                break
            take -= 1
        if span is not None:
            if counter.count(text[span[0]:span[1]]) > max_tokens:  # one token alone over the limit
                span = _char_fallback(text, span, max_tokens, counter)
            out.append(span)
        pos = cut
    return out


def _char_fallback(text: str, span: tuple[int, int], max_tokens: int, counter: Counter) -> tuple[int, int]:
    a, b = span
    while b - a > 1 and counter.count(text[a:b]) > max_tokens:
        b -= 1
    return _trim(text, a, b) or (a, a + 1)


def _units(text: str, max_tokens: int, counter: Counter) -> list[tuple[int, int, bool]]:
    """(start, end, may_join_previous) pieces, each within the limit."""
    units = []
    for pa, pb in _spans(text, 0, len(text), _PARAGRAPH):
        if counter.count(text[pa:pb]) <= max_tokens:
            units.append((pa, pb, True))
            continue
        first = True
        for sa, sb in _spans(text, pa, pb, _SENTENCE_END):
            pieces = ([(sa, sb)] if counter.count(text[sa:sb]) <= max_tokens
                      else _windows(text, sa, sb, max_tokens, counter))
            for a, b in pieces:
                # a long paragraph starts its own chunk; its sentences then pack together
                units.append((a, b, not first))
                first = False
    return units


def chunk_text(text: str, tokenizer, max_tokens: int = 75, overlap: int = 0) -> list[Chunk]:
    """Chunks covering every non-blank character of ``text``, in order, each ≤ ``max_tokens``."""
    if max_tokens < 1:
        raise ValueError(f"max_tokens must be at least 1, got {max_tokens}")
    if not 0 <= overlap < max_tokens:
        raise ValueError(f"overlap must be in 0..{max_tokens - 1}, got {overlap}")
    counter = Counter(tokenizer)
    spans: list[tuple[int, int]] = []
    cur: list[tuple[int, int]] = []  # units of the chunk being built
    for a, b, joinable in _units(text, max_tokens, counter):
        if cur and joinable and counter.count(text[cur[0][0]:b]) <= max_tokens:
            cur.append((a, b))
            continue
        carried: list[tuple[int, int]] = []
        if len(cur) > 1 and _is_heading(text[cur[-1][0]:cur[-1][1]]):
            carried = [cur.pop()]  # a heading starts the chunk of the text it heads
        if cur:
            spans.append((cur[0][0], cur[-1][1]))
            if overlap and joinable and not carried:
                a = _overlap_start(text, spans[-1], a, b, overlap, max_tokens, counter)
        if carried and counter.count(text[carried[0][0]:b]) > max_tokens:
            spans.append(carried[0])
            carried = []
        cur = carried + [(a, b)]
    if cur:
        spans.append((cur[0][0], cur[-1][1]))
    chunks = []
    for i, (a, b) in enumerate(spans):
        piece = text[a:b]
        chunks.append(Chunk(i, piece, a, b, counter.count(piece)))
    return chunks


def _is_heading(piece: str) -> bool:
    """Markdown ``#`` headings, reST/setext underlined titles, short unpunctuated single lines."""
    lines = piece.strip().splitlines()
    if not lines or len(piece) > 120:
        return False
    if lines[0].startswith("#"):
        return True
    if len(lines) == 2 and len(set(lines[1].strip())) == 1 and lines[1].strip()[0] in "=-~^*+#":
        return True
    return len(lines) == 1 and not lines[0].rstrip().endswith((".", "!", "?", ":", ";", ",", ")"))


def _overlap_start(text: str, prev: tuple[int, int], a: int, b: int, overlap: int, max_tokens: int,
                   counter: Counter) -> int:
    """Start of the next chunk moved back into ``prev`` by up to ``overlap`` tokens, if it fits."""
    offsets = [(x + prev[0], y + prev[0]) for x, y in counter.offsets(text[prev[0]:prev[1]]) if y > x]
    for n in range(min(overlap, len(offsets) - 1), 0, -1):
        start = offsets[-n][0]
        span = _trim(text, start, b)
        if span and counter.count(text[span[0]:span[1]]) <= max_tokens:
            return span[0]
    return a

