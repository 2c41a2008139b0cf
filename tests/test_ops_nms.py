"""cvlib.ops.nms against torchvision.ops.nms / batched_nms: random boxes (some outside the image,
zero-area, duplicated), equal scores, thresholds 0 and 1, float64, blocks, both paths (all
pairs up to BLOCK boxes, blocks above), bad input."""

import pytest
import torch
import torchvision
from hypothesis import given
from hypothesis import strategies as st
from test_ops_boxes import box_sets
from torchvision.ops.boxes import _batched_nms_vanilla

from cvlib import ops
from cvlib.ops.boxes import _check_boxes
from cvlib.ops.nms import BLOCK, _by_score, _check_scores, _greedy, _order_by_score

THRESHOLDS = [0.0, 0.1, 0.3, 0.5, 0.7, 1.0]


def _scores(n, dtype, seed, ties=False):
    scores = torch.rand(n, generator=torch.Generator().manual_seed(seed), dtype=dtype)
    return (scores * 4).round() / 4 if ties else scores  # ties: many equal scores


@given(box_sets(), st.sampled_from(THRESHOLDS), st.booleans())
def test_nms_like_torchvision(boxes, iou_threshold, ties):
    """Equal scores keep their index order (a stable sort), as torchvision's CPU kernel does."""
    scores = _scores(len(boxes), boxes.dtype, len(boxes), ties)
    keep = ops.nms(boxes, scores, iou_threshold)
    assert keep.dtype == torch.int64
    assert torch.equal(keep, torchvision.ops.nms(boxes, scores, iou_threshold))


@given(box_sets(), st.sampled_from(THRESHOLDS), st.booleans())
def test_nms_steps_keep_what_nms_keeps(boxes, iou_threshold, ties):
    """Step by step: the kept boxes are nms's, in order; every box is kept or suppressed once,
    each suppressed box by a kept box that overlaps it by more than the threshold."""
    scores = _scores(len(boxes), boxes.dtype, len(boxes), ties)
    steps = ops.nms_steps(boxes, scores, iou_threshold)
    kept = torch.tensor([k for k, _ in steps], dtype=torch.int64)
    assert torch.equal(kept, torchvision.ops.nms(boxes, scores, iou_threshold))
    removed = torch.cat([torch.zeros(0, dtype=torch.int64)] + [s for _, s in steps])
    assert sorted(kept.tolist() + removed.tolist()) == list(range(len(boxes)))
    for k, suppressed in steps:
        if len(suppressed):
            # compared in double precision, as nms does (a float32 IoU of 0.1 is above the double 0.1)
            assert (ops.box_iou(boxes[k][None], boxes[suppressed]).double() > iou_threshold).all()


@given(box_sets(), st.sampled_from(THRESHOLDS), st.integers(1, 4), st.booleans())
def test_batched_nms_like_torchvision(boxes, iou_threshold, num_classes, ties):
    scores = _scores(len(boxes), boxes.dtype, len(boxes) + 1, ties)
    idxs = torch.randint(0, num_classes, (len(boxes),), generator=torch.Generator().manual_seed(1))
    keep = ops.batched_nms(boxes, scores, idxs, iou_threshold)
    # torchvision's NMS per category, the definition (its offset trick fails for negative
    # coordinates); it orders equal scores with an unstable sort, so compare the kept sets
    reference = _batched_nms_vanilla(boxes, scores, idxs, iou_threshold)
    in_index_order = keep.sort().values
    assert torch.equal(in_index_order, reference.sort().values)
    by_score = torch.sort(scores[in_index_order], descending=True, stable=True).indices
    assert torch.equal(keep, in_index_order[by_score])  # equal scores in index order
    inside = boxes - boxes.min().clamp(max=0) if len(boxes) else boxes  # coordinates >= 0
    assert torch.equal(
        ops.batched_nms(inside, scores, idxs, iou_threshold),
        torchvision.ops.batched_nms(inside, scores, idxs, iou_threshold),
    )


@given(box_sets(BLOCK - 2, BLOCK + 2), st.sampled_from(THRESHOLDS), st.integers(1, 4), st.booleans())
def test_both_sides_of_the_all_pairs_threshold(boxes, iou_threshold, num_classes, ties):
    """Up to BLOCK boxes nms and batched_nms take the all-pairs path, above it the blocks."""
    scores = _scores(len(boxes), boxes.dtype, len(boxes), ties)
    keep = ops.nms(boxes, scores, iou_threshold)
    assert torch.equal(keep, torchvision.ops.nms(boxes, scores, iou_threshold))
    idxs = torch.randint(0, num_classes, (len(boxes),), generator=torch.Generator().manual_seed(2))
    inside = boxes - boxes.min().clamp(max=0)  # torchvision's offset needs coordinates >= 0
    assert torch.equal(
        ops.batched_nms(inside, scores, idxs, iou_threshold),
        torchvision.ops.batched_nms(inside, scores, idxs, iou_threshold),
    )


