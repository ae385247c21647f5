"""Files → Documents: which files to read, how to get their text, what to skip.

A document's id is ``<source>/<path relative to the folder given>``, where the source is the
folder's own name (``docs/guide.md`` for ``sgpt-ingest path/to/docs``), or the name given with
``--source NAME`` (``source=`` in Python). A file given by name is ``<its folder's name>/<name>``,
the id a run over that folder gives it. The id never holds the absolute path, so the same folder
ingested from another machine or checkout maps to the same points, and two folders with a file
of the same relative path no longer share a document (give same-named folders different
``--source`` names).

The walk records what it could not list (a folder without permission, a name over PATH_MAX): the
run counts it as a failure and ``--prune`` removes nothing under it (:meth:`Discovery.covers`).
"""

from __future__ import annotations

import errno
import fnmatch
import hashlib
import os
import re
import stat
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
    doc_id: str  # "<source>/<posix path relative to its root>"
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


def source_name(given: str | os.PathLike[str], source: str | None = None) -> str:
    """The first part of the ids of what is found under ``given``: ``source``, else the folder's
    own name (a file's folder for a file). Raises ValueError for a name that cannot be one."""
    if source is not None:
        if not source or "/" in source or "\0" in source or source in {".", ".."}:
            raise ValueError(f"--source {source!r}: give a plain name (no '/'), e.g. --source docs")
        return source
    path = os.path.abspath(os.fspath(given))
    name = os.path.basename(path if os.path.isdir(path) else os.path.dirname(path))
    if not name:
        raise ValueError(f"{given}: a folder without a name (the file system root); give --source NAME")
    return name


def check_paths(paths) -> list[str | os.PathLike[str]]:
    """``paths`` as a list; a bare string (whose characters would be walked) or an empty path is refused."""
    if isinstance(paths, (str, bytes, os.PathLike)):
        raise ValueError(f"paths must be a list of paths, not one path: use [{os.fsdecode(paths)!r}]")
    paths = list(paths)
    for given in paths:
        if not isinstance(given, (str, os.PathLike)):
            raise ValueError(f"{given!r}: not a path")
        if not os.fspath(given):
            raise ValueError("an empty path was given (an unset variable?); name the folder, e.g. '.'")
    return paths


@dataclass
class Discovery:
    """What one walk found: the files, and per folder root what it covered (for ``--prune``)."""

    files: list[SourceFile] = field(default_factory=list)
    #: the sources of the folders given: a stored document under one of them may be pruned
    folders: set[str] = field(default_factory=set)
    #: "<source>/<rel>/" of every folder that could not be listed: nothing under it is pruned
    unlisted: list[str] = field(default_factory=list)
    failures: list[str] = field(default_factory=list)  # one line per folder that could not be listed
    include: Sequence[str] = ()
    exclude: Sequence[str] = ()

    def covers(self, key: str) -> bool:
        """True when the document ``key`` (as stored, :func:`ingest.schema.doc_key`) would have been
        found by this walk had its file been there: under a folder given and fully listed, and
        matched by the include/exclude globs. Only such documents can be "gone from disk"."""
        from .schema import doc_key

        source, _, rel = key.partition("/")
        if not rel or not any(source == doc_key(f) for f in self.folders):
            return False
        if any(key.startswith(doc_key(u)) for u in self.unlisted):
            return False
        return wanted(rel, self.include, self.exclude)


def _listing(folder: str) -> tuple[list[str], list[str]]:
    """(sub-folders, other entries) of one folder, hidden ones left out; symlinked folders are not
    followed (a loop cannot make the walk endless) and are left out like the walk always did."""
    dirs, files = [], []
    with os.scandir(folder) as entries:
        for entry in entries:
            if entry.name.startswith("."):
                continue
            try:
                if entry.is_dir(follow_symlinks=False):
                    dirs.append(entry.name)
                elif not (entry.is_symlink() and entry.is_dir()):
                    files.append(entry.name)
            except OSError:
                files.append(entry.name)  # reading it will say what is wrong
    return sorted(dirs), sorted(files)


