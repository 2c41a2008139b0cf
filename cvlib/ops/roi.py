"""RoI Pool and RoI Align: a fixed-size feature for every region of interest (Fast R-CNN).

Both cut the box ``rois[k]`` (in image pixels, scaled to the feature map by
``spatial_scale``) into ``output_size`` bins and summarise each bin:

- **RoI Pool** rounds the box to the feature-map grid and takes the **max** over the cells of
  each bin (bins are rounded too: the "quantisation" that misaligns features and masks);
- **RoI Align** does not round: it samples ``sampling_ratio x sampling_ratio`` points in each
  bin by **bilinear interpolation** and averages them.

Read :func:`cvlib.ops.reference.roi_pool_loop` and :func:`~cvlib.ops.reference.roi_align_loop`
first: the lecture's steps, one RoI at a time. This file computes the same numbers fast
(gathers of whole bins, range-maximum tables, interpolation matrices), which hides them.

With a feature pyramid (FPN), ``multiscale_roi_align`` pools each RoI from the level that
suits its size (``roi_levels``), as torchvision's ``MultiScaleRoIAlign``.

Same signatures and numbers as ``torchvision.ops.roi_pool`` / ``roi_align``; differentiable
with respect to ``input``. Boxes are a ``[K, 5]`` tensor ``(batch_index, x1, y1, x2, y2)`` or
a list of ``[K_i, 4]`` tensors, one per image.
"""

from __future__ import annotations

import math

import numpy as np
import torch

from cvlib._checks import all_finite, integer, number, sequence, tensor
from cvlib.ops.boxes import _check_boxes, _numpy

__all__ = ["roi_pool", "roi_align", "rois_from_boxes", "roi_levels", "multiscale_roi_align"]

CHUNK = 256  # RoIs gathered at once (bounds memory)
NUMPY_FLOAT = {torch.float16: np.float16, torch.float32: np.float32, torch.float64: np.float64}


def rois_from_boxes(boxes, num_images: int | None = None, name: str = "boxes") -> torch.Tensor:
    """``[K, 5]`` RoIs ``(batch_index, x1, y1, x2, y2)`` from a list of ``[K_i, 4]`` boxes (one
    tensor per image) or from a ``[K, 5]`` tensor (checked and returned). RoI Pool and RoI Align
    then cast them to the dtype and device of their ``input``. Errors name the argument ``name``."""
    if isinstance(boxes, (list, tuple)):
        if num_images is not None and len(boxes) > num_images:
            raise ValueError(f"{name} must hold one tensor per image ({num_images}), got {len(boxes)}")
        for i, b in enumerate(boxes):
            _check_boxes(b, f"{name}[{i}]", ordered=False)
        if not boxes:
            return torch.zeros((0, 5))
        index = [torch.full((len(b), 1), i, dtype=b.dtype, device=b.device) for i, b in enumerate(boxes)]
        return torch.cat([torch.cat(index), torch.cat(list(boxes))], dim=1)
    if not isinstance(boxes, torch.Tensor):
        raise TypeError(
            f"{name} must be a [K, 5] tensor or a list of [K_i, 4] tensors, got {type(boxes).__name__}"
        )
    tensor(boxes, name, shape=("K", 5), dtype="float")
    values = _numpy(boxes)  # valid RoIs pass NumPy tests (microseconds); the torch tests raise
    if values is None or not np.isfinite(values).all():
        all_finite(boxes, name)  # raises on NaN or inf
        values = None  # not on the CPU: the torch tests below
    if num_images is not None:
        integer(num_images, "num_images", low=1)
    if values is not None:
        index = values[:, 0]
        in_range = num_images is None or (index < num_images).all()
        if in_range and (index >= 0).all() and (index == np.round(index)).all():
            return boxes
    index = boxes[:, 0]
    if ((index < 0) | (index != index.round())).any():
        raise ValueError(f"{name}[:, 0] must be batch indices (whole numbers >= 0), "
                         f"got {index.tolist()[:20]}")
    if (
        num_images is not None
        and len(boxes)
        and not (0 <= boxes[:, 0].min() and boxes[:, 0].max() < num_images)
    ):
        raise ValueError(
            f"{name}[:, 0] must be batch indices in [0, {num_images}), got {boxes[:, 0].unique().tolist()}"
        )
    return boxes


