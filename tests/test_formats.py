"""PDF, DOCX, PPTX, EPUB, ODT and notebooks: files built here, read through sgpt-ingest's reader and chunker."""

from __future__ import annotations

import io
import json
import re
import zipfile
from pathlib import Path

import pytest
from qdrant_client import QdrantClient

from sgpt_qdrant.ingest import formats, schema, store
from sgpt_qdrant.blocks import units
from sgpt_qdrant.chunk import chunk_sections
from sgpt_qdrant.ingest.collection_config import ensure_collection
from sgpt_qdrant.ingest.read import SourceFile, Skipped, find_files, read_document
from sgpt_qdrant.ingest.plan import ChunkSettings
from sgpt_qdrant.ingest.run import Run
from sgpt_qdrant.ingest.sync import sync
from sgpt_qdrant.ingest.upload import Uploader
from sgpt_qdrant.testing import gpt2_tokenizer

fpdf = pytest.importorskip("fpdf")
REF = gpt2_tokenizer()


def read(path: Path):
    return read_document(SourceFile(path, path.name))


def kinds(text: str) -> list[tuple[str, str]]:
    return [(u.kind, text[u.start:u.end]) for u in units(text)]


# -- PDF ---------------------------------------------------------------------------------------

def _pdf(path: Path, pages, *, header: str | None = "ACME Annual Report 2024 - confidential", labels=None,
         encrypt: dict | None = None) -> Path:
    """``pages``: per page a list of (x_mm, y_mm, size, text) cells, written in the order given."""
    pdf = fpdf.FPDF()
    pdf.set_auto_page_break(False)
    if encrypt:
        pdf.set_encryption(**encrypt)
    for number, cells in enumerate(pages, 1):
        pdf.add_page()
        for at, style in (labels or {}).items():
            if at == number:
                pdf.set_page_label(**style)
        if header:
            pdf.set_font("helvetica", size=8)
            pdf.set_xy(10, 6)
            pdf.cell(0, 4, header)
            pdf.set_xy(100, 286)
            pdf.cell(10, 4, str(number))
        for x, y, size, text in cells:
            pdf.set_font("helvetica", "B" if size > 12 else "", size=size)
            pdf.set_xy(x, y)
            pdf.cell(88, size * 0.45, text)
    pdf.output(str(path))
    return path


def _two_columns(page: int) -> list:
    """A title across the page, then two columns written line by line across (left, right, left, ...)."""
    cells = [(10, 16, 18, f"Chapter {page} overview")]
    for i in range(18):
        cells.append((10, 32 + 6 * i, 11, f"Left {page}.{i} alpha beta gamma"))
        cells.append((110, 32 + 6 * i, 11, f"Right {page}.{i} delta epsilon zeta"))
    return cells


def test_pdf_columns_read_in_order_with_page_labels_and_no_running_lines(tmp_path):
    path = _pdf(tmp_path / "report.pdf", [_two_columns(p) for p in range(1, 5)],
                labels={1: {"label_style": "r"}, 3: {"label_style": "D", "label_start": 1}})
    doc = read(path)
    assert [s.meta["page_label"] for s in doc.sections] == ["i", "ii", "1", "2"]  # as printed
    for page, section in enumerate(doc.sections, 1):
        text = doc.text[section.start:section.end]
        expected = ([f"Chapter {page} overview"] + [f"Left {page}.{i} " for i in range(18)]
                    + [f"Right {page}.{i} " for i in range(18)])
        positions = [text.index(e) for e in expected]  # every line there, columns one after the other
        assert positions == sorted(positions)
        assert text.startswith(f"## Chapter {page} overview")  # the big line is a heading
    assert "ACME" not in doc.text and "confidential" not in doc.text  # the running header, not in 4 chunks
    assert not re.search(r"(?m)^\d$", doc.text)  # nor the page numbers
    chunks = chunk_sections(doc.text, doc.sections, REF, 40)
    for c in chunks:  # never two pages in one chunk; text and offsets index the extracted text
        assert c.text == doc.text[c.start:c.end]
        (section,) = [s for s in doc.sections if s.start <= c.start and c.end <= s.end]
        assert c.meta == section.meta
    assert {c.meta["page_label"] for c in chunks} == {"i", "ii", "1", "2"}
    assert chunks[0].text.startswith("## Chapter 1 overview")


