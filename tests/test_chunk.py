"""The chunker on real-looking Markdown and reST: boundaries (not just sizes), limits, coverage, cost."""

from __future__ import annotations

import base64
import random
import re

import pytest

from sgpt_qdrant.chunk import chunk_text
from sgpt_qdrant.testing import gpt2_tokenizer
from sgpt_qdrant.testing.samples import ADMONITIONS, RST, changelog

REF = gpt2_tokenizer()  # an independent tokenizer instance: the reference for token counts
MARKUP_LINE = re.compile(r"[-=_*~^+#:|/`\s]*")  # the test's own definition of a pure markup line


def ref_len(text: str) -> int:
    return len(REF(text.strip(), add_special_tokens=False)["input_ids"])


def check_guarantees(text: str, chunks, max_tokens: int = 75) -> None:
    """≤ max tokens of exactly the embedded text, exact offsets, coverage bar pure markup lines."""
    covered = bytearray(len(text))
    for i, c in enumerate(chunks):
        assert c.index == i and c.text == text[c.start:c.end] == c.text.strip() and c.text
        assert ref_len(c.text) <= max_tokens and c.n_tokens == ref_len(c.text), c.text
        assert not MARKUP_LINE.fullmatch(c.text), f"markup alone: {c.text!r}"
        covered[c.start:c.end] = b"\1" * (c.end - c.start)
    pos = 0
    for line in text.split("\n"):
        missing = [ch for k, ch in enumerate(line) if not covered[pos + k] and not ch.isspace()]
        assert not missing or MARKUP_LINE.fullmatch(line), f"not covered: {line!r}"
        pos += len(line) + 1


def entry_spans(text: str, entries: list[str]) -> list[tuple[int, int]]:
    spans, pos = [], 0
    for e in entries:
        start = text.index(e, pos)
        spans.append((start, start + len(e)))
        pos = start + len(e)
    return spans


def check_units(chunks, spans: list[tuple[int, int]], max_tokens: int = 75) -> None:
    """A unit that fits is whole in one chunk; a split one shares none of its chunks with another unit."""
    for a, b in spans:
        touching = [c for c in chunks if c.start < b and a < c.end]
        if ref_len(TEXT_OF[(a, b)]) <= max_tokens:
            assert len(touching) == 1 and touching[0].start <= a and b <= touching[0].end, TEXT_OF[(a, b)]
        else:
            for c in touching:
                others = [s for s in spans if s != (a, b) and c.start < s[1] and s[0] < c.end]
                assert others == [], (c.text, TEXT_OF[(a, b)])


TEXT_OF: dict[tuple[int, int], str] = {}


def test_changelog_pr_numbers_stay_with_their_entry():
    text, entries = changelog(60)
    chunks = chunk_text(text, REF, 75)
    check_guarantees(text, chunks)
    spans = entry_spans(text, entries)
    TEXT_OF.update({s: e for s, e in zip(spans, entries)})
    check_units(chunks, spans)
    for i, (a, b) in enumerate(spans):  # the PR number is in a chunk with its own entry's words only
        pr = f"#{16000 + i}]"
        (holder,) = [c for c in chunks if pr in c.text]
        assert holder.start < b and a < holder.end
        assert not any(f"#{16000 + j}]" in holder.text for j in range(len(entries)) if j != i and
                       not (holder.start <= spans[j][0] and spans[j][1] <= holder.end))
    assert any(ref_len(e) > 75 for e in entries)  # the test does exercise split entries
    assert sum(c.n_tokens <= 5 for c in chunks) == 0


def test_markdown_admonitions_tables_and_code_are_units():
    chunks = chunk_text(ADMONITIONS, REF, 75)
    check_guarantees(ADMONITIONS, chunks)
    units = [
        "/// tip\n\nIf you are using Python 3.9 or above, use `Annotated` as shown here.\n\n///",
        ADMONITIONS[ADMONITIONS.index("/// details"):ADMONITIONS.index("!!! warning") - 2],
        ADMONITIONS[ADMONITIONS.index("!!! warning"):ADMONITIONS.index("there.") + 6],
        "| `use_cache` | bool | Reuse the value within one request |",
        "| `scope` | str | When the exit code runs: request or function |",
        "| `dependencies` | list | Dependencies of the dependency itself |",
    ]
    for unit in units:  # each fits, so it is whole in exactly one chunk
        assert ref_len(unit) <= 75
        assert sum(unit in c.text for c in chunks) == 1, unit
    assert not any(c.text in ("///", "---") for c in chunks)
    # the code block is too long for one chunk: split at line ends, never mixed with the prose around it
    code_start, code_end = ADMONITIONS.index("```python"), ADMONITIONS.index("```\n\nThat") + 3
    code_chunks = [c for c in chunks if c.start < code_end and code_start < c.end]
    assert len(code_chunks) >= 2
    for c in code_chunks:
        assert code_start <= c.start and c.end <= code_end
        assert ADMONITIONS[c.end] == "\n" and ADMONITIONS[c.start - 1] in "\n "
    assert any(c.text == "That is all." or c.text.endswith("That is all.") for c in chunks)
    assert not any("```" in c.text and "That is all." in c.text for c in chunks)


