"""cvlib.data.shapes: determinism, target invariants, COCO export, bad input."""

import contextlib
import hashlib
import io
import math

import numpy as np
import pytest
import torch
from hypothesis import given
from hypothesis import strategies as st

from cvlib.data import (
    CLASSES,
    ShapesClassification,
    ShapesDataset,
    SingleObjectDataset,
    collate_classification,
    collate_detection,
    collate_segmentation,
    held_out_classification,
    held_out_detection,
    held_out_segmentation,
    to_coco,
)
from cvlib.data.shapes import KEYPOINT_NAMES, KEYPOINT_SIGMAS, NUM_KEYPOINTS


def test_item_types_and_shapes():
    image, target = ShapesDataset(3, image_size=48)[1]
    assert image.dtype == torch.float32 and image.shape == (3, 48, 48)
    assert 0 <= image.min() and image.max() <= 1
    n = len(target["labels"])
    assert target["boxes"].dtype == torch.float32 and target["boxes"].shape == (n, 4)
    assert target["labels"].dtype == torch.int64
    assert target["masks"].dtype == torch.bool and target["masks"].shape == (n, 48, 48)
    assert target["semantic"].dtype == torch.int64 and target["semantic"].shape == (48, 48)
    assert target["image_id"] == 1


def test_same_seed_same_data_any_order():
    a, b = ShapesDataset(10, seed=7), ShapesDataset(10, seed=7)
    b[9], b[3]  # reading other items first changes nothing
    for i in (0, 5, 9, -1):
        ia, ta = a[i]
        ib, tb = b[i]
        assert torch.equal(ia, ib) and torch.equal(ta["masks"], tb["masks"])


def test_different_seeds_differ():
    assert not torch.equal(ShapesDataset(1, seed=0)[0][0], ShapesDataset(1, seed=1)[0][0])


def test_scene_zero_is_pinned():
    """Identical data on every machine: the labels and boxes of scene 0 never change."""
    _, target = ShapesDataset(1, seed=0)[0]
    assert target["labels"].tolist() == [2, 1]
    assert target["boxes"].tolist() == [[0.0, 13.0, 22.0, 35.0], [27.0, 41.0, 40.0, 54.0]]


@given(seed=st.integers(0, 10_000), size=st.sampled_from([16, 33, 64]), max_objects=st.integers(1, 6))
def test_targets_are_consistent(seed, size, max_objects):
    _, t = ShapesDataset(1, image_size=size, max_objects=max_objects, seed=seed)[0]
    assert len(t["labels"]) <= max_objects
    assert ((1 <= t["labels"]) & (t["labels"] <= 3)).all()
    assert t["masks"].sum(0).max() <= 1  # visible parts never overlap
    semantic = (t["masks"] * t["labels"][:, None, None]).sum(0)
    assert torch.equal(semantic, t["semantic"])
    for box, mask in zip(t["boxes"], t["masks"]):
        ys, xs = torch.nonzero(mask, as_tuple=True)
        assert box.tolist() == [xs.min(), ys.min(), xs.max() + 1, ys.max() + 1]


def test_occluded_objects_are_dropped():
    for i in range(50):
        _, t = ShapesDataset(50, max_objects=6, seed=2)[i]
        assert (t["masks"].sum(dim=(1, 2)) >= 12).all()


def test_scenes_may_be_empty():
    empty = [ShapesDataset(40, min_objects=0, max_objects=1)[i][1] for i in range(40)]
    empty = [t for t in empty if len(t["labels"]) == 0]
    assert empty, "with min_objects=0 some scenes have no object"
    assert empty[0]["boxes"].shape == (0, 4) and empty[0]["masks"].shape == (0, 64, 64)
    assert (empty[0]["semantic"] == 0).all()


def test_classes_subset():
    ds = ShapesDataset(20, classes=("triangle",))
    assert ds.num_classes == 1
    assert all((ds[i][1]["labels"] == 1).all() for i in range(20))


def test_single_object_and_classification():
    single = SingleObjectDataset(20, seed=4)
    cls = ShapesClassification(20, seed=4)
    for i in range(20):
        _, t = single[i]
        assert len(t["labels"]) == 1
        assert cls[i][1] == t["labels"][0].item() - 1
    assert {cls[i][1] for i in range(20)} == {0, 1, 2}


