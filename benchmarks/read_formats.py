"""Reading PDFs: sgpt-ingest's reader (pypdfium2) against LlamaIndex's SimpleDirectoryReader (pypdf), same files.

    python benchmarks/read_formats.py [PDF ...]

Figures per reader: pages per second (the whole read, from the file's bytes to the text) and
word coverage: the share of the words that ``pdftotext`` (poppler, an independent reference;
``apt-get install -y poppler-utils``) finds that the reader also finds (multiset intersection of
lower-cased words; 100% = nothing lost). Files: the PDFs given, else the PDF manuals that Debian
packages ship under /usr/share/doc, plus a generated two-column report (fpdf2, 40 pages, running
header, page numbers) whose columns are written line by line across the page: the reading-order
check (the share of its lines found in column order). LlamaIndex needs ``llama-index-readers-file``
(``pip install llama-index-readers-file``); without it only this reader is measured.
"""

from __future__ import annotations

import re
import shutil
import subprocess
import sys
import tempfile
import time
from collections import Counter
from pathlib import Path

from sgpt_qdrant.ingest import formats

WORD = re.compile(r"[^\W_]+")


def words(text: str) -> Counter:
    return Counter(w.lower() for w in WORD.findall(text.replace("\x02", "")))


def body_words(pdftotext: str) -> Counter:
    """pdftotext's words without its running lines: lines among the first or last three of a page
    that repeat (digits aside) on half the pages, and lone page numbers. sgpt drops those on
    purpose, so this is the reference its coverage is meant to reach."""
    pages = [[ln.strip() for ln in page.splitlines() if ln.strip()] for page in pdftotext.split("\f")]
    pages = [p for p in pages if p]
    norm = lambda ln: re.sub(r"\d+", "#", ln.lower())  # noqa: E731
    edges = Counter(n for p in pages for n in {norm(ln) for ln in p[:3] + p[-3:]})
    running = {n for n, c in edges.items() if len(pages) >= 2 and c >= max(2, len(pages) / 2)}
    kept = []
    for p in pages:
        for k, ln in enumerate(p):
            edge = k < 3 or k >= len(p) - 3
            if edge and (norm(ln) in running or re.fullmatch(r"(page )?[\divxlc]+", ln.lower())):
                continue
            kept.append(ln)
    return words("\n".join(kept))


def coverage(text: str, reference: Counter) -> float:
    got = words(text)
    return sum(min(n, got[w]) for w, n in reference.items()) / max(1, sum(reference.values()))


def two_column_report(path: Path, pages: int = 40) -> list[str]:
    """A report whose columns are written line by line across (content order != reading order);
    returns its lines in reading order."""
    from fpdf import FPDF

    pdf = FPDF()
    pdf.set_auto_page_break(False)
    order = []
    for p in range(1, pages + 1):
        pdf.add_page()
        pdf.set_font("helvetica", size=8)
        pdf.set_xy(10, 6)
        pdf.cell(0, 4, "Harbour Authority - Annual Report")
        pdf.set_xy(100, 286)
        pdf.cell(10, 4, str(p))
        pdf.set_font("helvetica", "B", size=16)
        pdf.set_xy(10, 14)
        pdf.cell(0, 8, f"Section {p}: the quays and the tides")
        order.append(f"Section {p}: the quays and the tides")
        pdf.set_font("helvetica", size=10)
        left = [f"Left {p}.{i}: vessels moored at berth {i} paid dues" for i in range(38)]
        right = [f"Right {p}.{i}: dredging of channel {i} went on" for i in range(38)]
        for i in range(38):
            pdf.set_xy(10, 28 + 6.5 * i)
            pdf.cell(88, 5, left[i])
            pdf.set_xy(110, 28 + 6.5 * i)
            pdf.cell(88, 5, right[i])
        order += left + right
    pdf.output(str(path))
    return order


def in_order(text: str, lines: list[str]) -> float:
    """Share of ``lines`` found after the line before them (reading order kept)."""
    pos, ok = 0, 0
    for line in lines:
        at = text.find(line, pos)
        if at >= 0:
            ok += 1
            pos = at
    return ok / len(lines)


