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
# # 00 · Four tasks, one scene: the data of this course
#
# The lectures after image classification ask for more than one label per image:
#
# | task | output for an image with $N$ objects |
# |---|---|
# | **classification** | one class (the image has one main object) |
# | **semantic segmentation** | a class for every pixel, $H \times W$ labels, objects of a class not told apart |
# | **object detection** | $N$ boxes $(x_1, y_1, x_2, y_2)$, each with a class and a score; $N$ varies |
# | **instance segmentation** | $N$ masks, one per object, each with a class |
#
# No dataset can be downloaded here, so every notebook uses **synthetic scenes** from
# `cvlib.data.shapes`: coloured circles, squares and triangles on a textured, noisy background,
# partly hiding one another. One scene carries the labels of all four tasks, they are exact,
# and scene *i* is the same on every machine.
#
# **You will learn** the label format of each task (torchvision's detection format, used by
# every model in the course), see the four tasks on the same scenes, check a trained classifier,
# and export the scenes to the COCO format that `pycocotools` reads.

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
import time

import matplotlib.pyplot as plt
import numpy as np
import torch
from torch.utils.data import DataLoader

from cvlib import recipes, runtime, viz, weights, widgets
from cvlib.data import (
    ShapesClassification,
    ShapesDataset,
    collate_classification,
    collate_detection,
    to_coco,
)
from cvlib.metrics import accuracy
from cvlib.train import fit, predict

device = runtime.start(seed=0)  # the device, one CPU thread, the seeds

# %% [markdown]
# ## The dataset API
#
# `ShapesDataset(num_images, image_size=64, max_objects=3, seed=0)` is a
# `torch.utils.data.Dataset`. Item $i$ is `(image, target)`: the image is a float tensor
# `[3, H, W]` in $[0, 1]$; the target is a dict in torchvision's detection format plus the
# semantic map:

# %%
dataset = ShapesDataset(200, image_size=64, max_objects=3, seed=0)
image, target = dataset[0]
print(dataset)
print("image   ", tuple(image.shape), image.dtype, f"in [{image.min():.2f}, {image.max():.2f}]")
for key, value in target.items():
    print(f"{key:9s}", tuple(value.shape) if torch.is_tensor(value) else value,
          value.dtype if torch.is_tensor(value) else "")

# %% [markdown]
# The scene is drawn from a random generator seeded with `(seed, i)`, so it does not depend on
# the machine or on which items were read before. The next cell's printed output is checked by
# the tests (nbval): if a library update changed the scenes, CI would fail here.

# %%
# NBVAL_CHECK_OUTPUT
print("labels:", target["labels"].tolist())
print("boxes: ", target["boxes"].tolist())
print("pixels per object:", target["masks"].sum(dim=(1, 2)).tolist())

# %% [markdown]
# Boxes are tight around the **visible** pixels: a box $[x_1, y_1, x_2, y_2]$ covers the
# pixel columns $x_1 \le x < x_2$ and rows $y_1 \le y < y_2$. Shapes are painted one after the
# other, so a later shape hides part of an earlier one; the masks keep only what is visible,
# and an object hidden by more than about two thirds is dropped from the labels.
# Let us check both statements on every scene of the dataset.

# %%
def tight_box(mask):
    ys, xs = torch.nonzero(mask, as_tuple=True)
    return [xs.min().item(), ys.min().item(), xs.max().item() + 1, ys.max().item() + 1]


n_objects = 0
for image, target in dataset:
    for box, mask in zip(target["boxes"], target["masks"]):
        assert box.tolist() == tight_box(mask)
        n_objects += 1
    # masks do not overlap, and the semantic map is exactly the union of the labelled masks
    assert target["masks"].sum(0).max() <= 1
    semantic = (target["masks"] * target["labels"][:, None, None]).sum(0)
    assert torch.equal(semantic, target["semantic"])
print(f"{n_objects} objects in {len(dataset)} scenes: every box is tight, masks are disjoint")

# %% [markdown]
# ## Four tasks on the same scenes
#
# Each row is one scene, labelled four ways. Classification gives the image one answer: for a
# scene with several objects, the set of classes it contains (multi-label classification).
# The classifier trained below answers the single-label question on scenes with one object
# (`ShapesClassification`, the single-object variant).

# %%
names = dataset.classes
fig, axes = plt.subplots(3, 4, figsize=(6.4, 5.2))
for row in range(3):
    image, target = dataset[row]
    present = ", ".join(names[c - 1] for c in sorted(set(target["labels"].tolist())))
    viz.show_image(axes[row, 0], image, f"classes: {present}")
    viz.show_image(axes[row, 1], viz.colorize_semantic(target["semantic"]), "semantic map")
    viz.show_image(axes[row, 2], image, "detection")
    viz.draw_boxes(axes[row, 2], target["boxes"], target["labels"], class_names=names)
    viz.show_image(axes[row, 3], viz.overlay_masks(image, target["masks"]), "instances")
