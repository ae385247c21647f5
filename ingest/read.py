"""Files → Documents: which files to read, how to get their text, what to skip.

A document's id is its path relative to the folder it was found under (a file given on the
command line is its own root, so its id is its name). The id, not the absolute path, is what the
store keys on, so the same folder ingested from another machine or checkout maps to the same
points.
"""

from __future__ import annotations

import fnmatch
import hashlib
import os
import re
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from html.parser import HTMLParser
from pathlib import Path

from . import formats

#: Extensions that are never text; they are skipped without being opened.
BINARY_EXTENSIONS = frozenset(
    ".png .jpg .jpeg .gif .bmp .tif .tiff .webp .ico .svgz .heic .psd "
    ".zip .gz .tgz .bz2 .xz .zst .7z .rar .tar .jar .war .whl .egg "
    ".pdf .doc .docx .xls .xlsx .ppt .pptx .odt .ods .odp .epub "
    ".mp3 .wav .flac .ogg .m4a .mp4 .mkv .avi .mov .webm "
    ".exe .dll .so .dylib .o .a .class .pyc .pyo .bin .dat .db .sqlite .npy .npz .pt .pth "
    ".safetensors .onnx .parquet .arrow .woff .woff2 .ttf .otf .eot".split()
)
HTML_EXTENSIONS = frozenset({".html", ".htm", ".xhtml"})
#: Files larger than this are not read as text (a log dump or a data file, not a document).
MAX_FILE_BYTES = 64 * 1024 * 1024
#: Share of characters that are undecodable or control characters above which a file is binary.
MAX_JUNK_SHARE = 0.30
_CONTROL = re.compile(r"[\x00-\x08\x0e-\x1a\x1c-\x1f\x7f\ufffd]")


@dataclass(frozen=True)
class ReadOptions:
    """How files are read: what :func:`read_document` takes, as one value the pipeline passes on."""

    follow_links_outside: bool = False  # read file links that leave the folder they were found in
    max_bytes: int | None = MAX_FILE_BYTES  # larger files are skipped; None: no limit


@dataclass(frozen=True)
class SourceFile:
    path: Path  # as found (may be a symlink)
    doc_id: str  # posix path relative to its root
    root: Path | None = None  # the folder it was found under; None for a file given by name


@dataclass
class Document:
    doc_id: str
    path: Path
    text: str
    content_hash: str  # sha256 of the file's bytes
    warnings: list[str] = field(default_factory=list)
    #: pages, slides or chapters of a PDF/Office/EPUB file (:mod:`ingest.formats`); a chunk stays in one
    sections: list[formats.Section] = field(default_factory=list)
    reader: str = ""  # the library that extracted the text (part of the version); "" for plain text
    #: a format file read with ``defer_formats``: call it for the Document with its text
    deferred: Callable[[], Document] | None = None


class Skipped(Exception):
    """A file that is not ingested and is not an error (binary, unreadable link)."""


def _matches(rel: str, patterns: Sequence[str]) -> bool:
    name = rel.rsplit("/", 1)[-1]
    return any(fnmatch.fnmatchcase(rel, p) or fnmatch.fnmatchcase(name, p) for p in patterns)


def wanted(doc_id: str, include: Sequence[str] = (), exclude: Sequence[str] = ()) -> bool:
    """Globs match the relative path or the bare file name; exclude wins over include."""
    if include and not _matches(doc_id, include):
        return False
    return not _matches(doc_id, exclude)


def find_files(paths: Iterable[str | os.PathLike[str]], include: Sequence[str] = (),
               exclude: Sequence[str] = ()) -> Iterator[SourceFile]:
    """Every file under ``paths`` (recursive, sorted, hidden entries skipped in folders).

    Directory symlinks are not followed (``os.walk(followlinks=False)``), so a symlink loop cannot
    make the walk endless. A file symlink is listed with its folder as ``root``:
    :func:`read_document` reads it only when it points inside that folder.
    """
    for given in paths:
        root = Path(given)
        if root.is_dir():
            for dirpath, dirnames, filenames in os.walk(root, followlinks=False):
                dirnames[:] = sorted(d for d in dirnames if not d.startswith("."))
                for name in sorted(filenames):
                    if name.startswith("."):
                        continue
                    path = Path(dirpath) / name
                    rel = path.relative_to(root).as_posix()
                    if wanted(rel, include, exclude):
                        yield SourceFile(path, rel, root)
        elif root.exists() or root.is_symlink():
            if wanted(root.name, include, exclude):
                yield SourceFile(root, root.name)
        else:
            raise FileNotFoundError(f"{given}: no such file or folder")


