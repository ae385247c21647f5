"""Texts → token ids → padded batches, exactly as the reference tokenises, for the encoder and
the trainer alike.

sentence-transformers strips each text, tokenises it with no BOS/EOS and cuts it to
``max_seq_length``; SGPT pools right-padded token vectors under a mask. Batches are planned by
a token budget (texts × padded length) longest first, so each batch is padded only to its own
longest text and short texts travel in large batches.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

import numpy as np
import torch

if TYPE_CHECKING:
    from transformers import PreTrainedTokenizerBase

#: A batch holding at least ``token_budget * EARLY_CLOSE_SHARE`` padded tokens already runs its
#: matmuls at full speed, so it is closed before a text this much shorter than its longest.
EARLY_CLOSE_SHARE, EARLY_CLOSE_RATIO = 0.125, 0.8


class TruncationWarning(UserWarning):
    """Texts longer than the model's token limit were cut there (as the reference cuts them):
    their end is not in the vector."""


class EmptyTextWarning(UserWarning):
    """Empty or whitespace-only texts were embedded as the end-of-text token alone (the
    reference's mean over no tokens is an all-zero vector, whose cosine similarity is NaN)."""


@dataclass
class Tokenized:
    """Token ids per text, and what had to be done to them."""

    ids: list[list[int]]
    truncated: int = 0  # texts cut to max_length
    empty: list[int] = field(default_factory=list)  # positions of texts with no tokens
    tokens_cut: int = 0  # tokens beyond max_length, over all texts
    most_cut: int = 0  # the most cut from one text
    cut_at_least: bool = False  # a huge text was tokenised by its prefix: the two counts are lower bounds


#: A text longer than this many characters per token of ``max_length`` (and than PREFIX_MIN_CHARS)
#: is tokenised by a prefix (a 20 MB text would otherwise be tokenised whole, 3 GB and half a
#: minute, to keep 75 tokens). Below it the counts of cut tokens are exact.
PREFIX_CHARS_PER_TOKEN, PREFIX_MIN_CHARS = 32, 1 << 16


_SPACE = frozenset(" \t\n\r\f\v")


def _prefix(text: str, chars: int) -> str:
    """``text`` cut at a whitespace run at or before ``chars``: the GPT-2 pre-tokeniser splits
    there, so every token before the cut is the token the whole text gives."""
    cut = chars
    while cut > 0 and not (text[cut] in _SPACE and text[cut - 1] not in _SPACE):
        cut -= 1
    return text[:cut] if cut > 0 else text


def check_texts(texts: Sequence[object]) -> None:
    """TypeError naming the first position that is not a ``str`` (None, numbers, bytes)."""
    if isinstance(texts, (str, bytes)):
        raise TypeError("texts: expected a list of texts, not a single string")
    for i, text in enumerate(texts):
        if not isinstance(text, str):
            raise TypeError(f"texts[{i}]: expected str, got {type(text).__name__}")
        try:
            text.encode("utf-8")
        except UnicodeEncodeError as exc:
            raise ValueError(f"texts[{i}]: a lone surrogate {text[exc.start]!r} at character {exc.start} is not "
                             "text (decode the source with errors='replace')") from None


def tokenize(tokenizer: PreTrainedTokenizerBase, texts: Sequence[str], max_length: int,
             empty_id: int | None = None) -> Tokenized:
    """Stripped, no special tokens, cut to ``max_length``, as sentence-transformers does.

    A text with no tokens (``""``, whitespace only) has nothing to pool; with ``empty_id`` it
    becomes that one token (the caller says so), else it stays empty. Positions are reported.
    """
    check_texts(texts)
    if len(texts) == 0:  # also numpy arrays / pandas Series of str
        return Tokenized([])
    stripped = [t.strip() for t in texts]
    bound = max(max_length * PREFIX_CHARS_PER_TOKEN, PREFIX_MIN_CHARS)
    parts = [t if len(t) <= bound else _prefix(t, bound) for t in stripped]
    ids = tokenizer(parts, add_special_tokens=False)["input_ids"]
    at_least = False
    for i, t in enumerate(stripped):
        if parts[i] is not t:
            if len(ids[i]) > max_length:
                at_least = True
            else:  # not enough tokens in the prefix (a whitespace-free run): the whole text after all
                ids[i] = tokenizer(t, add_special_tokens=False)["input_ids"]
    cut = [len(x) - max_length for x in ids if len(x) > max_length]
    ids = [x[:max_length] for x in ids]
    empty = [i for i, x in enumerate(ids) if not x]
    if empty_id is not None:
        for i in empty:
            ids[i] = [int(empty_id)]
    return Tokenized(ids, len(cut), empty, sum(cut), max(cut, default=0), at_least)


def pad(ids: Sequence[Sequence[int]], batch: Sequence[int], pad_id: int,
        pin: bool = False) -> tuple[torch.Tensor, torch.Tensor]:
    """Right-padded ``(input_ids, attention_mask)`` for the texts ``batch`` of ``ids``, one numpy pass."""
    lengths = np.fromiter((len(ids[i]) for i in batch), dtype=np.int64, count=len(batch))
    width = max(1, int(lengths.max(initial=0)))
    input_ids = torch.empty((len(batch), width), dtype=torch.long, pin_memory=pin)
    mask = torch.empty((len(batch), width), dtype=torch.long, pin_memory=pin)
    keep = np.arange(width)[None, :] < lengths[:, None]
    ids_np, mask_np = input_ids.numpy(), mask.numpy()
    ids_np.fill(pad_id)
    if lengths.sum():
        ids_np[keep] = np.fromiter((t for i in batch for t in ids[i]), dtype=np.int64, count=int(lengths.sum()))
    mask_np[:] = keep
    return input_ids, mask


def tokenize_and_pad(tokenizer: PreTrainedTokenizerBase, texts: Sequence[str], max_length: int,
                     pad_id: int) -> tuple[torch.Tensor, torch.Tensor]:
    """One padded batch of ``texts`` in their order: what a trainer feeds its model."""
    ids = tokenize(tokenizer, texts, max_length).ids
    return pad(ids, range(len(ids)), pad_id)


def plan_batches(lengths: Sequence[int], token_budget: int, max_batch: int,
                 min_tokens: int | None = None) -> list[list[int]]:
    """Indices grouped longest first so that ``len(batch) * longest <= token_budget``.

    With ``min_tokens``, a batch that already holds that many padded tokens is also closed
    before a text shorter than ``EARLY_CLOSE_RATIO`` of its longest: on sentence-length text the
    budget alone would pad a 10-token sentence to the 70 tokens of the longest one in its batch.
    """
    order = sorted(range(len(lengths)), key=lambda i: -lengths[i])
    batches: list[list[int]] = []
    current: list[int] = []
    for i in order:
        width = max(lengths[current[0]] if current else lengths[i], 1)
        wasteful = (min_tokens is not None and len(current) * width >= min_tokens
                    and lengths[i] < EARLY_CLOSE_RATIO * width)
        if current and ((len(current) + 1) * width > token_budget or len(current) >= max_batch or wasteful):
            batches.append(current)
            current = []
        current.append(i)
    if current:
        batches.append(current)
    return batches


def padded_batches(ids: Sequence[Sequence[int]], pad_id: int, token_budget: int, max_batch: int,
                   min_tokens: int | None = None, pin: bool = False
                   ) -> Iterator[tuple[list[int], torch.Tensor, torch.Tensor]]:
    """``(positions, input_ids, attention_mask)`` of each batch :func:`plan_batches` plans for ``ids``."""
    for batch in plan_batches([len(x) for x in ids], token_budget, max_batch, min_tokens):
        input_ids, mask = pad(ids, batch, pad_id, pin=pin)
        yield batch, input_ids, mask
