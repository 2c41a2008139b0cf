"""cvlib.ops.roi against torchvision.ops.roi_pool / roi_align: random RoIs (inside, partly
outside, degenerate), output sizes, scales, sampling ratios, aligned, list of boxes, float64,
non-contiguous, empty, gradients, bad input."""

import functools
import importlib
from unittest import mock

import pytest
import torch
import torchvision
from hypothesis import given
from hypothesis import strategies as st

from cvlib import ops

roi_module = importlib.import_module("cvlib.ops.roi")
CHUNK = roi_module.CHUNK


def _rois(seed, n, num_images=2, extent=30.0, dtype=torch.float32):
    g = torch.Generator().manual_seed(seed)
    xy = torch.rand(n, 2, generator=g, dtype=dtype) * extent - 5  # some start outside the map
    wh = torch.rand(n, 2, generator=g, dtype=dtype) * extent * 0.7
    wh[torch.rand(n, 2, generator=g) < 0.1] = 0  # degenerate boxes
    index = torch.randint(0, num_images, (n, 1), generator=g).to(dtype)
    return torch.cat([index, xy, xy + wh], 1)


@given(
    seed=st.integers(0, 10_000),
    n=st.integers(0, 30),
    output_size=st.sampled_from([1, 2, 7, (3, 5)]),
    spatial_scale=st.sampled_from([1.0, 0.5, 0.25, 0.8, 0.1]),
    sampling_ratio=st.sampled_from([-1, 0, 1, 2, 3]),
    aligned=st.booleans(),
)
def test_roi_align_like_torchvision(seed, n, output_size, spatial_scale, sampling_ratio, aligned):
    x = torch.randn(2, 3, 12, 15, generator=torch.Generator().manual_seed(seed))
    rois = _rois(seed, n)
    ours = ops.roi_align(x, rois, output_size, spatial_scale, sampling_ratio, aligned)
    ref = torchvision.ops.roi_align(x, rois, output_size, spatial_scale, sampling_ratio, aligned)
    torch.testing.assert_close(ours, ref, rtol=1e-5, atol=1e-5)