def test_pdf_hyphenated_line_ends_are_joined_and_paragraphs_split_at_gaps(tmp_path):
    lines = ["The committee discussed the exam-", "ple of the northern bridge and", "its long history."]
    cells = [(10, 30 + 6 * i, 11, t) for i, t in enumerate(lines)] + [(10, 60, 11, "A second paragraph here.")]
    doc = read(_pdf(tmp_path / "h.pdf", [cells], header=None))
    assert doc.text == ("The committee discussed the example of the northern bridge and its long history.\n\n"
                        "A second paragraph here.")


def test_pdf_list_items_become_markdown_items(tmp_path):
    cells = [(10, 30, 11, "Things to pack:"), (10, 36, 11, "- a warm coat"), (10, 42, 11, "- good boots")]
    doc = read(_pdf(tmp_path / "l.pdf", [cells], header=None))
    assert doc.text == "Things to pack:\n\n- a warm coat\n- good boots"
    assert [k for k, _ in kinds(doc.text)] == ["text", "item", "item"]


def test_bad_pdfs_fail_alone_with_one_line_each(tmp_path):
    root = tmp_path / "docs"
    root.mkdir()
    _pdf(root / "locked.pdf", [[(10, 30, 11, "secret text")]], encrypt={"owner_password": "o", "user_password": "u"})
    _pdf(root / "owner-only.pdf", [[(10, 30, 11, "readable text")]], header=None, encrypt={"owner_password": "o"})
    scanned = fpdf.FPDF()
    scanned.add_page()
    scanned.rect(20, 20, 100, 100, style="F")  # a picture, no text
    scanned.output(str(root / "scan.pdf"))
    (root / "broken.pdf").write_bytes(b"%PDF-1.4\n1 0 obj garbage")
    (root / "notes.md").write_text("# Notes\n\nThe good file.")
    messages = []
    summary = sync(list(find_files([root])), ChunkSettings(REF, 75, "tiny"),
                   Run({}, dry_run=True, on_message=messages.append))
    assert summary.failed == 3 and summary.ingested == 2
    errors = sorted(m for m in messages if m.startswith("error:"))
    assert len(errors) == 3 and all("\n" not in m for m in errors)
    assert "broken.pdf: corrupt or not a PDF" in errors[0]
    assert "locked.pdf: encrypted (it needs a password to open)" in errors[1]
    assert errors[2].endswith("scan.pdf: no text layer; OCR is not supported")


def test_pdf_page_and_time_limits(tmp_path):
    path = _pdf(tmp_path / "long.pdf", [[(10, 30, 11, f"Page {i} text")] for i in range(5)], header=None)
    with pytest.raises(formats.FormatError, match="5 pages, over the 4-page limit"):
        formats.extract(path, path.read_bytes(), formats.Limits(max_pages=4))
    with pytest.raises(formats.FormatError, match="over the 0-second limit"):
        formats.extract(path, path.read_bytes(), formats.Limits(max_seconds=0))


def test_payload_of_a_pdf_chunk_carries_its_page_label(tmp_path, tiny_encoder):
    root = tmp_path / "docs"
    root.mkdir()
    _pdf(root / "r.pdf", [_two_columns(p) for p in range(1, 3)], labels={1: {"label_style": "D", "label_start": 7}})
    client = QdrantClient(":memory:")
    ensure_collection(client, "c", tiny_encoder.dimension, vector_name=schema.VECTOR_NAME)
    embedded = []

    def encode(texts):
        embedded.extend(texts)
        return tiny_encoder.encode(texts)

    sync(list(find_files([root])), ChunkSettings(tiny_encoder.tokenizer, tiny_encoder.max_length, "tiny"),
         Run({}, Uploader(client, "c")), encode=encode)
    points, _ = client.scroll("c", limit=1000, with_payload=True)
    doc = read(root / "r.pdf")
    assert {p.payload["page_label"] for p in points} == {"7", "8"}
    for p in points:
        text = json.loads(p.payload["_node_content"])["text"]
        assert text in embedded  # the stored text is what was embedded
        assert doc.text[p.payload["char_start"]:p.payload["char_end"]] == text
        assert f"Chapter {int(p.payload['page_label']) - 6} overview" in doc.text[
            [s for s in doc.sections if s.meta == {"page_label": p.payload["page_label"]}][0].start:][:40]


