"""RoI Pool and RoI Align: a fixed-size feature for every region of interest (Fast R-CNN).

Both cut the box ``rois[k]`` (in image pixels, scaled to the feature map by
``spatial_scale``) into ``output_size`` bins and summarise each bin:

- **RoI Pool** rounds the box to the feature-map grid and takes the **max** over the cells of
  each bin (bins are rounded too: the "quantisation" that misaligns features and masks);
- **RoI Align** does not round: it samples ``sampling_ratio x sampling_ratio`` points in each
  bin by **bilinear interpolation** and averages them.

Same signatures and numbers as ``torchvision.ops.roi_pool`` / ``roi_align``; differentiable
with respect to ``input``. Boxes are a ``[K, 5]`` tensor ``(batch_index, x1, y1, x2, y2)`` or
a list of ``[K_i, 4]`` tensors, one per image.
"""

from __future__ import annotations

import math

import torch

from cvlib.ops.boxes import check_boxes

__all__ = ["roi_pool", "roi_align", "rois_from_boxes"]

CHUNK = 256  # RoIs gathered at once (bounds memory)


def rois_from_boxes(boxes, num_images: int | None = None) -> torch.Tensor:
    """``[K, 5]`` RoIs ``(batch_index, x1, y1, x2, y2)`` from a list of ``[K_i, 4]`` boxes (one
    tensor per image) or from a ``[K, 5]`` tensor (checked and returned)."""
    if isinstance(boxes, (list, tuple)):
        for i, b in enumerate(boxes):
            check_boxes(b, f"boxes[{i}]", ordered=False)
        if not boxes:
            return torch.zeros((0, 5))
        index = [torch.full((len(b), 1), i, dtype=b.dtype, device=b.device) for i, b in enumerate(boxes)]
        return torch.cat([torch.cat(index), torch.cat(list(boxes))], dim=1)
    if not isinstance(boxes, torch.Tensor):
        raise TypeError(f"boxes must be a [K, 5] tensor or a list of [K_i, 4] tensors, got {type(boxes).__name__}")
    if boxes.ndim != 2 or boxes.shape[1] != 5 or not boxes.is_floating_point():
        raise ValueError(f"boxes must be a float [K, 5] tensor (batch index, x1, y1, x2, y2), got {tuple(boxes.shape)} {boxes.dtype}")
    if num_images is not None and len(boxes) and not (0 <= boxes[:, 0].min() and boxes[:, 0].max() < num_images):
        raise ValueError(f"boxes[:, 0] must be batch indices in [0, {num_images}), got {boxes[:, 0].unique().tolist()}")
    return boxes


def _check(input, output_size, spatial_scale):
    if not isinstance(input, torch.Tensor) or input.ndim != 4 or not input.is_floating_point():
        raise ValueError(f"input must be a float tensor [N, C, H, W], got "
                         f"{tuple(input.shape) if isinstance(input, torch.Tensor) else type(input).__name__}")
    size = (output_size, output_size) if isinstance(output_size, int) else tuple(output_size)
    if len(size) != 2 or not all(isinstance(s, int) and s > 0 for s in size):
        raise ValueError(f"output_size must be a positive int or a pair of them, got {output_size!r}")
    if not spatial_scale > 0:
        raise ValueError(f"spatial_scale must be > 0, got {spatial_scale}")
    return size


def _round_half_away(x: torch.Tensor) -> torch.Tensor:
    """C's ``round``: halves go away from zero (``torch.round`` rounds them to even)."""
    return torch.sign(x) * torch.floor(x.abs() + 0.5)