def test_collate_functions():
    ds = ShapesDataset(4)
    images, targets = collate_detection([ds[i] for i in range(4)])
    assert isinstance(images, list) and len(images) == 4 and isinstance(targets[0], dict)
    x, y = collate_segmentation([ds[i] for i in range(4)])
    assert x.shape == (4, 3, 64, 64) and y.shape == (4, 64, 64)
    x, y = collate_classification([ShapesClassification(3)[i] for i in range(3)])
    assert x.shape == (3, 3, 64, 64) and y.dtype == torch.int64


def test_to_coco_loads_in_pycocotools():
    from pycocotools.coco import COCO

    ds = ShapesDataset(8, seed=5)
    coco = COCO()
    coco.dataset = to_coco(ds)
    with contextlib.redirect_stdout(io.StringIO()):
        coco.createIndex()
    assert sorted(coco.getImgIds()) == list(range(8))
    assert [c["name"] for c in coco.loadCats(coco.getCatIds())] == list(CLASSES)
    for i in range(8):
        _, t = ds[i]
        anns = coco.loadAnns(coco.getAnnIds(imgIds=i))
        assert [a["category_id"] for a in anns] == t["labels"].tolist()
        for a, mask, box in zip(anns, t["masks"], t["boxes"]):
            assert np.array_equal(coco.annToMask(a), mask.numpy())
            x, y, w, h = a["bbox"]
            assert [x, y, x + w, y + h] == box.tolist()
            assert a["area"] == mask.sum().item()


def test_to_coco_rejects_other_datasets():
    with pytest.raises(TypeError, match="ShapesDataset"):
        to_coco([1, 2, 3])


@pytest.mark.parametrize(
    "kwargs, match",
    [
        ({"num_images": 0}, "num_images"),
        ({"num_images": 2.5}, "num_images"),
        ({"num_images": 1, "image_size": 8}, "image_size"),
        ({"num_images": 1, "classes": ("circle", "hexagon")}, "hexagon"),
        ({"num_images": 1, "classes": ()}, "classes"),
        ({"num_images": 1, "classes": "circle"}, "classes"),
        ({"num_images": 1, "max_objects": 0}, "max_objects"),
        ({"num_images": 1, "min_objects": 4, "max_objects": 3}, "min_objects"),
        ({"num_images": 1, "seed": -1}, "seed"),
        ({"num_images": 1, "seed": "0"}, "seed"),
        ({"num_images": 1, "image_size": 8192}, r"image_size must be an int in \[16, 1024\]"),
        ({"num_images": 1, "elongation": 0.5}, "elongation"),
        ({"num_images": 1, "elongation": 7}, "elongation"),
        ({"num_images": 1, "elongation": float("nan")}, "elongation"),
        ({"num_images": 1, "elongation": "3"}, "elongation"),
        ({"num_images": 1, "elongation": 2, "keypoints": True}, "keypoints"),
    ],
)
def test_bad_arguments(kwargs, match):
    with pytest.raises((ValueError, TypeError), match=match):
        ShapesDataset(**kwargs)


def test_bad_types_and_index():
    with pytest.raises(TypeError, match="image_size"):
        ShapesDataset(1, image_size="64")
    with pytest.raises(IndexError):
        ShapesDataset(2)[2]


def test_held_out_classification_is_what_the_notebooks_built():
    """Notebooks 09 and 11 built their 100 held-out scenes by hand; the function gives exactly
    those tensors."""
    n = 12
    scenes = ShapesClassification(n, seed=1)
    images = torch.stack([scenes[i][0] for i in range(n)])
    labels = torch.tensor([scenes[i][1] for i in range(n)])
    masks = torch.stack([SingleObjectDataset(n, seed=1)[i][1]["masks"][0] for i in range(n)])
    got = held_out_classification(n)
    for ours, theirs in zip(got, (images, labels, masks)):
        assert ours.dtype == theirs.dtype and torch.equal(ours, theirs)
    assert got[0].shape == (n, 3, 64, 64) and got[2].dtype == torch.bool


