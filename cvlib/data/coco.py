"""Any COCO-format folder as a dataset with the target contract of the synthetic scenes.

Labelling tools (CVAT, Label Studio, Roboflow, ...) export a folder of images and one
``annotations.json`` in the COCO format: ``images`` (``id``, ``file_name``, ``width``,
``height``), ``categories`` (``id``, ``name``) and ``annotations`` (``id``, ``image_id``,
``category_id``, ``bbox = [x, y, w, h]`` in pixels, ``segmentation`` as polygons or RLE,
``iscrowd``). :class:`CocoDetection` reads such a folder with ``pycocotools`` and gives items
exactly like :class:`~cvlib.data.ShapesDataset`, so every detector, segmenter and metric of
cvlib works on it unchanged:

- ``image``: float32 ``[3, H, W]`` in ``[0, 1]`` (grey or RGBA files are converted to RGB);
- ``target["boxes"]``: float32 ``[N, 4]`` xyxy pixels; ``target["labels"]``: int64 ``[N]`` in
  ``1..C``; ``target["masks"]``: bool ``[N, H, W]``; ``target["semantic"]``: int64 ``[H, W]``
  (0 = background); ``target["image_id"]``: the COCO image id (an int).

How the awkward cases of real files are handled:

1. **Category ids** need not be ``1..C`` (COCO itself uses 1..90 with gaps): the categories,
   sorted by id, get the labels ``1..C``; ``dataset.category_ids[label - 1]`` is the COCO id
   and ``dataset.classes[label - 1]`` its name.
2. **Crowd annotations** (``iscrowd = 1``, one region around many objects) are left out of the
   targets, as torchvision's detection references do: a crowd is not one object, and
   ``evaluate_detections`` has no crowd regions either.
3. **Degenerate boxes** (width or height <= 0 after clipping, e.g. a click instead of a drag)
   are left out; ``dataset.dropped`` lists their annotation ids.
4. **Images without objects** give empty targets (``boxes`` ``[0, 4]``, ``masks``
   ``[0, H, W]``); every cvlib detector trains on them (background only).
5. **Boxes a little outside the image** (up to ``BOX_TOLERANCE`` pixels, rounding in the
   labelling tool) are clipped to it; further outside is an error.
6. An annotation without ``segmentation`` (box-only labels) gets its box as mask, so the
   target contract holds; Mask R-CNN should only train on files with real masks.
7. ``semantic`` paints the objects in annotation order (a later object wins where masks
   overlap).

Bad files raise at construction time, naming the file and the annotation id: malformed JSON,
a missing key, an image file that does not exist, an annotation of an unknown image or
category, a box outside its image. An image file whose size differs from the JSON's raises
when it is read.

:func:`export_coco` writes a :class:`~cvlib.data.ShapesDataset` as such a folder (PNG images
and ``to_coco``'s annotations), the inverse of :class:`CocoDetection`.
"""

from __future__ import annotations

import contextlib
import io
import json
import os
from pathlib import Path

import numpy as np
import torch
from torch.utils.data import Dataset

from cvlib.data.shapes import ShapesDataset, to_coco

__all__ = ["BOX_TOLERANCE", "CocoDetection", "export_coco"]

BOX_TOLERANCE = 1.0  # pixels a box may stick out of its image before it is an error


def _read_json(path: Path) -> dict:
    """The COCO dict of ``path``, with its three lists checked."""
    if not path.is_file():
        raise FileNotFoundError(f"annotation_file {path} does not exist")
    try:
        data = json.loads(path.read_text())
    except json.JSONDecodeError as error:
        raise ValueError(f"annotation_file {path} is not valid JSON: {error}") from None
    if not isinstance(data, dict):
        raise ValueError(f"annotation_file {path} must hold a JSON object, got {type(data).__name__}")
    for key in ("images", "annotations", "categories"):
        if not isinstance(data.get(key), list):
            raise ValueError(f"annotation_file {path} needs a list {key!r} (COCO format)")
    return data


