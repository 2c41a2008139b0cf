"""cvlib.metrics.evaluate_detections against pycocotools' COCOeval on the same detections."""

from __future__ import annotations

import contextlib
import io
import subprocess
import sys

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from pycocotools import mask as mask_utils
from pycocotools.coco import COCO
from pycocotools.cocoeval import COCOeval

from cvlib.data import ShapesDataset, to_coco
from cvlib.metrics import evaluate_detections, mask_iou

TOL = 1e-6


def _rle(mask: torch.Tensor) -> dict:
    rle = mask_utils.encode(np.asfortranarray(mask.numpy().astype(np.uint8)))
    rle["counts"] = rle["counts"].decode("ascii")
    return rle


def _xywh(box: torch.Tensor) -> list[float]:
    x1, y1, x2, y2 = box.tolist()
    return [x1, y1, x2 - x1, y2 - y1]


def targets_to_coco(targets: list[dict], categories: list[int], size: int = 64) -> dict:
    """COCO ground truth of torchvision-style targets: image ``i`` gets id ``i``."""
    annotations = []
    for index, target in enumerate(targets):
        masks = target.get("masks", [None] * len(target["labels"]))
        for box, label, mask in zip(target["boxes"], target["labels"], masks, strict=True):
            x, y, w, h = _xywh(box)
            annotations.append(
                {
                    "id": len(annotations) + 1,
                    "image_id": index,
                    "category_id": int(label),
                    "bbox": [x, y, w, h],
                    "area": w * h if mask is None else float(mask.sum()),
                    "iscrowd": 0,
                    **({} if mask is None else {"segmentation": _rle(mask)}),
                }
            )
    return {
        "images": [{"id": i, "width": size, "height": size} for i in range(len(targets))],
        "annotations": annotations,
        "categories": [{"id": c, "name": str(c)} for c in categories],
    }


def predictions_to_results(predictions: list[dict], iou_type: str) -> list[dict]:
    """COCO results (the input of ``COCO.loadRes``) of torchvision-style predictions."""
    results = []
    for index, prediction in enumerate(predictions):
        for k, (score, label) in enumerate(
            zip(prediction["scores"], prediction["labels"], strict=True)
        ):
            result = {"image_id": index, "category_id": int(label), "score": float(score)}
            if iou_type == "bbox":
                result["bbox"] = _xywh(prediction["boxes"][k])
            else:
                result["segmentation"] = _rle(
                    prediction["masks"][k].reshape(prediction["masks"].shape[-2:]) > 0.5
                )
            results.append(result)
    return results


# object sizes that split 64 x 64 scenes (COCO's own put every object in "small")
AREAS = {"small": (0.0, 16.0**2), "medium": (16.0**2, 32.0**2), "large": (32.0**2, 1e5**2)}


def coco_reference(predictions, targets, iou_type="bbox", gt=None) -> COCOeval:
    """Run COCOeval (silently) on the detections with the area ranges ``AREAS``; ``gt``
    defaults to ``targets_to_coco``."""
    if gt is None:
        labels = torch.cat([t["labels"] for t in targets] + [p["labels"] for p in predictions])
        gt = targets_to_coco(targets, sorted(set(labels.tolist())))
    with contextlib.redirect_stdout(io.StringIO()):
        coco_gt = COCO()
        coco_gt.dataset = gt
        coco_gt.createIndex()
        results = predictions_to_results(predictions, iou_type)
        if results:
            coco_dt = coco_gt.loadRes(results)
        else:  # loadRes cannot load an empty list
            coco_dt = COCO()
            coco_dt.dataset = {**gt, "annotations": []}
            coco_dt.createIndex()
        evaluator = COCOeval(coco_gt, coco_dt, iou_type)
        evaluator.params.areaRng = [[0.0, 1e5**2], *(list(r) for r in AREAS.values())]
        evaluator.params.areaRngLbl = ["all", *AREAS]
        evaluator.evaluate()
        evaluator.accumulate()
        evaluator.summarize()
    return evaluator