@given(
    seed=st.integers(0, 10_000),
    n=st.integers(0, 30),
    output_size=st.sampled_from([1, 2, 7, (3, 5)]),
    spatial_scale=st.sampled_from([1.0, 0.5, 0.25, 0.8, 0.1]),
    sampling_ratio=st.sampled_from([-1, 0, 2]),
    aligned=st.booleans(),
    cells_read=st.sampled_from([0, 10**9]),
)
def test_roi_align_both_window_readers_like_torchvision(
    seed, n, output_size, spatial_scale, sampling_ratio, aligned, cells_read
):
    """Each way of reading the windows (from the strided map for few cells, from a contiguous
    copy for many: _window_reader's threshold), forced on every input."""
    x = torch.randn(2, 3, 12, 15, generator=torch.Generator().manual_seed(seed))
    rois = _rois(seed, n)
    reader = roi_module._window_reader
    with mock.patch.object(roi_module, "_window_reader", lambda input, _: reader(input, cells_read)):
        ours = ops.roi_align(x, rois, output_size, spatial_scale, sampling_ratio, aligned)
    ref = torchvision.ops.roi_align(x, rois, output_size, spatial_scale, sampling_ratio, aligned)
    torch.testing.assert_close(ours, ref, rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("n, strided", [(1, True), (7, True), (8, False), (CHUNK + 3, False)])
def test_roi_align_reads_few_windows_from_the_map(n, strided):
    """A 1 x 3 x 20 x 20 map (400 cells), RoIs of 4 x 4 cells: windows of 5 x 5 cells. Up to 7
    RoIs read 175 cells, under half the map, from the strided map; 8 RoIs (200 cells) and
    CHUNK + 3 RoIs (two chunks) from a contiguous copy. Each equal to torchvision."""
    x = torch.randn(1, 3, 20, 20, generator=torch.Generator().manual_seed(n))
    rois = torch.tensor([[0.0, 2, 3, 6, 7]]).repeat(n, 1)
    with mock.patch.object(roi_module, "_window_reader", wraps=roi_module._window_reader) as spy:
        ours = ops.roi_align(x, rois, 2)
    cells_read = spy.call_args.args[1]
    assert cells_read == 25 * n and (2 * cells_read < 400) == strided
    torch.testing.assert_close(ours, torchvision.ops.roi_align(x, rois, 2), rtol=1e-5, atol=1e-5)


@given(
    seed=st.integers(0, 10_000),
    n=st.integers(0, 30),
    output_size=st.sampled_from([1, 2, 7, (3, 5)]),
    spatial_scale=st.sampled_from([1.0, 0.5, 0.25, 0.8, 0.1]),
)
def test_roi_pool_like_torchvision(seed, n, output_size, spatial_scale):
    x = torch.randn(2, 3, 12, 15, generator=torch.Generator().manual_seed(seed))
    rois = _rois(seed, n)
    ours = ops.roi_pool(x, rois, output_size, spatial_scale)
    torch.testing.assert_close(ours, torchvision.ops.roi_pool(x, rois, output_size, spatial_scale))


@given(
    seed=st.integers(0, 10_000),
    n=st.integers(0, 30),
    output_size=st.sampled_from([1, 2, 7, (3, 5)]),
    spatial_scale=st.sampled_from([1.0, 0.5, 0.25, 0.8, 0.1]),
    path=st.sampled_from(["_pool_cells", "_pool_table"]),
)
def test_roi_pool_both_paths_like_torchvision(seed, n, output_size, spatial_scale, path):
    """Each way of taking the maxima alone (the other replaced by it), on every input."""
    x = torch.randn(2, 3, 12, 15, generator=torch.Generator().manual_seed(seed))
    rois = _rois(seed, n)
    other = {"_pool_cells": "_pool_table", "_pool_table": "_pool_cells"}[path]
    with mock.patch.object(roi_module, other, getattr(roi_module, path)):
        ours = ops.roi_pool(x, rois, output_size, spatial_scale)
    torch.testing.assert_close(ours, torchvision.ops.roi_pool(x, rois, output_size, spatial_scale))


@pytest.mark.parametrize(
    "n, output_size, path",
    [(80, 2, "_pool_cells"), (81, 2, "_pool_table"),
     (CHUNK + 1, 6, "_pool_cells"), (CHUNK + 1, 2, "_pool_table")],
)
def test_roi_pool_chooses_the_path_that_reads_less(n, output_size, path):
    """On a 1 x 3 x 10 x 10 map, RoIs of 6 x 6 cells. Output 2 x 2: bins of 3 x 3 cells; every
    cell is 9 reads a bin, 36 n; the table is 100 x 2 x 2 entries, each written 4 times, plus 4
    reads a bin, 1,600 + 16 n: 80 RoIs read every cell, 81 use the table. Output 6 x 6: bins of
    one cell, reading every cell is cheaper. More than CHUNK RoIs go through either path's
    chunks. Each equal to torchvision."""
    x = torch.randn(1, 3, 10, 10, generator=torch.Generator().manual_seed(n))
    rois = torch.tensor([[0.0, 0, 0, 5, 5]]).repeat(n, 1)
    rois[:, 1:] += torch.randint(0, 5, (n, 1), generator=torch.Generator().manual_seed(0)).float()
    with mock.patch.object(roi_module, path, wraps=getattr(roi_module, path)) as spy:
        ours = ops.roi_pool(x, rois, output_size)
    assert spy.call_count == 1
    torch.testing.assert_close(ours, torchvision.ops.roi_pool(x, rois, output_size))


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64, torch.bfloat16])
@pytest.mark.parametrize(
    "index, coordinate, match",
    [(1.0, 2.0, None), (1.0, float("nan"), "boxes contains NaN"), (1.0, float("inf"), "boxes contains inf"),
     (-1.0, 2.0, "whole numbers >= 0"), (0.5, 2.0, "whole numbers >= 0"), (2.0, 2.0, r"in \[0, 2\)")],
)
def test_roi_checks_numpy_and_torch_agree(dtype, index, coordinate, match):
    """rois_from_boxes accepts valid RoIs with NumPy tests and otherwise runs the torch tests,
    which raise; bfloat16 (no NumPy view) always takes the torch tests: same answers, same
    messages."""
    rois = torch.tensor([[0.0, 1, 1, 4, 4], [index, 0, 0, coordinate, 3]], dtype=dtype)
    if match is None:
        assert roi_module.rois_from_boxes(rois, 2) is rois
    else:
        with pytest.raises(ValueError, match=match):
            roi_module.rois_from_boxes(rois, 2)