def test_held_out_detection_is_the_seed_1_scenes():
    images, targets = held_out_detection(5)
    expected_images, expected_targets = collate_detection(list(ShapesDataset(5, seed=1)))
    assert all(torch.equal(a, b) for a, b in zip(images, expected_images))
    for ours, theirs in zip(targets, expected_targets):
        assert ours.keys() == theirs.keys()
        assert all(torch.equal(torch.as_tensor(ours[k]), torch.as_tensor(theirs[k])) for k in ours)



def _scene_digest(**options) -> str:
    digest = hashlib.sha256()
    for seed in (0, 1):
        for image, t in ShapesDataset(30, seed=seed, max_objects=4, min_objects=0, **options):
            for x in (image, t["boxes"], t["labels"], t["masks"], t["semantic"]):
                digest.update(x.numpy().tobytes())
    return digest.hexdigest()


def test_elongation_off_leaves_every_scene_bit_identical():
    """The digest of these scenes as the code drew them before the option existed."""
    before = "914e11cb57727d47e157a017c5646c40e2991f50644d48ffee3624ad31b62f28"
    assert _scene_digest() == before
    assert _scene_digest(elongation=1.0) == before


def test_elongation_stretches_shapes_and_keeps_the_invariants():
    def aspect_ratios(dataset):
        boxes = torch.cat([t["boxes"] for _, t in dataset])
        w, h = (boxes[:, 2:] - boxes[:, :2]).unbind(1)
        return torch.maximum(w / h, h / w)

    plain = aspect_ratios(ShapesDataset(60, seed=3))
    long = aspect_ratios(ShapesDataset(60, seed=3, elongation=3))
    assert plain.max() < 1.6 and long.median() > 1.5 and long.max() > 2.5, (plain.max(), long.median())
    assert (long < 3 * 1.3).all()  # at most 3, plus the rounding to whole pixels and the triangles' shape
    dataset = ShapesDataset(20, seed=4, elongation=3)
    for _, t in dataset:  # the target contract holds: tight boxes around the visible masks
        for box, mask in zip(t["boxes"], t["masks"]):
            ys, xs = mask.nonzero().unbind(1)
            assert box.tolist() == [xs.min(), ys.min(), xs.max() + 1, ys.max() + 1]
    assert torch.equal(dataset[5][0], ShapesDataset(20, seed=4, elongation=3)[5][0])  # deterministic
    assert "elongation=3" in repr(dataset) and "elongation" not in repr(ShapesDataset(1))


def test_held_out_segmentation_is_the_seed_1_scenes():
    images, semantic = held_out_segmentation(4)
    expected_images, expected_semantic = collate_segmentation(list(ShapesDataset(4, seed=1)))
    assert torch.equal(images, expected_images) and torch.equal(semantic, expected_semantic)
    assert semantic.dtype == torch.int64 and semantic.shape == (4, 64, 64)
    stuff_images, stuff_semantic = held_out_segmentation(2, stuff=True)
    assert stuff_semantic.min() > 0  # sky and ground label every background pixel
    with pytest.raises(ValueError, match="seed 1"):
        held_out_segmentation(2, seed=0)



# ---------------------------------------------------------------------------------------------
# Keypoints (keypoints=True)


@pytest.mark.parametrize("kwargs", [{"seed": 0}, {"seed": 1}, {"seed": 3, "image_size": 96, "max_objects": 6,
                                                                "min_objects": 0}])
def test_keypoints_change_nothing_else(kwargs):
    """The option only adds a field: the same seeds give the same images and targets."""
    plain, with_keypoints = ShapesDataset(40, **kwargs), ShapesDataset(40, keypoints=True, **kwargs)
    for i in range(40):
        (image, target), (image_k, target_k) = plain[i], with_keypoints[i]
        assert torch.equal(image, image_k)
        assert set(target_k) - set(target) == {"keypoints"}
        for key, value in target.items():
            assert torch.equal(torch.as_tensor(value), torch.as_tensor(target_k[key])), key
        keypoints = target_k["keypoints"]
        assert keypoints.dtype == torch.float32
        assert keypoints.shape == (len(target["labels"]), NUM_KEYPOINTS, 3)
    assert "keypoints" not in plain[0][1] and "keypoints=True" in repr(with_keypoints)