def _check(input, output_size, spatial_scale):
    tensor(input, "input", shape=("N", "C", "H", "W"), dtype="float")
    size = (output_size, output_size) if not isinstance(output_size, (list, tuple)) else tuple(output_size)
    if len(size) != 2:
        raise ValueError(f"output_size must be a positive int or a pair of them, got {output_size!r}")
    number(spatial_scale, "spatial_scale", low=0, low_open=True)
    return tuple(integer(s, "output_size", low=1) for s in size)


def _round_half_away(x: np.ndarray) -> np.ndarray:
    """C's ``round``: halves go away from zero (``np.round`` rounds them to even)."""
    return np.sign(x) * np.floor(np.abs(x) + x.dtype.type(0.5))


def roi_pool(input: torch.Tensor, boxes, output_size, spatial_scale: float = 1.0) -> torch.Tensor:
    """Max-pool each RoI of ``boxes`` on ``input`` ``[N, C, H, W]`` into ``output_size`` bins:
    ``[K, C, PH, PW]``.

    The box is rounded to feature cells ``[x1, x2]`` (inclusive, at least one cell), bin
    ``(p, q)`` covers rows ``floor(p * h / PH) .. ceil((p + 1) * h / PH)`` of it (bins may
    overlap by one cell), clipped to the map; an empty bin gives 0.

    Two ways to take the maxima, with the same numbers; each call takes the one that reads and
    writes fewer values: :func:`_pool_cells` reads every cell of every bin (best for a few RoIs or
    small bins), :func:`_pool_table` builds a range-maximum table of the whole map once and then
    reads four entries a bin (best for many RoIs with large bins).
    """
    (ph, pw), rois = _check(input, output_size, spatial_scale), _numpy_rois(boxes, input)
    num_images, channels, height, width = input.shape
    if len(rois) == 0 or 0 in (channels, height, width):  # nothing to read: every bin is empty (0)
        return input.new_zeros((len(rois), channels, ph, pw))
    # the bin arithmetic in NumPy (the same numbers; a torch call costs several times more)
    cells = _round_half_away(rois[:, 1:] * rois.dtype.type(spatial_scale)).astype(np.int64)  # in cells
    roi_w = np.maximum(cells[:, 2] - cells[:, 0] + 1, 1)
    roi_h = np.maximum(cells[:, 3] - cells[:, 1] + 1, 1)
    rows = _bin_edges(cells[:, 1], roi_h, ph, height)  # start, end [K, PH] each
    cols = _bin_edges(cells[:, 0], roi_w, pw, width)  # start, end [K, PW] each
    bin_h, bin_w = int((rows[1] - rows[0]).max()), int((cols[1] - cols[0]).max())  # largest bin
    cells_read = len(rois) * ph * pw * max(bin_h, 1) * max(bin_w, 1)  # by _pool_cells
    table_size = num_images * height * width * bin_h.bit_length() * bin_w.bit_length()  # levels of _max_table
    # building the table writes each entry about four times (copy, max, concatenate, stack)
    pool = _pool_cells if cells_read <= 4 * table_size + 4 * len(rois) * ph * pw else _pool_table
    out = pool(input, rois[:, 0].astype(np.int64), rows, cols)
    empty = (rows[1] <= rows[0])[:, :, None] | (cols[1] <= cols[0])[:, None, :]  # [K, PH, PW]
    if empty.any():
        out = out.masked_fill(torch.from_numpy(empty[..., None]).to(input.device), 0)
    return out.permute(0, 3, 1, 2).contiguous()