@given(box_sets(), st.sampled_from(THRESHOLDS), st.booleans())
def test_block_path_on_few_boxes(boxes, iou_threshold, ties):
    """The block path alone, on the small sets that nms sends to the all-pairs path."""
    scores = _scores(len(boxes), boxes.dtype, len(boxes), ties)
    keep = _greedy(boxes, _by_score(scores), iou_threshold)
    assert torch.equal(keep, torchvision.ops.nms(boxes, scores, iou_threshold))


@given(st.integers(0, 2**31 - 1), st.integers(0, 50),
       st.sampled_from([torch.float32, torch.float64, torch.float16, torch.bfloat16, torch.int8, torch.uint8,
                        torch.int64]))
def test_numpy_sort_is_the_stable_descending_sort(seed, n, dtype):
    """The small path sorts scores in NumPy (torch where NumPy cannot view them: bfloat16):
    the same order as torch's stable descending sort, ties (few distinct values), -0.0 and
    int8's -128 included."""
    g = torch.Generator().manual_seed(seed)
    scores = (torch.randint(-128, 128, (n,), generator=g) // 32).to(dtype)  # 8 values: ties
    if not dtype.is_signed:
        scores = scores.abs()
    if dtype == torch.int8 and n:
        scores[0] = -128
    if dtype.is_floating_point and n > 2:
        scores[1], scores[2] = -0.0, 0.0  # equal to each other: index order
    assert torch.equal(torch.from_numpy(_order_by_score(scores)), _by_score(scores))


@pytest.mark.parametrize("dtype", [torch.float32, torch.float16, torch.bfloat16])
@pytest.mark.parametrize(
    "change, match",
    [(None, None), ((0, 2, float("nan")), "boxes contains NaN"), ((1, 0, float("inf")), "boxes contains inf"),
     ((2, 2, -5.0), "x1 <= x2 and y1 <= y2")],
)
def test_box_checks_numpy_and_torch_agree(dtype, change, match):
    """_check_boxes accepts valid boxes with NumPy tests and otherwise runs the torch tests,
    which raise; bfloat16 (no NumPy view) always takes the torch tests: same answers, same
    messages. _check_scores likewise for NaN scores."""
    boxes = BOXES.to(dtype, copy=True)
    if change is not None:
        boxes[change[:2]] = change[2]
    if match is None:
        _check_boxes(boxes)
        _check_scores(torch.rand(3).to(dtype), boxes)
    else:
        with pytest.raises(ValueError, match=match):
            _check_boxes(boxes)
    with pytest.raises(ValueError, match="scores contains NaN"):
        _check_scores(torch.tensor([0.1, float("nan"), 0.3]).to(dtype), BOXES)


def test_batched_nms_negative_coordinates():
    """With an offset of max + 1, the category-1 box lands on the category-0 box 0."""
    boxes = torch.tensor([[-50.0, -50, -40, -40], [0, 0, 10, 10], [-61, -61, -51, -51]])
    scores, idxs = torch.tensor([0.8, 0.7, 0.9]), torch.tensor([0, 0, 1])
    assert ops.batched_nms(boxes, scores, idxs, 0.5).tolist() == [2, 0, 1]
    assert torchvision.ops.batched_nms(boxes, scores, idxs, 0.5).tolist() == [2, 1]


@pytest.mark.parametrize("threshold, width", [(0.3, 3.0), (0.1, 1.0), (0.7, 7.0), (0.5, 5.0)])
def test_threshold_compared_in_double(threshold, width):
    """IoU = width / 10 exactly in float32; torchvision compares it with the double threshold:
    float32(0.3) > 0.3 suppresses, float32(0.7) < 0.7 does not."""
    boxes = torch.tensor([[0.0, 0, 10, 1], [0, 0, width, 1]])
    scores = torch.tensor([1.0, 0.5])
    for dtype in (torch.float32, torch.float64):
        b, s = boxes.to(dtype), scores.to(dtype)
        assert torch.equal(ops.nms(b, s, threshold), torchvision.ops.nms(b, s, threshold))


def test_chains_and_blocks():
    """Boxes sliding by one pixel (each suppresses the next few: long chains inside a block)
    and many random boxes (suppression across block borders)."""
    sliding = torch.arange(700.0)[:, None] + torch.tensor([0.0, 0, 10, 10])
    sliding[:, 1::2] = 0  # y1 = 0, y2 = 10
    g = torch.Generator().manual_seed(0)
    xy = torch.rand(3000, 2, generator=g, dtype=torch.float64) * 300
    scattered = torch.cat([xy, xy + 20 + torch.rand(3000, 2, generator=g, dtype=torch.float64) * 30], 1)
    for boxes, scores in [
        (sliding, -torch.arange(700.0)),
        (sliding, torch.rand(700, generator=g)),
        (scattered, torch.rand(3000, generator=g, dtype=torch.float64)),
    ]:
        assert torch.equal(ops.nms(boxes, scores, 0.5), torchvision.ops.nms(boxes, scores, 0.5))
        idxs = torch.randint(0, 7, (len(boxes),), generator=g)
        assert torch.equal(
            ops.batched_nms(boxes, scores, idxs, 0.5), torchvision.ops.batched_nms(boxes, scores, idxs, 0.5)
        )


def test_a_block_with_one_surviving_box_still_suppresses_later_blocks():
    """Block 1 has one box left after block 0's suppression; it must still suppress its
    duplicate in block 2 (a block of one row is not skipped)."""
    block = BLOCK
    a, c = torch.tensor([0.0, 0, 10, 10]), torch.tensor([100.0, 100, 110, 110])
    boxes = torch.stack([a] * (2 * block - 1) + [c, c])  # block 0: a; block 1: a..., c; block 2: c
    scores = -torch.arange(len(boxes), dtype=torch.float32)  # in this order
    keep = ops.nms(boxes, scores, 0.5)
    assert torch.equal(keep, torchvision.ops.nms(boxes, scores, 0.5))
    assert keep.tolist() == [0, 2 * block - 1]


def test_non_contiguous_input():
    boxes = torch.rand(4, 10).cumsum(0).t()  # [10, 4] transposed view: x1 <= y1 <= x2 <= y2
    scores = torch.rand(20)[::2]
    assert not boxes.is_contiguous() and not scores.is_contiguous()
    assert torch.equal(ops.nms(boxes, scores, 0.3), torchvision.ops.nms(boxes, scores, 0.3))


def test_empty_and_single():
    empty = torch.zeros(0, 4)
    for keep in (
        ops.nms(empty, torch.zeros(0), 0.5),
        ops.batched_nms(empty, torch.zeros(0), torch.zeros(0, dtype=torch.int64), 0.5),
    ):
        assert keep.dtype == torch.int64 and keep.shape == (0,)
    assert ops.nms(torch.tensor([[0.0, 0, 1, 1]]), torch.tensor([0.3]), 0.5).tolist() == [0]
    zero_area = torch.tensor([[1.0, 1, 1, 1], [1, 1, 1, 1]])  # IoU 0 / 0: never suppressed
    assert ops.nms(zero_area, torch.tensor([0.5, 0.9]), 0.0).tolist() == [1, 0]


BOXES = torch.tensor([[0.0, 0, 1, 1], [0, 0, 2, 2], [1, 1, 3, 3]])


@pytest.mark.parametrize(
    "call, match",
    [
        (lambda: ops.nms(BOXES, torch.rand(2), 0.5), r"scores must have shape \[N\] = \[3\]"),
        (lambda: ops.nms(BOXES, [0.1, 0.2, 0.3], 0.5), "scores must be a torch.Tensor"),
        (lambda: ops.nms(BOXES, torch.tensor([0.1, float("nan"), 0.3]), 0.5), "scores contains NaN"),
        (lambda: ops.nms(BOXES, torch.rand(3), None), "iou_threshold must be a number"),
        (lambda: ops.nms(BOXES, torch.rand(3), -0.1), "iou_threshold must be a number >= 0"),
        (lambda: ops.nms(BOXES, torch.rand(3), float("nan")), "iou_threshold"),
        (lambda: ops.nms(BOXES.flip(1), torch.rand(3), 0.5), "x1 <= x2"),
        (lambda: ops.nms(BOXES[:, :3], torch.rand(3), 0.5), r"boxes must have shape \[N, 4\]"),
        (lambda: ops.batched_nms(BOXES, torch.rand(3), torch.zeros(2), 0.5), r"idxs must have shape"),
        # torchvision: "nms_kernel" not implemented for 'BFloat16'
        (lambda: ops.nms(BOXES.bfloat16(), torch.rand(3), 0.5), "boxes must be float16, float32 or float64"),
        (lambda: ops.batched_nms(BOXES.bfloat16(), torch.rand(3), torch.zeros(3, dtype=torch.int64), 0.5),
         "boxes must be float16, float32 or float64"),
    ],
)
def test_bad_input(call, match):
    with pytest.raises((ValueError, TypeError), match=match):
        call()
