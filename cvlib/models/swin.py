"""Window attention and shifted windows, as in the Swin Transformer (notebook 01).

Global self-attention over the ``N = H W`` tokens of an ``H x W`` grid costs ``O(N^2)``: every
token looks at every other. Swin (Liu et al. 2021) restricts attention to non-overlapping
``M x M`` **windows**, so each token looks at ``M^2`` others and the cost grows linearly with
``N``. Per layer, in multiply-adds (the paper's formulas, ``C`` channels):

    global:  4 N C^2 + 2 N^2 C          window:  4 N C^2 + 2 N M^2 C

(``Q, K, V`` and the output projection ``4 N C^2``; the scores ``Q K^T`` and ``A V``.)
Windows never exchange information, so every other layer **shifts** the windows by ``M / 2``:
the grid is rolled cyclically by ``-M / 2`` in both directions, attention runs in the regular
windows of the rolled grid, and the result is rolled back. A window of the rolled grid may then
hold cells that were far apart in the image (wrapped around the border); the **attention mask**
of :func:`shifted_window_mask` lets a token attend only to tokens of its own region.

``WindowAttention`` gives the same numbers as torchvision's
``torchvision.models.swin_transformer.shifted_window_attention`` with the same weights (and a zero
relative position bias, which this module leaves out); with one window covering the whole grid
it is :class:`cvlib.models.vit.MultiHeadAttention` over the ``H W`` tokens.
"""

from __future__ import annotations

import torch
from torch import nn

from cvlib._checks import counts, integer, tensor
from cvlib.models.vit import MultiHeadAttention

__all__ = ["window_partition", "window_merge", "shifted_window_mask", "WindowAttention", "attention_macs"]


def _check_grid(height: int, width: int, window: int) -> None:
    counts(height=height, width=width, window=window)
    if height % window or width % window:
        raise ValueError(f"window must divide the grid {height} x {width}, got {window}")


def window_partition(x: torch.Tensor, window: int) -> torch.Tensor:
    """Cut a grid of tokens ``[B, H, W, C]`` into windows ``[B * nW, window^2, C]``, windows in
    row-major order (``nW = (H / window) (W / window)``), tokens row-major inside each window."""
    tensor(x, "x", ndim=4)
    b, h, w, c = x.shape
    _check_grid(h, w, window)
    x = x.view(b, h // window, window, w // window, window, c)
    return x.permute(0, 1, 3, 2, 4, 5).reshape(-1, window * window, c)


def window_merge(windows: torch.Tensor, window: int, height: int, width: int) -> torch.Tensor:
    """The inverse of :func:`window_partition`: ``[B * nW, window^2, C]`` -> ``[B, H, W, C]``."""
    tensor(windows, "windows", ndim=3)
    _check_grid(height, width, window)
    per_image = (height // window) * (width // window)
    if windows.shape[1] != window * window or windows.shape[0] % per_image:
        raise ValueError(f"windows must be [B * {per_image}, {window * window}, C], "
                         f"got {tuple(windows.shape)}")
    c = windows.shape[-1]
    x = windows.view(-1, height // window, width // window, window, window, c)
    return x.permute(0, 1, 3, 2, 4, 5).reshape(-1, height, width, c)


def _bands(length: int, window: int, shift: int) -> torch.Tensor:
    """Region of each row (or column) of the grid rolled by ``-shift``: 0 for the rows that were
    already together, 1 and 2 for the two pieces that the roll brings into the last window."""
    band = torch.zeros(length, dtype=torch.int64)
    if shift:
        band[length - window : length - shift], band[length - shift :] = 1, 2
    return band


def shifted_window_mask(height: int, width: int, window: int, shift,
                        device: torch.device | str | None = None) -> torch.Tensor:
    """Bool ``[nW, window^2, window^2]``, True where a token may attend to a token of the same window
    of the grid rolled by ``-shift`` (an int, or ``(rows, columns)``): both must come from the same
    region of the image (the rolled grid's last ``window`` rows and columns mix cells from opposite
    borders). All True for ``shift = 0``."""
    _check_grid(height, width, window)
    shift_y, shift_x = (shift, shift) if isinstance(shift, int) else tuple(shift)
    integer(shift_y, "shift", low=0, high=window - 1)
    integer(shift_x, "shift", low=0, high=window - 1)
    region = 3 * _bands(height, window, shift_y)[:, None] + _bands(width, window, shift_x)[None, :]
    ids = window_partition(region[None, :, :, None].to(device), window)[..., 0]  # [nW, window^2]
    return ids[:, :, None] == ids[:, None, :]


class WindowAttention(nn.Module):
    """Multi-head self-attention inside ``window x window`` windows, shifted by ``shift``:
    ``[B, H, W, dim]`` -> ``[B, H, W, dim]`` (``window`` divides ``H`` and ``W``).

    ``shift = 0``: W-MSA; ``shift = window // 2``: SW-MSA (cyclic roll + :func:`shifted_window_mask`).
    As in torchvision, no shift is applied along a side that one window covers. ``attn`` is a
    :class:`cvlib.models.vit.MultiHeadAttention` (``qkv``, ``proj``) shared by all windows.
    """

    def __init__(self, dim: int, heads: int, window: int, shift: int = 0):
        super().__init__()
        counts(window=window)
        self.window, self.shift = window, integer(shift, "shift", low=0, high=window - 1)
        self.attn = MultiHeadAttention(dim, heads)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        tensor(x, "x", shape=("B", "H", "W", self.attn.proj.in_features), dtype="float", finite=True)
        b, h, w, _ = x.shape
        _check_grid(h, w, self.window)
        shifts = (self.shift if h > self.window else 0, self.shift if w > self.window else 0)
        x = torch.roll(x, shifts=(-shifts[0], -shifts[1]), dims=(1, 2))
        windows = window_partition(x, self.window)  # [B * nW, M^2, dim]
        mask = None
        if any(shifts):  # the regions of the rolled grid, the same for every image of the batch
            regions = shifted_window_mask(h, w, self.window, shifts, x.device)  # [nW, M^2, M^2]
            mask = regions.repeat(b, 1, 1)[:, None]  # [B * nW, 1, M^2, M^2]
        out, _ = self.attn(windows, mask=mask)  # [B * nW, M^2, dim]
        x = window_merge(out, self.window, h, w)
        return torch.roll(x, shifts=shifts, dims=(1, 2))


def attention_macs(tokens: int, dim: int, window: int | None = None) -> dict[str, int]:
    """Multiply-adds of one self-attention layer over ``tokens`` tokens of width ``dim``:
    ``{"projections": 4 N C^2, "attention": 2 N^2 C}`` globally (``window=None``), or
    ``2 N M^2 C`` for ``M x M`` windows (``M^2 <= N``); ``"total"`` is their sum."""
    counts(tokens=tokens, dim=dim)
    keys = tokens if window is None else integer(window, "window", low=1) ** 2
    if keys > tokens:
        raise ValueError(f"window^2 must be at most tokens={tokens}, got window={window}")
    macs = {"projections": 4 * tokens * dim * dim, "attention": 2 * tokens * keys * dim}
    return {**macs, "total": macs["projections"] + macs["attention"]}