def _numpy_rois(boxes, input) -> np.ndarray:
    """The checked RoIs ``[K, 5]`` (:func:`rois_from_boxes`) as a NumPy array of ``input``'s
    float dtype (float32 for bfloat16, which NumPy lacks), for the index arithmetic."""
    rois = rois_from_boxes(boxes, len(input)).detach().cpu()
    return rois.to(input.dtype if input.dtype in NUMPY_FLOAT else torch.float32).numpy()


def _pool_cells(input, image, rows, cols):
    """RoI Pool maxima ``[K, PH, PW, C]``, reading every cell of every bin: ``bh x bw`` cells a
    bin (the largest bin), a smaller bin repeating its last row or column (the max is the same).
    ``image`` ``[K]``, ``rows`` and ``cols`` (start, end ``[K, bins]``) are NumPy arrays: the
    cells are numbered in NumPy, then read ``CHUNK`` RoIs at a time, which bounds the
    temporaries."""
    num_images, channels, height, width = input.shape
    features = input.permute(0, 2, 3, 1).reshape(-1, channels)  # row (n * H + y) * W + x: a cell
    row = _bin_cells(*rows, height)  # [K, PH, bh]
    col = _bin_cells(*cols, width)  # [K, PW, bw]
    y = image[:, None, None, None, None] * height + row[:, :, None, :, None]  # [K, PH, 1, bh, 1]
    cells = torch.from_numpy(y * width + col[:, None, :, None, :]).to(input.device)  # [K, PH, PW, bh, bw]
    out = []
    for cell in cells.split(CHUNK):
        values = features.index_select(0, cell.flatten()).view(*cell.shape[:3], -1, channels)
        out.append(values.amax(dim=3))  # values: [k, PH, PW, bh * bw, C]
    return torch.cat(out)


def _bin_cells(start, end, limit):
    """The cells ``[K, bins, size]`` of each bin, ``size`` that of the largest bin: ``start,
    start + 1, ..., end - 1, end - 1, ...`` (an empty bin reads any cell of the map)."""
    size = max(int((end - start).max()), 1)
    cells = np.minimum(start[..., None] + np.arange(size), end[..., None] - 1)
    return np.minimum(np.maximum(cells, 0), limit - 1)


def _pool_table(input, image, rows, cols):
    """RoI Pool maxima ``[K, PH, PW, C]`` from a range-maximum table (:func:`_max_table`): any
    bin is the union of four, possibly overlapping, blocks of ``2^i x 2^j`` cells whose maxima
    are precomputed, so each bin costs four look-ups instead of a loop over its cells. The
    look-ups go ``CHUNK`` RoIs at a time, which bounds the temporaries. ``image`` ``[K]``,
    ``rows`` and ``cols`` (start, end ``[K, bins]``): NumPy arrays."""
    num_images, channels, height, width = input.shape
    image, r0, r1, c0, c1 = (torch.from_numpy(a).to(input.device) for a in (image, *rows, *cols))
    level_h, level_w = _log2((r1 - r0).clamp(min=1)), _log2((c1 - c0).clamp(min=1))
    features = input.permute(0, 2, 3, 1).contiguous()  # [N, H, W, C]: channel vectors are rows
    table = _max_table(features, int(level_h.max()) + 1, int(level_w.max()) + 1)
    levels = table.shape[1]
    table = table.reshape(-1, channels)  # row = ((i * levels + j) * N + n) * H * W + y * W + x
    block = (level_h[:, :, None] * levels + level_w[:, None, :]) * num_images + image[:, None, None]
    rows = (r0.clamp(max=height - 1), (r1 - (1 << level_h)).clamp(min=0))  # two blocks cover a bin's rows
    cols = (c0.clamp(max=width - 1), (c1 - (1 << level_w)).clamp(min=0))
    out = []
    for k in torch.arange(len(image), device=image.device).split(CHUNK):
        maxima = None
        for r in rows:
            for c in cols:
                index = (block[k] * height + r[k, :, None]) * width + c[k, None, :]  # [k, PH, PW]
                values = table.index_select(0, index.flatten()).view(*index.shape, channels)
                maxima = values if maxima is None else torch.maximum(maxima, values)
        out.append(maxima)
    return torch.cat(out)


