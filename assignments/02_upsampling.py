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
# # 02 · Upsampling inside a network: unpooling and transposed convolution
#
# A segmentation network shrinks the image with pooling and strided convolutions, then has to
# grow its features back to $H \times W$ to label every pixel. The lectures list the ways to
# **upsample** ("unpooling"):
#
# | method | learnable | idea |
# |---|---|---|
# | nearest neighbour | no | copy each value into an $s \times s$ block |
# | bed of nails | no | the value at the top-left of its block, zeros elsewhere |
# | max unpooling | no | the value where the matching max-pooling layer found its maximum |
# | bilinear | no | interpolate linearly between the four nearest input pixels |
# | **transposed convolution** | yes | each input value places a weighted copy of the filter; overlaps are summed |
#
# The filter of a transposed convolution moves `stride` pixels in the **output** for every
# pixel in the **input**, so along each axis the output has
#
# $$H_\text{out} = (H_\text{in} - 1)\cdot s - 2p + d\,(k - 1) + p_\text{out} + 1$$
#
# pixels (kernel $k$, stride $s$, padding $p$, dilation $d$, output padding $p_\text{out}$).
# It is called *transposed* because an ordinary convolution is a matrix $C$ and this layer
# multiplies by $C^\top$.
#
# **You will learn** the lecture's worked examples (2x2 → 4x4 tables, the 1-D example, the 3x3
# transposed convolution with stride 2 and pad 1), see the convolution matrix and its
# transpose, watch a transposed convolution *learn* bilinear upsampling, and measure the claim
# that **checkerboard artefacts appear when the kernel size is not divisible by the stride**.
# Every function used here is in `cvlib.ops.upsample` and is tested against PyTorch's own ops.

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
import statistics

import matplotlib.pyplot as plt
import torch
import torch.nn.functional as F
from matplotlib import patches

from cvlib import runtime, viz, widgets
from cvlib.data import ShapesDataset
from cvlib.ops.upsample import (
    bed_of_nails,
    bilinear,
    bilinear_kernel,
    checkerboard_score,
    conv_matrix,
    conv_transpose1d_scatter,
    conv_transpose2d_matrix,
    conv_transpose2d_scatter,
    max_unpool,
    nearest,
    overlap_count,
    transposed_output_size,
)
from cvlib.train import fit

device = runtime.start(seed=0)  # the device, one CPU thread, the seeds

# %% [markdown]
# ## Unpooling: nearest neighbour, bed of nails, max unpooling
#
# The lecture's tables: a 2x2 input becomes 4x4. **Max unpooling** needs the matching
# max-pooling layer earlier in the network to *remember which element was the maximum*
# (`F.max_pool2d(..., return_indices=True)`); unpooling puts each value back at that position.

# %%
x = torch.tensor([[[[1.0, 2.0], [3.0, 4.0]]]])
pool_input = torch.tensor([[[[1.0, 2, 6, 3], [3, 5, 2, 1], [1, 2, 2, 1], [7, 3, 4, 8]]]])
pooled, indices = F.max_pool2d(pool_input, 2, return_indices=True)
tables = {
    "input 2x2": x,
    "nearest": nearest(x, 2),
    "bed of nails": bed_of_nails(x, 2),
    "max-pool input (max: red)": pool_input,
    "max unpooling": max_unpool(x, indices, (4, 4)),
}
fig, axes = plt.subplots(1, 5, figsize=(10, 2.3))
for ax, (title, table) in zip(axes, tables.items(), strict=True):
    viz.show_matrix(ax, table[0, 0], title, vmin=0, vmax=9)
rows, cols = indices[0, 0].flatten() // 4, indices[0, 0].flatten() % 4
axes[3].scatter(cols, rows, s=260, facecolors="none", edgecolors="red")
fig.tight_layout()
plt.show()

# %%
# NBVAL_CHECK_OUTPUT
for title in ["nearest", "bed of nails", "max unpooling"]:
    print(f"{title:14s}", tables[title][0, 0].int().tolist())
print("max pooling:  ", pooled[0, 0].int().tolist(), "at flat positions", indices[0, 0].tolist())

# %% [markdown]
# The same numbers as the slides, and the same as PyTorch's layers:

