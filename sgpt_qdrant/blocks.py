"""Text → structural units for the chunker: the pieces of Markdown and reST that belong together.

A unit is a paragraph, a list item (with its continuation lines and nested items), a table row,
an admonition or directive with its indented body (``!!! note``, ``/// details`` ... ``///``,
``.. note::``), a fenced or indented code block, or a pure markup line (a rule, a table separator,
a stray closer). A heading (ATX ``#``, setext or reST under/overlined, or a short unpunctuated
line standing alone) is glued to the unit after it, so it always starts its section's chunk.

Lines are scanned lazily with a small look-ahead and matched in place (``pattern.match(text, a,
b)``), so a huge single-line file is never copied line by line.
"""

from __future__ import annotations

import re
from collections import deque
from collections.abc import Iterator
from dataclasses import dataclass

_FENCE = re.compile(r"[ \t]{0,3}(`{3,}|~{3,})")
_ATX = re.compile(r"[ \t]{0,3}#{1,6}(?:[ \t]|$)")
_ITEM = re.compile(r"[ \t]*(?:[-*+•]|\d{1,9}[.)]|#\.)[ \t]+\S")
_ROW = re.compile(r"[ \t]*\|")
_BOX = re.compile(r"[ \t]*(?:!!!|\?\?\?\+?)[ \t]*\w|[ \t]*\.\.[ \t]+\S")  # mkdocs admonition, reST directive
_SLASH_OPEN = re.compile(r"[ \t]*(/{3,})[ \t]*\w")  # pymdownx blocks: /// details | Title
_MARKUP = re.compile(r"[-=_*~^+#:|/`\s]+")  # pure markup: no word character at all
_UNDERLINE = re.compile(r"[ \t]*([-=~^*+#:])\1{2,}[ \t\r]*$")
_INDENT = re.compile(r"[ \t]*")
_BLANK = re.compile(r"[ \t\r\f\v]*$")


@dataclass(frozen=True)
class Unit:
    start: int
    end: int
    body_start: int  # after the glued heading(s); == start when there is none
    kind: str  # text, item, row, box, code, heading, markup

    @property
    def markup(self) -> bool:
        return self.kind == "markup"


def is_markup(text: str, start: int, end: int) -> bool:
    """Whether ``text[start:end]`` is markup only (rules, closers, table separators)."""
    return _MARKUP.fullmatch(text, start, end) is not None


class _Lines:
    """(start, end) of each line, lazily, with look-ahead."""

    def __init__(self, text: str) -> None:
        self.text = text
        self.pos = 0
        self.buffer: deque[tuple[int, int]] = deque()

    def _read(self) -> bool:
        if self.pos > len(self.text):
            return False
        nl = self.text.find("\n", self.pos)
        end = len(self.text) if nl < 0 else nl
        self.buffer.append((self.pos, end))
        self.pos = end + 1
        return True

    def peek(self, k: int = 0) -> tuple[int, int] | None:
        while len(self.buffer) <= k:
            if not self._read():
                return None
        return self.buffer[k]

    def next(self) -> tuple[int, int] | None:
        line = self.peek()
        if line is not None:
            self.buffer.popleft()
        return line