def _bin_edges(roi_start, roi_size, bins, limit):
    """Start and end (exclusive) cells ``[K, bins]`` of the bins of each RoI, clipped to the map
    (NumPy arrays in and out; the arithmetic in float64)."""
    size = roi_size.astype(np.float64)[:, None] / bins
    p = np.arange(bins, dtype=np.float64)[None, :]
    lo = np.floor(p * size).astype(np.int64) + roi_start[:, None]
    hi = np.ceil((p + 1) * size).astype(np.int64) + roi_start[:, None]
    return np.minimum(np.maximum(lo, 0), limit), np.minimum(np.maximum(hi, 0), limit)  # np.clip is slower


def _log2(n: torch.Tensor) -> torch.Tensor:
    """``floor(log2(n))`` of positive integers."""
    return torch.floor(torch.log2(n.to(torch.float64))).long()


def _max_table(features: torch.Tensor, levels_h: int, levels_w: int) -> torch.Tensor:
    """``table[i, j, n, y, x] = max(features[n, y : y + 2^i, x : x + 2^j])``, ``[Lh, Lw, N, H, W, C]``,
    built by doubling: a level-``i`` block is the max of two level-``i - 1`` blocks side by
    side. Entries whose block would leave the map are never looked up."""

    def doubled(table: torch.Tensor, levels: int, dim: int) -> list[torch.Tensor]:
        tables = [table]
        for level in range(1, levels):
            prev, shift = tables[-1], 1 << (level - 1)
            size = prev.shape[dim] - shift
            head = torch.maximum(prev.narrow(dim, 0, size), prev.narrow(dim, shift, size))
            tables.append(torch.cat([head, prev.narrow(dim, size, shift)], dim))
        return tables

    return torch.stack([torch.stack(doubled(rows, levels_w, 2)) for rows in doubled(features, levels_h, 1)])


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

    Sampling and averaging are linear, the sample grid is a product of rows and columns, and a
    bilinear weight is a row weight times a column weight. So for each RoI the result is two
    small matrix products over the window of cells it touches:
    ``A_y [PH, h] @ X[window] [h, w] @ A_x^T [w, PW]``; row ``p`` of ``A_y`` holds the bilinear
    weights of the sample rows of bin ``p``, divided by their number (likewise ``A_x``).

    The matrices and windows are built in NumPy (:func:`_interpolation`): they are a few dozen
    operations on a few numbers per RoI, which cost a microsecond each in NumPy and several in
    torch (on 10 RoIs, most of the time went there); only the products touch ``input``.
    """
    (ph, pw), rois = _check(input, output_size, spatial_scale), _numpy_rois(boxes, input)
    integer(sampling_ratio, "sampling_ratio")
    _, channels, height, width = input.shape
    dtype = rois.dtype.type
    offset = 0.5 if aligned else 0.0
    x1, y1, x2, y2 = (rois[:, 1:] * dtype(spatial_scale) - dtype(offset)).T
    roi_w, roi_h = x2 - x1, y2 - y1
    if not aligned:  # torchvision: legacy boxes are at least one cell wide
        roi_w, roi_h = np.maximum(roi_w, 1), np.maximum(roi_h, 1)
    if len(rois) == 0 or 0 in (channels, height, width):  # nothing to read: every point reads 0
        return input.new_zeros((len(rois), channels, ph, pw))
    image = rois[:, 0].astype(np.int64)
    if len(rois) <= CHUNK:  # one chunk: the RoIs as they come, no reordering
        order = np.arange(len(rois))
    else:  # similar windows in one chunk
        order = np.argsort(np.maximum(roi_h, roi_w), kind="stable")
    chunks = [
        (k, *_interpolation(y1[k], roi_h[k], x1[k], roi_w[k], (ph, pw), (height, width), sampling_ratio))
        for k in np.split(order, range(CHUNK, len(order), CHUNK))
    ]  # (RoIs [k], A_y [k, PH, h], rows [k, h], A_x [k, PW, w], cols [k, w])
    window = _window_reader(input, sum(rows.size * cols.shape[1] for _, _, rows, _, cols in chunks))
    out = input.new_empty((len(rois), channels, ph, pw)) if len(chunks) > 1 else None
    for k, a_y, rows, a_x, cols in chunks:
        a_y, a_x = (torch.from_numpy(a).to(input) for a in (a_y, a_x))
        k, image_k, rows, cols = (torch.from_numpy(a).to(input.device) for a in (k, image[k], rows, cols))
        mixed = a_y @ window(image_k, rows, cols).flatten(2)  # [k, PH, w * C]: the rows of each bin mixed
        bins = a_x[:, None] @ mixed.view(len(k), ph, -1, channels)  # [k, PH, PW, C]: then the columns
        if out is None:  # one chunk, in the RoIs' order: no scatter (5% of the time on 10 RoIs)
            return bins.permute(0, 3, 1, 2).contiguous()
        out[k] = bins.permute(0, 3, 1, 2)
    return out


def _window_reader(input, cells_read):
    """A function ``(image [k], rows [k, h], cols [k, w]) -> [k, h, w, C]``: the feature vectors
    of the window of cells of each RoI, for windows of ``cells_read`` cells in all.

    Gathering whole rows of a contiguous ``[N * H * W, C]`` copy is 4 to 7 times faster than
    gathering channel by channel from the ``[N, C, H, W]`` map (stride ``H * W``), but the copy
    costs about as much as gathering half the map's cells the slow way (measured on
    2 x 64 x 50 x 50): it pays when the windows hold more than half as many cells as the map.
    """
    num_images, channels, height, width = input.shape
    if 2 * cells_read < num_images * height * width:
        strided = input.permute(0, 2, 3, 1)  # [N, H, W, C], a view
        return lambda image, rows, cols: strided[image[:, None, None], rows[:, :, None], cols[:, None, :]]
    table = input.permute(0, 2, 3, 1).reshape(-1, channels)  # row (n * H + y) * W + x
    return lambda image, rows, cols: table.index_select(
        0, ((image[:, None, None] * height + rows[:, :, None]) * width + cols[:, None, :]).flatten()
    ).view(len(image), rows.shape[1], cols.shape[1], channels)


def _window_matrix(cells, weights, limit):
    """Interpolation matrices ``[k, bins, size]`` over the window of cells the RoIs touch, and
    each window's cells ``[k, size]`` (clipped to ``[0, limit)``: a window shorter than the
    chunk's widest reads cells with zero weights); NumPy arrays in and out."""
    first = cells.reshape(len(cells), -1).min(axis=1)
    local = cells - first[:, None, None]
    size = int(local.max()) + 1
    matrix = np.zeros((*cells.shape[:2], size), dtype=weights.dtype)
    k, p = np.indices(cells.shape[:2], sparse=True)
    np.add.at(matrix, (k[..., None], p[..., None], local), weights)  # the corners of one cell add up
    return matrix, np.minimum(first[:, None] + np.arange(size), limit - 1)


