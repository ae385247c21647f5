"""The SGPT forward pass: GPT-Neo, the Dense stack, masked pooling. All model math lives here.

GPT-Neo is written out rather than taken from transformers because transformers 5 only offers
its eager attention (fp32 upcast, explicit masks) and flash-attention-2. With right padding a
causal mask alone is exact: real tokens never see the pads after them, so one fused
``scaled_dot_product_attention(is_causal=True, scale=1.0)`` call (GPT-Neo does not scale by
1/sqrt(d)) replaces the mask arithmetic. Parameter names match ``GPTNeoModel``, so its state
dict loads as is.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import torch
import torch.nn.functional as F
from torch import nn

from .checkpoint import Checkpoint, DenseLayer

if TYPE_CHECKING:
    from transformers import GPTNeoConfig


class Attention(nn.Module):
    """GPT-Neo self-attention (unscaled scores; causal, or local within a window)."""

    def __init__(self, config: GPTNeoConfig, local: bool) -> None:
        super().__init__()
        dim = config.hidden_size
        self.heads = config.num_heads
        self.window = int(config.window_size) if local else None
        self.k_proj = nn.Linear(dim, dim, bias=False)
        self.v_proj = nn.Linear(dim, dim, bias=False)
        self.q_proj = nn.Linear(dim, dim, bias=False)
        self.out_proj = nn.Linear(dim, dim, bias=True)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.attend(self.q_proj(x), self.k_proj(x), self.v_proj(x))

    def attend(self, q: torch.Tensor, k: torch.Tensor, v: torch.Tensor) -> torch.Tensor:
        """Attention and output projection from projected ``(batch, length, dim)`` q, k, v.

        Separate from :meth:`forward` so a fast path can project q, k, v in one matmul.
        """
        b, n, d = q.shape
        dtype, device = q.dtype, q.device
        split = lambda t: t.view(b, n, self.heads, d // self.heads).transpose(1, 2)  # noqa: E731
        q, k, v = split(q), split(k), split(v)
        if dtype == torch.float16:  # unscaled scores overflow fp16: score them in fp32
            q, k, v = q.float(), k.float(), v.float()
        if self.window is not None and n > self.window:
            i = torch.arange(n, device=device)
            allowed = (i[None, :] <= i[:, None]) & (i[:, None] - i[None, :] < self.window)
            out = F.scaled_dot_product_attention(q, k, v, attn_mask=allowed, scale=1.0)
        else:  # within the window, local attention is plain causal attention
            out = F.scaled_dot_product_attention(q, k, v, is_causal=True, scale=1.0)
        out = out.to(dtype).transpose(1, 2).reshape(b, n, d)
        return self.out_proj(out)


class _AttentionWrapper(nn.Module):
    """Only here so parameter names read ``h.N.attn.attention.*`` as in GPTNeoModel."""

    def __init__(self, config: GPTNeoConfig, local: bool) -> None:
        super().__init__()
        self.attention = Attention(config, local)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.attention(x)


class MLP(nn.Module):
    """GPT-Neo feed-forward: ``c_proj(act(c_fc(x)))``."""

    def __init__(self, config: GPTNeoConfig) -> None:
        super().__init__()
        inner = config.intermediate_size or 4 * config.hidden_size
        self.c_fc = nn.Linear(config.hidden_size, inner)
        self.c_proj = nn.Linear(inner, config.hidden_size)
        self.act = _gpt_neo_activation(config.activation_function)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.c_proj(self.act(self.c_fc(x)))


def _gpt_neo_activation(name: str) -> nn.Module:
    # gelu_new is the tanh approximation: nn.GELU("tanh") is the same math, fused.
    table = {"gelu_new": nn.GELU(approximate="tanh"), "gelu": nn.GELU(), "relu": nn.ReLU()}
    if name not in table:
        raise ValueError(f"config.json: activation_function {name!r} is not supported")
    return table[name]


class _Block(nn.Module):
    def __init__(self, config: GPTNeoConfig, local: bool) -> None:
        super().__init__()
        eps = config.layer_norm_epsilon
        self.ln_1 = nn.LayerNorm(config.hidden_size, eps=eps)
        self.attn = _AttentionWrapper(config, local)
        self.ln_2 = nn.LayerNorm(config.hidden_size, eps=eps)
        self.mlp = MLP(config)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = x + self.attn(self.ln_1(x))
        return x + self.mlp(self.ln_2(x))


class GPTNeo(nn.Module):
    """GPT-Neo's last hidden state (after ``ln_f``) for right-padded input ids."""

    def __init__(self, config: GPTNeoConfig) -> None:
        super().__init__()
        self.config = config
        self.wte = nn.Embedding(config.vocab_size, config.hidden_size)
        self.wpe = nn.Embedding(config.max_position_embeddings, config.hidden_size)
        layers = config.attention_layers
        self.h = nn.ModuleList(_Block(config, layers[i] == "local") for i in range(config.num_layers))
        self.ln_f = nn.LayerNorm(config.hidden_size, eps=config.layer_norm_epsilon)

    def forward(self, input_ids: torch.Tensor) -> torch.Tensor:
        positions = torch.arange(input_ids.shape[1], device=input_ids.device)
        x = self.wte(input_ids) + self.wpe(positions)
        for block in self.h:
            x = block(x)
        return self.ln_f(x)


