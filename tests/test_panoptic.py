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


# ---------------------------------------------------------------------------------------------
# The panoptic merge of a semantic and an instance segmentation (cvlib.models.panoptic)

from skimage.measure import label as connected_regions  # noqa: E402

from cvlib.data import ShapesDataset  # noqa: E402
from cvlib.models.panoptic import panoptic_from_semantic, panoptic_merge, panoptic_target  # noqa: E402


def _reference_merge(detections, semantic, stuff, score_threshold, mask_threshold, overlap_threshold,
                     stuff_area, void):
    """The merge written pixel by pixel with Python lists, as the steps of the lecture read."""
    height, width = semantic.shape
    classes = [[void] * width for _ in range(height)]
    instances = [[0] * width for _ in range(height)]
    order = sorted(range(len(detections["scores"])), key=lambda k: -float(detections["scores"][k]))
    kept = 0
    for k in order:
        if float(detections["scores"][k]) < score_threshold:
            continue
        pixels = [(y, x) for y in range(height) for x in range(width)
                  if float(detections["masks"][k, 0, y, x]) > mask_threshold]
        covered = [(y, x) for y, x in pixels if instances[y][x] > 0]
        if not pixels or len(covered) > overlap_threshold * len(pixels):
            continue
        kept += 1
        for y, x in pixels:
            if instances[y][x] == 0:
                instances[y][x], classes[y][x] = kept, int(detections["labels"][k])
    for c in stuff:
        region = [(y, x) for y in range(height) for x in range(width)
                  if int(semantic[y, x]) == c and instances[y][x] == 0]
        if len(region) >= max(stuff_area, 1):
            for y, x in region:
                classes[y][x] = c
    return torch.tensor(classes), torch.tensor(instances)


@settings(max_examples=25, deadline=None)
@given(seed=st.integers(0, 10_000), overlap=st.sampled_from([0.0, 0.3, 0.5, 1.0]), area=st.integers(0, 40))
def test_panoptic_merge_equals_the_pixel_by_pixel_reference(seed, overlap, area):
    g = torch.Generator().manual_seed(seed)
    n, size = int(torch.randint(0, 6, (1,), generator=g)), 12
    scene = _scene(g, size)
    masks = torch.zeros(n, 1, size, size)
    for k in range(n):  # blobs of probabilities, overlapping one another
        x, y = torch.randint(0, size - 3, (2,), generator=g).tolist()
        w, h = torch.randint(2, 8, (2,), generator=g).tolist()
        masks[k, 0, y:y + h, x:x + w] = torch.rand(h, w, generator=g)[: size - y, : size - x]
    detections = {"boxes": torch.zeros(n, 4), "labels": torch.randint(1, 4, (n,), generator=g),
                  "scores": torch.rand(n, generator=g).round(decimals=1), "masks": masks}
    semantic = _perturb(g, scene)["classes"]
    got = panoptic_merge(detections, semantic, STUFF, 0.3, 0.4, overlap, area)
    classes, instances = _reference_merge(detections, semantic, STUFF, 0.3, 0.4, overlap, area, -1)
    assert torch.equal(got["classes"], classes) and torch.equal(got["instances"], instances)