def _interpolation(y1, roi_h, x1, roi_w, bins, limits, sampling_ratio):
    """The interpolation matrices and windows of a chunk of ``k`` RoIs along both axes:
    ``A_y [k, PH, h]``, rows ``[k, h]``, ``A_x [k, PW, w]``, columns ``[k, w]``
    (:func:`_window_matrix`). ``bins = (PH, PW)``, ``limits = (H, W)``.

    The two axes go through :func:`_sample_weights` together, the ``y`` of every RoI then its
    ``x``, as ``2k`` RoI-axes: half as many NumPy calls (this arithmetic is still about a
    quarter of RoI Align's time on 10 RoIs).
    """
    k = len(y1)
    axis = np.repeat([0, 1], k)  # 0: y, 1: x
    cells, weights = _sample_weights(np.concatenate([y1, x1]), np.concatenate([roi_h, roi_w]),
                                     np.array(bins)[axis], np.array(limits)[axis], sampling_ratio)
    (ph, pw), (height, width) = bins, limits
    return (*_window_matrix(cells[:k, :ph], weights[:k, :ph], height),
            *_window_matrix(cells[k:, :pw], weights[k:, :pw], width))


def _sample_weights(start, size, bins, limit, sampling_ratio):
    """For each RoI-axis (one axis of one RoI), the cells ``[M, B, S]`` (int64) that the sample
    points of each of its ``bins`` touch and their weights ``[M, B, S]``: bilinear weights
    divided by the number of points ``g`` (so summing gives the average). ``B`` is the largest
    of ``bins``, the bins past a RoI-axis's own are to be dropped; ``S = 2 * g_max``, RoIs with
    a smaller grid pad with zero weights (at points of their last sample, so that a window does
    not grow). A point more than one cell outside ``[0, limit]`` weighs nothing. NumPy arrays
    ``[M]``: ``start``, ``size`` of the input's float dtype, the arithmetic of torchvision's
    kernel in that dtype; ``bins`` and ``limit`` (the map's size along the axis) ints."""
    dtype = size.dtype.type
    bin_size = size / bins.astype(dtype)
    if sampling_ratio > 0:
        grid = np.full(len(size), sampling_ratio, dtype=np.int64)
    else:
        grid = np.ceil(bin_size).astype(np.int64)
    g_max = max(int(grid.max()), 1)
    p = np.arange(bins.max(), dtype=dtype)[None, :, None]
    i = np.arange(g_max, dtype=dtype)[None, None, :]
    g = np.maximum(grid, 1)[:, None, None]
    last = np.minimum(i, g - 1).astype(dtype)  # unused samples repeat the last one
    bin_size, g = bin_size[:, None, None], g.astype(dtype)
    points = start[:, None, None] + p * bin_size + (last + dtype(0.5)) * bin_size / g  # [M, B, g_max]
    used = (i < grid[:, None, None]).astype(dtype)  # none when the grid is 0 (an empty RoI)
    cells, weights = _corners(points, limit[:, None, None])  # [M, B, g_max, 2] each
    weights = weights * (used / g)[..., None]
    return cells.reshape(*cells.shape[:2], -1), weights.reshape(*weights.shape[:2], -1)


