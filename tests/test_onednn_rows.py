"""oneDNN linear layers run at a few padded row counts: bounded shapes (memory), exact results."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from sgpt_qdrant.runtime import onednn

pytestmark = pytest.mark.skipif(not onednn.available(torch.float32), reason="oneDNN linear ops not in this torch")


def test_padded_rows_are_few_and_close():
    sizes = {onednn.padded_rows(n) for n in range(1, 8193)}
    assert len(sizes) <= 100  # under a hundred shapes for every batch up to 8k tokens
    for n in range(1, 8193):
        p = onednn.padded_rows(n)
        assert p >= n and onednn.padded_rows(p) == p
        assert p == 8 if n <= 8 else p - n <= n / 8  # at most 12.5 % more rows


@pytest.mark.parametrize("rows", [1, 7, 255, 256, 257, 1000])
@pytest.mark.parametrize("gelu", [None, "tanh", "none"])
def test_padded_matmul_equals_f_linear(rows, gelu):
    torch.manual_seed(rows)
    linear = nn.Linear(24, 40)
    packed = onednn.PackedLinear(linear, gelu)
    x = torch.randn(rows, 3, 24)[:, 1]  # a strided view, as reshape may hand over
    with torch.no_grad():
        want = F.linear(x, linear.weight, linear.bias)
        if gelu is not None:
            want = F.gelu(want, approximate=gelu)
        got = packed(x)
    assert got.shape == want.shape == (rows, 40)
    assert torch.allclose(got, want, rtol=1e-5, atol=1e-5)