fig.tight_layout(rect=(0, 0, 1, 0.94))
viz.class_legend(fig, names, loc="upper center", ncol=4)
plt.show()

# %% [markdown]
# Notice the difference between the last two columns: two circles share one colour in the
# semantic map (they are the same *class*) but get different colours as *instances*.
#
# ## Explore the scenes
#
# Pick a scene and a task. (The figure is drawn once here; in JupyterLab or Colab the controls
# below it redraw it in place.)

# %%
TASKS = ["image", "semantic segmentation", "detection", "instance segmentation"]
fig_scene, ax_scene = plt.subplots(figsize=(5, 5))
canvas = viz.show_image(ax_scene, dataset[0][0])
drawn = []  # box artists of the previous step, removed before drawing new ones


def show_task(index, task):
    image, target = dataset[index]
    for artist in drawn:
        artist.remove()
    drawn.clear()
    if task == "semantic segmentation":
        canvas.set_data(viz.colorize_semantic(target["semantic"]))
    elif task == "instance segmentation":
        canvas.set_data(viz.overlay_masks(image, target["masks"], target["labels"]))
    else:
        canvas.set_data(viz.to_numpy_image(image))
    if task == "detection":
        drawn.extend(viz.draw_boxes(ax_scene, target["boxes"], target["labels"], class_names=names))
    ax_scene.set_title(f"scene {index}: {len(target['labels'])} objects, {task}", fontsize=9)


_ = widgets.explore(fig_scene, show_task, index=widgets.int_slider("scene", 0, len(dataset) - 1),
                    task=widgets.dropdown("task", TASKS, "detection"))

# %% [markdown]
# ## Batches: the detection `collate_fn`
#
# Images of a detection batch have different numbers of objects, so their targets cannot be
# stacked into one tensor. torchvision's detection models take a *list* of images and a *list*
# of target dicts; `collate_detection` builds exactly that. (Segmentation and classification
# batches do stack: `collate_segmentation`, `collate_classification`.)

# %%
loader = DataLoader(dataset, batch_size=4, collate_fn=collate_detection)
images, targets = next(iter(loader))
print(type(images).__name__, len(images), "images; objects per image:",
      [len(t["labels"]) for t in targets])

# %% [markdown]
# ## What the data looks like in numbers
#
# A detector must cope with a varying number of objects, of varying size, some of them partly
# hidden. Statistics of 2,000 scenes (and the time it takes to make them):

# %%
start = time.perf_counter()
big = ShapesDataset(2000, seed=0)
targets = [big[i][1] for i in range(len(big))]
seconds = time.perf_counter() - start
counts = np.array([len(t["labels"]) for t in targets])
labels = torch.cat([t["labels"] for t in targets])
boxes = torch.cat([t["boxes"] for t in targets])
sides = ((boxes[:, 2] - boxes[:, 0]) * (boxes[:, 3] - boxes[:, 1])).sqrt()
print(f"made 2,000 scenes in {seconds:.1f} s")

fig, axes = plt.subplots(1, 3, figsize=(10, 2.6))
axes[0].bar(*np.unique(counts, return_counts=True))
axes[0].set(title="objects per scene", xlabel="objects")
axes[1].bar(names, torch.bincount(labels, minlength=4)[1:], color=[viz.class_color(k) for k in (1, 2, 3)])
axes[1].set(title="objects per class")
axes[2].hist(sides, bins=30)
axes[2].set(title="box size (sqrt of area, px)", xlabel="pixels")
fig.tight_layout()
plt.show()
assert set(np.unique(counts)) <= {0, 1, 2, 3} and counts.mean() > 1.5
assert torch.bincount(labels)[1:].min() > 0.25 * len(labels)  # classes roughly balanced

# %% [markdown]
# ## Classification: a trained CNN
#
# The simplest task first. `SmallCNN` is a seven-layer CNN that ends in **global average
# pooling** and one linear layer (the structure CAM needs in notebook 09). It was trained once
# with `python -m cvlib.train shapes_cnn`, which saved the checkpoint with its checksum and its
# provenance in `data/weights/`; here we load it and measure it on held-out scenes (a seed
# the training never saw).

# %%
model = recipes.load_model("shapes_cnn", device=device)
print(weights.load("shapes_cnn")["meta"]["command"], "->", weights.load("shapes_cnn")["meta"]["metrics"])
held_out = ShapesClassification(500, seed=1)
images, labels = collate_classification(list(held_out))
logits = predict(model, images, device=device)
held_out_accuracy = accuracy(logits, labels)
errors = int((logits.argmax(1) != labels).sum())
print(f"held-out accuracy: {held_out_accuracy:.3f} ({errors} errors in {len(labels)} scenes)")
if errors == 0:  # the "rule of three": no error in n trials bounds the error rate by 3 / n (95%)
    print(f"error rate below {3 / len(labels):.1%} with 95% confidence")