@pytest.mark.parametrize("name", CLASSES)
def test_keypoints_are_the_corners_of_the_drawn_shape(name):
    """On a large shape: the polygon through a triangle's or square's keypoints is its mask (up to
    the boundary pixels), a circle's keypoints are its centre and the extremes of its mask; the
    order is clockwise on screen from the topmost (or top-left) one."""
    from skimage.draw import polygon2mask

    from cvlib.data.shapes import _shape_keypoints, _shape_mask

    size, cx, cy, r = 400, 190.3, 205.7, 150.0
    for angle in np.linspace(0, 2 * np.pi, 7):
        mask = _shape_mask(name, cx, cy, r, angle, size)
        points = _shape_keypoints(name, cx, cy, r, angle)
        assert len(points) == len(KEYPOINT_NAMES[name])
        if name == "circle":
            ys, xs = np.nonzero(mask)
            assert np.allclose(points[0], (cx, cy))
            assert np.allclose([points[4, 0], points[1, 1], points[2, 0], points[3, 1]],
                               [xs.min(), ys.min(), xs.max() + 1, ys.max() + 1], atol=1.0)
            continue
        # polygon2mask takes (row, col) = (y, x) vertices and tests pixel centres at integers
        inside = polygon2mask((size, size), points[:, ::-1] - 0.5)
        assert (inside != mask).sum() < 0.01 * mask.sum()
        assert points[0, 1] == points[:, 1].min()  # the first keypoint is (one of) the topmost
        x, y = points[:, 0], points[:, 1]
        assert (x * np.roll(y, -1) - np.roll(x, -1) * y).sum() > 0  # clockwise with y pointing down


def test_keypoint_visibility_follows_coco():
    """v = 2: inside the image and not under a later shape; v = 1: its pixel is covered by a later
    shape; v = 0: (0, 0, 0), a slot the class does not have or a point outside the image."""
    ds = ShapesDataset(200, seed=0, keypoints=True)
    seen = {0: 0, 1: 0, 2: 0}
    for i in range(200):
        _, t = ds[i]
        for j, (label, points) in enumerate(zip(t["labels"], t["keypoints"])):
            names = KEYPOINT_NAMES[CLASSES[label - 1]]
            assert (points[len(names):] == 0).all()  # unused slots
            later = t["masks"][j + 1:].any(0)
            for x, y, v in points[: len(names)].tolist():
                seen[int(v)] += 1
                if v == 0:
                    assert x == y == 0
                else:
                    assert 0 <= x < 64 and 0 <= y < 64
                    assert bool(later[int(y), int(x)]) == (v == 1)
    assert min(seen.values()) > 10, seen  # every case occurs


def test_held_out_detection_with_keypoints():
    images, targets = held_out_detection(3, keypoints=True)
    expected = [ShapesDataset(3, seed=1, keypoints=True)[i] for i in range(3)]
    assert all(torch.equal(image, e[0]) for image, e in zip(images, expected))
    assert all(torch.equal(t["keypoints"], e[1]["keypoints"]) for t, e in zip(targets, expected))
    with pytest.raises(TypeError, match="keypoints"):
        ShapesDataset(1, keypoints="yes")


def test_to_coco_exports_keypoints_that_cocoeval_scores():
    """The exported keypoints load in pycocotools; COCOeval's keypoint AP of the true keypoints
    (as detections) is 1, as is evaluate_detections'."""
    from pycocotools.coco import COCO
    from pycocotools.cocoeval import COCOeval

    from cvlib.metrics import evaluate_detections

    ds = ShapesDataset(10, seed=5, keypoints=True)
    coco = COCO()
    coco.dataset = to_coco(ds)
    results = []
    with contextlib.redirect_stdout(io.StringIO()):
        coco.createIndex()
        for i in range(10):
            _, t = ds[i]
            anns = coco.loadAnns(coco.getAnnIds(imgIds=i))
            for a, points in zip(anns, t["keypoints"]):
                assert a["keypoints"] == points.flatten().tolist()
                assert a["num_keypoints"] == int((points[:, 2] > 0).sum())
                results.append({"image_id": i, "category_id": a["category_id"], "score": 1.0,
                                "keypoints": a["keypoints"]})
        evaluator = COCOeval(coco, coco.loadRes(results), "keypoints")
        evaluator.params.kpt_oks_sigmas = KEYPOINT_SIGMAS.double().numpy()
        evaluator.evaluate()
        evaluator.accumulate()
        evaluator.summarize()
    assert evaluator.stats[0] == pytest.approx(1.0)
    assert coco.loadCats(1)[0]["keypoints"] == list(KEYPOINT_NAMES[CLASSES[0]])
    targets = [ds[i][1] for i in range(10)]
    predictions = [{**t, "scores": torch.ones(len(t["labels"]))} for t in targets]
    ours = evaluate_detections(predictions, targets, "keypoints", max_detections=20, sigmas=KEYPOINT_SIGMAS)
    assert ours["map"] == pytest.approx(1.0)
    assert "keypoints" not in to_coco(ShapesDataset(2))["annotations"][0]