def test_a_missing_extra_skips_with_the_install_line(tmp_path, monkeypatch):
    path = _pdf(tmp_path / "r.pdf", [[(10, 30, 11, "Some text")]], header=None)
    real = formats.importlib.util.find_spec
    monkeypatch.setattr(formats.importlib.util, "find_spec", lambda name: None if name == "pypdfium2" else real(name))
    with pytest.raises(Skipped, match=re.escape('needs pypdfium2: pip install "sgpt-qdrant[docs]"')):
        read(path)
    messages = []
    summary = sync(list(find_files([tmp_path])), ChunkSettings(REF, 75, "tiny"),
                   Run({}, dry_run=True, on_message=messages.append))
    assert summary.skipped == 1 and messages == [f"skipped: {path}: reading .pdf files needs pypdfium2: "
                                                 'pip install "sgpt-qdrant[docs]"']


# -- Office ------------------------------------------------------------------------------------

def test_docx_headings_lists_and_tables_become_markdown_units(tmp_path):
    docx = pytest.importorskip("docx")
    d = docx.Document()
    d.add_heading("Garden guide", level=1)
    d.add_paragraph("Tomatoes need six hours of sun.")
    d.add_heading("Tools", level=2)
    d.add_paragraph("a spade", style="List Bullet")
    d.add_paragraph("a rake", style="List Bullet")
    table = d.add_table(rows=2, cols=2)
    for r, row in enumerate([("Plant", "Water"), ("Tomato", "Daily")]):
        for c, value in enumerate(row):
            table.cell(r, c).text = value
    d.add_paragraph("The end.")
    d.save(tmp_path / "g.docx")
    doc = read(tmp_path / "g.docx")
    assert doc.text == ("# Garden guide\n\nTomatoes need six hours of sun.\n\n## Tools\n\n- a spade\n- a rake\n\n"
                        "| Plant | Water |\n| Tomato | Daily |\n\nThe end.")
    assert [k for k, _ in kinds(doc.text)] == ["text", "item", "item", "row", "row", "text"]  # headings glued


def test_pptx_slides_are_sections_with_their_number(tmp_path):
    pptx = pytest.importorskip("pptx")
    deck = pptx.Presentation()
    for n in (1, 2):
        slide = deck.slides.add_slide(deck.slide_layouts[1])  # title and content
        slide.shapes.title.text = f"Slide {n} title"
        body = slide.placeholders[1].text_frame
        body.text = f"first point of slide {n}"
        p = body.add_paragraph()
        p.text, p.level = f"detail of slide {n}", 1
    deck.save(tmp_path / "d.pptx")
    doc = read(tmp_path / "d.pptx")
    assert [s.meta for s in doc.sections] == [{"slide": 1}, {"slide": 2}]
    assert doc.text[doc.sections[1].start:doc.sections[1].end] == (
        "# Slide 2 title\n\n- first point of slide 2\n  - detail of slide 2")
    chunks = chunk_sections(doc.text, doc.sections, REF, 75)
    assert [(c.text.split("\n")[0], c.meta) for c in chunks] == [("# Slide 1 title", {"slide": 1}),
                                                                  ("# Slide 2 title", {"slide": 2})]


def test_an_old_binary_or_encrypted_office_file_and_a_zip_bomb_fail_with_a_reason(tmp_path):
    cfb = tmp_path / "old.docx"
    cfb.write_bytes(b"\xd0\xcf\x11\xe0\xa1\xb1\x1a\xe1" + b"\0" * 512)
    with pytest.raises(formats.FormatError, match="encrypted, or an old binary Office file"):
        formats.extract(cfb, cfb.read_bytes())
    bomb = io.BytesIO()
    with zipfile.ZipFile(bomb, "w", zipfile.ZIP_DEFLATED) as z:
        z.writestr("word/document.xml", b"\0" * (4 << 20))
    assert len(bomb.getvalue()) < 64 << 10
    with pytest.raises(formats.FormatError, match="over the 1048576-byte limit .a decompression bomb"):
        formats.extract(Path("b.docx"), bomb.getvalue(), formats.Limits(max_unzipped=1 << 20))
    with pytest.raises(formats.FormatError, match="corrupt .not the zip archive a PPTX file is"):
        formats.extract(Path("x.pptx"), b"not a zip")


# -- EPUB, ODT, notebooks ------------------------------------------------------------------------

