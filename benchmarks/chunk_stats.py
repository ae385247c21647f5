"""Before/after figures for the chunker: chunks, crumbs (≤ 5 tokens), list items split or mixed.

    python benchmarks/chunk_stats.py [OLD_COMMIT]

Corpus: docs/, examples/docs/ and a generated release-notes page of 300 entries plus the
Markdown/reST samples of sgpt_qdrant/testing/samples.py. OLD_COMMIT's chunker (sgpt_qdrant/chunk.py, earlier ingest/chunk.py) is the "before".
"""

from __future__ import annotations

import importlib.util
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from sgpt_qdrant import chunk as new_chunk
from sgpt_qdrant.blocks import units
from sgpt_qdrant.ingest.read import find_files, read_document
from sgpt_qdrant.testing import gpt2_tokenizer
from sgpt_qdrant.testing.samples import ADMONITIONS, RST, changelog

ROOT = Path(__file__).resolve().parents[1]


def old_chunker(commit: str):
    for where in ("sgpt_qdrant/chunk.py", "ingest/chunk.py"):  # the chunker moved to the core
        shown = subprocess.run(["git", "show", f"{commit}:{where}"], cwd=ROOT, capture_output=True, text=True)
        if shown.returncode == 0:
            break
    shown.check_returncode()
    source = shown.stdout
    path = Path(tempfile.mkdtemp()) / "old_chunk.py"
    path.write_text(source)
    spec = importlib.util.spec_from_file_location("old_chunk", path)
    module = importlib.util.module_from_spec(spec)
    sys.modules["old_chunk"] = module
    spec.loader.exec_module(module)
    return module.chunk_text


def stats(texts: dict[str, str], chunk_text, tokenizer) -> dict[str, float]:
    n = crumbs = items = split = mixed = over = 0
    start = time.perf_counter()
    for text in texts.values():
        chunks = chunk_text(text, tokenizer, 75, 0)
        n += len(chunks)
        crumbs += sum(c.n_tokens <= 5 for c in chunks)
        spans = [(u.body_start, u.end) for u in units(text) if u.kind == "item"]
        items += len(spans)
        over += sum(len(tokenizer(text[a:b].strip(), add_special_tokens=False)["input_ids"]) > 75 for a, b in spans)
        for a, b in spans:
            touching = [c for c in chunks if c.start < b and a < c.end]
            if not (len(touching) == 1 and touching[0].start <= a and b <= touching[0].end):
                split += 1
                if any(any(s != (a, b) and c.start < s[1] and s[0] < c.end for s in spans) for c in touching):
                    mixed += 1  # a piece of this item shares a chunk with another item
    return {"chunks": n, "chunks<=5tok": crumbs, "items": items, "items over 75 tokens": over, "items split": split,
            "split items sharing a chunk with another item": mixed, "seconds": round(time.perf_counter() - start, 2)}


def main() -> None:
    commit = sys.argv[1] if len(sys.argv) > 1 else "036abd2"
    tokenizer = gpt2_tokenizer()
    demo = {f.doc_id: read_document(f).text for f in find_files([ROOT / "docs", ROOT / "examples" / "docs"])}
    generated = {"release-notes.md": changelog(300, seed=7)[0], "dependencies.md": ADMONITIONS * 20,
                 "bees.rst": RST * 20}
    for name, corpus in [("demo corpus (docs/, examples/docs/)", demo), ("generated Markdown/reST", generated)]:
        print(name, f"{sum(len(t) for t in corpus.values())} chars")
        for label, fn in [("before", old_chunker(commit)), ("after", new_chunk.chunk_text)]:
            print(f"  {label:6s}", stats(corpus, fn, tokenizer))


if __name__ == "__main__":
    main()
