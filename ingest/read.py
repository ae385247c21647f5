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
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from html.parser import HTMLParser
from pathlib import Path

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
#: Bytes looked at for a NUL byte: text files have none.
SNIFF_BYTES = 8192


@dataclass(frozen=True)
class SourceFile:
    path: Path  # as found (may be a symlink)
    doc_id: str  # posix path relative to its root


@dataclass
class Document:
    doc_id: str
    path: Path
    text: str
    content_hash: str  # sha256 of the file's bytes
    warnings: list[str] = field(default_factory=list)


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
    make the walk endless; file symlinks are read like files.
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
                        yield SourceFile(path, rel)
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


def read_document(source: SourceFile) -> Document:
    """The text of one file. Raises :class:`Skipped` for non-text, ``OSError`` when unreadable."""
    path = source.path
    if path.suffix.lower() in BINARY_EXTENSIONS:
        raise Skipped(f"{path}: not a text file")
    if path.exists() and not path.is_file():  # a FIFO, socket or device: reading could block forever
        raise Skipped(f"{path}: not a regular file")
    try:
        data = path.read_bytes()
    except OSError as exc:
        if path.is_symlink():
            raise Skipped(f"{path}: unreadable symlink ({exc.strerror or exc})") from None
        raise
    if b"\0" in data[:SNIFF_BYTES]:
        raise Skipped(f"{path}: not a text file")
    warnings = []
    try:
        text = data.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        text = data.decode("utf-8-sig", errors="replace")
        warnings.append(f"{path}: not valid UTF-8 (first bad byte at {exc.start}); undecodable bytes replaced")
    if path.suffix.lower() in HTML_EXTENSIONS:
        text = html_to_text(text)
    text = text.replace("\r\n", "\n").replace("\r", "\n")
    return Document(source.doc_id, path, text, hashlib.sha256(data).hexdigest(), warnings)