def test_heading_stays_with_the_start_of_a_long_section():
    body = " ".join(f"Sentence {i} of the section explains one more detail of the tides." for i in range(12))
    text = f"# Tides\n\nIntro line here.\n\n## Spring and neap tides\n\n{body}\n\n## Next\n\nShort.\n"
    chunks = chunk_text(text, REF, 75)
    check_guarantees(text, chunks)
    (holder,) = [c for c in chunks if "## Spring and neap tides" in c.text]
    assert "Sentence 0 of the section" in holder.text
    assert not any(c.text.startswith("#") and "\n" not in c.text for c in chunks)  # no lone heading


def test_rest_directives_and_lists():
    chunks = chunk_text(RST, REF, 75)
    check_guarantees(RST, chunks, 75)
    note = RST[RST.index(".. note::"):RST.index("walk.") + 5]
    code = RST[RST.index(".. code-block::"):RST.index("2.5") + 3]
    items = [line for line in RST.splitlines() if line.startswith(("- ", "#. "))]
    for unit in [note, code, *items]:
        assert ref_len(unit) <= 75
        assert sum(unit in c.text for c in chunks) == 1, unit
    assert any(c.text.startswith("=========\nBeekeeping") and "A colony" in c.text for c in chunks)
    # with 40 tokens the titles no longer fit with the whole note: they go with its first words
    small = chunk_text(RST, REF, 40)
    check_guarantees(RST, small, 40)
    (hives,) = [c for c in small if "Hives" in c.text]
    assert "A colony needs" in hives.text
    (seasons,) = [c for c in small if "Seasons" in c.text]
    assert "- Spring: inspect" in seasons.text


@pytest.mark.parametrize("max_tokens,overlap", [(75, 0), (75, 20), (16, 5)])
def test_mixed_corpus_guarantees(max_tokens, overlap):
    text, _ = changelog(30, seed=3)
    text = text + "\n" + ADMONITIONS + "\n" + RST
    chunks = chunk_text(text, REF, max_tokens, overlap)
    check_guarantees(text, chunks, max_tokens)
    if overlap:
        assert any(b.start < a.end for a, b in zip(chunks, chunks[1:]))
    else:
        assert all(a.end <= b.start for a, b in zip(chunks, chunks[1:]))


class SpyTokenizer:
    """The reference tokenizer, recording how many characters each call is given."""

    def __init__(self) -> None:
        self.calls: list[int] = []

    def __call__(self, text, **kwargs):
        self.calls.append(len(text))
        return REF(text, **kwargs)

    def get_vocab(self):
        return REF.get_vocab()