def _epub(path: Path) -> Path:
    chapter = ("<?xml version='1.0' encoding='utf-8'?><html xmlns='http://www.w3.org/1999/xhtml'><head>"
               "<title>{t}</title><style>p {{}}</style></head><body><h1>{t}</h1><p>{p}</p>{extra}</body></html>")
    with zipfile.ZipFile(path, "w") as z:
        z.writestr("mimetype", "application/epub+zip")
        z.writestr("META-INF/container.xml", "<?xml version='1.0'?><container version='1.0' "
                   "xmlns='urn:oasis:names:tc:opendocument:xmlns:container'><rootfiles><rootfile "
                   "full-path='OEBPS/content.opf' media-type='application/oebps-package+xml'/></rootfiles></container>")
        z.writestr("OEBPS/content.opf", "<?xml version='1.0'?><package xmlns='http://www.idpf.org/2007/opf' "
                   "version='3.0'><manifest><item id='nav' href='nav.xhtml' media-type='application/xhtml+xml' "
                   "properties='nav'/><item id='c1' href='text/one.xhtml' media-type='application/xhtml+xml'/>"
                   "<item id='c2' href='text/two.xhtml' media-type='application/xhtml+xml'/></manifest>"
                   "<spine><itemref idref='c2'/><itemref idref='c1'/></spine></package>")
        z.writestr("OEBPS/nav.xhtml", "<html xmlns='http://www.w3.org/1999/xhtml'><body><nav><ol>"
                   "<li><a href='text/two.xhtml'>I. The Voyage</a></li><li><a href='text/one.xhtml#top'>II. The "
                   "Island</a></li></ol></nav></body></html>")
        z.writestr("OEBPS/text/two.xhtml", chapter.format(t="The Voyage", p="We sailed at dawn.",
                                                          extra="<ul><li>a compass</li><li>a map</li></ul>"))
        z.writestr("OEBPS/text/one.xhtml", chapter.format(
            t="The Island", p="Sand &amp; palms.", extra="<table><tr><th>Day</th><th>Miles</th></tr>"
            "<tr><td>1</td><td>40</td></tr></table><pre>def sail():\n    return 1</pre>"))
    return path


def test_epub_spine_order_chapter_titles_and_structure(tmp_path):
    doc = read(_epub(tmp_path / "book.epub"))
    assert [s.meta for s in doc.sections] == [{"chapter": "I. The Voyage"}, {"chapter": "II. The Island"}]
    assert doc.text == ("# The Voyage\n\nWe sailed at dawn.\n\n- a compass\n- a map\n\n# The Island\n\n"
                        "Sand & palms.\n\n| Day | Miles |\n| 1 | 40 |\n\n```\ndef sail():\n    return 1\n```")
    chunks = chunk_sections(doc.text, doc.sections, REF, 75)
    assert [c.meta["chapter"] for c in chunks] == ["I. The Voyage", "II. The Island"]
    assert [k for k, _ in kinds(doc.text)] == ["text", "item", "item", "text", "row", "row", "code"]


def test_epub_with_drm_is_refused(tmp_path):
    path = _epub(tmp_path / "drm.epub")
    with zipfile.ZipFile(path, "a") as z:
        z.writestr("META-INF/encryption.xml", "<encryption xmlns='urn:oasis:names:tc:opendocument:xmlns:container' "
                   "xmlns:enc='http://www.w3.org/2001/04/xmlenc#'><enc:EncryptedData><enc:CipherData>"
                   "<enc:CipherReference URI='OEBPS/text/one.xhtml'/></enc:CipherData></enc:EncryptedData>"
                   "</encryption>")
    with pytest.raises(formats.FormatError, match="encrypted .DRM"):
        formats.extract(path, path.read_bytes())


def test_odt_headings_lists_and_tables(tmp_path):
    ns = ("xmlns:office='urn:oasis:names:tc:opendocument:xmlns:office:1.0' "
          "xmlns:text='urn:oasis:names:tc:opendocument:xmlns:text:1.0' "
          "xmlns:table='urn:oasis:names:tc:opendocument:xmlns:table:1.0'")
    content = (f"<?xml version='1.0' encoding='UTF-8'?><office:document-content {ns}><office:body><office:text>"
               "<text:h text:outline-level='1'>Minutes</text:h><text:p>The board<text:s text:c='2'/>met.</text:p>"
               "<text:h text:outline-level='2'>Decisions</text:h><text:list><text:list-item><text:p>repaint the "
               "bridge</text:p></text:list-item><text:list-item><text:p>plant trees</text:p></text:list-item>"
               "</text:list><table:table><table:table-row><table:table-cell><text:p>Item</text:p></table:table-cell>"
               "<table:table-cell><text:p>Cost</text:p></table:table-cell></table:table-row><table:table-row>"
               "<table:table-cell><text:p>Paint</text:p></table:table-cell><table:table-cell><text:p>400"
               "</text:p></table:table-cell></table:table-row></table:table></office:text></office:body>"
               "</office:document-content>")
    with zipfile.ZipFile(tmp_path / "m.odt", "w") as z:
        z.writestr("mimetype", "application/vnd.oasis.opendocument.text")
        z.writestr("content.xml", content)
    doc = read(tmp_path / "m.odt")
    assert doc.text == ("# Minutes\n\nThe board met.\n\n## Decisions\n\n- repaint the bridge\n- plant trees\n\n"
                        "| Item | Cost |\n| Paint | 400 |")