# %%
assert tables["nearest"][0, 0].tolist() == [[1, 1, 2, 2], [1, 1, 2, 2], [3, 3, 4, 4], [3, 3, 4, 4]]
assert tables["bed of nails"][0, 0].tolist() == [[1, 0, 2, 0], [0, 0, 0, 0], [3, 0, 4, 0], [0, 0, 0, 0]]
assert tables["max unpooling"][0, 0].tolist() == [[0, 0, 2, 0], [0, 1, 0, 0], [0, 0, 0, 0], [3, 0, 0, 4]]
assert torch.equal(tables["nearest"], F.interpolate(x, scale_factor=2, mode="nearest"))
assert torch.equal(tables["max unpooling"], F.max_unpool2d(x, indices, 2))
print("nearest and max unpooling equal F.interpolate and F.max_unpool2d")

# %% [markdown]
# ## Bilinear interpolation
#
# Output pixel $j$ of an axis looks up the input at position
# $u = (j + \tfrac12)\,\tfrac{H_\text{in}}{H_\text{out}} - \tfrac12$ (pixel *edges* of the
# two grids aligned, `align_corners=False`) or $u = j\,\tfrac{H_\text{in} - 1}{H_\text{out} - 1}$
# (corner pixel *centres* aligned, `align_corners=True`) and mixes its two neighbours
# $\lfloor u \rfloor$ and $\lfloor u \rfloor + 1$ with weights $1 - t$ and $t$,
# $t = u - \lfloor u \rfloor$; first along the rows, then along the columns.
# `cvlib.ops.upsample.bilinear` writes this out; it equals `F.interpolate`:

# %%
worst = 0.0
for size, align_corners in [((7, 5), False), ((7, 5), True), ((16, 16), False), ((3, 9), True)]:
    small = torch.rand(2, 3, 4, 5)
    ours = bilinear(small, size=size, align_corners=align_corners)
    theirs = F.interpolate(small, size=size, mode="bilinear", align_corners=align_corners)
    worst = max(worst, (ours - theirs).abs().max().item())
print(f"largest difference to F.interpolate: {worst:.1e}")
assert worst < 1e-5

# %% [markdown]
# On a scene shrunk 4x by average pooling, bilinear upsampling recovers it better than nearest
# neighbour (which shows the blocks):

# %%
scene = ShapesDataset(1, seed=0)[0][0][None]  # [1, 3, 64, 64]
tiny = F.avg_pool2d(scene, 4)  # [1, 3, 16, 16]
restored = {"nearest x4": nearest(tiny, 4), "bilinear x4": bilinear(tiny, scale=4)}
errors = {name: F.mse_loss(image, scene).item() for name, image in restored.items()}
fig, axes = plt.subplots(1, 4, figsize=(8, 2.3))
viz.show_image(axes[0], scene[0], "scene 64x64")
viz.show_image(axes[1], tiny[0], "avg-pooled 16x16")
for ax, (name, image) in zip(axes[2:], restored.items(), strict=True):
    viz.show_image(ax, image[0], f"{name}: MSE {errors[name]:.4f}")
fig.tight_layout()
plt.show()
assert errors["bilinear x4"] < errors["nearest x4"]

# %% [markdown]
# ## Transposed convolution: weighted copies of the filter
#
# ### The lecture's 1-D example
#
# Filter $[x, y, z]$, input $[a, b]$, stride 2: the output contains copies of the filter
# multiplied by the input values, two pixels apart, summed where they overlap. The output is
# linear in the input *and* in the filter, so feeding one-hot inputs and one-hot filters
# reveals the formula term by term: input $i$ times filter tap $j$ lands at output position
# $i \cdot s + j$.

# %%
# NBVAL_CHECK_OUTPUT
terms = [[] for _ in range(transposed_output_size(2, 3, stride=2))]
for i, a in enumerate("ab"):
    for j, w in enumerate("xyz"):
        out = conv_transpose1d_scatter(torch.eye(2)[i].view(1, 1, 2), torch.eye(3)[j].view(1, 1, 3), stride=2)
        for position in torch.nonzero(out[0, 0]).flatten().tolist():
            terms[position].append(f"{a}{w}")