assert held_out_accuracy > 0.9

# %% [markdown]
# **This task is saturated.** Single-object classification of these synthetic scenes is easy:
# the shipped CNN makes no or almost no error on 500 held-out scenes, so its accuracy cannot
# tell two models apart (500 scenes resolve differences of about half a percent at best). The
# later notebooks therefore compare models on measures that are not saturated on these
# scenes: mIoU and boundary F-score for segmentation, mAP at strict IoU thresholds for
# detection, and training curves.

# %% [markdown]
# Training is one call to `cvlib.train.fit`, the loop every notebook uses. A few seconds of
# training from scratch already shows the loss falling (set `TRAIN_FROM_SCRATCH = True` to run
# the full recipe instead, about 30 s on a laptop CPU):

# %%
TRAIN_FROM_SCRATCH = False
if TRAIN_FROM_SCRATCH:
    from cvlib.recipes import RECIPES

    scratch = RECIPES["shapes_cnn"].build()
    RECIPES["shapes_cnn"].train(scratch, device)
else:
    from cvlib.models.blocks import SmallCNN

    scratch = SmallCNN(num_classes=3, width=16)
    train_loader = DataLoader(ShapesClassification(640, seed=0), batch_size=32, shuffle=True,
                              collate_fn=collate_classification)
    history = fit(scratch, train_loader, loss_fn=torch.nn.functional.cross_entropy,
                  epochs=2, max_steps=40, lr=1e-3, device=device)  # 20 batches of 32 per epoch
    plt.figure(figsize=(6.2, 2.8))
    plt.plot(history["step"], history["loss"])
    plt.xlabel("step")
    plt.ylabel("cross-entropy")
    plt.title(f"{len(history['step'])} steps from scratch")
    plt.show()
    first, last = np.mean(history["loss"][:5]), np.mean(history["loss"][-5:])
    print(f"loss {first:.3f} -> {last:.3f}")
    assert last < first

# %% [markdown]
# ## Export to COCO, read back with pycocotools
#
# The COCO format is what detection benchmarks and `pycocotools`' evaluation (used from
# notebook 04 on) expect: one list of images, one of annotations with boxes as
# $[x, y, w, h]$ and masks run-length encoded, one of categories. `to_coco` writes it; the
# official `pycocotools.coco.COCO` reads it back, and its masks and boxes equal ours.

# %%
import contextlib
import io

from pycocotools.coco import COCO

small = ShapesDataset(50, seed=3)
coco = COCO()
coco.dataset = to_coco(small)
with contextlib.redirect_stdout(io.StringIO()):  # pycocotools prints progress
    coco.createIndex()
print(len(coco.getImgIds()), "images,", len(coco.getAnnIds()), "annotations,",
      [c["name"] for c in coco.loadCats(coco.getCatIds())])
for index in range(len(small)):
    _, target = small[index]
    annotations = coco.loadAnns(coco.getAnnIds(imgIds=index))
    masks = np.stack([coco.annToMask(a) for a in annotations]) if annotations else np.zeros((0, 64, 64))
    assert np.array_equal(masks, target["masks"].numpy())
    xywh = torch.tensor([a["bbox"] for a in annotations]).reshape(-1, 4)
    assert torch.equal(torch.cat([xywh[:, :2], xywh[:, :2] + xywh[:, 2:]], 1), target["boxes"])
print("pycocotools reads back every mask and box exactly")

# %% [markdown]
# ## Summary
#
# - One synthetic scene labels all four tasks: a class, a semantic map, boxes with labels, and
#   instance masks; masks hold visible pixels and boxes are tight around them.
# - Targets follow torchvision's detection format (`boxes` float xyxy in pixels, `labels` in
#   $1..C$ with 0 for background), batched as lists by `collate_detection`.
# - Trained models are shipped as small checkpoints with a checksum and their provenance;
#   `cvlib.recipes.load_model(NAME)` loads one, `python -m cvlib.train NAME` rebuilds it.
# - `to_coco` exports the ground truth in the format `pycocotools` evaluates.
#
# ## Exercises
#
# 1. Make a dataset with `max_objects=8`. How many objects per scene survive the occlusion
#    rule on average? Why does the number not grow linearly?
# 2. A semantic map cannot tell two touching circles apart. Find such a scene with the
#    explorer above and explain which task can.
# 3. Train `SmallCNN` on 32x32 scenes (`ShapesClassification(..., image_size=32)`). Is it as
#    accurate? Which shapes does it confuse (compute a confusion matrix from `logits`)?
# 4. Export a dataset with `to_coco`, save it with `json.dump`, and load it with
#    `COCO(path)`. What does `coco.getAnnIds(catIds=[1])` return?