def _corners(coords, limit):
    """Bilinear corners of each coordinate: lower and upper cell ``[..., 2]`` (int64) and their
    weights ``[..., 2]``, zero for points more than one cell outside ``[0, limit]``. (Written
    into preallocated pairs: ``np.stack`` costs more than the arithmetic on a few RoIs.)"""
    dtype = coords.dtype.type
    valid = ((coords >= -1) & (coords <= limit)).astype(dtype)
    coords = np.maximum(coords, 0)
    low = np.floor(coords).astype(np.int64)
    at_edge = low >= limit - 1  # the last cell: both corners on it, all weight on the lower
    cells = np.empty((*coords.shape, 2), dtype=np.int64)
    np.minimum(low, limit - 1, out=cells[..., 0])
    np.minimum(low + 1, limit - 1, out=cells[..., 1])
    frac = np.where(at_edge, dtype(0), coords - low.astype(dtype))
    weights = np.empty((*coords.shape, 2), dtype=dtype)
    np.multiply(1 - frac, valid, out=weights[..., 0])
    np.multiply(frac, valid, out=weights[..., 1])
    return cells, weights


def roi_levels(boxes: torch.Tensor, k_min: int, k_max: int, canonical_scale: float = 224.0,
               canonical_level: int = 4) -> torch.Tensor:
    """The pyramid level each RoI is pooled from (FPN, Lin et al. 2017, eq. 1): ``[K]`` int64,
    counted from ``k_min`` (0 is level ``k_min``, the finest map).

    ``k = floor(k0 + log2(sqrt(w h) / 224))``, clamped to ``[k_min, k_max]``: a 224 x 224 box
    (an ImageNet image) goes to level ``k0 = 4``; a box half as large goes one level finer, to a
    map with twice the resolution. Same as torchvision's ``MultiScaleRoIAlign`` level mapper
    (including its ``1e-6`` that puts an exact power of two on the coarser level).
    """
    _check_boxes(boxes)
    if integer(k_max, "k_max") < integer(k_min, "k_min"):
        raise ValueError(f"k_max must be >= k_min, got k_min = {k_min}, k_max = {k_max}")
    number(canonical_scale, "canonical_scale", low=0, low_open=True)
    integer(canonical_level, "canonical_level")
    size = ((boxes[:, 2] - boxes[:, 0]) * (boxes[:, 3] - boxes[:, 1])).sqrt()
    eps = torch.tensor(1e-6, dtype=size.dtype)
    level = torch.floor(canonical_level + torch.log2(size / canonical_scale) + eps)
    return level.clamp(min=k_min, max=k_max).to(torch.int64) - k_min


