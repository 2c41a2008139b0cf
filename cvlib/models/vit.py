"""Attention written out, and a small Vision Transformer (notebook 01).

Attention (lecture names): queries ``Q [.., Tq, d]``, keys ``K [.., Tk, d]``, values
``V [.., Tk, dv]``; ``A = softmax(Q K^T / sqrt(d))`` (each row sums to one) and the output is
``A V``. The lecture's general attention layer (``CrossAttention``) takes ``N_Q`` query vectors
from one set and ``K = X W_K``, ``V = X W_V`` from ``N_X`` input vectors of another (DETR's
decoder: object queries attend to image features); ``N_Q != N_X`` in general, and the output has
one vector per query. Self-attention takes ``Q, K, V`` from the same tokens; multi-head attention splits the
width into ``heads`` independent attentions; masked (causal) attention lets token ``i`` see only
tokens ``j <= i``. The functions here give the same numbers as
``torch.nn.functional.scaled_dot_product_attention`` and ``torch.nn.MultiheadAttention``.

The ViT: an image ``[B, 3, H, W]`` is cut into ``(H/p) x (W/p)`` patches, each linearly embedded
to a token of width ``dim``; a CLS token is prepended (or the tokens are averaged at the end,
GAP), learned positional embeddings are added, and ``depth`` transformer blocks follow. Each
block can be Pre-LN or Post-LN (``norm_first``), use LayerNorm or RMSNorm, and an MLP, a SwiGLU
or a mixture of experts (top-k routing) as its feed-forward layer.
"""

from __future__ import annotations

import math
import re

import torch
import torch.nn.functional as F
from torch import nn

from cvlib._checks import choice, counts, pair, tensor
from cvlib._checks import images as check_images

__all__ = [
    "scaled_dot_product_attention", "causal_mask", "self_attention", "MultiHeadAttention", "CrossAttention",
    "RMSNorm", "MLP", "SwiGLU", "MixtureOfExperts", "Block", "PatchEmbedding", "ViT", "vit_cost",
    "torchvision_key", "from_torchvision",
]


def causal_mask(
    queries: int, keys: int | None = None, device: torch.device | str | None = None
) -> torch.Tensor:
    """Bool ``[Tq, Tk]`` (``Tk = Tq`` by default), True where query ``i`` may attend to key ``j <= i``."""
    keys = queries if keys is None else keys
    counts(queries=queries, keys=keys)
    return torch.ones(queries, keys, dtype=torch.bool, device=device).tril()


def scaled_dot_product_attention(
    q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, mask: torch.Tensor | None = None, causal: bool = False
) -> tuple[torch.Tensor, torch.Tensor]:
    """``softmax(Q K^T / sqrt(d)) V``: ``q [.., Tq, d]``, ``k [.., Tk, d]``, ``v [.., Tk, dv]``.

    ``mask`` is bool, broadcastable to ``[.., Tq, Tk]``, True where a query may attend (the
    convention of ``torch.nn.functional.scaled_dot_product_attention``); ``causal=True`` adds
    the causal mask. Returns the output ``[.., Tq, dv]`` and the weights ``A [.., Tq, Tk]``.
    """
    for name, t in (("q", q), ("k", k), ("v", v)):
        tensor(t, name, ndim=range(2, 9), dtype="float", finite=True)
    if q.shape[-1] != k.shape[-1] or k.shape[-2] != v.shape[-2]:
        raise ValueError(f"q, k, v must be [.., Tq, d], [.., Tk, d], [.., Tk, dv], got "
                         f"{tuple(q.shape)}, {tuple(k.shape)}, {tuple(v.shape)}")
    scores = q @ k.transpose(-2, -1) / math.sqrt(q.shape[-1])
    if causal:
        scores = scores.masked_fill(~causal_mask(q.shape[-2], k.shape[-2], q.device), float("-inf"))
    if mask is not None:
        tensor(mask, "mask", dtype="bool")
        scores = scores.masked_fill(~mask, float("-inf"))
    weights = scores.softmax(dim=-1)
    return weights @ v, weights