def test_list_of_boxes_float64_and_non_contiguous():
    x = torch.randn(3, 4, 10, 10, dtype=torch.float64).transpose(2, 3)  # non-contiguous
    boxes = [
        torch.tensor([[1.0, 1.0, 6.0, 8.0]], dtype=torch.float64),
        torch.zeros(0, 4, dtype=torch.float64),
        torch.tensor([[0.0, 2.0, 9.0, 3.5], [2.2, 2.2, 2.2, 2.2]], dtype=torch.float64),
    ]
    for ours, ref in [
        (ops.roi_align(x, boxes, 3, 1.0, 2), torchvision.ops.roi_align(x, boxes, 3, 1.0, 2)),
        (ops.roi_pool(x, boxes, 3), torchvision.ops.roi_pool(x, boxes, 3)),
    ]:
        assert ours.dtype == torch.float64
        torch.testing.assert_close(ours, ref)


def test_roi_levels_like_torchvision():
    """FPN's level of each box (eq. 1) equals torchvision's LevelMapper, on boxes of every
    size and aspect ratio."""
    from torchvision.ops.poolers import LevelMapper

    g = torch.Generator().manual_seed(0)
    xy = torch.rand(500, 2, generator=g) * 500
    wh = torch.exp(torch.rand(500, 2, generator=g) * 7)  # 1 to 1100 pixels, widths != heights
    boxes = torch.cat([xy, xy + wh], 1)
    levels = ops.roi.roi_levels(boxes, 2, 5)
    assert torch.equal(levels, LevelMapper(2, 5)([boxes]))
    assert levels.unique().tolist() == [0, 1, 2, 3]


def test_roi_pool_of_a_box_below_the_map_is_zero():
    """Every bin of a RoI outside the map is empty (0, as torchvision); the rows it would read are
    clamped into the map (a survivor of bench/mutation.py read past the end of the table)."""
    x = torch.rand(1, 3, 8, 8)
    boxes = torch.tensor([[0.0, 0.0, 20.0, 1.0, 22.0]])
    ours = ops.roi_pool(x, boxes, 2)
    assert torch.equal(ours, torchvision.ops.roi_pool(x, boxes, 2)) and not ours.any()


@pytest.mark.parametrize("shape", [(1, 0, 8, 8), (1, 2, 0, 8), (1, 2, 8, 0)])
def test_a_map_without_channels_or_cells_gives_zeros(shape):
    """Nothing to read: every bin is 0, as torchvision's roi_pool gives (its roi_align crashes
    the process on a map without cells); the readable loops agree."""
    x, rois = torch.rand(shape), torch.tensor([[0.0, 1, 1, 5, 5], [0, 2, 0, 3, 7]])
    expected = torchvision.ops.roi_pool(x, rois, 2)
    assert expected.shape == (2, shape[1], 2, 2) and not expected.any()
    for pool in (ops.roi_pool, ops.roi_align, ops.reference.roi_pool_loop, ops.reference.roi_align_loop):
        assert torch.equal(pool(x, rois, 2), expected), pool.__name__


