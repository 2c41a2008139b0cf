"""cvlib.exercises: the reference passes every check, every broken implementation of the two
catalogues is caught and, where the catalogue says so, named; the variants the checker
diagnoses with are built on loops that equal cvlib when their knobs are off; stubs and crashes
get the messages a student should see."""

from functools import partial

import pytest
import torch
from exercise_mistakes import MISTAKES

from cvlib.exercises import NAMES, boxes, check, dense, exercise, explain, losses, roi
from cvlib.exercises.core import Case, Exercise, run

ISSUE_NAMES = (
    "box_iou", "generalized_box_iou", "encode_boxes", "decode_boxes", "nms", "generate_anchors", "roi_pool",
    "roi_align", "bilinear", "max_unpool", "conv_transpose2d_scatter", "average_precision_all_points",
    "average_precision_coco", "mean_iou", "smooth_l1", "sigmoid_focal_loss", "scaled_dot_product_attention",
    "encode_targets", "hungarian_assignment", "mask_loss", "saliency", "cam", "grad_cam", "attention_rollout",
)
KNOB_MISTAKES = [(name, mistake) for name in NAMES for mistake in exercise(name).mistakes]


def test_every_name_of_the_issue_has_a_check():
    assert set(ISSUE_NAMES) <= set(NAMES)


def test_each_check_is_named_after_the_function_it_checks():
    """``NAMES`` come from the factories' names (``box_iou_exercise`` -> ``box_iou``)."""
    assert [exercise(name).name for name in NAMES] == list(NAMES)


@pytest.mark.parametrize("name", NAMES)
def test_reference_passes(name, capsys):
    assert check(name, exercise(name).reference) is True
    line = capsys.readouterr().out.strip()
    assert line.startswith(f"{name}: ") and line.endswith(" cases passed")
    assert int(line.split()[1]) >= 30


def test_catalogues_are_large_enough():
    per_name = {name: sum(1 for n, _, _ in MISTAKES if n == name) for name in NAMES}
    per_name = {name: count + len(exercise(name).mistakes) for name, count in per_name.items()}
    assert min(per_name.values()) >= 3, per_name
    assert len(MISTAKES) + len(KNOB_MISTAKES) >= 70
    assert {name for name, _, _ in MISTAKES} == set(ISSUE_NAMES) | {"confusion_matrix"}


def _message(name, fn) -> str:
    with pytest.raises(AssertionError) as caught:
        check(name, fn)
    return str(caught.value)


@pytest.mark.parametrize(
    "name, named, fn", MISTAKES, ids=[f"{name}-{fn.__name__}" for name, _, fn in MISTAKES]
)
def test_student_mistake_is_caught(name, named, fn):
    message = _message(name, fn)
    assert message.startswith(f"{name}: wrong on ")
    assert "Smallest failing input" in message and "expected:" in message and "got:" in message
    if named:
        assert "Likely mistake:" in message and named in message, message


@pytest.mark.parametrize(
    "name, mistake", KNOB_MISTAKES, ids=[f"{name}-{i}" for i, (name, _) in enumerate(KNOB_MISTAKES)]
)
def test_diagnosed_mistake_is_caught_and_named(name, mistake):
    """Each variant the checker diagnoses with is itself caught and named as itself (so no two
    mistakes are confused on the cases the check runs)."""
    ex = exercise(name)
    message = _message(name, ex.mistakes[mistake])
    assert f"Likely mistake: {mistake}." in message


# The variants are knobs of a loop version; with every knob off it must equal cvlib.
LOOPS = {
    "roi_pool": roi.roi_pool_variant,
    "roi_align": roi.roi_align_variant,
    "bilinear": dense.bilinear_variant,
    "nms": boxes._greedy_nms,
    "decode_boxes": boxes._decode_variant,
    "generate_anchors": boxes._anchors,
    "smooth_l1": losses._smooth_l1_variant,
    "sigmoid_focal_loss": losses._focal_variant,
    "average_precision_all_points": losses._ap_all_points_variant,
    "average_precision_coco": losses._ap_coco_variant,
    "scaled_dot_product_attention": losses._attention_variant,
    "encode_targets": losses._yolo_variant,
    "saliency": explain._saliency_variant,
    "cam": explain._cam_variant,
    "grad_cam": explain._grad_cam_variant,
    "attention_rollout": explain._rollout_variant,
}


@pytest.mark.parametrize("name", sorted(LOOPS))
def test_mistake_variants_without_their_mistake_equal_cvlib(name):
    assert check(name, LOOPS[name]) is True


def test_not_implemented_prints_one_line(capsys):
    def box_iou(boxes1, boxes2):
        raise NotImplementedError()

    assert check("box_iou", box_iou) is False
    assert capsys.readouterr().out == "box_iou: not implemented yet\n"


def test_a_crash_is_reported_with_the_input():
    def nms(boxes, scores, iou_threshold):
        return boxes[100]

    message = _message("nms", nms)
    assert "raised IndexError" in message and "boxes = tensor(" in message


def test_smallest_failing_input_is_shrunk():
    """nms without sorting fails on many random sets of up to 9 boxes; the message shows one of
    at most 3 (two boxes in the wrong order of score, and at most one more)."""
    wrong = exercise("nms").mistakes["boxes are not sorted by score before suppression"]
    message = _message("nms", wrong)
    boxes_line = next(line for line in message.splitlines() if "boxes = " in line)
    assert boxes_line.count("], [") <= 2, message


def test_gradient_mistakes_are_caught():
    def smooth_l1(input, target, beta=1.0):  # right values, no gradient through input
        d = (input.detach() - target).abs()
        return torch.where(d < beta, 0.5 * d**2 / beta, d - 0.5 * beta).mean()

    message = _message("smooth_l1", smooth_l1)
    assert "gradient" in message or "not differentiable" in message


def test_verdict_is_reproducible():
    wrong = exercise("box_iou").mistakes
    fn = next(iter(wrong.values()))
    assert _message("box_iou", fn) == _message("box_iou", fn)


def test_unknown_name_and_bad_fn():
    with pytest.raises(ValueError, match="name must be one of"):
        check("boxiou", lambda a, b: a)
    with pytest.raises(TypeError, match="fn must be a function"):
        check("box_iou", 3)


def test_custom_exercise_uses_its_comparison():
    """An exercise with its own comparison (as hungarian_assignment, where ties allow several
    optimal answers) accepts any answer that comparison accepts."""
    ex = Exercise("double", lambda x: 2 * x, lambda: [Case((torch.ones(2),), note="ones")],
                  lambda g, i: Case((torch.rand(3, generator=g),)), 5,
                  compare=lambda expected, actual, case: None if actual.sum() == expected.sum() else "sum")
    assert run(ex, lambda x: (2 * x).flip(0)) is True
    with pytest.raises(AssertionError):
        run(ex, partial(torch.mul, other=3))