def self_attention(
    x: torch.Tensor, w_q: torch.Tensor, w_k: torch.Tensor, w_v: torch.Tensor, causal: bool = False
) -> tuple[torch.Tensor, torch.Tensor]:
    """One head of self-attention: ``Q = X W_q, K = X W_k, V = X W_v`` from the same tokens
    ``x [.., T, dim]``; ``w_q, w_k [dim, d]``, ``w_v [dim, dv]``. Returns ``[.., T, dv]``, ``[.., T, T]``."""
    tensor(x, "x", ndim=range(2, 9), dtype="float", finite=True)
    for name, w in (("w_q", w_q), ("w_k", w_k), ("w_v", w_v)):
        if tensor(w, name, shape=(x.shape[-1], "d"), dtype="float", finite=True).dtype != x.dtype:
            raise ValueError(f"{name} must have x's dtype {x.dtype}, got {w.dtype}")
    return scaled_dot_product_attention(x @ w_q, x @ w_k, x @ w_v, causal=causal)


class MultiHeadAttention(nn.Module):
    """Multi-head self-attention: ``[B, T, dim]`` -> ``[B, T, dim]`` and weights ``[B, heads, T, T]``.

    One linear layer makes ``Q, K, V`` for all heads (``qkv.weight`` is laid out like
    ``nn.MultiheadAttention.in_proj_weight``), each head attends in ``dim / heads`` dimensions,
    the heads are concatenated and projected back by ``proj``. ``mask`` and ``causal`` are those
    of :func:`scaled_dot_product_attention`.
    """

    def __init__(self, dim: int, heads: int):
        super().__init__()
        if dim < 1 or heads < 1 or dim % heads:
            raise ValueError(f"dim must be a positive multiple of heads, got dim={dim}, heads={heads}")
        self.heads = heads
        self.qkv = nn.Linear(dim, 3 * dim)
        self.proj = nn.Linear(dim, dim)

    def forward(
        self, x: torch.Tensor, mask: torch.Tensor | None = None, causal: bool = False
    ) -> tuple[torch.Tensor, torch.Tensor]:
        if x.ndim != 3 or x.shape[-1] != self.proj.in_features:
            raise ValueError(f"x must be [B, T, {self.proj.in_features}], got {tuple(x.shape)}")
        b, t, dim = x.shape
        q, k, v = self.qkv(x).view(b, t, 3, self.heads, dim // self.heads).permute(2, 0, 3, 1, 4)
        out, weights = scaled_dot_product_attention(q, k, v, mask=mask, causal=causal)  # [B, h, T, d]
        return self.proj(out.transpose(1, 2).reshape(b, t, dim)), weights


class CrossAttention(nn.Module):
    """The general attention layer: queries ``[B, N_Q, query_dim]`` attend to inputs
    ``[B, N_X, input_dim]``; returns ``[B, N_Q, query_dim]`` and weights ``[B, heads, N_Q, N_X]``.

    ``Q = queries W_Q``, ``K = inputs W_K``, ``V = inputs W_V`` (``q``, ``k``, ``v``: linear layers
    to ``query_dim``, laid out like ``nn.MultiheadAttention(query_dim, heads, kdim=input_dim,
    vdim=input_dim)``'s ``q_proj_weight``, ``k_proj_weight``, ``v_proj_weight``), multi-head
    attention as in :class:`MultiHeadAttention`, then the output projection ``proj``. Self-attention
    is the special case ``inputs = queries``. ``mask``: bool, broadcastable to
    ``[B, heads, N_Q, N_X]``, True where a query may attend.
    """

    def __init__(self, query_dim: int, input_dim: int, heads: int):
        super().__init__()
        counts(query_dim=query_dim, input_dim=input_dim, heads=heads)
        if query_dim % heads:
            raise ValueError(f"query_dim must be a multiple of heads, got query_dim={query_dim}, "
                             f"heads={heads}")
        self.heads = heads
        self.q = nn.Linear(query_dim, query_dim)
        self.k, self.v = nn.Linear(input_dim, query_dim), nn.Linear(input_dim, query_dim)
        self.proj = nn.Linear(query_dim, query_dim)

    def forward(
        self, queries: torch.Tensor, inputs: torch.Tensor, mask: torch.Tensor | None = None
    ) -> tuple[torch.Tensor, torch.Tensor]:
        tensor(queries, "queries", shape=("B", "N_Q", self.q.in_features), dtype="float", finite=True)
        tensor(inputs, "inputs", shape=(len(queries), "N_X", self.k.in_features), dtype="float", finite=True)
        (b, n_q, dim), n_x = queries.shape, inputs.shape[1]

        def split(x, n):  # [B, n, dim] -> [B, heads, n, dim / heads]
            return x.view(b, n, self.heads, dim // self.heads).transpose(1, 2)

        q, k, v = split(self.q(queries), n_q), split(self.k(inputs), n_x), split(self.v(inputs), n_x)
        out, weights = scaled_dot_product_attention(q, k, v, mask=mask)  # [B, h, N_Q, d], [B, h, N_Q, N_X]
        return self.proj(out.transpose(1, 2).reshape(b, n_q, dim)), weights


class RMSNorm(nn.Module):
    """``x / sqrt(mean(x^2) + eps) * g``: LayerNorm without centring and without a bias."""

    def __init__(self, dim: int, eps: float = 1e-6):
        super().__init__()
        self.eps = eps
        self.weight = nn.Parameter(torch.ones(dim))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x * torch.rsqrt(x.pow(2).mean(dim=-1, keepdim=True) + self.eps) * self.weight


class MLP(nn.Module):
    """The transformer's feed-forward layer: Linear -> GELU -> Linear, ``[.., dim]`` -> ``[.., dim]``."""

    def __init__(self, dim: int, hidden: int):
        super().__init__()
        self.fc1, self.fc2 = nn.Linear(dim, hidden), nn.Linear(hidden, dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc2(F.gelu(self.fc1(x)))


class SwiGLU(nn.Module):
    """Gated feed-forward layer ``W2 (SiLU(W1 x) * W3 x)`` (no biases), ``[.., dim]`` -> ``[.., dim]``."""

    def __init__(self, dim: int, hidden: int):
        super().__init__()
        self.w1, self.w3 = nn.Linear(dim, hidden, bias=False), nn.Linear(dim, hidden, bias=False)
        self.w2 = nn.Linear(hidden, dim, bias=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.w2(F.silu(self.w1(x)) * self.w3(x))


class MixtureOfExperts(nn.Module):
    """``experts`` MLPs and a router; each token goes to its ``top_k`` experts, whose outputs are
    summed with the router's softmax weights renormalized over the chosen ones.

    ``[.., dim]`` -> ``[.., dim]``. ``last_load`` holds the fraction of tokens that each expert
    received in the last forward pass ``[experts]`` (a balanced router gives ``top_k / experts``).
    """

    def __init__(self, dim: int, hidden: int, experts: int = 4, top_k: int = 2):
        super().__init__()
        if not 1 <= top_k <= experts:
            raise ValueError(f"top_k must be in 1..experts={experts}, got {top_k}")
        self.top_k = top_k
        self.router = nn.Linear(dim, experts, bias=False)
        self.experts = nn.ModuleList(MLP(dim, hidden) for _ in range(experts))
        self.last_load = torch.zeros(experts)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        tokens = x.reshape(-1, x.shape[-1])  # [N, dim]
        gates, chosen = self.router(tokens).topk(self.top_k, dim=-1)  # [N, k]
        gates = gates.softmax(dim=-1)
        out = torch.zeros_like(tokens)
        for e, expert in enumerate(self.experts):
            token, slot = (chosen == e).nonzero(as_tuple=True)  # the tokens routed to expert e
            if len(token):
                out.index_add_(0, token, gates[token, slot, None] * expert(tokens[token]))
        load = torch.bincount(chosen.flatten(), minlength=len(self.experts)).float()
        self.last_load = load.cpu() / len(tokens)
        return out.reshape(x.shape)


def _norm(kind: str, dim: int, eps: float | None = None) -> nn.Module:
    """LayerNorm (default eps 1e-5) or RMSNorm (default eps 1e-6); ``eps`` overrides the default."""
    if kind not in ("layer", "rms"):
        raise ValueError(f"norm must be 'layer' or 'rms', got {kind!r}")
    options = {} if eps is None else {"eps": eps}
    return nn.LayerNorm(dim, **options) if kind == "layer" else RMSNorm(dim, **options)


def _feed_forward(kind: str, dim: int, hidden: int, experts: int, top_k: int) -> nn.Module:
    if kind == "mlp":
        return MLP(dim, hidden)
    if kind == "swiglu":
        return SwiGLU(dim, hidden)
    if kind == "moe":
        return MixtureOfExperts(dim, hidden, experts, top_k)
    raise ValueError(f"mlp must be 'mlp', 'swiglu' or 'moe', got {kind!r}")


class Block(nn.Module):
    """A transformer block, ``[B, T, dim]`` -> ``[B, T, dim]`` and the weights ``[B, heads, T, T]``.

    Pre-LN (``norm_first=True``): ``x = x + Attn(Norm(x)); x = x + FF(Norm(x))`` -- the residual
    path is never normalized. Post-LN (the original Transformer): ``x = Norm(x + Attn(x));
    x = Norm(x + FF(x))``.
    """

    def __init__(self, dim: int, heads: int, hidden: int, norm_first: bool = True, norm: str = "layer",
                 mlp: str = "mlp", experts: int = 4, top_k: int = 2, norm_eps: float | None = None):
        super().__init__()
        self.norm_first = norm_first
        self.norm1, self.norm2 = _norm(norm, dim, norm_eps), _norm(norm, dim, norm_eps)
        self.attn = MultiHeadAttention(dim, heads)
        self.mlp = _feed_forward(mlp, dim, hidden, experts, top_k)

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        if self.norm_first:
            out, weights = self.attn(self.norm1(x))
            x = x + out
            return x + self.mlp(self.norm2(x)), weights
        out, weights = self.attn(x)
        x = self.norm1(x + out)
        return self.norm2(x + self.mlp(x)), weights


class PatchEmbedding(nn.Module):
    """Patchify and embed: ``[B, C, H, W]`` -> tokens ``[B, (H/p)(W/p), dim]`` in row-major order.

    ``method="conv"``: a ``p x p`` convolution with stride ``p``; ``"unfold"``: cut the patches
    out (``F.unfold``, each flattened to ``C*p*p`` values) and apply one linear layer. The two
    are the same map (``linear.weight == conv.weight.flatten(1)``).
    """

    def __init__(self, patch_size: int, dim: int, channels: int = 3, method: str = "conv"):
        super().__init__()
        counts(patch_size=patch_size, dim=dim, channels=channels)
        choice(method, "method", ("conv", "unfold"))
        self.patch_size, self.method = patch_size, method
        if method == "conv":
            self.proj = nn.Conv2d(channels, dim, patch_size, stride=patch_size)
        else:
            self.proj = nn.Linear(channels * patch_size * patch_size, dim)

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        if self.method == "conv":
            return self.proj(images).flatten(2).transpose(1, 2)
        return self.proj(F.unfold(images, self.patch_size, stride=self.patch_size).transpose(1, 2))


class ViT(nn.Module):
    """A Vision Transformer classifier: ``[B, 3, H, W]`` -> logits ``[B, num_classes]``.

    ``image_size`` may be ``(height, width)`` (non-square); both must be multiples of
    ``patch_size``, and the model accepts only images of that size (the positional embeddings
    are learned per position). ``pool="cls"`` classifies the CLS token, ``"gap"`` the mean of the
    patch tokens. ``forward(images, return_attention=True)`` also returns the attention weights,
    one ``[B, heads, T, T]`` tensor per block (``T`` = patches + 1 with a CLS token), the format of
    :mod:`cvlib.explain.attention`. ``pos_embed``: ``True`` or ``"learned"`` (a learned vector per
    position), ``"sinusoidal"`` (fixed: DETR's 2-D sine code of each patch's row and column,
    :func:`cvlib.models.detr.sine_position_encoding`, zero for the CLS token; ``dim`` a multiple
    of 4), ``False`` or ``"none"`` (no positions).
    ``norm_eps`` sets the normalization's epsilon (torchvision's ViTs use 1e-6; None keeps the
    default of ``norm``). :func:`from_torchvision` copies a torchvision ViT into this class.
    """

    def __init__(self, image_size=64, patch_size: int = 8, num_classes: int = 3, dim: int = 64,
                 depth: int = 4, heads: int = 4, mlp_ratio: float = 2.0, pool: str = "cls",
                 norm_first: bool = True, norm: str = "layer", mlp: str = "mlp", experts: int = 4,
                 top_k: int = 2, pos_embed: bool | str = True, patchify: str = "conv",
                 norm_eps: float | None = None):
        super().__init__()
        self.image_size = pair(image_size, "image_size")
        counts(patch_size=patch_size, num_classes=num_classes, dim=dim, depth=depth, heads=heads)
        if any(s % patch_size for s in self.image_size):
            raise ValueError(f"patch_size must divide image_size {self.image_size}, got {patch_size}")
        if pool not in ("cls", "gap"):
            raise ValueError(f"pool must be 'cls' or 'gap', got {pool!r}")
        self.pool = pool
        self.grid = (self.image_size[0] // patch_size, self.image_size[1] // patch_size)
        tokens = self.grid[0] * self.grid[1] + (pool == "cls")
        self.patches = PatchEmbedding(patch_size, dim, method=patchify)
        self.cls_token = nn.Parameter(torch.zeros(1, 1, dim)) if pool == "cls" else None
        positions = ({True: "learned", False: "none"}[pos_embed] if isinstance(pos_embed, bool)
                     else choice(pos_embed, "pos_embed", ("learned", "sinusoidal", "none")))
        if positions == "sinusoidal":
            from cvlib.models.detr import sine_position_encoding

            fixed = sine_position_encoding(*self.grid, dim)  # [patches, dim]; the CLS token gets zeros
            fixed = F.pad(fixed, (0, 0, tokens - len(fixed), 0))
            self.register_buffer("pos_embed", fixed[None])  # [1, T, dim], not trained
        elif positions == "learned":
            self.pos_embed = nn.Parameter(0.02 * torch.randn(1, tokens, dim))
        else:
            self.pos_embed = None
        hidden = int(mlp_ratio * dim)
        self.blocks = nn.ModuleList(
            Block(dim, heads, hidden, norm_first, norm, mlp, experts, top_k, norm_eps) for _ in range(depth)
        )
        # Post-LN blocks end normalized
        self.norm = _norm(norm, dim, norm_eps) if norm_first else nn.Identity()
        self.head = nn.Linear(dim, num_classes)

    def tokens(self, images: torch.Tensor) -> torch.Tensor:
        """Patch tokens (+ CLS first) with positional embeddings: ``[B, T, dim]``."""
        check_images(images, like=self, size=self.image_size)
        x = self.patches(images)
        if self.cls_token is not None:
            x = torch.cat([self.cls_token.expand(len(x), -1, -1), x], dim=1)
        return x if self.pos_embed is None else x + self.pos_embed

    def forward(self, images: torch.Tensor, return_attention: bool = False):
        x = self.tokens(images)
        attentions = []
        for block in self.blocks:
            x, weights = block(x)
            attentions.append(weights)
        x = self.norm(x)
        logits = self.head(x[:, 0] if self.pool == "cls" else x.mean(dim=1))
        return (logits, attentions) if return_attention else logits


def vit_cost(image_size: int, patch_size: int, dim: int, depth: int, heads: int, mlp_ratio: float = 2.0,
             cls: bool = True) -> dict[str, int]:
    """Tokens and multiply-adds of a ViT forward pass on one image (attention vs the rest).

    Per block: ``Q, K, V`` and output projections ``4 T dim^2``, the scores ``Q K^T`` and ``A V``
    ``2 T^2 dim`` (split over the heads, so independent of ``heads``), the MLP ``2 T dim hidden``.
    """
    counts(image_size=image_size, patch_size=patch_size, dim=dim, depth=depth, heads=heads)
    if image_size % patch_size:
        raise ValueError(f"patch_size must divide image_size={image_size}, got {patch_size}")
    if dim % heads:
        raise ValueError(f"dim must be a multiple of heads, got dim={dim}, heads={heads}")
    t = (image_size // patch_size) ** 2 + cls
    embed = (image_size // patch_size) ** 2 * 3 * patch_size**2 * dim
    attention = depth * 2 * t * t * dim
    linear = depth * (4 * t * dim * dim + 2 * t * dim * int(mlp_ratio * dim))
    return {"tokens": t, "attention_macs": attention, "linear_macs": linear + embed,
            "attention_matrix_entries": depth * heads * t * t}


# torchvision's VisionTransformer -> ViT: the parameter names differ, the layout does not
# (``in_proj_weight`` of nn.MultiheadAttention is ``qkv.weight``: Q, K, V stacked, heads contiguous).
_TORCHVISION_NAMES = [
    (r"^conv_proj\.", "patches.proj."),
    (r"^class_token$", "cls_token"),
    (r"^encoder\.pos_embedding$", "pos_embed"),
    (r"^encoder\.layers\.encoder_layer_(\d+)\.ln_1\.", r"blocks.\1.norm1."),
    (r"^encoder\.layers\.encoder_layer_(\d+)\.ln_2\.", r"blocks.\1.norm2."),
    (r"^encoder\.layers\.encoder_layer_(\d+)\.self_attention\.in_proj_", r"blocks.\1.attn.qkv."),
    (r"^encoder\.layers\.encoder_layer_(\d+)\.self_attention\.out_proj\.", r"blocks.\1.attn.proj."),
    (r"^encoder\.layers\.encoder_layer_(\d+)\.mlp\.0\.", r"blocks.\1.mlp.fc1."),
    (r"^encoder\.layers\.encoder_layer_(\d+)\.mlp\.3\.", r"blocks.\1.mlp.fc2."),
    (r"^encoder\.ln\.", "norm."),
    (r"^heads\.head\.", "head."),
]


def torchvision_key(name: str) -> str:
    """The :class:`ViT` parameter name of torchvision's ViT parameter ``name``
    (``encoder.layers.encoder_layer_3.ln_1.weight`` -> ``blocks.3.norm1.weight``)."""
    if not isinstance(name, str):
        raise TypeError(f"name must be a str, got {type(name).__name__}")
    for pattern, replacement in _TORCHVISION_NAMES:
        new, count = re.subn(pattern, replacement, name)
        if count:
            return new
    raise ValueError(f"name {name!r} is not a parameter of torchvision's VisionTransformer "
                     "(one classification head, no representation layer)")


def from_torchvision(model: nn.Module) -> ViT:
    """A :class:`ViT` with the architecture and weights of torchvision's ``VisionTransformer``
    ``model`` (``vit_b_16`` and the rest): the same logits ``[B, num_classes]`` on the same
    ``[B, 3, image_size, image_size]`` input (normalized as its weights expect)."""
    for attribute in ("image_size", "patch_size", "hidden_dim", "mlp_dim", "num_classes", "encoder"):
        if not hasattr(model, attribute):
            raise TypeError(f"model must be a torchvision VisionTransformer, got {type(model).__name__}")
    layers = list(model.encoder.layers)
    vit = ViT(model.image_size, model.patch_size, model.num_classes, model.hidden_dim, len(layers),
              layers[0].num_heads, mlp_ratio=model.mlp_dim / model.hidden_dim, pool="cls",
              norm_eps=model.encoder.ln.eps)
    state = {torchvision_key(k): v for k, v in model.state_dict().items()}
    vit.load_state_dict(state)
    return vit.to(next(model.parameters()).device).train(model.training)