def roi_pool(input: torch.Tensor, boxes, output_size, spatial_scale: float = 1.0) -> torch.Tensor:
    """Max-pool each RoI of ``boxes`` on ``input`` ``[N, C, H, W]`` into ``output_size`` bins:
    ``[K, C, PH, PW]``.

    The box is rounded to feature cells ``[x1, x2]`` (inclusive, at least one cell), bin
    ``(p, q)`` covers rows ``floor(p * h / PH) .. ceil((p + 1) * h / PH)`` of it (bins may
    overlap by one cell), clipped to the map; an empty bin gives 0.
    """
    (ph, pw), rois = _check(input, output_size, spatial_scale), rois_from_boxes(boxes, len(input))
    _, channels, height, width = input.shape
    out = input.new_zeros((len(rois), channels, ph, pw))
    start = _round_half_away(rois[:, 1:] * spatial_scale).long()  # x1, y1, x2, y2 in cells
    roi_w = (start[:, 2] - start[:, 0] + 1).clamp(min=1)
    roi_h = (start[:, 3] - start[:, 1] + 1).clamp(min=1)
    rows = _bin_edges(start[:, 1], roi_h, ph, height)  # each [K, PH]
    cols = _bin_edges(start[:, 0], roi_w, pw, width)
    features = input.permute(0, 2, 3, 1)  # [N, H, W, C]: a gather picks whole channel vectors
    order = torch.argsort(roi_h * roi_w)  # similar sizes in one chunk: less padding
    for chunk in order.split(CHUNK):
        out[chunk] = _max_in_bins(features, rois[chunk, 0].long(), rows[0][chunk], rows[1][chunk],
                                  cols[0][chunk], cols[1][chunk])
    return out


def _bin_edges(roi_start, roi_size, bins, limit):
    """Start and end (exclusive) cells ``[K, bins]`` of the bins of each RoI, clipped to the map."""
    size = roi_size.to(torch.float64)[:, None] / bins
    p = torch.arange(bins, device=roi_start.device, dtype=torch.float64)[None, :]
    lo = torch.floor(p * size).long() + roi_start[:, None]
    hi = torch.ceil((p + 1) * size).long() + roi_start[:, None]
    return lo.clamp(0, limit), hi.clamp(0, limit)


def _max_in_bins(features, batch, row_lo, row_hi, col_lo, col_hi):
    """Max of ``features`` ``[N, H, W, C]`` over each bin of a chunk of RoIs: ``[k, C, PH, PW]``."""
    mh = max(int((row_hi - row_lo).max()), 1)
    mw = max(int((col_hi - col_lo).max()), 1)
    r = row_lo[:, :, None] + torch.arange(mh, device=row_lo.device)  # [k, PH, mh]
    c = col_lo[:, :, None] + torch.arange(mw, device=col_lo.device)  # [k, PW, mw]
    r_ok, c_ok = r < row_hi[:, :, None], c < col_hi[:, :, None]
    height, width = features.shape[1:3]
    k, ph, pw = len(batch), r.shape[1], c.shape[1]
    values = features[batch[:, None, None, None, None],
                      r.clamp(max=height - 1).reshape(k, ph, mh, 1, 1),
                      c.clamp(max=width - 1).reshape(k, 1, 1, pw, mw)]  # [k, PH, mh, PW, mw, C]
    inside = (r_ok.reshape(k, ph, mh, 1, 1) & c_ok.reshape(k, 1, 1, pw, mw))[..., None]
    values = values.masked_fill(~inside, -math.inf).amax(dim=(2, 4))  # [k, PH, PW, C]
    empty = ~inside.any(dim=4).any(dim=2)  # a bin with no cell gives 0, not -inf
    return values.masked_fill(empty, 0).permute(0, 3, 1, 2)


