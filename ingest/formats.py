"""PDF, Word, PowerPoint, EPUB, OpenDocument and Jupyter files → Markdown-shaped text, and where each part is.

The chunker knows Markdown (:mod:`sgpt_qdrant.blocks`), so every reader writes Markdown for the
structure it finds: headings as ``#``, list items as ``-``, table rows as ``| a | b |``, code as
fenced blocks, paragraphs separated by a blank line. Chunks then follow sections, not line wraps.

A file is one text with *sections*: its pages (PDF, with the printed page label), slides (PPTX)
or chapters (EPUB). The chunker cuts each section on its own, so a chunk never spans two pages,
and its metadata (``page_label``, ``slide``, ``chapter``) goes into the chunk's payload.

Libraries (the ``docs`` extra, all permissive): pypdfium2 (Apache-2.0/BSD-3; PDFium's text layer,
several times faster than pypdf, see ``docs/formats.md``), python-docx and python-pptx (MIT).
EPUB and ODT are zip archives of XHTML / XML and are read with the standard library (EbookLib
is AGPL). Notebooks are JSON.

A bad file raises :class:`FormatError` with one line that says why (encrypted, corrupt, no text
layer, over a limit); a missing library :class:`MissingLibrary` with the ``pip install`` that
adds it. Limits (:class:`Limits`) bound pages, time and what a zip expands to, so a
100,000-page file or a decompression bomb fails alone instead of holding the run.
"""

from __future__ import annotations

import functools
import importlib.util
import io
import json
import re
import statistics
import time
import zipfile
from collections import Counter
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from html.parser import HTMLParser
from pathlib import Path, PurePosixPath
from typing import Any
from xml.etree import ElementTree

#: Bump when what a reader extracts changes: it is part of every such document's version.
FORMATS_VERSION = "1"
INSTALL = 'pip install "sgpt-qdrant[docs]"'
#: extension → the module its reader needs (None: the standard library is enough)
NEEDS = {".pdf": "pypdfium2", ".docx": "docx", ".pptx": "pptx", ".epub": None, ".odt": None, ".ipynb": None}
EXTENSIONS = frozenset(NEEDS)
_PACKAGE = {"pypdfium2": "pypdfium2", "docx": "python-docx", "pptx": "python-pptx"}


class FormatError(ValueError):
    """A file of a known format that cannot be read; the message is the reason, in one line."""


class MissingLibrary(ImportError):
    """The library for a format is not installed; the message names the ``pip install``."""


@dataclass(frozen=True)
class Limits:
    max_pages: int = 10_000  # pages, slides or chapters
    max_seconds: float = 300.0  # per file, checked between pages
    max_unzipped: int = 1 << 30  # bytes a zip-based file may expand to


@dataclass(frozen=True)
class Section:
    """``text[start:end]`` is one page, slide or chapter; ``meta`` goes into its chunks' payload."""

    start: int
    end: int
    meta: dict[str, Any]


@dataclass
class Extracted:
    text: str
    sections: list[Section] = field(default_factory=list)
    reader: str = ""  # :func:`reader_id`: part of the document's version
    warnings: list[str] = field(default_factory=list)


def unavailable(suffix: str) -> str | None:
    """Why files with this extension cannot be read here (the install line), or None."""
    module = NEEDS.get(suffix.lower())
    if module is None or importlib.util.find_spec(module) is not None:
        return None
    return f"reading {suffix.lower()} files needs {_PACKAGE[module]}: {INSTALL}"


def reader_id(suffix: str) -> str:
    """What reads files with this extension (library and version, this module's version): part of
    their documents' version, known without reading a file, so an unchanged one is not extracted."""
    module = NEEDS.get(suffix.lower())
    library = _version(_PACKAGE[module]) if module else "stdlib"
    return f"{library} formats {FORMATS_VERSION}"


def extract(path: Path, data: bytes, limits: Limits = Limits()) -> Extracted:
    """The Markdown-shaped text of one file and its sections. Raises :class:`FormatError`."""
    suffix = path.suffix.lower()
    if why := unavailable(suffix):
        raise MissingLibrary(why)
    reader = _READERS[suffix]
    clock = _Clock(limits)
    try:
        extracted = reader(data, limits, clock)
        extracted.reader = reader_id(suffix)
        return extracted
    except (FormatError, MissingLibrary):
        raise
    except MemoryError:
        raise FormatError("too large to read into memory") from None
    except Exception as exc:  # noqa: BLE001 - a library's own error for a damaged file: one line
        detail = " ".join(str(exc).split())[:200]
        raise FormatError(f"corrupt or unreadable {suffix[1:].upper()} file ({type(exc).__name__}: {detail})") from None