def read_ours(path: Path) -> tuple[str, int]:
    x = formats.extract(path, path.read_bytes())
    return x.text, len(x.sections)


def read_llamaindex(path: Path) -> str:
    from llama_index.core import SimpleDirectoryReader

    docs = SimpleDirectoryReader(input_files=[str(path)]).load_data()
    return "\n\n".join(d.text for d in docs)


def page_count(path: Path) -> int:
    import pypdfium2 as pdfium

    pdf = pdfium.PdfDocument(str(path))
    try:
        return len(pdf)
    finally:
        pdf.close()


def timed(fn, *args, repeat: int = 3):
    best, out = float("inf"), None
    for _ in range(repeat):
        t = time.perf_counter()
        out = fn(*args)
        best = min(best, time.perf_counter() - t)
    return best, out


def main(argv: list[str]) -> None:
    if not shutil.which("pdftotext"):
        sys.exit("pdftotext not found: apt-get install -y poppler-utils")
    try:
        from llama_index.readers.file import PDFReader  # noqa: F401
        have_li = True
    except ImportError:
        have_li = False
        print("llama-index-readers-file is not installed: LlamaIndex is not measured")
    tmp = Path(tempfile.mkdtemp())
    files = [Path(a) for a in argv] or sorted(Path("/usr/share/doc").rglob("*.pdf"))
    report = tmp / "two-column-report.pdf"
    order = two_column_report(report)
    files.append(report)
    cpu = next((line.split(":", 1)[1].strip() for line in subprocess.run(
        ["lscpu"], capture_output=True, text=True).stdout.splitlines() if line.startswith("Model name")), "?")
    print(f"CPU: {cpu}")
    header = (f"{'file':30} {'pages':>5} | {'sgpt pages/s':>12} {'all':>6} {'body':>6} | {'LlamaIndex pages/s':>18} "
              f"{'all':>6} {'body':>6} | speed-up")
    print("coverage: share of pdftotext's words found; all: every word, body: without running headers/footers")
    print(header)
    print("-" * len(header))
    totals = Counter()
    for path in files:
        pages = page_count(path)
        poppler = subprocess.run(["pdftotext", "-enc", "UTF-8", str(path), "-"], capture_output=True, text=True,
                                 check=True).stdout
        reference, body = words(poppler), body_words(poppler)
        ours_s, (ours, _) = timed(read_ours, path)
        ours_cov, ours_body = coverage(ours, reference), coverage(ours, body)
        line = f"{path.name[:30]:30} {pages:5d} | {pages / ours_s:12.1f} {ours_cov:6.1%} {ours_body:6.1%} |"
        totals.update(pages=pages, ours_s=ours_s, ours_cov=ours_cov * pages, ours_body=ours_body * pages)
        if have_li:
            li_s, li = timed(read_llamaindex, path)
            li_cov, li_body = coverage(li, reference), coverage(li, body)
            totals.update(li_s=li_s, li_cov=li_cov * pages, li_body=li_body * pages)
            line += f" {pages / li_s:18.1f} {li_cov:6.1%} {li_body:6.1%} | {li_s / ours_s:7.1f}x"
        print(line)
        if path == report:
            order_line = f"reading order of the two-column report: sgpt {in_order(ours, order):.1%}"
            if have_li:
                order_line += f", LlamaIndex {in_order(li, order):.1%}"
    n = totals["pages"]
    line = (f"{'all (page-weighted)':30} {n:5d} | {n / totals['ours_s']:12.1f} {totals['ours_cov'] / n:6.1%} "
            f"{totals['ours_body'] / n:6.1%} |")
    if have_li:
        line += (f" {n / totals['li_s']:18.1f} {totals['li_cov'] / n:6.1%} {totals['li_body'] / n:6.1%} | "
                 f"{totals['li_s'] / totals['ours_s']:7.1f}x")
    print(line)
    print(order_line)


if __name__ == "__main__":
    main(sys.argv[1:])
