# ---
# jupyter:
#   jupytext:
#     cell_metadata_filter: nbgrader,-all
#     notebook_metadata_filter: kernelspec,-jupytext.text_representation.jupytext_version
#     text_representation:
#       extension: .py
#       format_name: percent
#       format_version: '1.3'
#   kernelspec:
#     display_name: Python 3 (ipykernel)
#     language: python
#     name: python3
# ---

# %% [markdown]
# # 10 · Your own data, a GPU, many GPUs
#
# Every notebook so far trained on synthetic scenes, on one device, from scratch. A detector for
# *your* photos starts from a labelling tool (CVAT, Label Studio, Roboflow, ...), which exports
# a folder of images and one `annotations.json` in the **COCO format**:
#
# | list | each entry |
# |---|---|
# | `images` | `id`, `file_name`, `width`, `height` |
# | `categories` | `id` (any integers, often not $1..C$), `name` |
# | `annotations` | `id`, `image_id`, `category_id`, `bbox` $= [x, y, w, h]$ in pixels, `segmentation`, `iscrowd` |
#
# (`segmentation`: polygons, or a run-length encoding, RLE.)
#
# **You will learn** how `cvlib.data.CocoDetection` turns such a folder into exactly the
# targets of the synthetic scenes (category ids mapped to labels $1..C$, crowds and degenerate
# boxes left out), how to **fine-tune** a trained detector on new classes (keep the backbone and
# the RPN, start a new class-specific head), how a stopped run **resumes** from its checkpoint,
# and the commands that train the same models on a Colab GPU and on several GPUs with
# `torchrun`.
#
# Data-parallel training in one formula: $K$ processes each take $B/K$ images of a batch of
# $B$ and compute the gradient of their mean loss $L_k$; the all-reduce averages them,
#
# $$g = \frac{1}{K}\sum_{k=1}^{K} \nabla L_k = \nabla \Big(\frac{1}{B}\sum_{i=1}^{B} \ell_i\Big),$$
#
# the gradient of the whole batch, so every process takes the same optimizer step as one
# process with the whole batch would (up to floating-point order; batch norm is the exception:
# each process normalises with the statistics of its own $B/K$ images).

# %%
# Colab: fetch and install this repository (nothing happens elsewhere).
import os
import subprocess
import sys

REPOSITORY = "https://github.com/cvlib-course/cvlib"  # `make colab-url URL=...` sets it everywhere
if "google.colab" in sys.modules:
    if not os.path.isdir("/content/cvlib"):
        if subprocess.run(["git", "clone", "-q", "--depth=1", REPOSITORY, "/content/cvlib"]).returncode:
            raise SystemExit(f"Could not clone {REPOSITORY}: check the URL and that the repository is public.")
    subprocess.run([sys.executable, "-m", "pip", "install", "-q", "-e", "/content/cvlib"], check=True)
    sys.path.insert(0, "/content/cvlib")

# %%
import json
import tempfile
from pathlib import Path

import matplotlib.pyplot as plt
import torch
from torch.utils.data import DataLoader

from cvlib import recipes, runtime, viz, weights
from cvlib.data import CocoDetection, ShapesDataset, collate_detection, export_coco
from cvlib.metrics import evaluate_detections
from cvlib.train import CHECKPOINT, detect, fit, main

device = runtime.start(seed=0)  # the device, one CPU thread, the seeds
workdir = Path(tempfile.mkdtemp(prefix="cvlib_your_data_"))

# %% [markdown]
# ## A labelled folder, as a labelling tool writes it
#
# No photographs can be labelled here, so we make the folders a labelling tool would give us:
# `export_coco` writes scenes as PNG files plus `annotations.json`. Our "photos" have only two
# kinds of object, circles and triangles, and, as in real exports, their category ids are not
# $1..C$: we renumber them 5 and 17. One folder to train on, one held out to evaluate.

# %%
CLASSES = ("circle", "triangle")
CATEGORY_IDS = {1: 5, 2: 17}  # label in the scenes -> id in the tool's export


def labelled_folder(name, num_images, seed):
    """Scenes exported to workdir/name, with the category ids renumbered as a tool would."""
    scenes = ShapesDataset(num_images, seed=seed, classes=CLASSES)
    annotation_file, image_dir = export_coco(scenes, workdir / name)
    data = json.loads(annotation_file.read_text())
    for entry in data["categories"]:
        entry["id"] = CATEGORY_IDS[entry["id"]]
    for entry in data["annotations"]:
        entry["category_id"] = CATEGORY_IDS[entry["category_id"]]
    annotation_file.write_text(json.dumps(data))
    return scenes, annotation_file, image_dir


train_scenes, train_json, train_images = labelled_folder("train", 240, seed=11)
val_scenes, val_json, val_images = labelled_folder("val", 60, seed=12)
data = json.loads(train_json.read_text())
print(sorted(p.name for p in (workdir / "train").iterdir()), len(list(train_images.iterdir())), "images")
print("categories: ", data["categories"])
print("an image:   ", data["images"][0])
annotation = data["annotations"][0]
print("annotation: ", {k: v for k, v in annotation.items() if k != "segmentation"},
      "+ RLE segmentation", annotation["segmentation"]["size"])

