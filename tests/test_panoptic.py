"""cvlib.metrics.panoptic_quality against an independent implementation of the reference
definition (Kirillov et al. 2019, panopticapi's pq_compute: label-pair counting in Python
dicts), on random panoptic segmentations with void pixels, stuff and things."""

from collections import Counter

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from cvlib.metrics import panoptic_quality

THINGS, STUFF, VOID = (1, 2, 3), (10, 11), -1


def _reference(predictions, targets, things, stuff, void):
    """panopticapi's algorithm: segments as (class, instance) keys, intersections counted per
    pixel pair in a Counter, matches at IoU > 0.5, unmatched predictions mostly on void ignored."""
    stats = {}  # class -> [tp, fp, fn, iou]
    for p, t in zip(predictions, targets):
        def key(classes, instances, y, x):
            c = int(classes[y, x])
            return (c, 0 if c in stuff else int(instances[y, x]))

        height, width = t["classes"].shape
        gt_area, pred_area, pairs = Counter(), Counter(), Counter()
        for y in range(height):
            for x in range(width):
                g = key(t["classes"], t["instances"], y, x)
                q = key(p["classes"], p["instances"], y, x)
                gt_area[g] += 1
                pred_area[q] += 1
                pairs[g, q] += 1
        gt_matched, pred_matched = set(), set()
        for (g, q), inter in pairs.items():
            if g[0] == void or q[0] == void or g[0] != q[0]:
                continue
            union = pred_area[q] + gt_area[g] - inter - pairs.get(((void, 0), q), 0) - sum(
                n for (gg, qq), n in pairs.items() if qq == q and gg[0] == void and gg != (void, 0))
            if inter / union > 0.5:
                stats.setdefault(g[0], [0, 0, 0, 0.0])
                stats[g[0]][0] += 1
                stats[g[0]][3] += inter / union
                gt_matched.add(g)
                pred_matched.add(q)
        for g in gt_area:
            if g[0] != void and g not in gt_matched:
                stats.setdefault(g[0], [0, 0, 0, 0.0])[2] += 1
        for q in pred_area:
            if q[0] == void or q in pred_matched:
                continue
            on_void = sum(n for (g, qq), n in pairs.items() if qq == q and g[0] == void)
            if on_void / pred_area[q] > 0.5:
                continue
            stats.setdefault(q[0], [0, 0, 0, 0.0])[1] += 1
    per_class = {}
    for c, (tp, fp, fn, iou) in stats.items():
        if tp + fp + fn:
            denominator = tp + fp / 2 + fn / 2
            per_class[c] = (iou / denominator, iou / tp if tp else 0.0, tp / denominator)
    mean = lambda cs: [sum(per_class[c][k] for c in cs) / len(cs) for k in range(3)] if cs else [-1.0] * 3
    return per_class, mean(list(per_class)), mean([c for c in per_class if c in things]), \
        mean([c for c in per_class if c in stuff])


def _scene(g: torch.Generator, size: int = 16) -> dict:
    """Stuff everywhere (two classes in bands), then things painted as rectangles, some void."""
    classes = torch.where(torch.arange(size)[:, None] < int(torch.randint(3, 13, (1,), generator=g)), 10, 11)
    classes = classes.expand(size, size).clone()
    instances = torch.zeros(size, size, dtype=torch.long)
    for k in range(int(torch.randint(0, 5, (1,), generator=g))):
        x, y = torch.randint(0, size - 2, (2,), generator=g).tolist()
        w, h = torch.randint(2, 8, (2,), generator=g).tolist()
        classes[y:y + h, x:x + w] = int(torch.randint(1, 4, (1,), generator=g))
        instances[y:y + h, x:x + w] = k + 1
    return {"classes": classes, "instances": instances}


def _perturb(g: torch.Generator, scene: dict) -> dict:
    """A prediction: the scene shifted by a pixel or two, some pixels relabelled."""
    dy, dx = torch.randint(-2, 3, (2,), generator=g).tolist()
    classes = scene["classes"].roll((dy, dx), (0, 1)).clone()
    instances = scene["instances"].roll((dy, dx), (0, 1)).clone()
    noise = torch.rand(classes.shape, generator=g) < 0.05
    classes[noise] = torch.randint(1, 4, (int(noise.sum()),), generator=g)
    return {"classes": classes, "instances": instances}


@settings(max_examples=20)
@given(seed=st.integers(0, 10_000))
def test_panoptic_quality_equals_the_reference(seed):
    g = torch.Generator().manual_seed(seed)
    targets = [_scene(g) for _ in range(3)]
    predictions = [_perturb(g, t) for t in targets]
    for t in targets:  # void: unlabelled pixels
        t["classes"][torch.rand(t["classes"].shape, generator=g) < 0.1] = VOID
    ours = panoptic_quality(predictions, targets, THINGS, STUFF, VOID)
    per_class, everything, things, stuff = _reference(predictions, targets, THINGS, STUFF, VOID)
    assert set(ours["per_class"]) == set(per_class)
    for c, (pq, sq, rq) in per_class.items():
        got = ours["per_class"][c]
        assert (got["pq"], got["sq"], got["rq"]) == pytest.approx((pq, sq, rq), abs=1e-9), c
        assert got["pq"] == pytest.approx(got["sq"] * got["rq"])
    for name, expected in (("all", everything), ("things", things), ("stuff", stuff)):
        got = ours if name == "all" else ours[name]
        assert [got["pq"], got["sq"], got["rq"]] == pytest.approx(expected, abs=1e-9), name


def test_perfect_and_empty_predictions():
    g = torch.Generator().manual_seed(0)
    scenes = [_scene(g) for _ in range(2)]
    perfect = panoptic_quality(scenes, scenes, THINGS, STUFF)
    assert perfect["pq"] == perfect["sq"] == perfect["rq"] == 1.0
    nothing = [{"classes": torch.full_like(s["classes"], VOID), "instances": s["instances"]} for s in scenes]
    empty = panoptic_quality(nothing, scenes, THINGS, STUFF)
    assert empty["pq"] == 0.0 and all(row["fp"] == 0 for row in empty["per_class"].values())


def test_a_prediction_on_void_is_not_a_false_positive():
    classes = torch.full((4, 4), 10)
    classes[:, 2:] = VOID
    target = {"classes": classes, "instances": torch.zeros(4, 4, dtype=torch.long)}
    guess = torch.full((4, 4), 10)
    guess[:, 3] = 1  # a thing, entirely on void
    prediction = {"classes": guess, "instances": torch.ones(4, 4, dtype=torch.long)}
    result = panoptic_quality([prediction], [target], THINGS, STUFF)
    assert result["per_class"] == {10: {"pq": 1.0, "sq": 1.0, "rq": 1.0, "tp": 1, "fp": 0, "fn": 0}}


def test_bad_input():
    scene = {"classes": torch.zeros(4, 4, dtype=torch.long), "instances": torch.zeros(4, 4, dtype=torch.long)}
    with pytest.raises(ValueError, match="disjoint"):
        panoptic_quality([scene], [scene], [1], [1])
    with pytest.raises(TypeError, match="instances"):
        panoptic_quality([{"classes": scene["classes"]}], [scene], [1], [2])
    with pytest.raises(ValueError, match="classes"):
        panoptic_quality([{**scene, "classes": torch.zeros(4, 5, dtype=torch.long)}], [scene], [1], [2])