def multiscale_roi_align(
    features,
    boxes,
    output_size,
    spatial_scales,
    sampling_ratio: int = -1,
    canonical_scale: float = 224.0,
    canonical_level: int = 4,
) -> torch.Tensor:
    """RoI Align on a feature pyramid: each RoI is pooled from one level, the one
    :func:`roi_levels` gives its box (larger boxes read coarser maps). ``[K, C, PH, PW]``.

    ``features``: the levels ``[N, C, H_i, W_i]``, fine to coarse; ``spatial_scales``: their
    scales ``2^-k_i`` (``1 / stride``, usually one level apart: ``k``, ``k + 1``, ...); ``boxes``
    as in :func:`roi_align`. A box's level ``k = floor(k0 + log2(sqrt(wh) / s0))``
    (``k0 = canonical_level``, ``s0 = canonical_scale``), clamped to ``[k_1, k_L]``, reads the map
    ``features[k - k_1]``, the map of scale ``2^-k``. Same numbers as torchvision's
    ``MultiScaleRoIAlign`` (which takes ``k_1`` and ``k_L`` from the first and last map, as here).
    """
    features = sequence(features, "features", nonempty=True)
    spatial_scales = sequence(spatial_scales, "spatial_scales", nonempty=True)
    if len(spatial_scales) != len(features):
        raise ValueError(f"spatial_scales must give one scale per level of features ({len(features)}), "
                         f"got {len(spatial_scales)}")
    ks = [-math.log2(number(s, "spatial_scales", low=0, low_open=True)) for s in spatial_scales]
    if any(k != round(k) for k in ks) or any(b < a for a, b in zip(ks, ks[1:])):
        raise ValueError(f"spatial_scales must be powers of two, fine to coarse (1/4, 1/8, ...), "
                         f"got {list(spatial_scales)}")
    for i, level in enumerate(features):
        shape = (len(features[0]), features[0].shape[1], "H", "W")  # batch and channels of level 0
        tensor(level, f"features[{i}]", shape=shape, dtype="float")
    rois = rois_from_boxes(boxes, len(features[0])).to(features[0])
    size = _check(features[0], output_size, spatial_scales[0])
    levels = roi_levels(rois[:, 1:], int(ks[0]), int(ks[-1]), canonical_scale, canonical_level)
    out = features[0].new_zeros((len(rois), features[0].shape[1], *size))
    for level, (feature, scale) in enumerate(zip(features, spatial_scales)):
        pick = torch.nonzero(levels == level).flatten()
        out[pick] = roi_align(feature, rois[pick], size, scale, sampling_ratio)
    return out