def test_panoptic_merge_steps_by_hand():
    """Two overlapping detections (the lower-scoring one loses the overlap), a duplicate that is
    dropped, one below the score threshold; sky fills the rest, a tiny ground region is void."""
    semantic = torch.full((6, 8), 10)
    semantic[5, 7] = 11  # one pixel of ground: below stuff_area
    semantic[0, 0] = 2  # a thing pixel of the semantic model that no instance covers
    masks = torch.zeros(4, 1, 6, 8)
    masks[0, 0, 1:4, 1:4] = 0.9  # score 0.8
    masks[1, 0, 2:5, 3:6] = 0.9  # score 0.9: wins the overlap
    masks[2, 0, 2:5, 3:5] = 0.9  # score 0.7: all of it taken, a duplicate
    masks[3, 0, 0:2, 6:8] = 0.9  # score 0.2: below the threshold
    detections = {"labels": torch.tensor([1, 2, 3, 1]), "scores": torch.tensor([0.8, 0.9, 0.7, 0.2]),
                  "masks": masks}
    merged = panoptic_merge(detections, semantic, [10, 11], stuff_area=2)
    first, second = merged["instances"] == 2, merged["instances"] == 1
    assert second.sum() == 9 and (merged["classes"][second] == 2).all()
    assert first.sum() == 9 - 2 and (merged["classes"][first] == 1).all()  # minus its overlap
    assert merged["instances"].max() == 2  # the duplicate and the low score are gone
    assert merged["classes"][5, 7] == -1 and merged["classes"][0, 0] == -1
    assert (merged["classes"][merged["instances"] == 0] == 10).sum() == 48 - 16 - 2


def test_panoptic_merge_of_nothing_is_stuff_and_void():
    semantic = torch.tensor([[10, 10], [2, 11]])
    none = {"labels": torch.zeros(0, dtype=torch.long), "scores": torch.zeros(0),
            "masks": torch.zeros(0, 1, 2, 2)}
    merged = panoptic_merge(none, semantic, [10, 11], stuff_area=1)
    assert merged["classes"].tolist() == [[10, 10], [-1, 11]] and not merged["instances"].any()


@settings(max_examples=20, deadline=None)
@given(seed=st.integers(0, 10_000))
def test_panoptic_from_semantic_counts_connected_regions_as_skimage(seed):
    g = torch.Generator().manual_seed(seed)
    semantic = _perturb(g, _scene(g))["classes"]
    result = panoptic_from_semantic(semantic, THINGS)
    for c in THINGS:
        inside = semantic == c
        regions = connected_regions(inside.numpy(), connectivity=1)
        assert len(result["instances"][inside].unique()) == regions.max()
        # the same partition: each skimage region is one instance id and vice versa
        pairs = {(int(a), int(b)) for a, b in zip(regions[inside.numpy()], result["instances"][inside])}
        assert len(pairs) == regions.max()
    assert not result["instances"][~torch.isin(semantic, torch.tensor(THINGS))].any()


def test_the_true_panoptic_segmentation_of_a_stuff_scene_scores_one():
    scenes = ShapesDataset(4, seed=1, stuff=True)
    truth = [panoptic_target(scenes[i][1]) for i in range(4)]
    result = panoptic_quality(truth, truth, things=(1, 2, 3), stuff=(4, 5))
    assert result["pq"] == 1.0 and set(result["per_class"]) >= {4, 5}
    image, target = scenes[0]
    for k, mask in enumerate(target["masks"], start=1):
        assert (truth[0]["instances"] == k).equal(mask)


def test_semantic_only_merges_touching_objects_of_a_class():
    semantic = torch.full((4, 6), 10)
    semantic[1:3, 0:2] = 1
    semantic[1:3, 2:4] = 1  # a second circle touching the first
    target = {"semantic": semantic, "masks": torch.stack([semantic == 1, semantic == 1])}
    target["masks"][0, :, 2:] = False
    target["masks"][1, :, :2] = False
    merged = panoptic_from_semantic(semantic, [1])
    assert merged["instances"].max() == 1  # one region for two objects
    result = panoptic_quality([merged], [panoptic_target(target)], things=[1], stuff=[10])
    assert result["per_class"][1]["tp"] == 0 and result["per_class"][1]["fn"] == 2