class _Clock:
    def __init__(self, limits: Limits) -> None:
        self.limits = limits
        self.start = time.monotonic()

    def check(self, where: str) -> None:
        seconds = time.monotonic() - self.start
        if seconds > self.limits.max_seconds:
            raise FormatError(f"still reading after {seconds:.0f} s (at {where}); over the "
                              f"{self.limits.max_seconds:g}-second limit for one file")


def _count_limit(n: int, what: str, limits: Limits) -> None:
    if n > limits.max_pages:
        raise FormatError(f"{n} {what}, over the {limits.max_pages}-{what[:-1]} limit for one file")


class _Builder:
    """The document text and its sections, as parts are added."""

    def __init__(self) -> None:
        self.parts: list[str] = []
        self.length = 0
        self.sections: list[Section] = []

    def add(self, text: str, meta: dict[str, Any] | None = None) -> None:
        text = text.strip()
        if not text:
            return
        if self.parts:
            self.parts.append("\n\n")
            self.length += 2
        start = self.length
        self.parts.append(text)
        self.length += len(text)
        if meta is not None:
            self.sections.append(Section(start, self.length, meta))

    def done(self, warnings: list[str] | None = None) -> Extracted:
        return Extracted("".join(self.parts), self.sections, "", warnings or [])


@functools.lru_cache(maxsize=None)
def _version(package: str) -> str:
    from importlib.metadata import PackageNotFoundError, version

    try:
        return f"{package} {version(package)}"
    except PackageNotFoundError:
        return package


def _one_line(text: str) -> str:
    return " ".join(text.split())


# -- PDF ---------------------------------------------------------------------------------------

@dataclass
class _Line:
    text: str
    left: float
    top: float
    bottom: float
    size: float  # font size in points (the box height where PDFium gives none)


_BULLET = re.compile(r"^[•▪◦●■‣⁃∙·\-–*]\s+")
_NUMBERED = re.compile(r"^\(?\d{1,3}[.)]\s+")
_PAGE_NUMBER = re.compile(r"^(?:page\s+)?(?:\d{1,5}|[ivxlcdm]{1,8})(?:\s*(?:of|/)\s*\d{1,5})?$"
                          r"|^[-–—]\s*\d{1,5}\s*[-–—]$", re.IGNORECASE)
_HYPHEN_END = re.compile(r"[^\W\d_][-\u00ad\x02]$")