print("output =", [" + ".join(t) for t in terms])
assert terms == [["ax"], ["ay"], ["az", "bx"], ["by"], ["bz"]]

# %% [markdown]
# With numbers, $a = 2, b = 3$ and filter $[1, 2, 3]$: each row below is the copy placed by one
# input value (a batch of one-hot inputs makes exactly these copies); the sum is the output,
# the same as `F.conv_transpose1d`.

# %%
a_b, filter_1d = torch.tensor([2.0, 3.0]), torch.tensor([[[1.0, 2.0, 3.0]]])
copies = conv_transpose1d_scatter(torch.diag(a_b)[:, None], filter_1d, stride=2)[:, 0]  # [2, 5]
output_1d = conv_transpose1d_scatter(a_b.view(1, 1, 2), filter_1d, stride=2)[0, 0]
assert torch.equal(copies.sum(0), output_1d)
assert torch.equal(output_1d, F.conv_transpose1d(a_b.view(1, 1, 2), filter_1d, stride=2)[0, 0])
fig, ax = plt.subplots(figsize=(8, 3.6))
viz.show_matrix(ax, torch.cat([copies, output_1d[None]]), "a·filter, b·filter, sum", vmax=12)
ax.set_yticks([0, 1, 2], ["a = 2", "b = 3", "output"])
plt.show()
print("output:", output_1d.tolist())

# %% [markdown]
# ### 3x3 transposed convolution, stride 2, pad 1
#
# The 2-D version: each of the four input values places a 3x3 copy of the filter (all ones
# here) on a 5x5 canvas, two pixels apart; `padding=1` crops one pixel from each side. That
# leaves 3x3; the slides' 4x4 output needs `output_padding=1`, one extra row and column at the
# end (the formula: $(2 - 1)\cdot 2 - 2 + 3 + 1 = 4$).

# %%
ones_3x3 = torch.ones(1, 1, 3, 3)
unit_inputs = torch.diag(x.flatten()).view(4, 1, 2, 2)  # one input value per image
copies_2d = conv_transpose2d_scatter(unit_inputs, ones_3x3, stride=2)[:, 0]  # [4, 5, 5]
canvas = copies_2d.sum(0)
lecture_out = conv_transpose2d_scatter(x, ones_3x3, stride=2, padding=1, output_padding=1)[0, 0]

fig, axes = plt.subplots(1, 6, figsize=(11, 2.2))
for ax, copy, value in zip(axes[:4], copies_2d, x.flatten().int().tolist(), strict=True):
    viz.show_matrix(ax, copy, f"copy for input {value}", vmin=0, vmax=10)
viz.show_matrix(axes[4], canvas, "sum (crop: red)", vmin=0, vmax=10)
axes[4].add_patch(patches.Rectangle((0.5, 0.5), 4, 4, fill=False, edgecolor="red", linewidth=2))
viz.show_matrix(axes[5], lecture_out, "output 4x4", vmin=0, vmax=10)
fig.tight_layout()
plt.show()

# %%
# NBVAL_CHECK_OUTPUT
print("output size without / with output_padding:", transposed_output_size(2, 3, 2, 1),
      transposed_output_size(2, 3, 2, 1, output_padding=1))
print("output:", lecture_out.int().tolist())
assert lecture_out.tolist() == [[1, 3, 2, 2], [4, 10, 6, 6], [3, 7, 4, 4], [3, 7, 4, 4]]
assert torch.equal(lecture_out, canvas[1:, 1:])

# %% [markdown]
# `conv_transpose2d_scatter` loops over the $k_H k_W$ taps of the filter: tap $(i, j)$ of all
# the copies lands on a strided grid of the output shifted by $(i d, j d)$. It equals
# `F.conv_transpose2d` for every stride, padding, output padding and dilation; here on 200
# random settings (the tests check many more):

