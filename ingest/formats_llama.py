"""The format readers of :mod:`ingest.formats` as a LlamaIndex reader, for SGPTNodeParser users.

``SimpleDirectoryReader(folder, file_extractor=SGPTFileReader.file_extractor())`` reads PDF,
DOCX, PPTX, EPUB, ODT and notebooks as ``sgpt-ingest`` does: one ``Document`` per page, slide or
chapter (its ``page_label`` / ``slide`` / ``chapter`` in the metadata, as LlamaIndex's PDF reader
names the page), its text Markdown-shaped, so :class:`~sgpt_qdrant.SGPTNodeParser` cuts it by
headings, items and rows and no node spans two pages.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from llama_index.core.readers.base import BaseReader
from llama_index.core.schema import Document

from . import formats


class SGPTFileReader(BaseReader):
    """PDF (text layer), DOCX, PPTX, EPUB, ODT and .ipynb files → Documents per page, slide or chapter."""

    def __init__(self, limits: formats.Limits = formats.Limits()) -> None:
        self.limits = limits

    @classmethod
    def file_extractor(cls, **kwargs: Any) -> dict[str, SGPTFileReader]:
        """``{".pdf": reader, ...}`` for ``SimpleDirectoryReader(file_extractor=...)``."""
        reader = cls(**kwargs)
        return {suffix: reader for suffix in sorted(formats.EXTENSIONS)}

    def load_data(self, file: str | Path, extra_info: dict | None = None, **kwargs: Any) -> list[Document]:
        """Raises :class:`ingest.formats.FormatError` (a ``ValueError``) naming the file for a bad one."""
        path = Path(file)
        try:
            x = formats.extract(path, path.read_bytes(), self.limits)
        except formats.FormatError as exc:
            raise formats.FormatError(f"{path}: {exc}") from None
        base = {"file_path": str(path), "file_name": path.name, **(extra_info or {})}
        if not x.sections:
            return [Document(text=x.text, metadata=base)] if x.text else []
        return [Document(text=x.text[s.start:s.end], metadata={**base, **s.meta}) for s in x.sections]


__all__ = ["SGPTFileReader"]