def test_empty_boxes_and_dtypes():
    x = torch.randn(1, 2, 5, 5)
    assert ops.roi_align(x.double(), [], 2).dtype == torch.float64  # boxes follow the input
    assert ops.roi_align(x, torch.zeros(0, 5), 7).shape == (0, 2, 7, 7)
    assert ops.roi_pool(x, [torch.zeros(0, 4)], (2, 3)).shape == (0, 2, 2, 3)


def test_gradients():
    """Both are differentiable with respect to the features (float64 gradcheck), with the same
    gradients as torchvision; RoIs partly outside the map, adaptive and fixed sampling, both
    ways of RoI Pool."""
    g = torch.Generator().manual_seed(0)
    x = torch.randn(2, 2, 6, 7, dtype=torch.float64, generator=g, requires_grad=True)
    rois = torch.tensor(
        [[0, 0.5, 0.7, 4.3, 5.1], [1, 1.0, 0.0, 6.0, 3.0], [1, -2.0, 3.5, 8.5, 9.0]], dtype=torch.float64
    )
    calls = [
        lambda f, t: f.roi_align(t, rois, 2, 1.0, 2, True),
        lambda f, t: f.roi_align(t, rois, (3, 2), 0.8, -1, False),
        lambda f, t: f.roi_pool(t, rois, 2),
        lambda f, t: f.roi_pool(t, rois, 3, 0.5),
    ]
    for call in calls:
        assert torch.autograd.gradcheck(functools.partial(call, ops), (x,))
        ours = torch.autograd.grad(call(ops, x).sum(), x)[0]
        torch.testing.assert_close(ours, torch.autograd.grad(call(torchvision.ops, x).sum(), x)[0])
    with mock.patch.object(roi_module, "_pool_cells", roi_module._pool_table):  # RoI Pool's other path
        for call in calls[2:]:
            assert torch.autograd.gradcheck(functools.partial(call, ops), (x,))


@pytest.mark.parametrize(
    "call, match",
    [
        (
            lambda: ops.roi_align(torch.rand(2, 3, 4), torch.zeros(0, 5), 2),
            r"input must have shape \[N, C, H, W\]",
        ),
        (lambda: ops.roi_align(torch.rand(1, 3, 4, 4), torch.zeros(2, 4), 2), r"\[K, 5\]"),
        (lambda: ops.roi_pool(torch.rand(1, 3, 4, 4), torch.zeros(0, 5), 0), "output_size"),
        (lambda: ops.roi_pool(torch.rand(1, 3, 4, 4), torch.zeros(0, 5), 2, -1.0), "spatial_scale"),
        (lambda: ops.roi_pool(torch.rand(1, 3, 4, 4), torch.tensor([[1.0, 0, 0, 1, 1]]), 2), "batch indices"),
        (
            lambda: ops.roi_align(torch.rand(1, 3, 4, 4), [torch.zeros(1, 5)], 2),
            r"boxes\[0\] must have shape",
        ),
        (lambda: ops.roi_align(torch.rand(1, 3, 4, 4), "boxes", 2), "boxes must be"),
        (lambda: ops.roi_align(torch.rand(1, 3, 4, 4), torch.zeros(0, 5), 2, 1.0, 1.5), "sampling_ratio"),
        (lambda: ops.roi_pool(torch.rand(1, 3, 4, 4), torch.zeros(0, 5), (2, -1)), "output_size"),
        (
            lambda: ops.roi_align(torch.rand(1, 3, 4, 4), torch.tensor([[0.0, 0, float("nan"), 1, 1]]), 2),
            "boxes contains NaN",
        ),
        (lambda: ops.roi_pool(torch.rand(1, 3, 4, 4), [torch.tensor([[0.0, 0, float("nan"), 1]])], 2), "NaN"),
        (lambda: ops.roi_pool(torch.zeros(1, 3, 4, 4, dtype=torch.long), torch.zeros(0, 5), 2), "float"),
        (lambda: ops.roi_align(torch.rand(1, 3, 4, 4), [torch.zeros(0, 4)] * 2, 2), "one tensor per image"),
    ],
)
def test_roi_bad_input(call, match):
    with pytest.raises((ValueError, TypeError), match=match):
        call()
