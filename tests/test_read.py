"""Reading files: links out of the tree, binary past the first block, the size cap."""

from __future__ import annotations

import os
import random

import pytest

from sgpt_qdrant.ingest.read import SourceFile, Skipped, find_files, read_document


def test_file_link_out_of_the_folder_is_skipped_unless_allowed(tmp_path):
    secret = tmp_path / "secret.txt"
    secret.write_text("API_KEY=hunter2")
    tree = tmp_path / "docs"
    (tree / "sub").mkdir(parents=True)
    (tree / "a.md").write_text("# A\n\nText.")
    os.symlink(secret, tree / "sub" / "leak.md")  # out of the tree
    os.symlink(tree / "a.md", tree / "sub" / "alias.md")  # inside the tree
    files = {f.doc_id: f for f in find_files([tree])}
    assert sorted(files) == ["docs/a.md", "docs/sub/alias.md", "docs/sub/leak.md"]
    with pytest.raises(Skipped, match="outside"):
        read_document(files["docs/sub/leak.md"])
    assert read_document(files["docs/sub/alias.md"]).text == "# A\n\nText."
    assert read_document(files["docs/sub/leak.md"], follow_links_outside=True).text == "API_KEY=hunter2"
    # a link given by name on the command line is the user's explicit choice: read
    (given,) = find_files([tree / "sub" / "leak.md"])
    assert read_document(given).text == "API_KEY=hunter2"


def test_binary_past_the_first_8k_is_detected(tmp_path):
    rng = random.Random(0)
    late_nul = tmp_path / "late.log"
    late_nul.write_bytes(b"plain text line\n" * 2000 + b"\x00\x01\x02binary tail")  # NUL at 32 kB
    junk = tmp_path / "noise.txt"
    junk.write_bytes(b"header line\n" + bytes(rng.choice(range(1, 256)) for _ in range(50_000)))  # no NUL
    latin1 = tmp_path / "fr.txt"
    latin1.write_bytes("Le café était très animé, près de la fenêtre.\n".encode("latin-1") * 20)
    for path in (late_nul, junk):
        with pytest.raises(Skipped, match="not a text file"):
            read_document(SourceFile(path, path.name))
    doc = read_document(SourceFile(latin1, latin1.name))  # a few bad bytes: text, with a warning
    assert "caf\ufffd" in doc.text and doc.warnings


def test_size_cap(tmp_path):
    big = tmp_path / "big.txt"
    big.write_text("x" * 5000)
    with pytest.raises(Skipped, match="5000 bytes, over the 4096-byte limit"):
        read_document(SourceFile(big, big.name), max_bytes=4096)
    assert len(read_document(SourceFile(big, big.name), max_bytes=None).text) == 5000
    assert len(read_document(SourceFile(big, big.name)).text) == 5000  # default cap: 64 MiB