def _read_pdf(data: bytes, limits: Limits, clock: _Clock) -> Extracted:
    import pypdfium2 as pdfium

    try:
        pdf = pdfium.PdfDocument(data)
    except pdfium.PdfiumError as exc:
        code = getattr(exc, "err_code", None)
        if code == pdfium.raw.FPDF_ERR_PASSWORD:
            raise FormatError("encrypted (it needs a password to open)") from None
        if code == pdfium.raw.FPDF_ERR_SECURITY:
            raise FormatError("encrypted with an unsupported security handler") from None
        detail = str(exc).replace("Failed to load document (", "").rstrip(".)").strip()
        raise FormatError(f"corrupt or not a PDF ({detail})") from None
    try:
        n = len(pdf)
        _count_limit(n, "pages", limits)
        pages: list[tuple[str, list[_Line], float]] = []  # label, lines in reading order, page height
        for i in range(n):
            clock.check(f"page {i + 1} of {n}")
            page = pdf[i]
            try:
                width, height = page.get_size()
                textpage = page.get_textpage()
                try:
                    lines = _page_lines(textpage, width)
                finally:
                    textpage.close()
            finally:
                page.close()
            label = pdf.get_page_label(i) or str(i + 1)
            pages.append((label, lines, height))
    finally:
        pdf.close()
    if not any(lines for _, lines, _ in pages):
        raise FormatError("no text layer; OCR is not supported")
    heights = [ln.size for _, lines, _ in pages for ln in lines for _ in range(max(1, len(ln.text) // 20))]
    body = statistics.median(heights)
    running = _running_lines(pages, body)
    out = _Builder()
    for number, (label, lines, height) in enumerate(pages, 1):
        kept = [ln for ln in lines if not _is_running(ln, number, height, label, body, running)]
        out.add(_pdf_markdown(kept, body), {"page_label": label})
    return out.done()


def _page_lines(textpage, width: float) -> list[_Line]:
    """The page's text lines in reading order: columns left to right, each top to bottom."""
    rects = _runs(textpage)
    if not rects:
        return []
    gutter = _gutter(rects, width)
    if gutter is None:
        return _lines(rects)
    spanning = sorted((r for r in rects if r[0] < gutter < r[2]), key=lambda r: -r[3])
    columns = [r for r in rects if not r[0] < gutter < r[2]]
    ordered: list[_Line] = []
    ceiling = float("inf")
    for cut in [*spanning, None]:  # bands between full-width lines: left column, then right
        floor = cut[3] if cut is not None else float("-inf")
        band = [r for r in columns if floor <= (r[1] + r[3]) / 2 < ceiling]
        ordered += _lines([r for r in band if r[2] <= gutter])
        ordered += _lines([r for r in band if r[0] >= gutter])
        if cut is not None:
            ordered += _lines([cut])
            ceiling = cut[1]
    return ordered


def _runs(textpage) -> list[tuple[float, float, float, float, str, float]]:
    """(left, bottom, right, top, text, font size) of each run of text on one line, split where
    a gap is wider than an em (a column gutter).

    One text call per page; per line of PDFium's text its rectangles (PDFium splits a line at
    gaps and font changes), each one's first character found by bisection on the rectangle
    count, and neighbours closer than an em joined again. Asking PDFium for each rectangle's
    bounded text instead scans the whole page each time: several times slower."""
    import ctypes

    from pypdfium2 import raw

    full = textpage.get_text_range()
    if len(full) != textpage.count_chars():  # characters outside the BMP: indices differ; ask per rectangle
        return _rects(textpage)
    handle, count, get_rect, font_size = textpage.raw, raw.FPDFText_CountRects, raw.FPDFText_GetRect, \
        raw.FPDFText_GetFontSize
    l, t, r, b = (ctypes.c_double() for _ in range(4))
    refs = tuple(ctypes.byref(v) for v in (l, t, r, b))
    runs: list[list] = []  # [left, bottom, right, top, text, size]
    for line in re.finditer(r"[^\r\n]+", full):
        a, z = line.span()
        n = count(handle, a, z - a)
        if n <= 0:
            continue
        bounds = [a]
        for j in range(1, n):  # the first character of rectangle j: the shortest prefix with j + 1 of them
            lo, hi = bounds[-1] - a + 1, z - a
            while lo < hi:
                mid = (lo + hi) // 2
                if count(handle, a, mid) > j:
                    hi = mid
                else:
                    lo = mid + 1
            bounds.append(a + lo - 1)
        if n > 1:
            count(handle, a, z - a)  # GetRect reads the last count's rectangles
        bounds.append(z)
        cur = None
        for j in range(n):
            get_rect(handle, j, *refs)
            text = full[bounds[j]:bounds[j + 1]]
            if not text.strip():
                continue
            left, bottom, right, top = l.value, b.value, r.value, t.value
            if cur is not None and -1 < left - cur[2] <= max(cur[5], 3.0) and min(top, cur[3]) - max(
                    bottom, cur[1]) > 0.3 * min(top - bottom, cur[3] - cur[1]):
                cur[1], cur[2], cur[3] = min(cur[1], bottom), max(cur[2], right), max(cur[3], top)
                cur[4] += text
                continue
            size = font_size(handle, bounds[j] + len(text) - len(text.lstrip()))
            cur = [left, bottom, right, top, text, size if size > 0 else top - bottom]
            runs.append(cur)
    return [(x0, y0, x1, y1, _one_line(text).replace("\ufffe", "\x02"), size) for x0, y0, x1, y1, text, size in runs]


def _rects(textpage) -> list[tuple[float, float, float, float, str, float]]:
    """:func:`_runs` from PDFium's own rectangles (slower: each text call scans the page)."""
    from pypdfium2 import raw

    rects = []
    for k in range(textpage.count_rects()):
        left, bottom, right, top = textpage.get_rect(k)
        text = _one_line(textpage.get_text_bounded(left, bottom, right, top))
        if text:
            char = raw.FPDFText_GetCharIndexAtPos(textpage.raw, left + 1, (bottom + top) / 2, 3, 3)
            size = raw.FPDFText_GetFontSize(textpage.raw, char) if char >= 0 else 0.0
            rects.append((left, bottom, right, top, text, size if size > 0 else top - bottom))
    return rects


def _gutter(rects, width: float) -> float | None:
    """x of the gap between two columns, or None: the least covered position in the middle of the
    page, if text lies on both sides of it and little text crosses it."""
    bins = 100
    cover = [0] * bins
    for left, _, right, *_ in rects:
        for b in range(max(0, int(left / width * bins)), min(bins, int(right / width * bins) + 1)):
            cover[b] += 1
    middle = range(bins // 4, 3 * bins // 4)
    least = min(cover[b] for b in middle)
    runs, run = [], []
    for b in middle:
        if cover[b] == least:
            run.append(b)
        elif run:
            runs.append(run)
            run = []
    if run:
        runs.append(run)
    best = max(runs, key=len)
    x = (best[0] + best[-1] + 1) / 2 / bins * width
    left = sum(1 for r in rects if r[2] <= x)
    right = sum(1 for r in rects if r[0] >= x)
    if min(left, right) < 3 or least > 0.2 * min(left, right):
        return None
    return x


def _lines(rects) -> list[_Line]:
    """Rectangles of one column → lines, top to bottom; pieces of one line joined left to right."""
    lines: list[list] = []
    for rect in sorted(rects, key=lambda r: (-r[3], r[0])):
        if lines:
            last = lines[-1]
            top, bottom = min(r[3] for r in last), max(r[1] for r in last)
            overlap = min(top, rect[3]) - max(bottom, rect[1])
            if overlap > 0.5 * min(top - bottom, rect[3] - rect[1]):
                last.append(rect)
                continue
        lines.append([rect])
    return [_Line(" ".join(r[4] for r in sorted(line, key=lambda r: r[0])), min(r[0] for r in line),
                  max(r[3] for r in line), min(r[1] for r in line), max(r[5] for r in line)) for line in lines]


def _norm(text: str, label: str, number: int) -> str:
    """The line with this page's own number or label as ``#``: what repeats of a running header."""
    words = ["#" if w in (label, str(number)) else w for w in text.lower().split()]
    return " ".join(words)


def _margin(line: _Line, height: float, body: float) -> bool:
    """In the top or bottom tenth of the page, in body size or smaller: where headers and footers are."""
    return line.size <= 1.1 * body and (line.top > 0.9 * height or line.bottom < 0.1 * height)


def _running_lines(pages, body: float) -> set[str]:
    """Header and footer lines (the page number as ``#``) on at least half the pages (and two)."""
    if len(pages) < 2:
        return set()
    seen: Counter = Counter()
    for number, (label, lines, height) in enumerate(pages, 1):
        seen.update({_norm(ln.text, label.lower(), number) for ln in lines if _margin(ln, height, body)})
    return {t for t, c in seen.items() if c >= max(2, len(pages) / 2)}


def _is_running(line: _Line, number: int, height: float, label: str, body: float, running: set[str]) -> bool:
    if not _margin(line, height, body):
        return False
    text = line.text.strip()
    return bool(_PAGE_NUMBER.match(text)) or text == label or _norm(text, label.lower(), number) in running


def _pdf_markdown(lines: list[_Line], body: float) -> str:
    """Lines → paragraphs (a break at a wider line pitch, a font size change or a list item),
    headings for large short lines, hyphenated line ends joined."""
    pitches = [a.top - b.top for a, b in zip(lines, lines[1:]) if 0 < a.top - b.top < 3 * max(a.size, b.size)]
    normal = statistics.median(pitches) if pitches else 1.2 * body
    blocks: list[str] = []
    cur = ""
    prev: _Line | None = None
    for line in lines:
        text = line.text
        heading = line.size > 1.15 * body and len(text) <= 120
        item = _BULLET.match(text) or _NUMBERED.match(text)
        new_block = (prev is None or heading or item or prev.size > 1.15 * body
                     or prev.top - line.top > 1.3 * normal
                     or line.top > prev.top  # a column or band change
                     or abs(line.size - prev.size) > 0.1 * body)
        if new_block:
            if cur:
                blocks.append(cur)
            if heading:
                text = "## " + text
            elif item:
                text = _BULLET.sub("- ", text, count=1)
            cur = text
        elif _HYPHEN_END.search(cur[-2:]) and text[:1].islower():
            cur = cur[:-1] + text
        else:
            cur = cur.rstrip("\u00ad\x02") + " " + text
        prev = line
    if cur:
        blocks.append(cur)
    out = []
    for i, block in enumerate(blocks):  # consecutive list items: one per line, no blank line between
        sep = "\n" if i and block.startswith("- ") and blocks[i - 1].startswith("- ") else "\n\n"
        out.append((sep if i else "") + block)
    return "".join(out)


# -- zip-based formats -------------------------------------------------------------------------

def _zip(data: bytes, limits: Limits, what: str) -> zipfile.ZipFile:
    if data[:8] == b"\xd0\xcf\x11\xe0\xa1\xb1\x1a\xe1":
        raise FormatError("encrypted, or an old binary Office file saved under a new extension; not read")
    try:
        archive = zipfile.ZipFile(io.BytesIO(data))
    except zipfile.BadZipFile:
        raise FormatError(f"corrupt (not the zip archive a {what} file is)") from None
    total = sum(info.file_size for info in archive.infolist())
    if total > limits.max_unzipped:
        raise FormatError(f"expands to {total} bytes, over the {limits.max_unzipped}-byte limit "
                          "(a decompression bomb?)")
    return archive


def _row(cells: Iterable[str]) -> str:
    return "| " + " | ".join(_one_line(c).replace("|", "\\|") for c in cells) + " |"


def _heading_level(style: str) -> int | None:
    style = style.lower()
    if style == "title":
        return 1
    if m := re.match(r"heading\s*(\d)", style):
        return min(6, int(m.group(1)))
    return None


def _read_docx(data: bytes, limits: Limits, clock: _Clock) -> Extracted:
    import docx
    from docx.table import Table
    from docx.text.paragraph import Paragraph

    _zip(data, limits, "DOCX")
    document = docx.Document(io.BytesIO(data))
    blocks: list[str] = []
    for element in document.element.body.iterchildren():
        tag = element.tag.rsplit("}", 1)[-1]
        if tag == "p":
            paragraph = Paragraph(element, document)
            text = paragraph.text.strip()
            if not text:
                continue
            style = paragraph.style.name if paragraph.style is not None else ""
            level = _heading_level(style)
            if level:
                blocks.append("#" * level + " " + _one_line(text))
            elif "list" in style.lower() or element.pPr is not None and element.pPr.numPr is not None:
                depth = 0
                if element.pPr is not None and element.pPr.numPr is not None and element.pPr.numPr.ilvl is not None:
                    depth = int(element.pPr.numPr.ilvl.val or 0)
                blocks.append("  " * depth + "- " + _one_line(text))
            else:
                blocks.append(text)
        elif tag == "tbl":
            table = Table(element, document)
            rows = [_row(cell.text for cell in row.cells) for row in table.rows]
            if rows:
                blocks.append("\n".join(rows))
    out = _Builder()
    out.add(_join_blocks(blocks))
    return out.done()


def _join_blocks(blocks: list[str]) -> str:
    """Blocks with a blank line between, consecutive list items on consecutive lines."""
    parts = []
    for i, block in enumerate(blocks):
        if i:
            item = block.lstrip().startswith("- ") and blocks[i - 1].lstrip().startswith("- ")
            parts.append("\n" if item else "\n\n")
        parts.append(block)
    return "".join(parts)


def _read_pptx(data: bytes, limits: Limits, clock: _Clock) -> Extracted:
    from pptx import Presentation
    from pptx.enum.shapes import MSO_SHAPE_TYPE

    _zip(data, limits, "PPTX")
    deck = Presentation(io.BytesIO(data))
    slides = list(deck.slides)
    _count_limit(len(slides), "slides", limits)
    out = _Builder()

    def shapes_of(shapes) -> list:
        flat = []
        for shape in shapes:
            if shape.shape_type == MSO_SHAPE_TYPE.GROUP:
                flat += shapes_of(shape.shapes)
            else:
                flat.append(shape)
        return flat

    for number, slide in enumerate(slides, 1):
        clock.check(f"slide {number}")
        blocks: list[str] = []
        title = slide.shapes.title
        if title is not None and title.has_text_frame and title.text_frame.text.strip():
            blocks.append("# " + _one_line(title.text_frame.text))
        shapes = sorted(shapes_of(slide.shapes), key=lambda s: ((s.top or 0), (s.left or 0)))
        for shape in shapes:
            if title is not None and shape.shape_id == title.shape_id:
                continue
            if getattr(shape, "has_table", False) and shape.has_table:
                blocks.append("\n".join(_row(c.text for c in row.cells) for row in shape.table.rows))
            elif shape.has_text_frame:
                paragraphs = [(p.level, "".join(r.text for r in p.runs) or p.text) for p in shape.text_frame.paragraphs]
                paragraphs = [(level, _one_line(t)) for level, t in paragraphs if t.strip()]
                if len(paragraphs) > 1 or (paragraphs and paragraphs[0][0] > 0):
                    blocks.append("\n".join("  " * level + "- " + t for level, t in paragraphs))
                elif paragraphs:
                    blocks.append(paragraphs[0][1])
        if slide.has_notes_slide and (notes := slide.notes_slide.notes_text_frame) is not None and notes.text.strip():
            blocks.append(notes.text.strip())
        out.add("\n\n".join(blocks), {"slide": number})
    return out.done()


class _Markdown(HTMLParser):
    """XHTML → Markdown blocks: headings, paragraphs, list items, table rows, preformatted code."""

    HIDDEN = frozenset({"script", "style", "head", "noscript", "template"})
    BLOCK = frozenset("p div section article header footer aside blockquote figure figcaption dt dd body nav".split())

    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.blocks: list[str] = []
        self.cur: list[str] = []
        self.prefix = ""
        self.hidden = 0
        self.pre = 0
        self.lists = 0
        self.row: list[str] | None = None
        self.cell: list[str] | None = None
        self.title = ""
        self.in_title = False

    def _flush(self) -> None:
        text = "".join(self.cur)
        text = text.strip("\n") if self.pre else _one_line(text)
        if text:
            self.blocks.append(text if self.pre else self.prefix + text)
        self.cur, self.prefix = [], ""

    def handle_starttag(self, tag, attrs):
        if tag == "title":
            self.in_title = True
        if tag in self.HIDDEN:
            self.hidden += 1
            return
        if tag in self.BLOCK or tag in ("ul", "ol", "table"):
            self._flush()
            self.lists += tag in ("ul", "ol")
        elif re.fullmatch(r"h[1-6]", tag):
            self._flush()
            self.prefix = "#" * int(tag[1]) + " "
        elif tag == "li":
            self._flush()
            self.prefix = "  " * max(0, self.lists - 1) + "- "
        elif tag == "pre":
            self._flush()
            self.pre += 1
        elif tag == "br":
            self.cur.append("\n" if self.pre else " ")
        elif tag == "tr":
            self._flush()
            self.row = []
        elif tag in ("td", "th"):
            self.cell = []

    def handle_endtag(self, tag):
        if tag == "title":
            self.in_title = False
        if tag in self.HIDDEN:
            self.hidden = max(0, self.hidden - 1)
            return
        if tag == "pre":
            code = "".join(self.cur).strip("\n")
            if code.strip():
                self.blocks.append("```\n" + code + "\n```")
            self.cur = []
            self.pre = max(0, self.pre - 1)
        elif tag in ("td", "th") and self.cell is not None and self.row is not None:
            self.row.append("".join(self.cell))
            self.cell = None
        elif tag == "tr" and self.row is not None:
            if any(c.strip() for c in self.row):
                self.blocks.append(_row(self.row))
            self.row = None
        elif tag in self.BLOCK or tag in ("li", "ul", "ol", "table") or re.fullmatch(r"h[1-6]", tag):
            self._flush()
            self.lists -= tag in ("ul", "ol") and self.lists > 0

    def handle_data(self, data):
        if self.in_title:
            self.title += data
        if self.hidden:
            return
        (self.cell if self.cell is not None else self.cur).append(data)

    def markdown(self) -> str:
        self._flush()
        return _join_rows(self.blocks)


def _join_rows(blocks: list[str]) -> str:
    """Like :func:`_join_blocks`, and table rows of one table on consecutive lines."""
    parts = []
    for i, block in enumerate(blocks):
        if i:
            same = (block.lstrip().startswith("- ") and blocks[i - 1].lstrip().startswith("- ")) or (
                block.startswith("| ") and blocks[i - 1].startswith("| "))
            parts.append("\n" if same else "\n\n")
        parts.append(block)
    return "".join(parts)


def html_markdown(html: str) -> tuple[str, str]:
    """(Markdown text, ``<title>``) of an XHTML page."""
    parser = _Markdown()
    parser.feed(html)
    parser.close()
    return parser.markdown(), _one_line(parser.title)


def _xml(archive: zipfile.ZipFile, name: str) -> ElementTree.Element:
    return ElementTree.fromstring(archive.read(name))


def _local(tag: str) -> str:
    return tag.rsplit("}", 1)[-1]


def _read_epub(data: bytes, limits: Limits, clock: _Clock) -> Extracted:
    archive = _zip(data, limits, "EPUB")
    names = set(archive.namelist())
    if "META-INF/encryption.xml" in names:
        encrypted = _xml(archive, "META-INF/encryption.xml")
        refs = [e.get("URI", "") for e in encrypted.iter() if _local(e.tag) == "CipherReference"]
        if any(not r.lower().endswith((".otf", ".ttf", ".woff", ".woff2")) for r in refs):
            raise FormatError("encrypted (DRM); not read")  # obfuscated fonts alone are fine
    try:
        container = _xml(archive, "META-INF/container.xml")
        opf_path = next(e.get("full-path") for e in container.iter() if _local(e.tag) == "rootfile")
    except (KeyError, StopIteration):
        raise FormatError("corrupt EPUB (no META-INF/container.xml naming its package)") from None
    opf = _xml(archive, opf_path)
    base = PurePosixPath(opf_path).parent
    manifest = {e.get("id"): e for e in opf.iter() if _local(e.tag) == "item"}
    spine = [e.get("idref") for e in opf.iter() if _local(e.tag) == "itemref" and e.get("linear") != "no"]
    _count_limit(len(spine), "chapters", limits)
    toc = _epub_toc(archive, opf, manifest, base)
    out = _Builder()
    chapter = ""
    for number, idref in enumerate(spine, 1):
        clock.check(f"chapter {number}")
        item = manifest.get(idref)
        if item is None or "html" not in (item.get("media-type") or ""):
            continue
        href = _resolve(base, item.get("href", ""))
        if href not in names:
            continue
        text, title = html_markdown(archive.read(href).decode("utf-8", errors="replace"))
        first_heading = next((ln.lstrip("#").strip() for ln in text.split("\n") if ln.startswith("#")), "")
        chapter = toc.get(href) or first_heading or chapter or title
        out.add(text, {"chapter": chapter} if chapter else {})
    return out.done()


def _resolve(base: PurePosixPath, href: str) -> str:
    from urllib.parse import unquote

    parts: list[str] = []
    for part in (base / unquote(href.split("#", 1)[0])).parts:
        if part == "..":
            parts = parts[:-1]
        elif part not in (".", ""):
            parts.append(part)
    return "/".join(parts)


def _epub_toc(archive: zipfile.ZipFile, opf, manifest: dict, base: PurePosixPath) -> dict[str, str]:
    """Chapter file → its title in the table of contents (EPUB 3 nav or EPUB 2 NCX); first entry wins."""
    toc: dict[str, str] = {}
    for item in manifest.values():
        href = _resolve(base, item.get("href", ""))
        try:
            if "nav" in (item.get("properties") or "").split():
                root = _xml(archive, href)
                for a in root.iter():
                    if _local(a.tag) == "a" and a.get("href"):
                        target = _resolve(PurePosixPath(href).parent, a.get("href"))
                        toc.setdefault(target, _one_line("".join(a.itertext())))
            elif item.get("media-type") == "application/x-dtbncx+xml":
                root = _xml(archive, href)
                for point in root.iter():
                    if _local(point.tag) != "navPoint":
                        continue
                    label = next((_one_line("".join(e.itertext())) for e in point if _local(e.tag) == "navLabel"), "")
                    src = next((e.get("src") for e in point if _local(e.tag) == "content"), None)
                    if src and label:
                        toc.setdefault(_resolve(PurePosixPath(href).parent, src), label)
        except (KeyError, ElementTree.ParseError):
            continue  # no usable table of contents: headings name the chapters
    return {k: v for k, v in toc.items() if v}


_TEXT = "urn:oasis:names:tc:opendocument:xmlns:text:1.0"
_TABLE = "urn:oasis:names:tc:opendocument:xmlns:table:1.0"


def _read_odt(data: bytes, limits: Limits, clock: _Clock) -> Extracted:
    archive = _zip(data, limits, "ODT")
    try:
        manifest = archive.read("META-INF/manifest.xml")
    except KeyError:
        manifest = b""
    if b"encryption-data" in manifest:
        raise FormatError("encrypted (it needs a password to open)")
    try:
        content = _xml(archive, "content.xml")
    except KeyError:
        raise FormatError("corrupt ODT (no content.xml)") from None
    office = "{urn:oasis:names:tc:opendocument:xmlns:office:1.0}"
    body = next((e for e in content.iter() if e.tag == office + "text"), None)
    blocks: list[str] = []
    if body is not None:
        _odt_blocks(body, blocks, 0)
    out = _Builder()
    out.add(_join_rows(blocks))
    return out.done()


def _odt_text(element) -> str:
    parts = [element.text or ""]
    for child in element:
        tag = _local(child.tag)
        if tag == "s":
            parts.append(" " * int(child.get(f"{{{_TEXT}}}c", "1")))
        elif tag in ("tab", "line-break"):
            parts.append(" ")
        elif tag not in ("note", "annotation"):
            parts.append(_odt_text(child))
        parts.append(child.tail or "")
    return "".join(parts)


def _odt_blocks(element, blocks: list[str], depth: int) -> None:
    for child in element:
        tag = _local(child.tag)
        if tag == "h":
            level = int(child.get(f"{{{_TEXT}}}outline-level", "1") or 1)
            if text := _one_line(_odt_text(child)):
                blocks.append("#" * min(6, level) + " " + text)
        elif tag == "p":
            if text := _one_line(_odt_text(child)):
                blocks.append(text)
        elif tag == "list":
            for item in child:
                if _local(item.tag) not in ("list-item", "list-header"):
                    continue
                inner: list[str] = []
                _odt_blocks(item, inner, depth + 1)
                for k, block in enumerate(inner):
                    if block.lstrip().startswith("- "):
                        blocks.append(block)  # a nested list's item
                    else:
                        blocks.append("  " * depth + ("- " if k == 0 else "  ") + block)
        elif tag == "table":
            for row in child.iter(f"{{{_TABLE}}}table-row"):
                cells = [_one_line(_odt_text_all(c)) for c in row if _local(c.tag) == "table-cell"]
                if any(cells):
                    blocks.append(_row(cells))
        elif tag in ("section", "index-body", "table-of-content"):
            _odt_blocks(child, blocks, depth)


def _odt_text_all(element) -> str:
    return " ".join(_odt_text(p) for p in element.iter() if _local(p.tag) in ("p", "h"))


# -- notebooks ---------------------------------------------------------------------------------

def _read_ipynb(data: bytes, limits: Limits, clock: _Clock) -> Extracted:
    try:
        notebook = json.loads(data.decode("utf-8-sig"))
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise FormatError(f"corrupt notebook (not JSON: {exc})") from None
    if not isinstance(notebook, dict) or not isinstance(notebook.get("cells", notebook.get("worksheets")), list):
        raise FormatError("not a Jupyter notebook (no cells)")
    cells = notebook.get("cells")
    if cells is None:  # nbformat 3
        cells = [c for sheet in notebook["worksheets"] for c in sheet.get("cells", [])]
    meta = notebook.get("metadata") or {}
    language = ((meta.get("language_info") or {}).get("name") or (meta.get("kernelspec") or {}).get("language")
                or "python")
    blocks = []
    for cell in cells:
        source = cell.get("source", cell.get("input", ""))
        source = "".join(source) if isinstance(source, list) else str(source)
        if not source.strip():
            continue
        if cell.get("cell_type") == "markdown":
            blocks.append(source.strip("\n"))
        elif cell.get("cell_type") == "code":
            fence = "````" if "```" in source else "```"
            blocks.append(f"{fence}{language}\n{source.strip(chr(10))}\n{fence}")
    out = _Builder()
    out.add("\n\n".join(blocks))
    return out.done()


_READERS: dict[str, Callable[[bytes, Limits, _Clock], Extracted]] = {
    ".pdf": _read_pdf, ".docx": _read_docx, ".pptx": _read_pptx, ".epub": _read_epub, ".odt": _read_odt,
    ".ipynb": _read_ipynb,
}

__all__ = ["EXTENSIONS", "INSTALL", "Extracted", "FormatError", "Limits", "MissingLibrary", "Section", "extract",
           "html_markdown", "reader_id", "unavailable"]
