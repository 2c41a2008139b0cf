"""cvlib.data.photos: bundled photos, the reader's own image (path, ipywidgets 7 and 8 uploads),
the hand-made COCO annotations."""

import io

import numpy as np
import pytest
import torch
from PIL import Image

from cvlib.data import photos
from cvlib.metrics import evaluate_detections


def _png_bytes(array: np.ndarray) -> bytes:
    buffer = io.BytesIO()
    Image.fromarray(array).save(buffer, format="PNG")
    return buffer.getvalue()


@pytest.fixture
def picture():
    return np.random.default_rng(0).integers(0, 256, (20, 30, 3), dtype=np.uint8)


@pytest.mark.parametrize("name", photos.names())
def test_bundled_photos_are_images(name):
    image = photos.load(name)
    assert image.dtype == torch.float32 and image.ndim == 3 and image.shape[0] == 3
    assert 0 <= image.min() and image.max() <= 1 and image.std() > 0.05


def test_max_side_shrinks_and_keeps_the_ratio():
    full, small = photos.load("chelsea"), photos.load("chelsea", max_side=150)
    assert full.shape == (3, 300, 451) and small.shape == (3, 100, 150)
    assert photos.load("chelsea", max_side=1000).shape == full.shape  # never enlarged
    assert (small.mean(dim=(1, 2)) - full.mean(dim=(1, 2))).abs().max() < 0.01


def test_from_path_and_both_upload_formats_give_the_same_image(tmp_path, picture):
    expected = torch.from_numpy(picture).permute(2, 0, 1).float() / 255
    path = tmp_path / "mine.png"
    path.write_bytes(_png_bytes(picture))
    upload7 = {"mine.png": {"metadata": {"name": "mine.png", "type": "image/png"},
                            "content": _png_bytes(picture)}}
    upload8 = ({"name": "mine.png", "type": "image/png", "size": 1,
                "content": memoryview(_png_bytes(picture))},)
    for image in (photos.from_path(path), photos.from_upload(upload7), photos.from_upload(upload8)):
        assert torch.equal(image, expected)
    assert photos.from_upload(upload8, max_side=16).shape == (3, 11, 16)


def test_grey_and_rgba_become_rgb(picture):
    grey = photos.from_array(picture[..., 0])
    assert grey.shape == (3, 20, 30) and torch.equal(grey[0], grey[2])
    rgba = np.concatenate([picture, np.zeros_like(picture[..., :1])], axis=2)
    assert torch.equal(photos.from_array(rgba), photos.from_array(picture))


def test_bad_input(tmp_path):
    with pytest.raises(ValueError, match="name"):
        photos.load("lena")
    with pytest.raises(ValueError, match="path"):
        photos.from_path(tmp_path / "missing.jpg")
    (tmp_path / "notes.txt").write_text("not an image")
    with pytest.raises(ValueError, match="image"):
        photos.from_path(tmp_path / "notes.txt")
    with pytest.raises(ValueError, match="no file"):
        photos.from_upload(())
    with pytest.raises(TypeError, match="value"):
        photos.from_upload("photo.jpg")
    with pytest.raises(ValueError, match="max_side"):
        photos.load("chelsea", max_side=0)
    with pytest.raises(ValueError, match="array"):
        photos.from_array(np.full((4, 4, 3), 2.0))


def test_coco_file_is_valid_coco():
    from pycocotools.coco import COCO

    data = photos.coco()
    assert "by eye" in data["info"]["description"]
    ground_truth = COCO()
    ground_truth.dataset = data
    ground_truth.createIndex()
    assert {i["file_name"] for i in data["images"]} == set(photos.names())
    names = photos.category_names()
    assert {names[c["id"] - 1] for c in data["categories"]} >= {"person", "cat", "cup", "motorcycle"}
    for image in data["images"]:  # every box inside its photo
        for a in ground_truth.imgToAnns[image["id"]]:
            x, y, w, h = a["bbox"]
            assert w > 0 and h > 0 and x + w <= image["width"] and y + h <= image["height"]


def test_targets_scale_with_the_image_and_score_perfectly():
    full, small = photos.target("motorcycle_left"), photos.target("motorcycle_left", max_side=320)
    image = photos.load("motorcycle_left", max_side=320)
    scale = torch.tensor([image.shape[2] / 741, image.shape[1] / 500] * 2)
    assert torch.allclose(small["boxes"], full["boxes"] * scale)
    assert photos.category_names()[int(full["labels"][0]) - 1] == "motorcycle"
    targets = [photos.target(n, 320) for n in photos.names()]
    predictions = [{**t, "scores": torch.ones(len(t["labels"]))} for t in targets]
    assert evaluate_detections(predictions, targets)["map"] == pytest.approx(1.0)
    assert len(photos.target("rocket")["labels"]) == 0
