"""cvlib.data.coco: COCO folders give ShapesDataset's targets; export_coco round-trips; the
awkward cases of real files (category ids, crowds, empty images, degenerate boxes, polygons)
match torchvision's COCO wrapper and pycocotools; bad files name the file and annotation."""

import json

import numpy as np
import pytest
import torch
from PIL import Image

from cvlib.data import CocoDetection, ShapesDataset, collate_detection, export_coco
from cvlib.metrics import evaluate_detections
from cvlib.models.rcnn import build_faster_rcnn


@pytest.fixture(scope="module")
def exported(tmp_path_factory):
    scenes = ShapesDataset(12, seed=3, min_objects=0)
    return scenes, CocoDetection(*export_coco(scenes, tmp_path_factory.mktemp("coco")))


def test_export_round_trips_targets_exactly_and_images_to_8_bits(exported):
    scenes, coco = exported
    assert len(coco) == len(scenes) and coco.classes == scenes.classes and coco.num_classes == 3
    assert any(len(scenes[i][1]["boxes"]) == 0 for i in range(len(scenes)))  # an empty image is in
    for i in range(len(scenes)):
        image, target = scenes[i]
        image_back, target_back = coco[i]
        assert target_back.keys() == target.keys() and target_back["image_id"] == target["image_id"]
        for key in ("boxes", "labels", "masks", "semantic"):
            assert target_back[key].dtype == target[key].dtype, key
            assert torch.equal(target_back[key], target[key]), key
        assert image_back.dtype == torch.float32 and image_back.shape == image.shape
        # the synthetic images are not 8-bit representable, so PNG rounds them: half a level at most
        assert (image_back - image).abs().max() <= 0.5 / 255 + 1e-6
        assert torch.equal(image_back, (image * 255).round() / 255)


def test_detectors_and_metrics_work_unchanged(exported):
    _, coco = exported
    images, targets = collate_detection([coco[i] for i in range(4)])
    losses = build_faster_rcnn(num_classes=coco.num_classes).train()(images, targets)
    assert all(torch.isfinite(v) for v in losses.values())
    perfect = [{"boxes": t["boxes"], "labels": t["labels"], "scores": torch.ones(len(t["labels"]))}
               for t in targets]
    assert evaluate_detections(perfect, targets)["map"] == pytest.approx(1.0)


def _write(tmp_path, images, annotations, categories, sizes=None):
    """A COCO folder with blank images of the sizes in ``images``."""
    (tmp_path / "img").mkdir(exist_ok=True)
    for info in images:
        blank = Image.new("RGB", (info["width"], info["height"]), (10, 20, 30))
        blank.save(tmp_path / "img" / info["file_name"])
    path = tmp_path / "annotations.json"
    path.write_text(json.dumps({"images": images, "annotations": annotations, "categories": categories}))
    return path, tmp_path / "img"


def _image(i, w=40, h=30):
    return {"id": i, "file_name": f"{i}.png", "width": w, "height": h}


def _annotation(i, image_id, category_id, bbox, **extra):
    return {"id": i, "image_id": image_id, "category_id": category_id, "bbox": bbox, "iscrowd": 0,
            "area": bbox[2] * bbox[3], **extra}


@pytest.fixture
def labelled(tmp_path):
    """A file as labelling tools write it: category ids 7 and 3 (not 1..C, not sorted), polygon
    masks, a crowd (RLE), a degenerate box, an image without objects, a box sticking out 0.5 px."""
    from pycocotools import mask as mask_utils

    crowd = mask_utils.encode(np.asfortranarray(np.pad(np.ones((5, 5), np.uint8), ((20, 5), (30, 5)))))
    crowd["counts"] = crowd["counts"].decode("ascii")
    annotations = [
        _annotation(11, 1, 7, [2, 3, 10, 8], segmentation=[[2, 3, 12, 3, 12, 11, 2, 11]]),
        _annotation(12, 1, 3, [15.5, 4.25, 9, 12], segmentation=[[15.5, 4.25, 24.5, 4.25, 20, 16.25]]),
        _annotation(13, 1, 3, [30, 20, 5, 5], segmentation=crowd, iscrowd=1),
        _annotation(14, 1, 7, [5, 5, 0, 4], segmentation=[]),
        _annotation(15, 2, 3, [30.5, 10, 10, 20]),  # 0.5 px outside on the right and bottom; box only
    ]
    categories = [{"id": 7, "name": "cat"}, {"id": 3, "name": "dog"}]
    return _write(tmp_path, [_image(1), _image(2), _image(5, 20, 10)], annotations, categories)


def test_awkward_cases_of_labelled_files(labelled):
    coco = CocoDetection(*labelled)
    assert coco.category_ids == (3, 7) and coco.classes == ("dog", "cat") and coco.image_ids == (1, 2, 5)
    assert coco.dropped == [14]
    image, target = coco[0]
    assert image.shape == (3, 30, 40) and torch.allclose(image[:, 0, 0], torch.tensor([10, 20, 30]) / 255)
    assert target["labels"].tolist() == [2, 1]  # cat (id 7) -> 2, dog (id 3) -> 1; crowd and degenerate out
    assert target["boxes"].tolist() == [[2, 3, 12, 11], [15.5, 4.25, 24.5, 16.25]]
    assert target["masks"].dtype == torch.bool and target["masks"].shape == (2, 30, 40)
    assert (target["semantic"] == 2).sum() == target["masks"][0].sum() > 0
    _, box_only = coco[1]
    assert box_only["boxes"].tolist() == [[30.5, 10, 40, 30]]  # clipped into the image
    assert box_only["masks"][0].sum() == 10 * 20  # the box as mask
    _, empty = coco[2]
    assert empty["boxes"].shape == (0, 4) and empty["masks"].shape == (0, 10, 20)
    assert empty["semantic"].sum() == 0