# %%
generator = torch.Generator().manual_seed(0)
draw = lambda low, high: int(torch.randint(low, high + 1, (1,), generator=generator))
worst, checked = 0.0, 0
while checked < 200:
    stride, dilation, kernel, padding = draw(1, 3), draw(1, 3), draw(1, 4), draw(0, 2)
    settings = {"stride": stride, "padding": padding, "dilation": dilation,
                "output_padding": draw(0, max(stride, dilation) - 1)}
    height = draw(1, 5)
    try:
        transposed_output_size(height, kernel, **settings)
    except ValueError:
        continue  # padding crops the whole output
    inputs = torch.randn(2, 3, height, 5, generator=generator, dtype=torch.float64)
    weight = torch.randn(3, 2, kernel, kernel, generator=generator, dtype=torch.float64)
    expected = F.conv_transpose2d(inputs, weight, **settings)
    for transposed in (conv_transpose2d_scatter, conv_transpose2d_matrix):
        worst = max(worst, (transposed(inputs, weight, **settings) - expected).abs().max().item())
    checked += 1
print(f"{checked} settings, largest difference to F.conv_transpose2d: {worst:.1e}")
assert worst < 1e-10

# %% [markdown]
# ## The convolution matrix and its transpose
#
# An ordinary convolution is linear, so it is a matrix $C$ with one row per output pixel and
# one column per input pixel: row $p$ holds the filter weights at the input pixels that output
# pixel $p$ sees. A 3x3 filter (weights 1..9) on a 4x4 input with stride 1 gives a 2x2 output,
# so $C$ is $4 \times 16$; $C^\top$ is $16 \times 4$ and maps a 2x2 image to a 4x4 one. The
# lecture's "3x3 convolution, stride 2, pad 1" also takes 4x4 to 2x2, and its transpose is the
# 3x3 transposed convolution with stride 2, pad 1 (and output padding 1) from above.

# %%
kernel_3x3 = torch.arange(1.0, 10.0).view(3, 3)
matrices = {"C: 3x3 conv, 4x4 -> 2x2 (stride 1)": conv_matrix(kernel_3x3, (4, 4)),
            "C: stride 2, pad 1, 4x4 -> 2x2": conv_matrix(kernel_3x3, (4, 4), stride=2, padding=1)}
fig, axes = plt.subplots(2, 2, figsize=(10, 6.5), gridspec_kw={"width_ratios": [4, 1]})
for row, (title, matrix) in enumerate(matrices.items()):
    viz.show_matrix(axes[row, 0], matrix, f"{title}: {list(matrix.shape)}", vmin=0, vmax=12, aspect="auto")
    viz.show_matrix(axes[row, 1], matrix.T, f"C.T: {list(matrix.T.shape)}", vmin=0, vmax=12, aspect="auto")
fig.tight_layout()
plt.show()

# %%
image_4x4, image_2x2 = torch.randn(1, 1, 4, 4), torch.randn(1, 1, 2, 2)
c = matrices["C: stride 2, pad 1, 4x4 -> 2x2"]
weight_3x3 = kernel_3x3[None, None]
conv_error = (c @ image_4x4.flatten() - F.conv2d(image_4x4, weight_3x3, stride=2, padding=1).flatten()).abs().max()
transpose_error = (c.T @ image_2x2.flatten() - F.conv_transpose2d(
    image_2x2, weight_3x3, stride=2, padding=1, output_padding=1).flatten()).abs().max()
rank = torch.linalg.matrix_rank(c).item()
print(f"C @ x vs conv2d: {conv_error:.1e};  C.T @ y vs conv_transpose2d: {transpose_error:.1e}")
print(f"rank of C: {rank} of 16, so C.T @ C (16x16) has rank {rank}: not the identity")
assert conv_error < 1e-5 and transpose_error < 1e-5 and rank == 4

# %% [markdown]
# So the transposed convolution is **not** the inverse of the convolution: $C$ throws away 12
# of 16 dimensions, and nothing can bring them back. It only goes back to the *shape* of the
# input, with the same connectivity: input pixel $q$ of the convolution and output pixel $q$
# of the transposed convolution are connected to the same pixels through the same weights.
# (That is also how autograd computes the gradient of a convolution: multiplying by $C^\top$.)
#
# ## Fixed or learnable upsampling
#
# The fixed methods are transposed convolutions with fixed filters: nearest neighbour is a
# 2x2 all-ones filter with stride 2, bed of nails a filter with a single 1 at the top-left,
# and bilinear upsampling by 2 is the 4x4 "pyramid" `bilinear_kernel(4)` with stride 2, pad 1
# (FCN initialises its upsampling layers with it), up to the image border:

# %%
images = torch.rand(4, 1, 16, 16)
one_hot = torch.zeros(1, 1, 2, 2)
one_hot[..., 0, 0] = 1
as_transposed = conv_transpose2d_scatter(images, bilinear_kernel(4)[None, None], stride=2, padding=1)
assert torch.equal(nearest(images, 2), conv_transpose2d_scatter(images, torch.ones(1, 1, 2, 2), stride=2))
assert torch.equal(bed_of_nails(images, 2), conv_transpose2d_scatter(images, one_hot, stride=2))
bilinear_error = (as_transposed - bilinear(images, scale=2))[..., 2:-2, 2:-2].abs().max().item()
print(f"bilinear vs transposed conv with bilinear_kernel(4), inside the border: {bilinear_error:.1e}")
assert bilinear_error < 1e-5
print("bilinear_kernel(4) =\n", bilinear_kernel(4))

# %% [markdown]
# A *learnable* upsampling layer can find such a filter by itself. Train a randomly initialised
# `nn.ConvTranspose2d(1, 1, 4, stride=2, padding=1)` to reproduce bilinear upsampling of
# random images (the loss ignores a 2-pixel border, where the two differ), with the course's
# training loop for 320 steps:

# %%
torch.manual_seed(0)
batches = [(images, bilinear(images, scale=2)) for images in torch.rand(8, 16, 1, 16, 16)]
interior_mse = lambda out, target: F.mse_loss(out[..., 2:-2, 2:-2], target[..., 2:-2, 2:-2])
layer = torch.nn.ConvTranspose2d(1, 1, 4, stride=2, padding=1, bias=False)
initial = layer.weight.detach()[0, 0].clone()
history = fit(layer, batches, loss_fn=interior_mse, epochs=40, lr=0.05, weight_decay=0.0, device=device)
learned = layer.weight.detach().cpu()[0, 0]
kernel_error = (learned - bilinear_kernel(4)).abs().max().item()

fig, axes = plt.subplots(1, 4, figsize=(10, 2.4), gridspec_kw={"width_ratios": [1.4, 1, 1, 1]})
axes[0].semilogy(history["step"], history["loss"])
axes[0].set(title="interior MSE", xlabel="step")
for ax, (title, kernel) in zip(axes[1:], [("initial filter", initial), ("learned filter", learned),
                                          ("bilinear_kernel(4)", bilinear_kernel(4))], strict=True):
    viz.show_matrix(ax, kernel, title, fmt="{:.2f}", vmin=-0.3, vmax=0.6)
fig.tight_layout()
plt.show()
print(f"loss {history['loss'][0]:.3f} -> {history['loss'][-1]:.1e}; "
      f"largest difference to the bilinear filter: {kernel_error:.1e}")
assert history["loss"][-1] < 1e-6 and kernel_error < 1e-3

# %% [markdown]
# The layer learned exactly the bilinear filter. In a segmentation network the same layer is
# free to learn something better for its task; fixed upsampling has no such freedom (and no
# parameters to store).
#
# ## Checkerboard artefacts
#
# The claim: *checkerboard artefacts appear when the kernel size is not divisible by the
# stride*. With stride $s$, output pixel $t$ receives one tap from each copy that starts at
# $t - k < i\,s \le t$: that is $\lfloor k/s \rfloor$ or $\lceil k/s \rceil$ copies, the same
# number everywhere exactly when $s$ divides $k$. `overlap_count` counts the copies (the output
# for an all-ones input and an all-ones filter); `checkerboard_score` is its relative spread
# ``std / mean`` away from the border.

# %%
fig, axes = plt.subplots(1, 3, figsize=(9, 2.8), gridspec_kw={"width_ratios": [1, 1, 1.4]})
for ax, kernel in zip(axes[:2], (3, 4), strict=True):
    counts = overlap_count(6, kernel, stride=2)
    viz.show_matrix(ax, counts, f"k={kernel}, s=2: score {checkerboard_score(kernel, 2):.2f}",
                    numbers=False, vmin=0, vmax=4)
    axes[2].plot(counts[kernel + 1], marker=".", label=f"k={kernel}, s=2 (one row)")