def _clipped_box(annotation: dict, image: dict, path: Path) -> list[float]:
    """The annotation's ``[x, y, w, h]`` as xyxy, clipped into its image; an error when it lies
    more than ``BOX_TOLERANCE`` pixels outside."""
    bbox, name = annotation.get("bbox"), f"{path}: annotation id {annotation.get('id')}"
    if not (isinstance(bbox, list) and len(bbox) == 4 and all(isinstance(v, (int, float)) for v in bbox)):
        raise ValueError(f"{name} needs a bbox [x, y, w, h], got {bbox!r}")
    x, y, w, h = bbox
    width, height = image["width"], image["height"]
    tol = BOX_TOLERANCE
    if x < -tol or y < -tol or x + w > width + tol or y + h > height + tol:
        raise ValueError(f"{name} has bbox {bbox} outside its image {image.get('file_name')!r} "
                         f"({width}x{height})")
    return [min(max(v, 0), size) for v, size in zip((x, y, x + w, y + h), (width, height, width, height))]


class CocoDetection(Dataset):
    """A COCO-format folder: ``annotation_file`` (JSON) and the images under ``image_dir``.

    Item ``i`` is ``(image, target)`` exactly as in :class:`~cvlib.data.ShapesDataset` (see the
    module docstring for the keys and for crowd, empty, degenerate and out-of-image cases).

    Args:
        annotation_file: path of the COCO JSON.
        image_dir: folder that the images' ``file_name`` entries are relative to.
        transforms: ``transforms(image, target) -> (image, target)``, applied last.

    Attributes:
        classes: category names, ``classes[label - 1]``; ``category_ids``: their COCO ids.
        image_ids: the COCO image id of each item, in the file's order.
        dropped: ids of the degenerate annotations left out.
    """

    def __init__(self, annotation_file, image_dir, transforms=None):
        from pycocotools.coco import COCO

        for name, value in (("annotation_file", annotation_file), ("image_dir", image_dir)):
            if not isinstance(value, (str, os.PathLike)):
                raise TypeError(f"{name} must be a str or a pathlib.Path, got {type(value).__name__}")
        self.annotation_file, self.image_dir = Path(annotation_file), Path(image_dir)
        if not self.image_dir.is_dir():
            raise ValueError(f"image_dir {self.image_dir} is not a folder")
        if transforms is not None and not callable(transforms):
            raise TypeError(f"transforms must be callable or None, got {type(transforms).__name__}")
        self.transforms = transforms
        data = _read_json(self.annotation_file)
        self.coco = COCO()  # built from the dict, quietly: pycocotools prints progress
        self.coco.dataset = data
        with contextlib.redirect_stdout(io.StringIO()):
            self.coco.createIndex()
        categories = sorted(data["categories"], key=lambda c: c["id"])
        self.category_ids = tuple(c["id"] for c in categories)
        self.classes = tuple(c.get("name", str(c["id"])) for c in categories)
        self._label = {cat_id: k + 1 for k, cat_id in enumerate(self.category_ids)}
        self.image_ids = tuple(image["id"] for image in data["images"])
        self.dropped: list = []
        self._objects = self._index_objects(data)
        self._check_image_files()

    @property
    def num_classes(self) -> int:
        """Number of object classes ``C`` (background not counted)."""
        return len(self.classes)

    def __len__(self) -> int:
        return len(self.image_ids)

    def _index_objects(self, data: dict) -> dict:
        """``{image id: [(annotation, xyxy box, label), ...]}`` of the objects that go into the
        targets: crowds left out, degenerate boxes dropped, the rest checked."""
        images = {image["id"]: image for image in data["images"]}
        objects = {image_id: [] for image_id in images}
        for annotation in data["annotations"]:
            image = images.get(annotation.get("image_id"))
            name = f"{self.annotation_file}: annotation id {annotation.get('id')}"
            if image is None:
                raise ValueError(f"{name} refers to image id {annotation.get('image_id')!r}, not in 'images'")
            if annotation.get("category_id") not in self._label:
                raise ValueError(f"{name} has category_id {annotation.get('category_id')!r}, "
                                 f"not in 'categories' {list(self.category_ids)}")
            box = _clipped_box(annotation, image, self.annotation_file)
            if annotation.get("iscrowd", 0):
                continue
            if box[2] <= box[0] or box[3] <= box[1]:
                self.dropped.append(annotation.get("id"))
                continue
            objects[image["id"]].append((annotation, box, self._label[annotation["category_id"]]))
        return objects

    def _check_image_files(self) -> None:
        for image_id in self.image_ids:
            path = self.image_dir / self.coco.imgs[image_id]["file_name"]
            if not path.is_file():
                raise FileNotFoundError(f"{self.annotation_file}: image id {image_id}: no file {path}")

    def _load_image(self, info: dict) -> torch.Tensor:
        """The image file as float32 ``[3, H, W]`` in ``[0, 1]``, its size checked."""
        from PIL import Image

        path = self.image_dir / info["file_name"]
        with Image.open(path) as file:
            pixels = np.asarray(file.convert("RGB"))
        if pixels.shape[:2] != (info["height"], info["width"]):
            raise ValueError(f"{path} (image id {info['id']}) is {pixels.shape[1]}x{pixels.shape[0]} pixels "
                             f"but {self.annotation_file} says {info['width']}x{info['height']}")
        return torch.from_numpy(pixels.transpose(2, 0, 1).copy()).float() / 255

    def _mask(self, annotation: dict, box: list[float], height: int, width: int) -> np.ndarray:
        """The object's ``[H, W]`` bool mask: its polygons or RLE, else its box."""
        if annotation.get("segmentation"):
            return self.coco.annToMask(annotation).astype(bool)
        mask = np.zeros((height, width), dtype=bool)
        x1, y1, x2, y2 = (int(round(v)) for v in box)
        mask[y1:y2, x1:x2] = True
        return mask

    def __getitem__(self, index: int):
        if not -len(self) <= index < len(self):
            raise IndexError(f"index {index} out of range for {len(self)} images")
        info = self.coco.imgs[self.image_ids[index]]
        image = self._load_image(info)
        h, w = info["height"], info["width"]
        objects = self._objects[info["id"]]
        masks = [self._mask(annotation, box, h, w) for annotation, box, _ in objects]
        semantic = np.zeros((h, w), dtype=np.int64)
        for mask, (_, _, label) in zip(masks, objects):
            semantic[mask] = label
        target = {
            "boxes": torch.tensor([box for _, box, _ in objects], dtype=torch.float32).reshape(-1, 4),
            "labels": torch.tensor([label for *_, label in objects], dtype=torch.int64),
            "masks": torch.from_numpy(np.stack(masks)) if masks else torch.zeros((0, h, w), dtype=torch.bool),
            "semantic": torch.from_numpy(semantic),
            "image_id": info["id"],
        }
        return self.transforms(image, target) if self.transforms is not None else (image, target)

    def __repr__(self) -> str:
        return (f"{type(self).__name__}({str(self.annotation_file)!r}, {str(self.image_dir)!r}): "
                f"{len(self)} images, classes {self.classes}")