def assert_matches_coco(predictions, targets, iou_type="bbox", gt=None) -> dict:
    """evaluate_detections == COCOeval: mAP, AP50, AP75, AP by object size (``AREAS``),
    per-class AP, precision, recall."""
    ours = evaluate_detections(predictions, targets, iou_type, area_ranges=AREAS)
    ref = coco_reference(predictions, targets, iou_type, gt)
    stats = (("map", 0), ("map_50", 1), ("map_75", 2), ("map_small", 3), ("map_medium", 4), ("map_large", 5))
    for key, stat in stats:
        assert ours[key] == pytest.approx(ref.stats[stat], abs=TOL), key
    ref_precision = ref.eval["precision"][:, :, :, 0, -1]  # [T, R, K], area "all", maxDets 100
    ref_recall = ref.eval["recall"][:, :, 0, -1]  # [T, K]
    ref_classes = ref.params.catIds
    per_class = {
        c: ref_precision[:, :, k].mean()
        for k, c in enumerate(ref_classes)
        if (ref_precision[:, :, k] > -1).any()
    }
    assert ours["per_class"].keys() == per_class.keys()
    for c, ap in per_class.items():
        assert ours["per_class"][c] == pytest.approx(ap, abs=TOL), c
    columns = [ref_classes.index(c) for c in ours["classes"].tolist()]
    np.testing.assert_allclose(ours["precision"].numpy(), ref_precision[:, :, columns], atol=TOL)
    np.testing.assert_allclose(ours["recall"].numpy(), ref_recall[:, columns], atol=TOL)
    return ours


def _random_boxes(g: torch.Generator, n: int, size: float = 64.0) -> torch.Tensor:
    xy = torch.rand(n, 2, generator=g) * size * 0.8
    wh = 2 + torch.rand(n, 2, generator=g) * size * 0.4
    return torch.cat([xy, xy + wh], 1)


def _jitter(g: torch.Generator, boxes: torch.Tensor, amount: float) -> torch.Tensor:
    wh = (boxes[:, 2:] - boxes[:, :2]).repeat(1, 2)
    jittered = boxes + amount * wh * torch.randn(boxes.shape, generator=g)
    x1y1 = torch.minimum(jittered[:, :2], jittered[:, 2:])
    return torch.cat([x1y1, torch.maximum(jittered[:, 2:], x1y1 + 0.5)], 1)