class _TextExtractor(HTMLParser):
    """Visible text of an HTML page: no script/style, block elements on their own lines."""

    BLOCK = frozenset("p div br li ul ol h1 h2 h3 h4 h5 h6 tr table section article header footer "
                      "nav aside pre blockquote dt dd title hr".split())
    HIDDEN = frozenset({"script", "style", "noscript", "template", "head"})

    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.parts: list[str] = []
        self.hidden = 0

    def handle_starttag(self, tag, attrs):
        if tag in self.HIDDEN and tag != "head":
            self.hidden += 1
        if tag in self.BLOCK:
            self.parts.append("\n\n" if tag in {"p", "div", "section", "article", "title"} or tag[0] == "h" else "\n")

    def handle_endtag(self, tag):
        if tag in self.HIDDEN and tag != "head":
            self.hidden = max(0, self.hidden - 1)
        if tag in self.BLOCK:
            self.parts.append("\n\n" if tag in {"p", "div", "section", "article", "title"} or tag[0] == "h" else "\n")

    def handle_data(self, data):
        if not self.hidden:
            self.parts.append(data)


def html_to_text(html: str) -> str:
    parser = _TextExtractor()
    parser.feed(html)
    parser.close()
    lines = [" ".join(line.split()) for line in "".join(parser.parts).split("\n")]
    text = "\n".join(lines)
    while "\n\n\n" in text:
        text = text.replace("\n\n\n", "\n\n")
    return text.strip()


def _outside(path: Path, root: Path) -> bool:
    try:
        path.resolve().relative_to(root.resolve())
    except ValueError:
        return True
    except (OSError, RuntimeError):  # a loop (RuntimeError up to Python 3.12): unreadable anyway
        return False
    return False


def _binary(data: bytes, text: str) -> str | None:
    """Why ``data`` is not text, or None: a NUL byte anywhere, or too many undecodable/control characters."""
    if b"\0" in data:
        return "not a text file (NUL byte)"
    if text:
        junk = sum(len(_CONTROL.findall(text, i, i + (1 << 20))) for i in range(0, len(text), 1 << 20))
        if junk > MAX_JUNK_SHARE * len(text):
            return f"not a text file ({junk / len(text):.0%} undecodable or control characters)"
    return None


def read_document(source: SourceFile, *, follow_links_outside: bool = False,
                  max_bytes: int | None = MAX_FILE_BYTES, defer_formats: bool = False) -> Document:
    """The text of one file. Raises :class:`Skipped` for non-text, ``OSError`` when unreadable.

    A symlink found in a folder that points outside it is skipped unless ``follow_links_outside``
    (a link into a secret elsewhere must not end up in the store). Files over ``max_bytes``
    (None: no cap) are skipped: text documents are not that large, and reading one whole would
    take memory in proportion.
    """
    path = source.path
    suffix = path.suffix.lower()
    if suffix in formats.EXTENSIONS and (why := formats.unavailable(suffix)):
        raise Skipped(f"{path}: {why}")
    if suffix in BINARY_EXTENSIONS and suffix not in formats.EXTENSIONS:
        raise Skipped(f"{path}: not a text file")
    if (source.root is not None and not follow_links_outside and path.is_symlink()
            and _outside(path, source.root)):
        raise Skipped(f"{path}: symlink to a file outside {source.root}; not followed "
                      "(follow_links_outside=True reads it)")
    if path.exists() and not path.is_file():  # a FIFO, socket or device: reading could block forever
        raise Skipped(f"{path}: not a regular file")
    try:
        size = path.stat().st_size
        if max_bytes is not None and size > max_bytes:
            raise Skipped(f"{path}: {size} bytes, over the {max_bytes}-byte limit for a text file")
        data = path.read_bytes()
    except OSError as exc:
        if path.is_symlink():
            raise Skipped(f"{path}: unreadable symlink ({exc.strerror or exc})") from None
        raise
    if suffix in formats.EXTENSIONS:
        return _formatted(source, data, defer_formats)
    warnings = []
    try:
        text = data.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        text = data.decode("utf-8-sig", errors="replace")
        warnings.append(f"{path}: not valid UTF-8 (first bad byte at {exc.start}); undecodable bytes replaced")
    if why := _binary(data, text):
        raise Skipped(f"{path}: {why}")
    if path.suffix.lower() in HTML_EXTENSIONS:
        text = html_to_text(text)
    text = text.replace("\r\n", "\n").replace("\r", "\n")
    return Document(source.doc_id, path, text, hashlib.sha256(data).hexdigest(), warnings)


def _formatted(source: SourceFile, data: bytes, defer: bool) -> Document:
    """A PDF, Office, EPUB or notebook file through :mod:`ingest.formats` (``FormatError`` is a
    ``ValueError``). ``defer``: hash now, extract when ``deferred()`` is called (not at all for a
    document the store holds unchanged)."""
    digest, reader = hashlib.sha256(data).hexdigest(), formats.reader_id(source.path.suffix)

    def extract() -> Document:
        x = formats.extract(source.path, data)
        return Document(source.doc_id, source.path, x.text, digest, x.warnings, x.sections, reader)

    if defer:
        return Document(source.doc_id, source.path, "", digest, reader=reader, deferred=extract)
    return extract()