def _blocks(text: str) -> Iterator[tuple[int, int, str]]:
    lines = _Lines(text)

    def blank(line) -> bool:
        return _BLANK.match(text, line[0], line[1]) is not None

    def indent(line) -> int:
        a, _ = line
        return len(text[a:_INDENT.match(text, a, line[1]).end()].expandtabs(4))

    def markup(line) -> bool:
        return not blank(line) and is_markup(text, *line)

    def starts_block(line) -> bool:
        a, b = line
        return any(p.match(text, a, b) for p in (_FENCE, _ATX, _ITEM, _ROW, _BOX, _SLASH_OPEN)) or markup(line)

    def blank_run_inside(deeper_than: int) -> bool:
        """At a blank line: consume the run of blank lines when the line after it is indented
        deeper than ``deeper_than`` (the block goes on), else consume nothing."""
        k = 1
        while (nxt := lines.peek(k)) is not None and blank(nxt):
            k += 1
        if nxt is None or indent(nxt) <= deeper_than:
            return False
        for _ in range(k):
            lines.next()
        return True

    def through_closer(closer: re.Pattern, end: int) -> int:
        """Consume the opening line and every line up to and including its closer (or the end)."""
        lines.next()
        while (inner := lines.next()) is not None:
            end = inner[1]
            if closer.match(text, *inner):
                break
        return end

    def indented_body(header_indent: int, end: int) -> int:
        """Consume the lines indented deeper than the header (blank lines inside kept)."""
        while (line := lines.peek()) is not None:
            if blank(line):
                if not blank_run_inside(header_indent):
                    break
                continue
            if indent(line) <= header_indent:
                break
            end = lines.next()[1]
        return end

    while (line := lines.peek()) is not None:
        a, b = line
        if blank(line):
            lines.next()
            continue
        ind = indent(line)
        if m := _FENCE.match(text, a, b):
            closer = re.compile(r"[ \t]*" + re.escape(m.group(1)[0]) + "{%d,}[ \t\r]*$" % len(m.group(1)))
            yield a, through_closer(closer, b), "code"
        elif m := _SLASH_OPEN.match(text, a, b):
            yield a, through_closer(re.compile(r"[ \t]*/{%d}[ \t\r]*$" % len(m.group(1))), b), "box"
        elif _BOX.match(text, a, b):
            lines.next()
            yield a, indented_body(ind, b), "box"
        elif _ATX.match(text, a, b):
            lines.next()
            yield a, b, "heading"
        elif markup(line):
            lines.next()
            title, over = lines.peek(), lines.peek(1)
            if (title is not None and over is not None and not blank(title) and not markup(title)
                    and text[a:b].strip() == text[over[0]:over[1]].strip() and _UNDERLINE.match(text, a, b)):
                lines.next()
                lines.next()
                yield a, over[1], "heading"  # reST overlined title
            else:
                yield a, b, "markup"
        elif _ITEM.match(text, a, b):
            lines.next()
            end = b
            while (nxt := lines.peek()) is not None:
                if blank(nxt):
                    if not blank_run_inside(ind):
                        break
                    continue
                if indent(nxt) <= ind and starts_block(nxt):
                    break
                end = lines.next()[1]  # continuation, nested item or lazy line
            yield a, end, "item"
        elif _ROW.match(text, a, b):
            lines.next()
            yield a, b, "row"
        elif ind >= 4:
            lines.next()
            yield a, indented_body(ind - 1, b), "code"
        else:
            lines.next()
            first_start, last = a, line
            prev_start = a
            while (nxt := lines.peek()) is not None and not blank(nxt):
                if _UNDERLINE.match(text, *nxt):  # setext / reST underline: the line above is a title
                    if prev_start > first_start:
                        yield first_start, last_end_before(text, prev_start), "text"
                    lines.next()
                    yield prev_start, nxt[1], "heading"
                    break
                if starts_block(nxt):
                    yield first_start, last[1], "text" if not _title_like(text, first_start, last[1]) else "heading"
                    break
                last = lines.next()
                prev_start = last[0]
            else:
                yield first_start, last[1], "text" if not _title_like(text, first_start, last[1]) else "heading"


def last_end_before(text: str, pos: int) -> int:
    """End of the line before the one starting at ``pos``."""
    return pos - 1


def _title_like(text: str, start: int, end: int) -> bool:
    """A short single line without final punctuation, standing alone: a plain-text heading."""
    if end - start > 120 or "\n" in text[start:end]:
        return False
    line = text[start:end].strip()
    return bool(line) and not line.endswith((".", "!", "?", ":", ";", ",", ")", "]", "}", '"', "'", "。", "…", "！", "？"))


def units(text: str) -> Iterator[Unit]:
    """Units in order; headings glued to the unit after them."""
    heading: tuple[int, int] | None = None  # start of the pending heading(s), end of the last
    for a, b, kind in _blocks(text):
        if kind == "heading":
            heading = (heading[0] if heading else a, b)
        elif kind == "markup" and heading is not None:
            continue  # inside the glued unit
        elif heading is not None:
            yield Unit(heading[0], b, a, kind)
            heading = None
        else:
            yield Unit(a, b, a, kind)
    if heading is not None:
        yield Unit(heading[0], heading[1], heading[0], "heading")