# %% [markdown]
# ## Reading it back: the same targets as the synthetic scenes
#
# `CocoDetection(annotation_file, image_dir)` reads the folder with `pycocotools`. Items are
# `(image, target)` exactly like `ShapesDataset`'s, so every model, loss and metric of the
# course works unchanged. The categories, sorted by id, become the labels $1..C$;
# `dataset.category_ids[label - 1]` gives the id back.

# %%
train_set = CocoDetection(train_json, train_images)
val_set = CocoDetection(val_json, val_images)
print(train_set)
print("label -> category id:", {k + 1: i for k, i in enumerate(train_set.category_ids)},
      "| names:", train_set.classes)
image, target = train_set[0]
for key, value in target.items():
    print(f"{key:9s}", tuple(value.shape) if torch.is_tensor(value) else value,
          value.dtype if torch.is_tensor(value) else "")

# %% [markdown]
# The round trip is exact for the labels: boxes, labels, masks and semantic maps read back are
# the scenes' own, bit for bit. The images were floats; a PNG stores 8 bits per channel, so
# they come back rounded to the nearest of 256 levels, at most half a level ($0.5/255$) away.

# %%
largest_error = 0.0
for index in range(len(train_scenes)):
    image, target = train_scenes[index]
    image_back, target_back = train_set[index]
    for key in ("boxes", "labels", "masks", "semantic"):
        assert torch.equal(target_back[key], target[key]), key
    largest_error = max(largest_error, (image_back - image).abs().max().item())
print(f"{len(train_scenes)} scenes: targets identical, images within {largest_error * 255:.4f} / 255")
assert largest_error <= 0.5 / 255 + 1e-6

fig, axes = plt.subplots(1, 4, figsize=(7, 2), dpi=100)
for ax, index in zip(axes, range(4)):
    image, target = train_set[index]
    overlay = viz.overlay_masks(image, target["masks"], target["labels"])
    viz.show_image(ax, overlay, f"image id {target['image_id']}")
    viz.draw_boxes(ax, target["boxes"], target["labels"], class_names=train_set.classes)
fig.suptitle("CocoDetection: boxes, labels and masks read from annotations.json", fontsize=9)
plt.show()

# %% [markdown]
# ## Fine-tuning a trained detector on new classes
#
# The shipped Faster R-CNN (notebook 05) knows three classes. For our two we build the same
# architecture with `num_classes=2` (`recipes.build_for_data`, what `python -m cvlib.train
# faster_rcnn --data ...` builds) and copy every trained tensor whose shape still fits
# (`weights.transfer`): the backbone, the RPN and the box head's hidden layers. Only the
# class-specific layers (class scores and per-class box deltas) start from scratch. Before any
# training the detector finds objects, but names them and places their boxes with random
# weights: whatever mAP it gets is luck.

# %%
model = recipes.build_for_data("faster_rcnn", train_set.num_classes).to(device)
left = weights.transfer(model, weights.load("faster_rcnn")["state_dict"])
print("left at their initialisation:", left)
val_images_list, val_targets = collate_detection([val_set[i] for i in range(len(val_set))])
map_before = evaluate_detections(detect(model, val_images_list), val_targets)["map"]
print(f"mAP before fine-tuning: {map_before:.3f}")

# %% [markdown]
# `fit` with `out=` writes `checkpoint.pt` every `checkpoint_every` steps and at the end (model,
# optimizer, scheduler, step, position in the data, random states) and one line per step to
# `metrics.jsonl`. We train 20 steps and stop, as a Colab session that times out would; then a
# **fresh** model continues the run with `resume=True` up to 30 steps. The tests check that a
# resumed run gives exactly the losses of one that never stopped.

# %%
STEPS, STOP = 30, 20
loader = DataLoader(train_set, batch_size=8, shuffle=True, collate_fn=collate_detection)
run_dir = workdir / "run"
fit(model, loader, epochs=5, max_steps=STOP, lr=1e-3, device=device, out=run_dir, checkpoint_every=10)
model = recipes.build_for_data("faster_rcnn", train_set.num_classes)  # as after a restart
history = fit(model, loader, epochs=5, max_steps=STEPS, lr=1e-3, device=device, out=run_dir, resume=True)
log = [json.loads(line) for line in (run_dir / "metrics.jsonl").read_text().splitlines()]
print(f"log: steps {log[0]['step']}..{log[-1]['step']}, loss {log[0]['loss']:.3f} -> {log[-1]['loss']:.3f}")
assert [row["step"] for row in log] == list(range(1, STEPS + 1)) == history["step"]

fig, ax = plt.subplots(figsize=(5.6, 2.8), dpi=100)
ax.plot(history["step"], history["loss"], label="total loss")
ax.plot(history["step"], history["loss_classifier"], label="head classification")
ax.axvline(STOP + 0.5, color="gray", linestyle="--", label="stopped, resumed")
ax.set_xlabel("optimizer step")
ax.set_ylabel("training loss")
ax.legend(fontsize=8)
plt.show()

# %% [markdown]
# Thirty steps on 240 images are enough here because only the last layers had to learn the
# new classes; the features came trained.