@pytest.mark.slow  # over half a second: full suite only, so the quick loop stays under a minute
def test_cost_is_linear_on_a_string_without_spaces():
    rng = random.Random(1)
    work = {}
    for n in (40_000, 160_000):
        blob = base64.b64encode(rng.randbytes(n * 3 // 4)).decode()
        spy = SpyTokenizer()
        chunks = chunk_text(blob, spy, 75)
        assert "".join(c.text for c in chunks) == blob and max(c.n_tokens for c in chunks) <= 75
        work[n] = sum(spy.calls)
        assert max(spy.calls) <= 20_000
    assert 3.0 <= work[160_000] / work[40_000] <= 5.0  # 4 for linear; the old chunker was ~16 (quadratic)
    assert work[160_000] <= 12 * 160_000


@pytest.mark.slow  # over half a second: full suite only, so the quick loop stays under a minute
def test_one_long_line_is_tokenised_in_bounded_pieces():
    """A single 300 kB paragraph: no tokenizer call sees more than a few thousand characters."""
    rng = random.Random(2)
    words = ["tide", "moon", "harbour", "salt", "wind", "rope", "gull", "keel", "sail", "anchor"]
    text = " ".join(rng.choice(words) + ("," if rng.random() < 0.1 else "") for _ in range(50_000))
    spy = SpyTokenizer()
    chunks = chunk_text(text, spy, 75)
    assert max(spy.calls) <= 20_000 and sum(spy.calls) <= 12 * len(text)
    assert chunks[0].start == 0 and chunks[-1].end == len(text)
    assert all(a.end <= b.start for a, b in zip(chunks, chunks[1:]))
    assert all(c.n_tokens <= 75 for c in chunks[::50]) and all(ref_len(c.text) <= 75 for c in chunks[::50])


def test_counts_and_offsets_are_the_tokenizers_after_a_truncating_call():
    """The chunker counts on a private core of the tokenizer: a caller that used the same tokenizer
    with ``truncation=True`` (an encoder) leaves it capped, and the counts must not be."""
    from sgpt_qdrant.chunk import Counter

    tok = gpt2_tokenizer()
    tok(["tide " * 200], truncation=True, max_length=5)  # what an encoder sharing the tokenizer leaves set
    rng = random.Random(3)
    words = ["tide", "moon", "Ünïcødé", "naïve", "日本語", "emoji 🐝", "x=1;", "  spaced  ", "\ttabbed"]
    paragraphs = [" ".join(rng.choice(words) for _ in range(rng.randint(3, 120))) for _ in range(40)]
    text = "\n\n".join(paragraphs)
    chunks = chunk_text(text, tok, 75)
    assert [c.n_tokens for c in chunks] == [ref_len(c.text) for c in chunks]
    assert max(c.n_tokens for c in chunks) > 5
    counter = Counter(tok, 75)
    for p in paragraphs[:10]:
        want = REF(p, add_special_tokens=False, return_offsets_mapping=True)["offset_mapping"]
        assert [tuple(o) for o in counter.offsets(p)] == [tuple(o) for o in want]


def _whole_counts(monkeypatch) -> None:
    """The chunker with every span tokenised whole: the reference for the additive counts."""
    from sgpt_qdrant import chunk

    real = chunk._facts

    def facts(tokenizer):
        f = real(tokenizer)
        return chunk._Facts(f.core, f.longest, additive=False)

    monkeypatch.setattr(chunk, "_facts", facts)


def _tricky(rng: random.Random) -> str:
    """Text whose joins test the whitespace rule: indentation, tabs, CRLF, quotes after a full stop,
    non-ASCII spaces, a file separator (a space to Python, not to the tokenizer's regex), accents, emoji."""
    words = ["river", "Bridge", "stone's", "naïve", "日本語", "🙂", "x=1", "(see", "note)", '"quoted."', "end.",
             "\u00a0nbsp", "\u2003em", "\x1csep", "tab\tbed", "1,024", "--flag", "'ll", "under_score"]
    seps = [" ", "\n", "\n\n", "\n  ", "\t", "\r\n", "\n\n\n", ". ", '." ', "\n- ", "\n\n## Head\n\n", "\u00a0", "\x1c\n"]
    return "".join(rng.choice(words) + rng.choice(seps) for _ in range(rng.randint(20, 400)))


@pytest.mark.slow
@pytest.mark.parametrize("overlap", [0, 8])
def test_additive_counts_give_the_chunks_of_whole_counts(monkeypatch, overlap):
    """Counting a growing chunk by its new part only (GPT-2's pre-tokenizer cuts at whitespace) must
    not move one boundary: the same chunks, counts and token ids as tokenising every span whole."""
    from pathlib import Path

    root = Path(__file__).resolve().parents[1]
    rng = random.Random(11)
    texts = [p.read_text(encoding="utf-8") for p in sorted([root / "README.md", *(root / "docs").glob("*.md")])]
    texts += [changelog(60, 5)[0], RST, ADMONITIONS] + [_tricky(rng) for _ in range(40)]
    tok = gpt2_tokenizer()
    fast = [chunk_text(t, tok, 40, overlap) for t in texts]
    for chunks in fast:
        for c in chunks:  # each chunk's ids are what the tokenizer makes of its text alone
            assert list(c.token_ids) == REF(c.text, add_special_tokens=False)["input_ids"], c.text
    _whole_counts(monkeypatch)
    tok = gpt2_tokenizer()  # a fresh one: nothing cached from the additive run
    slow = [chunk_text(t, tok, 40, overlap) for t in texts]
    for a, b in zip(fast, slow):
        assert [(c.start, c.end, c.n_tokens, list(c.token_ids)) for c in a] == \
            [(c.start, c.end, c.n_tokens, list(c.token_ids)) for c in b]


@pytest.mark.slow
def test_ids_add_up_across_whitespace_as_the_chunker_assumes():
    """The rule itself, on random cuts of real and tricky text: A (ending in a non-space) + B (starting
    with ASCII whitespace) tokenises as A then B; a gap not ending in a space splits as all-but-last, last."""
    from sgpt_qdrant.chunk import Counter

    counter = Counter(gpt2_tokenizer(), 75)
    assert counter.additive
    rng = random.Random(3)

    def ids(s: str) -> list[int]:
        return REF(s, add_special_tokens=False)["input_ids"]

    checked = 0
    for _ in range(60):
        text = _tricky(rng)
        for _ in range(30):
            a, m, e = sorted(rng.sample(range(len(text) + 1), 3))
            left, right = text[a:m].strip(), text[m:e].rstrip()
            if not left or not right.strip():
                continue
            got = counter.extend(ids(left), right)
            if right[0] in " \t\n\r\x0b\x0c":
                assert got == ids(left + right), (left, right)
                checked += 1
            else:
                assert got is None
            gap_end = m
            while gap_end < e and text[gap_end] in " \t\n\r\x0b\x0c":
                gap_end += 1
            tail = text[gap_end:e].strip()
            if gap_end > m and tail and not text[gap_end].isspace():
                joined = counter.join(ids(left), text[m:gap_end], ids(tail))
                if text[gap_end - 1] != " ":
                    assert joined == ids(left + text[m:gap_end] + tail), (left, text[m:gap_end], tail)
                    checked += 1
                else:
                    assert joined is None
    assert checked > 500