class Dense(nn.Module):
    """A sentence-transformers Dense layer: ``activation(linear(x))``."""

    def __init__(self, layer: DenseLayer) -> None:
        super().__init__()
        self.linear = nn.Linear(layer.in_features, layer.out_features, bias=layer.bias is not None)
        self.activation_name = layer.activation
        self.activation = {"gelu": nn.GELU(), "tanh": nn.Tanh(), "identity": nn.Identity()}[layer.activation]
        self.before_pooling = layer.before_pooling
        with torch.no_grad():
            self.linear.weight.copy_(layer.weight)
            if layer.bias is not None:
                self.linear.bias.copy_(layer.bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.activation(self.linear(x))

    def to_layer(self) -> DenseLayer:
        bias = None if self.linear.bias is None else self.linear.bias.detach().float().cpu().clone()
        return DenseLayer(self.linear.weight.detach().float().cpu().clone(), bias,
                          self.activation_name, self.before_pooling)


def pool(tokens: torch.Tensor, mask: torch.Tensor, mode: str) -> torch.Tensor:
    """Masked pooling over right-padded token vectors, as sentence-transformers pools.

    Sums are taken in fp32 whatever the model's dtype, then cast back.
    """
    dtype, tokens = tokens.dtype, tokens.float()
    mask_f = mask.unsqueeze(-1).to(tokens.dtype)
    if mode == "mean":
        return ((tokens * mask_f).sum(1) / mask_f.sum(1).clamp(min=1e-9)).to(dtype)
    if mode == "weightedmean":
        weights = torch.arange(1, tokens.shape[1] + 1, device=tokens.device, dtype=tokens.dtype)
        weights = weights.view(1, -1, 1) * mask_f
        return ((tokens * weights).sum(1) / weights.sum(1).clamp(min=1e-9)).to(dtype)
    if mode == "lasttoken":
        last = (mask.sum(1) - 1).clamp(min=0)
        return tokens[torch.arange(tokens.shape[0], device=tokens.device), last].to(dtype)
    raise ValueError(f"unknown pooling mode {mode!r}")


class SGPTModel(nn.Module):
    """tokens → GPT-Neo → Dense (per token) → pooling → Dense (per sentence) → [normalize].

    Split in two so a trainer can run the frozen transformer without gradients and only
    :meth:`head` with them.
    """

    def __init__(self, checkpoint: Checkpoint) -> None:
        super().__init__()
        self.transformer = GPTNeo(checkpoint.config)
        missing, unexpected = self.transformer.load_state_dict(checkpoint.transformer_state, strict=False)
        if missing or unexpected:
            raise ValueError(
                f"{checkpoint.source}: pytorch_model.bin does not match config.json "
                f"(missing {missing[:3]}, unexpected {unexpected[:3]})"
            )
        self.dense = nn.ModuleList(Dense(layer) for layer in checkpoint.dense)
        self.pooling = checkpoint.pooling
        self.normalize = checkpoint.normalize

    def head(self, hidden: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        for layer in self.dense:
            if layer.before_pooling:
                hidden = layer(hidden)
        out = pool(hidden, mask, self.pooling)
        for layer in self.dense:
            if not layer.before_pooling:
                out = layer(out)
        return F.normalize(out, dim=-1) if self.normalize else out

    def forward(self, input_ids: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
        return self.head(self.transformer(input_ids), attention_mask)

    def to_checkpoint(self, like: Checkpoint) -> Checkpoint:
        """A :class:`Checkpoint` with this model's current weights and ``like``'s other fields."""
        state = {k: v.detach().cpu().clone() for k, v in self.transformer.state_dict().items()}
        return Checkpoint(like.config, state, [d.to_layer() for d in self.dense], self.pooling,
                          like.max_seq_length, like.tokenizer, like.pad_id, self.normalize, like.source)