axes[2].set(title="copies per output pixel", xlabel="output column", ylim=(0, 4.5))
axes[2].legend(fontsize=8)
fig.tight_layout()
plt.show()

# %%
kernels, strides = range(1, 8), range(1, 5)
scores = torch.tensor([[checkerboard_score(k, s) for k in kernels] for s in strides])
fig, ax = plt.subplots(figsize=(7, 3.6))
viz.show_matrix(ax, scores, "checkerboard score (0 = even)", fmt="{:.2f}", cmap="Reds")
ax.set_xticks(range(len(kernels)), [f"k={k}" for k in kernels])
ax.set_yticks(range(len(strides)), [f"s={s}" for s in strides])
ax.set(xlabel="kernel size k", ylabel="stride s")
plt.show()
divisible = torch.tensor([[k % s == 0 for k in kernels] for s in strides])
assert torch.equal(scores == 0, divisible)
assert scores[~divisible].min() > 0.1
print(f"score 0 for all {int(divisible.sum())} (k, s) with s | k; "
      f"between {scores[~divisible].min():.2f} and {scores[~divisible].max():.2f} for the other {int((~divisible).sum())}")

# %% [markdown]
# A trained filter can compensate the uneven overlap (the pyramid $[\frac12, 1, \frac12]$ with
# stride 2 has $k = 3$ and still gives a flat output), but it has to learn to. At the start of
# training, with random filters, uneven overlap makes the pattern much stronger: the output of
# a constant image, for 200 random positive filters each,

# %%
constant = torch.ones(1, 1, 12, 12)
random_scores = {}
for kernel in (3, 4):
    outputs = conv_transpose2d_scatter(constant, torch.rand(1, 200, kernel, kernel), stride=2)
    inner = outputs[0, :, kernel:-kernel, kernel:-kernel].flatten(1)  # [200, pixels]
    random_scores[kernel] = (inner.std(1, unbiased=False) / inner.mean(1)).mean().item()
print(f"mean checkerboard score of random filters: k=3, s=2: {random_scores[3]:.2f};  "
      f"k=4, s=2: {random_scores[4]:.2f}")
assert random_scores[3] > 1.5 * random_scores[4]

# %% [markdown]
# The usual remedies: pick $k$ divisible by $s$ (4 with stride 2, as FCN and DCGAN do), or
# *resize, then convolve*: nearest or bilinear upsampling followed by an ordinary convolution
# spreads every input value evenly. On a scene, an averaging filter upsampled with $k = 3$ shows
# the pattern; $k = 4$ and resize-convolve do not:

# %%
gray = F.avg_pool2d(scene.mean(1, keepdim=True), 2)  # [1, 1, 32, 32]
mean_3x3 = torch.ones(1, 1, 3, 3) / 9
upsampled = {
    "transposed k=3, s=2": conv_transpose2d_scatter(gray, torch.ones(1, 1, 3, 3) / 2.25, stride=2, padding=1, output_padding=1),
    "transposed k=4, s=2": conv_transpose2d_scatter(gray, torch.ones(1, 1, 4, 4) / 4, stride=2, padding=1),
    "nearest, then 3x3 conv": F.conv2d(nearest(gray, 2), mean_3x3, padding=1),
}
flat = F.conv2d(nearest(constant, 2), mean_3x3)[..., 3:-3, 3:-3]
fig, axes = plt.subplots(1, 3, figsize=(8, 2.9))
for ax, (title, image) in zip(axes, upsampled.items(), strict=True):
    viz.show_image(ax, image[0, 0, 16:48, 16:48], title, cmap="gray", vmin=0, vmax=1)
fig.tight_layout()
plt.show()
print(f"resize-convolve on a constant image: std / mean = {flat.std() / flat.mean():.1e}")
assert flat.std() / flat.mean() < 1e-6

# %% [markdown]
# ## Explore: kernel, stride, padding, output padding
#
# Left: the copies of a filter of ones placed by an input of length 4 (one row per input
# value), their sum (bottom row, with the counts) and the part that is kept (red: `padding`
# crops from both sides, `output_padding` adds at the end). Right: the 2-D output for a 4x4
# input, where uneven counts show up as a checkerboard.