def walk(paths: Iterable[str | os.PathLike[str]], include: Sequence[str] = (), exclude: Sequence[str] = (),
         source: str | None = None, skip_folder=None) -> Discovery:
    """Every file under ``paths`` (sorted, depth first, hidden entries skipped in folders).

    The walk keeps its own stack (no recursion: a folder chain thousands deep is fine). A folder
    that cannot be listed is a failure of the run, not a silent gap. ``skip_folder(path)``: True
    for a folder not to enter (the store's own folder). A file symlink is listed with its folder
    as ``root``: :func:`read_document` reads it only when it points inside that folder. Raises
    ValueError for a bad path list, FileNotFoundError for a path that does not exist."""
    found = Discovery(include=tuple(include), exclude=tuple(exclude))
    for given in check_paths(paths):
        root = Path(given)
        name = source_name(given, source)
        if root.is_dir():
            found.folders.add(name)
            stack = [""]
            while stack:
                rel = stack.pop()
                folder = os.path.join(root, rel) if rel else os.fspath(root)
                if rel and skip_folder is not None and skip_folder(folder):
                    continue
                try:
                    dirs, files = _listing(folder)
                except OSError as exc:
                    found.unlisted.append(f"{name}/{rel}/" if rel else f"{name}/")
                    found.failures.append(f"{folder}: cannot list this folder ({exc.strerror or exc}); "
                                          "nothing under it is pruned")
                    continue
                for file in files:
                    path_rel = f"{rel}/{file}" if rel else file
                    if wanted(path_rel, include, exclude):
                        found.files.append(SourceFile(root / path_rel, f"{name}/{path_rel}", root))
                stack.extend(f"{rel}/{d}" if rel else d for d in reversed(dirs))
        elif root.exists() or root.is_symlink():
            if wanted(root.name, include, exclude):
                found.files.append(SourceFile(root, f"{name}/{root.name}"))
        else:
            raise FileNotFoundError(f"{given}: no such file or folder")
    return found


def find_files(paths: Iterable[str | os.PathLike[str]], include: Sequence[str] = (),
               exclude: Sequence[str] = (), source: str | None = None) -> Iterator[SourceFile]:
    """The files of :func:`walk` (what could not be listed is in its :class:`Discovery`)."""
    yield from walk(paths, include, exclude, source).files


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


def _opened_path(fd: int) -> str | None:
    """The real path of an open descriptor (Linux ``/proc/self/fd``; elsewhere ``F_GETPATH``), or None."""
    try:
        return os.readlink(f"/proc/self/fd/{fd}")
    except OSError:
        pass
    try:
        import fcntl

        return os.fsdecode(fcntl.fcntl(fd, fcntl.F_GETPATH, bytes(1024)).rstrip(b"\0"))  # macOS
    except (ImportError, AttributeError, OSError):
        return None


def _inside(fd: int, path: Path, root: Path) -> bool:
    """Whether the file open as ``fd`` lies inside ``root``: the descriptor is checked, not the
    name, so a link swapped between a check and the open cannot let another file in."""
    real_root = os.path.realpath(root)
    opened = _opened_path(fd)
    if opened is None:  # no way to ask the descriptor: the resolved name, then the same inode
        opened = os.path.realpath(path)
        try:
            st, now = os.fstat(fd), os.stat(opened)
        except OSError:
            return False
        if (st.st_dev, st.st_ino) != (now.st_dev, now.st_ino):
            return False
    return opened == real_root or opened.startswith(real_root.rstrip(os.sep) + os.sep)


#: errno values of a link whose target does not exist (dangling) or never resolves (a loop): there
#: is no file, so nothing to read and nothing to keep. Any other error of a link is a failure.
_NO_TARGET = {errno.ENOENT, errno.ELOOP, errno.ENOTDIR}


def _read_bytes(source: SourceFile, follow_links_outside: bool, max_bytes: int | None) -> bytes:
    """The file's bytes, opened once; every check is of the opened descriptor."""
    path = source.path
    flags = os.O_RDONLY | getattr(os, "O_NONBLOCK", 0) | getattr(os, "O_CLOEXEC", 0)  # a FIFO must not block
    try:
        fd = os.open(path, flags)
    except OSError as exc:
        if exc.errno in _NO_TARGET and path.is_symlink():
            raise Skipped(f"{path}: unreadable symlink ({exc.strerror or exc})") from None
        raise
    try:
        st = os.fstat(fd)
        if not stat.S_ISREG(st.st_mode):  # a FIFO, socket or device: reading could block forever
            raise Skipped(f"{path}: not a regular file")
        if source.root is not None and not follow_links_outside and not _inside(fd, path, source.root):
            raise Skipped(f"{path}: symlink to a file outside {source.root}; not followed "
                          "(follow_links_outside=True reads it)")
        if max_bytes is not None and st.st_size > max_bytes:
            raise Skipped(f"{path}: {st.st_size} bytes, over the {max_bytes}-byte limit for a text file")
        os.set_blocking(fd, True)
        with os.fdopen(fd, "rb", closefd=True) as f:
            fd = -1
            return f.read() if max_bytes is None else f.read(max_bytes + 1)
    finally:
        if fd >= 0:
            os.close(fd)


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
    """The text of one file. Raises :class:`Skipped` for non-text, ``OSError`` when unreadable
    (a link whose target exists but cannot be read too: what could not be read is never pruned).

    A file found in a folder whose opened descriptor lies outside it (a symlink out) is skipped unless ``follow_links_outside``
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
    data = _read_bytes(source, follow_links_outside, max_bytes)
    if max_bytes is not None and len(data) > max_bytes:  # grew since it was opened
        raise Skipped(f"{path}: over the {max_bytes}-byte limit for a text file")
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