def export_coco(dataset: ShapesDataset, directory) -> tuple[Path, Path]:
    """Write ``dataset`` as a COCO-format folder: ``directory/images/NNNNNN.png`` (8-bit RGB)
    and ``directory/annotations.json`` (:func:`~cvlib.data.to_coco` plus each image's
    ``file_name``). Returns ``(annotation_file, image_dir)``, the arguments of
    :class:`CocoDetection`, which reads the scenes back with the same targets and the images
    rounded to 8 bits (within 0.5 / 255)."""
    from PIL import Image

    if not isinstance(dataset, ShapesDataset):
        raise TypeError(f"dataset must be a ShapesDataset, got {type(dataset).__name__}")
    if not isinstance(directory, (str, os.PathLike)):
        raise TypeError(f"directory must be a str or a pathlib.Path, got {type(directory).__name__}")
    image_dir = Path(directory) / "images"
    image_dir.mkdir(parents=True, exist_ok=True)
    coco = to_coco(dataset)
    for info in coco["images"]:
        info["file_name"] = f"{info['id']:06d}.png"
        image = ShapesDataset.__getitem__(dataset, info["id"])[0]
        pixels = (image.permute(1, 2, 0).numpy() * 255).round().astype(np.uint8)
        Image.fromarray(pixels).save(image_dir / info["file_name"])
    annotation_file = Path(directory) / "annotations.json"
    annotation_file.write_text(json.dumps(coco))
    return annotation_file, image_dir