def roi_align(
    input: torch.Tensor,
    boxes,
    output_size,
    spatial_scale: float = 1.0,
    sampling_ratio: int = -1,
    aligned: bool = False,
) -> torch.Tensor:
    """Average of bilinearly sampled points in each bin of each RoI: ``[K, C, PH, PW]``.

    Bin ``(p, q)`` of a box ``(x1, y1, x2, y2) * spatial_scale`` (shifted by -0.5 when
    ``aligned``, so that pixel centres line up) gets ``g_h x g_w`` sample points at the centres
    of a regular sub-grid; ``g = sampling_ratio``, or ``ceil(roi_size / output_size)`` per RoI
    when ``sampling_ratio <= 0``. Points more than one cell outside the map count as 0.
    """
    (ph, pw), rois = _check(input, output_size, spatial_scale), rois_from_boxes(boxes, len(input))
    if not isinstance(sampling_ratio, int):
        raise ValueError(f"sampling_ratio must be an int (<= 0 for adaptive), got {sampling_ratio!r}")
    _, channels, height, width = input.shape
    out = input.new_zeros((len(rois), channels, ph, pw))
    offset = 0.5 if aligned else 0.0
    x1, y1, x2, y2 = (rois[:, 1:] * spatial_scale - offset).unbind(1)
    roi_w, roi_h = x2 - x1, y2 - y1
    if not aligned:  # torchvision: legacy boxes are at least one cell wide
        roi_w, roi_h = roi_w.clamp(min=1.0), roi_h.clamp(min=1.0)
    if sampling_ratio > 0:
        grid_h = grid_w = torch.full((len(rois),), sampling_ratio, device=rois.device)
    else:
        grid_h, grid_w = torch.ceil(roi_h / ph).long(), torch.ceil(roi_w / pw).long()
    features = input.permute(0, 2, 3, 1)
    groups = torch.stack([grid_h, grid_w], 1).unique(dim=0) if len(rois) else []
    for gh, gw in groups.tolist() if len(rois) else []:
        members = torch.nonzero((grid_h == gh) & (grid_w == gw)).flatten()
        for chunk in members.split(CHUNK):
            ys = _sample_points(y1[chunk], roi_h[chunk], ph, gh)  # [k, PH, gh]
            xs = _sample_points(x1[chunk], roi_w[chunk], pw, gw)  # [k, PW, gw]
            out[chunk] = _bilinear_average(features, rois[chunk, 0].long(), ys, xs)
    return out


def _sample_points(start, size, bins, grid):
    """Coordinates ``[k, bins, grid]`` of the sample points: centres of ``grid`` equal parts of
    each bin. Empty when ``grid == 0`` (a degenerate RoI)."""
    bin_size = (size / bins)[:, None, None]
    p = torch.arange(bins, device=start.device, dtype=start.dtype)[None, :, None]
    i = torch.arange(grid, device=start.device, dtype=start.dtype)[None, None, :]
    return start[:, None, None] + p * bin_size + (i + 0.5) * bin_size / max(grid, 1)


def _corners(coords, limit):
    """Bilinear corners of each coordinate: lower and upper cell ``[..., 2]`` (long) and their
    weights ``[..., 2]``, zero for points more than one cell outside ``[0, limit]``."""
    valid = (coords >= -1.0) & (coords <= limit)
    coords = coords.clamp(min=0)
    low = coords.floor().long()
    at_edge = low >= limit - 1
    low = torch.where(at_edge, torch.full_like(low, limit - 1), low)
    high = torch.where(at_edge, low, low + 1)
    frac = torch.where(at_edge, torch.zeros_like(coords), coords - low.to(coords.dtype))
    weights = torch.stack([1 - frac, frac], -1) * valid[..., None].to(coords.dtype)
    return torch.stack([low, high], -1), weights


def _bilinear_average(features, batch, ys, xs):
    """Mean of the bilinear samples at the grid ``ys x xs`` of each bin: ``[k, C, PH, PW]``.

    The grid is a product of row and column coordinates, so the 4 corners of every sample are
    a product too: gather the rows x columns once, weight along each axis, and sum.
    """
    k, ph, gh = ys.shape
    pw, gw = xs.shape[1:]
    rows, row_w = _corners(ys, features.shape[1])  # [k, PH, gh, 2]
    cols, col_w = _corners(xs, features.shape[2])  # [k, PW, gw, 2]
    values = features[batch[:, None, None], rows.reshape(k, -1, 1), cols.reshape(k, 1, -1)]
    values = values.reshape(k, ph, gh * 2, pw, gw * 2, -1)  # [k, PH, gh*2, PW, gw*2, C]
    total = torch.einsum("kpaqbc,kpa,kqb->kcpq", values, row_w.reshape(k, ph, -1), col_w.reshape(k, pw, -1))
    return total / max(gh * gw, 1)