def _detect(g: torch.Generator, target: dict, num_classes: int) -> dict:
    """Fake detector output: jittered (sometimes duplicated, relabelled) objects + noise boxes."""
    found = torch.rand(len(target["labels"]), generator=g) < 0.85
    boxes = target["boxes"][found].repeat(int(torch.randint(1, 3, (1,), generator=g)), 1)
    labels = target["labels"][found].repeat(len(boxes) // max(int(found.sum()), 1))
    relabel = torch.rand(len(labels), generator=g) < 0.1
    labels = torch.where(
        relabel, torch.randint(1, num_classes + 1, labels.shape, generator=g), labels
    )
    noise = int(torch.randint(0, 4, (1,), generator=g))
    boxes = torch.cat([_jitter(g, boxes, 0.08), _random_boxes(g, noise)])
    labels = torch.cat([labels, torch.randint(1, num_classes + 1, (noise,), generator=g)])
    scores = torch.rand(len(labels), generator=g)
    return {"boxes": boxes, "scores": scores, "labels": labels}


def _random_targets(g: torch.Generator, num_images: int, num_classes: int) -> list[dict]:
    counts = torch.randint(0, 6, (num_images,), generator=g).tolist()
    return [
        {
            "boxes": _random_boxes(g, n),
            "labels": torch.randint(1, num_classes + 1, (n,), generator=g),
        }
        for n in counts
    ]


@pytest.mark.parametrize("seed", range(8))
def test_random_detections_match_cocoeval(seed):
    g = torch.Generator().manual_seed(seed)
    targets = _random_targets(g, num_images=12, num_classes=4)
    predictions = [_detect(g, t, num_classes=4) for t in targets]
    if seed % 2:  # ties in score, across and within images
        for p in predictions:
            p["scores"] = (p["scores"] * 4).round() / 4
    assert_matches_coco(predictions, targets)


def test_many_tied_detections_keep_their_order_as_cocoeval():
    """80 detections of one class with one score: the order of ties decides which duplicate
    matches, and COCOeval keeps the given order (a stable sort); so must we."""
    g = torch.Generator().manual_seed(0)
    target = {"boxes": _random_boxes(g, 40), "labels": torch.ones(40, dtype=torch.long)}
    boxes = _jitter(g, target["boxes"].repeat(2, 1), 0.15)
    prediction = {"boxes": boxes, "scores": torch.full((80,), 0.5),
                  "labels": torch.ones(80, dtype=torch.long)}
    assert_matches_coco([prediction], [target])


def test_shapes_dataset_boxes_match_cocoeval():
    dataset = ShapesDataset(30, image_size=64, max_objects=4, seed=3, min_objects=0)
    targets = [dataset[i][1] for i in range(len(dataset))]
    g = torch.Generator().manual_seed(0)
    predictions = [_detect(g, t, dataset.num_classes) for t in targets]
    result = assert_matches_coco(predictions, targets, gt=to_coco(dataset))
    assert 0 < result["map"] < result["map_50"] <= 1


def _detect_masks(g: torch.Generator, target: dict) -> dict:
    """Fake instance-segmentation output: shifted object masks as float probabilities."""
    shift = tuple(torch.randint(-2, 3, (2,), generator=g).tolist())
    masks = target["masks"].float().roll(shift, dims=(1, 2))
    probabilities = (0.3 + 0.7 * masks) * torch.rand(masks.shape, generator=g).clamp(min=0.75)
    return {
        "boxes": target["boxes"],
        "masks": probabilities[:, None],  # [N, 1, H, W]
        "scores": torch.rand(len(masks), generator=g),
        "labels": target["labels"],
    }


@pytest.mark.parametrize("as_bool", [False, True], ids=["float [N,1,H,W]", "bool [N,H,W]"])
def test_shapes_dataset_masks_match_cocoeval_segm(as_bool):
    dataset = ShapesDataset(16, image_size=48, max_objects=4, seed=5, min_objects=0)
    targets = [dataset[i][1] for i in range(len(dataset))]
    g = torch.Generator().manual_seed(1)
    predictions = [_detect_masks(g, t) for t in targets]
    if as_bool:
        predictions = [{**p, "masks": p["masks"][:, 0] > 0.5} for p in predictions]
    result = assert_matches_coco(predictions, targets, "segm", gt=to_coco(dataset))
    assert 0 < result["map"] < 1


def _target(boxes, labels) -> dict:
    return {
        "boxes": torch.tensor(boxes, dtype=torch.float32).reshape(-1, 4),
        "labels": torch.tensor(labels, dtype=torch.int64),
    }


def _prediction(boxes, labels, scores) -> dict:
    return {**_target(boxes, labels), "scores": torch.tensor(scores, dtype=torch.float32)}


TARGETS = [
    _target([[0, 0, 10, 10], [20, 20, 40, 30]], [1, 2]),
    _target([], []),  # an image with no objects
    _target([[5, 5, 25, 25], [6, 5, 26, 25], [30, 30, 50, 60]], [1, 1, 1]),  # crowded
]


def test_no_detections_at_all():
    predictions = [_prediction([], [], []) for _ in TARGETS]
    result = assert_matches_coco(predictions, TARGETS)
    assert result["map"] == 0 and result["per_class"] == {1: 0.0, 2: 0.0}


def test_class_without_ground_truth_is_left_out():
    predictions = [
        _prediction([[0, 0, 10, 10], [0, 0, 10, 10]], [1, 3], [0.9, 0.8]),  # class 3: no GT
        _prediction([[1, 1, 9, 9]], [3], [0.95]),  # false positive on an empty image
        _prediction([], [], []),
    ]
    result = assert_matches_coco(predictions, TARGETS)
    assert set(result["per_class"]) == {1, 2}
    assert (result["precision"][:, :, result["classes"] == 3] == -1).all()


def test_crowded_duplicates_and_ties():
    crowd = [[5, 5, 25, 25], [6, 5, 26, 25], [5, 6, 25, 26], [5, 5, 25, 25], [30, 30, 50, 58]]
    predictions = [
        _prediction([[0, 0, 10, 11], [20, 20, 40, 30]], [1, 1], [0.5, 0.5]),  # wrong class
        _prediction([[0, 0, 5, 5]], [2], [0.5]),
        _prediction(crowd, [1] * 5, [0.7, 0.7, 0.9, 0.5, 0.7]),
    ]
    assert_matches_coco(predictions, TARGETS)


def test_iou_exactly_at_thresholds():
    # IoU 0.5, 0.75 and 0.95 exactly: x-extent overlaps of 10/20 ... of a 20 x 10 box
    target = _target([[0, 0, 20, 10], [100, 0, 120, 10], [200, 0, 220, 10]], [1, 1, 1])
    prediction = _prediction(
        [[0, 0, 20, 5], [100, 0, 120, 7.5], [200, 0, 220, 9.5]], [1, 1, 1], [0.9, 0.8, 0.7]
    )
    result = assert_matches_coco([prediction], [target])
    assert result["recall"][0, 0] == 1.0 and result["recall"][-1, 0] == pytest.approx(1 / 3)


def test_more_than_max_detections_per_image():
    g = torch.Generator().manual_seed(7)
    targets = _random_targets(g, num_images=2, num_classes=1)
    targets[0] = {"boxes": _random_boxes(g, 30), "labels": torch.ones(30, dtype=torch.int64)}
    boxes = torch.cat([_jitter(g, targets[0]["boxes"], 0.05), _random_boxes(g, 120)])
    predictions = [
        {
            "boxes": boxes,
            "labels": torch.ones(150, dtype=torch.int64),
            "scores": torch.rand(150, generator=g),
        },
        _prediction([], [], []),
    ]
    assert_matches_coco(predictions, targets)


def test_no_ground_truth_at_all():
    predictions = [_prediction([[0, 0, 5, 5]], [1], [0.5])]
    result = evaluate_detections(predictions, [_target([], [])])
    ref = coco_reference(predictions, [_target([], [])])
    assert result["map"] == ref.stats[0] == -1 and result["per_class"] == {}


def test_equal_iou_with_two_objects_goes_to_the_later_one():
    # the first detection overlaps both objects with IoU 0.6; pycocotools gives it the later
    # object, so the second detection (on the first object only) is a true positive too
    target = _target([[0, 0, 10, 10], [5, 0, 15, 10]], [1, 1])
    prediction = _prediction([[2.5, 0, 12.5, 10], [0, 0, 10, 10]], [1, 1], [0.9, 0.8])
    result = assert_matches_coco([prediction], [target])
    assert result["map_50"] == 1.0


def test_cvlib_metrics_does_not_import_pycocotools():
    code = "import sys, cvlib.metrics; assert 'pycocotools' not in sys.modules"
    subprocess.run([sys.executable, "-c", code], check=True)


@pytest.mark.parametrize("seed", range(4))
def test_ap_by_object_size_matches_cocoeval(seed):
    """Objects and detections of every size range, boundaries included (16 x 16 and 32 x 32
    boxes are both small and medium, both medium and large: COCO's ranges include both ends)."""
    g = torch.Generator().manual_seed(100 + seed)
    targets = []
    for _ in range(10):
        n = int(torch.randint(1, 6, (1,), generator=g))
        xy = torch.rand(n, 2, generator=g) * 20
        side = torch.tensor([16.0, 32.0, 8.0, 45.0, 24.0])[torch.randint(0, 5, (n,), generator=g)]
        targets.append({"boxes": torch.cat([xy, xy + side[:, None]], 1),
                        "labels": torch.randint(1, 4, (n,), generator=g)})
    predictions = [_detect(g, t, num_classes=3) for t in targets]
    ours = assert_matches_coco(predictions, targets)
    assert all(ours[f"map_{name}"] > 0 for name in AREAS)


def test_coco_default_sizes_put_small_scenes_in_small():
    """COCO's own ranges: every object of a 64 x 64 scene is "small" (< 32^2 pixels)."""
    dataset = ShapesDataset(8, image_size=64, max_objects=3, seed=3)
    targets = [dataset[i][1] for i in range(len(dataset))]
    predictions = [{"boxes": t["boxes"], "scores": torch.ones(len(t["boxes"])), "labels": t["labels"]}
                   for t in targets]
    result = evaluate_detections(predictions, targets)
    assert result["map"] == result["map_small"] == 1.0
    assert result["map_medium"] == result["map_large"] == -1.0


@pytest.mark.parametrize("ranges, match", [
    ({"all": (0, 10)}, "not 'all'"), ({"small": (10, 5)}, "low <= high"), ({"small": (0,)}, "pairs"),
    ({"small": (-1, 5)}, "area_ranges"), ([(0, 5)], "dict"),
])
def test_bad_area_ranges(ranges, match):
    target = {"boxes": torch.tensor([[0.0, 0, 4, 4]]), "labels": torch.tensor([1])}
    with pytest.raises((ValueError, TypeError), match=match):
        evaluate_detections([{**target, "scores": torch.ones(1)}], [target], area_ranges=ranges)


SIGMAS = torch.tensor([0.3, 0.5, 0.8, 1.0, 0.6]) / 10  # 5 keypoints, e.g. a shape's corners and centre


def _keypoint_scenes(g: torch.Generator, num_images: int = 12):
    """Objects with 5 keypoints (some unlabelled, some objects with none) and detections near
    them (jittered, duplicated, missed) plus false ones."""
    targets, predictions = [], []
    for _ in range(num_images):
        n = int(torch.randint(0, 5, (1,), generator=g))
        xy = torch.rand(n, 2, generator=g) * 60
        side = torch.tensor([10.0, 30.0, 50.0, 120.0])[torch.randint(0, 4, (n,), generator=g)]
        boxes = torch.cat([xy, xy + side[:, None]], 1)
        points = boxes[:, None, :2] + torch.rand(n, 5, 2, generator=g) * side[:, None, None]
        visibility = (torch.rand(n, 5, generator=g) < 0.8).float() * 2
        visibility[torch.rand(n, generator=g) < 0.15] = 0  # an object without labelled keypoints
        labels = torch.randint(1, 3, (n,), generator=g)
        keypoints = torch.cat([points, visibility[..., None]], 2)
        targets.append({"boxes": boxes, "labels": labels, "keypoints": keypoints, "area": side**2 * 0.8})
        found = torch.rand(n, generator=g) < 0.85
        jitter = torch.randn(int(found.sum()), 5, 2, generator=g) * side[found, None, None] * 0.08
        extra = int(torch.randint(0, 3, (1,), generator=g))
        guesses = torch.cat([points[found] + jitter, torch.rand(extra, 5, 2, generator=g) * 100])
        scores = torch.rand(len(guesses), 5, 1, generator=g)
        predictions.append({"keypoints": torch.cat([guesses, scores], 2),
                            "scores": torch.rand(len(guesses), generator=g),
                            "labels": torch.cat([labels[found], torch.randint(1, 3, (extra,), generator=g)])})
    return predictions, targets


def _keypoints_reference(predictions, targets):
    images, annotations, results = [], [], []
    for i, (p, t) in enumerate(zip(predictions, targets)):
        images.append({"id": i, "width": 200, "height": 200})
        for box, label, keypoints, area in zip(t["boxes"], t["labels"], t["keypoints"], t["area"]):
            annotations.append({"id": len(annotations) + 1, "image_id": i, "category_id": int(label),
                                "bbox": _xywh(box), "area": float(area), "iscrowd": 0,
                                "keypoints": keypoints.flatten().tolist(),
                                "num_keypoints": int((keypoints[:, 2] > 0).sum())})
        for keypoints, score, label in zip(p["keypoints"], p["scores"], p["labels"]):
            results.append({"image_id": i, "category_id": int(label), "score": float(score),
                            "keypoints": keypoints.flatten().tolist()})
    categories = [{"id": c, "name": str(c)} for c in (1, 2)]
    gt = {"images": images, "annotations": annotations, "categories": categories}
    with contextlib.redirect_stdout(io.StringIO()):
        coco_gt = COCO()
        coco_gt.dataset = gt
        coco_gt.createIndex()
        evaluator = COCOeval(coco_gt, coco_gt.loadRes(results), "keypoints")
        evaluator.params.kpt_oks_sigmas = SIGMAS.double().numpy()
        evaluator.evaluate()
        evaluator.accumulate()
        evaluator.summarize()
    return evaluator


@pytest.mark.parametrize("seed", range(4))
def test_keypoint_ap_matches_cocoeval(seed):
    predictions, targets = _keypoint_scenes(torch.Generator().manual_seed(seed))
    ours = evaluate_detections(predictions, targets, "keypoints", max_detections=20, sigmas=SIGMAS)
    ref = _keypoints_reference(predictions, targets)
    # COCO's keypoint summary: AP, AP50, AP75, AP medium, AP large (its ranges have no "small")
    for key, stat in (("map", 0), ("map_50", 1), ("map_75", 2), ("map_medium", 3), ("map_large", 4)):
        assert ours[key] == pytest.approx(ref.stats[stat], abs=TOL), key
    np.testing.assert_allclose(ours["precision"].numpy(), ref.eval["precision"][:, :, :, 0, -1], atol=TOL)
    assert 0 < ours["map"] < 1


def test_object_keypoint_similarity_by_hand():
    from cvlib.metrics import object_keypoint_similarity

    true = torch.tensor([[[10.0, 10, 2], [20, 20, 2], [0, 0, 0]]])  # the third is unlabelled
    box, area, sigmas = torch.tensor([[5.0, 5, 25, 25]]), torch.tensor([100.0]), torch.tensor([0.1, 0.1, 0.1])
    exact = object_keypoint_similarity(true, true, box, area, sigmas)
    assert exact.item() == pytest.approx(1.0)
    off = true.clone()
    off[0, 0, 0] += 2.0  # d^2 = 4, 2 s^2 k^2 = 2 * 100 * 0.04 = 8: exp(-0.5) for that keypoint
    half = (np.exp(-0.5) + 1) / 2
    assert object_keypoint_similarity(off, true, box, area, sigmas).item() == pytest.approx(half)
    label = torch.ones(1, dtype=torch.long)
    with pytest.raises(ValueError, match="sigmas"):  # 3 keypoints: COCO's 17 person sigmas do not fit
        evaluate_detections([{"keypoints": true, "scores": torch.ones(1), "labels": label}],
                            [{"keypoints": true, "boxes": box, "labels": label}], "keypoints")


@settings(max_examples=30, deadline=None)
@given(seed=st.integers(0, 10_000), n=st.integers(0, 4), m=st.integers(0, 4), density=st.floats(0.0, 1.0))
def test_mask_iou_equals_pycocotools(seed, n, m, density):
    g = torch.Generator().manual_seed(seed)
    masks1, masks2 = (torch.rand(k, 9, 7, generator=g) < density for k in (n, m))
    ours = mask_iou(masks1, masks2)
    assert ours.shape == (n, m) and ours.dtype == torch.float64
    if n and m:
        encode = lambda masks: [_rle(mask) for mask in masks]  # noqa: E731
        theirs = mask_utils.iou(encode(masks1), encode(masks2), [0] * m)
        np.testing.assert_allclose(ours.numpy(), theirs, atol=1e-12)