def test_same_boxes_and_masks_as_torchvision_and_pycocotools(labelled):
    from pycocotools.coco import COCO
    from torchvision.datasets import CocoDetection as TorchvisionCoco
    from torchvision.datasets import wrap_dataset_for_transforms_v2
    from torchvision.ops import clip_boxes_to_image

    ours = CocoDetection(*labelled)
    theirs = wrap_dataset_for_transforms_v2(  # without masks: torchvision's fail on segmentation []
        TorchvisionCoco(str(labelled[1]), str(labelled[0])), target_keys=("boxes", "labels", "iscrowd"))
    reference = COCO(str(labelled[0]))
    for i in range(len(ours)):
        _, target = ours[i]
        _, expected = theirs[i]
        if "labels" not in expected:  # torchvision gives an image without objects no target keys
            assert len(target["boxes"]) == 0
            continue
        crowd = torch.tensor(expected["iscrowd"], dtype=torch.bool)
        keep = ~crowd & (expected["boxes"][:, 2:] > expected["boxes"][:, :2]).all(1)
        boxes = clip_boxes_to_image(expected["boxes"][keep].as_subclass(torch.Tensor), ours_size(ours, i))
        assert torch.equal(target["boxes"], boxes.float())  # torchvision does not clip, we do
        mapped = torch.tensor([ours.category_ids.index(c) + 1 for c in expected["labels"][keep].tolist()])
        assert torch.equal(target["labels"], mapped.long())
        polygons = [a for a in reference.imgToAnns[ours.image_ids[i]]
                    if a.get("segmentation") and not a["iscrowd"]]
        for mask, annotation in zip(target["masks"], polygons):
            assert np.array_equal(mask.numpy(), reference.annToMask(annotation).astype(bool))


def ours_size(dataset, i):
    info = dataset.coco.imgs[dataset.image_ids[i]]
    return info["height"], info["width"]


def _edit(labelled, change):
    data = json.loads(labelled[0].read_text())
    change(data)
    labelled[0].write_text(json.dumps(data))
    return labelled


def test_bad_files_name_the_file_and_the_annotation(labelled, tmp_path):
    annotation_file, image_dir = labelled
    with pytest.raises(FileNotFoundError, match="annotation_file"):
        CocoDetection(tmp_path / "nope.json", image_dir)
    (tmp_path / "broken.json").write_text('{"images": [')
    with pytest.raises(ValueError, match=r"broken\.json is not valid JSON"):
        CocoDetection(tmp_path / "broken.json", image_dir)
    (tmp_path / "list.json").write_text('{"images": []}')
    with pytest.raises(ValueError, match="needs a list 'annotations'"):
        CocoDetection(tmp_path / "list.json", image_dir)
    with pytest.raises(TypeError, match="transforms"):
        CocoDetection(annotation_file, image_dir, transforms=3)
    (image_dir / "2.png").unlink()
    with pytest.raises(FileNotFoundError, match=r"annotations\.json: image id 2: no file .*2\.png"):
        CocoDetection(annotation_file, image_dir)
    Image.new("RGB", (41, 30)).save(image_dir / "2.png")
    with pytest.raises(ValueError, match=r"2\.png \(image id 2\) is 41x30 pixels but .* says 40x30"):
        CocoDetection(annotation_file, image_dir)[1]


@pytest.mark.parametrize("change, message", [
    (lambda d: d["annotations"][0].update(bbox=[35, 3, 10, 8]), r"annotation id 11 has bbox .* outside its"),
    (lambda d: d["annotations"][1].update(bbox=[-2, 3, 10, 8]), r"annotation id 12 has bbox .* outside"),
    (lambda d: d["annotations"][1].update(bbox=[1, 2]), r"annotation id 12 needs a bbox"),
    (lambda d: d["annotations"][4].update(category_id=4), r"annotation id 15 has category_id 4, not in"),
    (lambda d: d["annotations"][4].update(image_id=9), r"annotation id 15 refers to image id 9"),
])
def test_bad_annotations_name_the_file_and_the_annotation(labelled, change, message):
    with pytest.raises(ValueError, match=r"annotations\.json: " + message):
        CocoDetection(*_edit(labelled, change))


def test_transforms_and_export_checks(labelled):
    flipped = CocoDetection(*labelled, transforms=lambda image, target: (image.flip(-1), target))
    assert torch.equal(flipped[0][0], CocoDetection(*labelled)[0][0].flip(-1))
    with pytest.raises(TypeError, match="ShapesDataset"):
        export_coco(flipped, labelled[1])
    with pytest.raises(IndexError):
        flipped[3]