def _scenes_digest(datasets) -> str:
    digest = hashlib.sha256()
    for scenes in datasets:
        for i in range(len(scenes)):
            image, target = scenes[i]
            digest.update(image.numpy().tobytes())
            for key in ("boxes", "labels", "masks"):
                digest.update(target[key].numpy().tobytes())
    return digest.hexdigest()


def test_default_scenes_are_unchanged_by_the_radius_range_option():
    """The digest of these scenes was computed before ``radius_range`` existed: the option's
    default leaves every scene bit for bit as it was."""
    datasets = (ShapesDataset(30, seed=0), ShapesDataset(30, seed=1),
                ShapesDataset(10, image_size=128, max_objects=6, seed=3), SingleObjectDataset(10, seed=1))
    assert _scenes_digest(datasets) == "06a4073e6000ca63ce8560913831c8b4c369e2b55f25ae4f299ad483c084445e"


def test_radius_range_gives_tiny_and_large_objects():
    """Log-uniform radii in [3, 24]: objects under 12 x 12 pixels and over 24 x 24 both common
    (the default radii, 6.4 to 14.2 pixels at 64 x 64, give few of either)."""
    def areas(scenes):
        return torch.cat([scenes[i][1]["masks"].sum((1, 2)) for i in range(len(scenes))]).float()

    wide, default = areas(ShapesDataset(100, seed=1, radius_range=(3, 24))), areas(ShapesDataset(100, seed=1))
    assert (wide < 144).float().mean() > 0.3 and (wide >= 576).float().mean() > 0.1
    for low, high in ((0, 144), (576, 4096)):
        share = {name: ((a >= low) & (a < high)).float().mean()
                 for name, a in (("wide", wide), ("default", default))}
        assert share["default"] < share["wide"] / 2, (low, high, share)
    one_size = ShapesDataset(20, seed=0, radius_range=(8, 8), classes=("circle",), max_objects=1)
    sides = torch.cat([one_size[i][1]["boxes"][:, 2:] - one_size[i][1]["boxes"][:, :2] for i in range(20)])
    assert sides.max() <= 17 and (sides == 16).all(1).float().mean() > 0.5  # diameter 16 (cut at the border)
    assert "radius_range=(3.0, 24.0)" in repr(ShapesDataset(1, radius_range=(3, 24)))


@pytest.mark.parametrize("radius_range, match", [
    ((3,), "radius_range"), ("3, 24", "radius_range"), ((0.5, 4), "radius_range"), ((8, 4), "low <= high"),
    ((3, 40), "radius_range"), ((3, math.nan), "radius_range"),
])
def test_bad_radius_range(radius_range, match):
    with pytest.raises((ValueError, TypeError), match=match):
        ShapesDataset(1, radius_range=radius_range)


def test_held_out_detection_with_scene_options():
    images, targets = held_out_detection(3, radius_range=(3, 24), max_objects=4)
    expected_images, expected_targets = collate_detection(list(ShapesDataset(3, seed=1, radius_range=(3, 24),
                                                                             max_objects=4)))
    assert all(torch.equal(a, b) for a, b in zip(images, expected_images))
    assert all(torch.equal(a["boxes"], b["boxes"]) for a, b in zip(targets, expected_targets))
    with pytest.raises(ValueError, match="seed"):
        held_out_detection(3, seed=0)