# %%
IN = 4
fig, (ax_copies, ax_map) = plt.subplots(1, 2, figsize=(7.5, 2.8), gridspec_kw={"width_ratios": [2, 1]})
copies_image = ax_copies.imshow(torch.zeros(IN + 1, 1), cmap="Blues", vmin=0, vmax=4, aspect="auto")
sum_labels = [ax_copies.text(0, IN, "", ha="center", va="center", fontsize=8) for _ in range(32)]
kept = ax_copies.add_patch(patches.Rectangle((0, -0.5), 1, IN + 1, fill=False, edgecolor="red", linewidth=2))
ax_copies.set_yticks(range(IN + 1), [f"copy {i}" for i in range(IN)] + ["sum"])
map_image = ax_map.imshow(torch.zeros(1, 1), cmap="Blues", vmin=0, vmax=4)
ax_map.set_xticks([])
ax_map.set_yticks([])
fig.colorbar(map_image, ax=[ax_copies, ax_map], shrink=0.8, label="copies summed at a pixel")


def show_transposed(kernel, stride, padding, output_padding):
    try:
        size = transposed_output_size(IN, kernel, stride, padding, output_padding)
    except ValueError as error:  # e.g. output_padding >= stride: show why
        ax_copies.set_title(str(error), fontsize=8, color="red")
        return
    canvas_size = (IN - 1) * stride + kernel
    width = max(canvas_size, padding + size)
    rows = conv_transpose1d_scatter(torch.eye(IN)[:, None], torch.ones(1, 1, kernel), stride=stride)[:, 0]
    rows = F.pad(torch.cat([rows, rows.sum(0, keepdim=True)]), (0, width - canvas_size))
    copies_image.set_data(rows)
    copies_image.set_extent((-0.5, width - 0.5, IN + 0.5, -0.5))
    for column, label in enumerate(sum_labels):
        label.set_visible(column < width)
        if column < width:
            label.set_position((column, IN))
            label.set_text(f"{rows[IN, column]:.0f}")
    kept.set_bounds(padding - 0.5, -0.5, size, IN + 1)
    ax_copies.set_title(f"out = ({IN}-1)·{stride} - 2·{padding} + {kernel} + {output_padding} = {size}",
                        fontsize=9, color="black")
    counts = overlap_count(IN, kernel, stride, padding, output_padding)
    map_image.set_data(counts)
    map_image.set_extent((-0.5, size - 0.5, size - 0.5, -0.5))
    ax_map.set_title(f"{size}x{size} output, score {checkerboard_score(kernel, stride):.2f}", fontsize=9)


explorer = widgets.explore(
    fig, show_transposed,
    kernel=widgets.int_slider("kernel size k", 1, 7, 3),
    stride=widgets.int_slider("stride s", 1, 4, 2),
    padding=widgets.int_slider("padding p", 0, 3, 1),
    output_padding=widgets.int_slider("output padding", 0, 3, 1),
)

# %% [markdown]
# How long one slider step takes in this kernel (the redraw of the figure included):

# %%
step_seconds = [explorer.step("kernel") for _ in range(7)]  # k = 4, 5, 6, 7, 1, 2, back to 3
print(f"median slider step: {1000 * statistics.median(step_seconds):.0f} ms")