def test_panoptic_bad_input():
    semantic = torch.zeros(4, 4, dtype=torch.long)
    good = {"labels": torch.ones(1, dtype=torch.long), "scores": torch.ones(1),
            "masks": torch.ones(1, 1, 4, 4)}
    with pytest.raises(TypeError, match="detections"):
        panoptic_merge({"labels": good["labels"]}, semantic, [0])
    with pytest.raises(ValueError, match="masks"):
        panoptic_merge({**good, "masks": torch.ones(1, 1, 4, 5)}, semantic, [0])
    with pytest.raises(ValueError, match="semantic"):
        panoptic_merge(good, semantic.float(), [0])
    with pytest.raises(ValueError, match="overlap_threshold"):
        panoptic_merge(good, semantic, [0], overlap_threshold=1.5)
    with pytest.raises(TypeError, match="target"):
        panoptic_target({"semantic": semantic})
    with pytest.raises(TypeError, match="things"):
        panoptic_from_semantic(semantic, "circle")


# ---------------------------------------------------------------------------------------------
# Stuff scenes: ShapesDataset(stuff=True)

import hashlib  # noqa: E402

from cvlib.data import STUFF_CLASSES, SingleObjectDataset, held_out_detection  # noqa: E402


def _digest(dataset) -> str:
    h = hashlib.sha256()
    for i in range(len(dataset)):
        image, t = dataset[i]
        for v in (image, t["boxes"], t["labels"], t["masks"], t["semantic"]):
            h.update(v.numpy().tobytes())
    return h.hexdigest()[:16]


def test_plain_scenes_are_bit_for_bit_those_before_the_stuff_option():
    """Digests printed by the code before ``stuff`` existed (commit 5143553): the option's
    random draws come after all the others and only when it is on."""
    assert _digest(ShapesDataset(6, seed=0)) == "eefab37cf9b1a0cb"
    assert _digest(ShapesDataset(6, seed=1, image_size=48, max_objects=5)) == "fc3e16676d3c30d6"
    assert _digest(SingleObjectDataset(4, seed=3)) == "bffab59e5fcbbf58"
    assert _digest(ShapesDataset(6, seed=0, stuff=False)) == "eefab37cf9b1a0cb"


@settings(max_examples=10, deadline=None)
@given(seed=st.integers(0, 10_000), size=st.sampled_from([16, 40, 64]))
def test_stuff_scenes_have_the_plain_objects_on_sky_and_ground(seed, size):
    (image, target), (plain_image, plain) = ShapesDataset(1, size, seed=seed, stuff=True)[0], \
        ShapesDataset(1, size, seed=seed)[0]
    for key in ("boxes", "labels", "masks"):
        assert torch.equal(target[key], plain[key])
    things = plain["semantic"] > 0
    assert torch.equal(target["semantic"][things], plain["semantic"][things])
    assert torch.equal(image[:, things], plain_image[:, things])  # the objects are painted alike
    sky, ground = (target["semantic"] == 3 + 1 + k for k in range(len(STUFF_CLASSES)))
    assert torch.equal(sky | ground, ~things) and 0 <= image.min() and image.max() <= 1
    rows_of_ground = ground.float().mean(1)
    assert rows_of_ground[-1] >= rows_of_ground[0]  # sky above, ground below


def test_stuff_textures_differ():
    """Sky is smooth, ground has furrows and grain: the mean absolute difference of vertical
    neighbours is larger on the ground than in the sky in every scene."""
    for i in range(10):
        image, target = ShapesDataset(10, seed=2, stuff=True)[i]
        step = (image[:, 1:] - image[:, :-1]).abs().mean(0)
        sky, ground = ((target["semantic"][1:] == c) & (target["semantic"][:-1] == c) for c in (4, 5))
        assert step[ground].mean() > step[sky].mean()


def test_stuff_must_be_a_bool():
    with pytest.raises(TypeError, match="stuff"):
        ShapesDataset(2, stuff=1)
    with pytest.raises(TypeError, match="stuff"):
        held_out_detection(2, stuff="yes")
    images, targets = held_out_detection(3, stuff=True)
    image, target = ShapesDataset(3, seed=1, stuff=True)[2]
    assert torch.equal(images[2], image) and torch.equal(targets[2]["semantic"], target["semantic"])
    assert repr(ShapesDataset(2, stuff=True)).endswith("stuff=True)")