# %%
detections = detect(model.to(device), val_images_list)
map_after = evaluate_detections(detections, val_targets)["map"]
print(f"mAP on the held-out folder: {map_before:.3f} before, {map_after:.3f} after {STEPS} steps")
assert map_after > 0.4 and map_after > map_before + 0.2

fig, axes = plt.subplots(1, 4, figsize=(7, 2), dpi=100)
for ax, image, found in zip(axes, val_images_list, detections):
    keep = found["scores"] > 0.5
    viz.show_image(ax, image, f"{int(keep.sum())} detections > 0.5")
    viz.draw_boxes(ax, found["boxes"][keep], found["labels"][keep], found["scores"][keep],
                   train_set.classes)
plt.show()

# %% [markdown]
# The checkpoint holds only tensors and plain values, so it loads with
# `torch.load(weights_only=True)` (it cannot run code) into the model the recipe builds:

# %%
checkpoint = torch.load(run_dir / CHECKPOINT, weights_only=True)
print("checkpoint:", sorted(checkpoint), "| step", checkpoint["step"])
restored = recipes.build_for_data("faster_rcnn", train_set.num_classes)
restored.load_state_dict(checkpoint["model"])
assert all(torch.equal(value.cpu(), restored.state_dict()[name]) for name, value in model.state_dict().items())
same = detect(restored.to(device), val_images_list[:8])
assert all(torch.equal(a["boxes"], b["boxes"]) for a, b in zip(same, detect(model, val_images_list[:8])))
print("the restored model has the trained weights and gives the same detections")

# %% [markdown]
# ## The same from the command line
#
# `python -m cvlib.train NAME --data coco:ANNOTATIONS.json:IMAGE_DIR` builds model `NAME`
# (`faster_rcnn`, `mask_rcnn`, `yolo`, `detr`, `unet`, `fcn`) for the dataset's classes and
# trains it from scratch, or from ImageNet features with `--backbone resnet18` (also
# `resnet50`, `mobilenet_v3`; torchvision's weights when they can be downloaded). Here two
# steps of the exact command, run in this kernel:

# %%
command = ["faster_rcnn", "--data", f"coco:{train_json}:{train_images}", "--max-steps", "2",
           "--batch-size", "4", "--out", str(workdir / "cli")]
print("python -m cvlib.train", " ".join(command))
assert main(command) == 0
print(sorted(p.name for p in (workdir / "cli").iterdir()))

# %% [markdown]
# **On a Colab GPU** (Runtime > Change runtime type > GPU): upload your export (or mount Google
# Drive), then in a cell
#
# ```
# !python -m cvlib.train faster_rcnn --data coco:/content/my_data/annotations.json:/content/my_data/images \
#     --backbone resnet50 --epochs 20 --batch-size 16 --lr 1e-4 --amp --device cuda \
#     --out /content/drive/MyDrive/runs/faster_rcnn
# ```
#
# `--amp` trains in mixed precision (float16 autocast with loss scaling; on a CPU it says so and
# stays float32). When the session ends, run the same command with `--resume` added: it
# continues from `checkpoint.pt` in `--out` (written every 100 steps and at the end).
#
# **On a machine with several GPUs**, one process per GPU with `torchrun`:
#
# ```
# torchrun --nproc_per_node=4 -m cvlib.train faster_rcnn --data coco:annotations.json:images \
#     --backbone resnet50 --epochs 20 --batch-size 64 --amp --out runs/faster_rcnn
# ```
#
# `--batch-size` is the batch of all processes together (16 images per GPU here), so the same
# command trains the same way on 1 or 4 GPUs; `fit` wraps the model in
# `DistributedDataParallel`, gives each process its share of the data (`DistributedSampler`)
# and lets only rank 0 write files. On a CPU, `torchrun --nproc_per_node=2` runs two processes
# that talk through `gloo`; the tests check that they take the same steps as one process with
# the whole batch.

# %% [markdown]
# ## Summary
#
# - A COCO folder from any labelling tool becomes a dataset with the course's targets:
#   `CocoDetection(annotation_file, image_dir)`; category ids map to labels $1..C$, crowd
#   annotations and degenerate boxes are left out, images without objects are kept.
# - Fine-tuning keeps what transfers (backbone, RPN) and learns the class-specific layers: here
#   the mAP rose above 0.4 in 30 steps, far above the random head's.
# - `fit(..., out=DIR)` checkpoints and logs; `resume=True` continues a stopped run exactly.
# - `python -m cvlib.train NAME --data coco:...` trains on your data, on a GPU with `--amp`, and
#   on several GPUs under `torchrun`.
#
# ## Exercises
#
# 1. Add an annotation with `"iscrowd": 1` to `train_json` and read the folder again. What
#    does `CocoDetection` do with it, and why would a crowd box hurt training if it were kept?
# 2. Fine-tune without `weights.transfer` (from random weights) for the same 30 steps. How
#    much lower is the mAP?
# 3. Train with `--backbone mobilenet_v3` on a Colab GPU with and without `--amp` and compare
#    the seconds per step in `metrics.jsonl`.