# %% [markdown]
# ## Summary
#
# - Fixed upsampling: **nearest** copies a value into its block, **bed of nails** puts it at
#   the block's corner, **max unpooling** at the position the matching max pooling remembered,
#   **bilinear** interpolates. Each is a transposed convolution with a fixed filter.
# - A **transposed convolution** places a copy of the filter, weighted by each input value,
#   `stride` pixels apart in the output and sums the overlaps; its size is
#   $(H - 1)s - 2p + d(k - 1) + p_\text{out} + 1$. It multiplies by $C^\top$, the transpose of
#   the convolution matrix: it restores the shape, not the values (it is not the inverse).
# - Being learnable, it can find bilinear upsampling by itself (here to $10^{-3}$ in 320 steps).
# - When $s$ does not divide $k$, output pixels receive different numbers of filter copies, a
#   checkerboard pattern (score 0 exactly when $s \mid k$); use $k$ divisible by $s$ or
#   resize-then-convolve.
#
# ## Exercises
#
# 1. With the explorer, find all $(k, s, p, p_\text{out})$ that take a 4-pixel input to exactly
#    8 pixels. Which of them give an even overlap?
# 2. Why must `output_padding` be smaller than the stride? Compute the output sizes of an
#    ordinary convolution with $k = 3, s = 2, p = 1$ on inputs of size 7 and 8.
# 3. Build `conv_matrix` for a 2x2 all-ones filter with stride 2 on a 4x4 input. What is
#    $C^\top C$? Which upsampling method of this notebook is $C^\top$?
# 4. Repeat the "learn bilinear" experiment with `kernel_size=3, stride=2, padding=1,
#    output_padding=1`. What filter does it learn, and how small does the loss get?
# 5. `F.max_unpool2d` with overlapping pooling windows (`kernel_size=3, stride=2`): what happens
#    when two windows pick the same maximum?

# %% [markdown]
# ## Your turn: implement it
#
# Write the upsampling layers of this notebook yourself: `max_unpool`, `bilinear` (the half-pixel
# convention of `align_corners=False`) and `conv_transpose2d_scatter` (the transposed convolution
# as summed filter copies). Each function has cvlib's signature and docstring; `check(name, fn)`
# runs it against cvlib's version on hand-picked edge cases (empty inputs, ties, thresholds at
# the boundary, non-contiguous tensors) and on seeded random cases, gradients included where the
# function is trained through. It prints `NAME: N cases passed`, or raises an `AssertionError`
# with the smallest failing input, the expected and the actual output and, when it recognises
# one, the classic mistake. A function that still raises `NotImplementedError` gets `NAME: not
# implemented yet`.
#
# In `notebooks/02_upsampling.ipynb` the solutions are filled in;
# `assignments/02_upsampling.ipynb` (written by `make assignments`) has a stub in their place.
# Nothing above uses these cells.

# %%
import math

import torch
import torch.nn.functional as F

from cvlib.exercises import check


# %% nbgrader={"grade": false, "grade_id": "max_unpool", "locked": false, "schema_version": 3, "solution": true}
def max_unpool(x, indices, output_size):
    """Max unpooling: put each value of ``x [N, C, h, w]`` back at the position ``indices``
    ``[N, C, h, w]`` (flat ``row * W + col`` in one ``H x W`` plane, from
    ``F.max_pool2d(..., return_indices=True)``), zeros elsewhere: ``[N, C, H, W]``, with
    ``(H, W) = output_size``."""
    # YOUR CODE HERE
    raise NotImplementedError()


# %%
check("max_unpool", max_unpool)


# %% nbgrader={"grade": false, "grade_id": "bilinear", "locked": false, "schema_version": 3, "solution": true}
def bilinear(x, scale=None, size=None, align_corners=False):
    """Bilinear resize of ``x [N, C, H, W]`` to ``size = (H_out, W_out)`` or by ``scale``
    (``H_out = floor(H * scale)``): interpolate along the rows, then along the columns. Equals
    ``F.interpolate(..., mode="bilinear", align_corners=align_corners)``."""
    # YOUR CODE HERE
    raise NotImplementedError()


# %%
check("bilinear", bilinear)


# %% nbgrader={"grade": false, "grade_id": "conv_transpose2d_scatter", "locked": false, "schema_version": 3, "solution": true}
def conv_transpose2d_scatter(x, weight, bias=None, stride=1, padding=0, output_padding=0, dilation=1):
    """Transposed convolution ``x [N, C_in, H, W]``, ``weight [C_in, C_out, kH, kW]``,
    ``bias [C_out]`` -> ``[N, C_out, H_out, W_out]``: every input pixel places a copy of the
    filter, weighted by its value, ``stride`` pixels apart in the output; overlaps are summed,
    then ``padding`` pixels are cropped from each side. Equals ``F.conv_transpose2d``."""
    # YOUR CODE HERE
    raise NotImplementedError()


# %%
check("conv_transpose2d_scatter", conv_transpose2d_scatter)