def test_notebook_markdown_and_code_cells_without_outputs(tmp_path):
    nb = {"nbformat": 4, "metadata": {"language_info": {"name": "python"}}, "cells": [
        {"cell_type": "markdown", "source": ["# Loading data\n", "\n", "We read the CSV."]},
        {"cell_type": "code", "source": "import pandas as pd\ndf = pd.read_csv('x.csv')",
         "outputs": [{"output_type": "stream", "text": "SECRET OUTPUT"}]},
        {"cell_type": "raw", "source": "raw cell"}]}
    (tmp_path / "n.ipynb").write_text(json.dumps(nb))
    doc = read(tmp_path / "n.ipynb")
    assert doc.text == ("# Loading data\n\nWe read the CSV.\n\n```python\nimport pandas as pd\n"
                        "df = pd.read_csv('x.csv')\n```")
    assert [k for k, _ in kinds(doc.text)] == ["text", "code"]
    (tmp_path / "bad.ipynb").write_text("{not json")
    with pytest.raises(formats.FormatError, match="corrupt notebook"):
        read(tmp_path / "bad.ipynb")


def test_plain_text_documents_keep_their_version(tmp_path):
    """Text files have no reader: their version is what it was before formats existed."""
    from sgpt_qdrant.ingest.plan import version_of

    (tmp_path / "a.md").write_text("# A\n\ntext")
    doc = read(tmp_path / "a.md")
    assert doc.reader == "" and doc.sections == []
    assert version_of("h", "m", 75, 0) == version_of("h", "m", 75, 0, "") != version_of("h", "m", 75, 0, "x")


def test_llamaindex_reader_gives_sgpt_node_parser_one_document_per_page(tmp_path):
    from llama_index.core import SimpleDirectoryReader

    from sgpt_qdrant import SGPTFileReader, SGPTNodeParser

    _pdf(tmp_path / "r.pdf", [_two_columns(p) for p in range(1, 4)])
    docs = SimpleDirectoryReader(str(tmp_path), file_extractor=SGPTFileReader.file_extractor()).load_data()
    assert [d.metadata["page_label"] for d in docs] == ["1", "2", "3"]
    assert all(d.metadata["file_name"] == "r.pdf" for d in docs)
    nodes = SGPTNodeParser(tokenizer=REF, max_tokens=40).get_nodes_from_documents(docs)
    by_page = {d.metadata["page_label"]: d.text for d in docs}
    assert len(nodes) > len(docs)
    for node in nodes:
        assert node.text in by_page[node.metadata["page_label"]]  # a node stays on its page
        assert len(REF(node.text, add_special_tokens=False)["input_ids"]) <= 40
    with pytest.raises(formats.FormatError, match=r"broken\.pdf: corrupt or not a PDF"):
        (tmp_path / "broken.pdf").write_bytes(b"%PDF-1.4 junk")
        SGPTFileReader().load_data(tmp_path / "broken.pdf")


def test_an_unchanged_pdf_is_not_extracted_again(tmp_path, tiny_encoder, monkeypatch):
    root = tmp_path / "docs"
    root.mkdir()
    _pdf(root / "r.pdf", [_two_columns(1)])
    client = QdrantClient(":memory:")
    ensure_collection(client, "c", tiny_encoder.dimension, vector_name=schema.VECTOR_NAME)
    calls = []
    real = formats.extract
    monkeypatch.setattr(formats, "extract", lambda *a, **k: calls.append(a[0]) or real(*a, **k))

    def run():
        return sync(list(find_files([root])), ChunkSettings(tiny_encoder.tokenizer, tiny_encoder.max_length, "tiny"),
                    Run(store.read_state(client, "c"), Uploader(client, "c")), encode=tiny_encoder.encode)

    assert run().new == 1 and len(calls) == 1
    assert run().unchanged == 1 and len(calls) == 1  # hashed, found complete, never extracted
