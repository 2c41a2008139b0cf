"""Upsampling inside a network: the lecture's "unpooling" family and the transposed convolution.

Fixed upsampling (no parameters):

- :func:`nearest`: copy each value into an ``s x s`` block;
- :func:`bed_of_nails`: put each value at the top-left of its block, zeros elsewhere;
- :func:`max_unpool`: put each value where the matching max-pooling layer found its maximum;
- :func:`bilinear`: linear interpolation along rows, then along columns.

Learnable upsampling, the **transposed convolution**, written two ways that give the same numbers
as ``torch.nn.functional.conv_transpose2d``:

- :func:`conv_transpose2d_scatter`: each input value places a copy of the filter, weighted by the
  value, into the output; where copies overlap they are summed. The filter moves ``stride``
  pixels in the *output* for every pixel in the *input*.
- :func:`conv_transpose2d_matrix`: an ordinary convolution is a matrix ``C`` (:func:`conv_matrix`)
  that maps a large image to a small one; the transposed convolution multiplies by ``C.T``, which
  maps the small image back to the large size (it is *not* the inverse of the convolution).

Images are float tensors ``[N, C, H, W]``. Transposed-convolution weights use PyTorch's layout
``[C_in, C_out, kH, kW]``. ``groups`` is always 1.
"""

from __future__ import annotations

import math

import torch

from cvlib._checks import describe, integer, number, tensor

__all__ = [
    "nearest",
    "bed_of_nails",
    "max_unpool",
    "bilinear",
    "bilinear_kernel",
    "transposed_output_size",
    "conv_transpose2d_scatter",
    "conv_transpose1d_scatter",
    "conv_matrix",
    "conv_transpose2d_matrix",
    "overlap_count",
    "checkerboard_score",
]

Pair = int | tuple[int, int]


# --- argument checks ------------------------------------------------------------------------

def _pair(value: Pair, name: str, minimum: int) -> tuple[int, int]:
    """``value`` (an int or a pair of ints) as a pair, each ``>= minimum``, else ``ValueError``."""
    pair = (value, value) if not isinstance(value, (list, tuple)) else tuple(value)
    if len(pair) != 2:
        raise ValueError(f"{name} must be an int or a pair of ints >= {minimum}, got {value!r}")
    return tuple(integer(v, name, low=minimum) for v in pair)


def _check_images(x: torch.Tensor, name: str = "x", dtype: str | None = None) -> None:
    """``x`` must be a tensor ``[N, C, H, W]`` (of the ``dtype`` kind when given)."""
    tensor(x, name, shape=("N", "C", "H", "W"), dtype=dtype)


def _check_weight(weight: torch.Tensor, x: torch.Tensor) -> None:
    """``weight`` ``[C_in, C_out, kH, kW]`` of ``x``'s channels and dtype."""
    in_channels = x.shape[1]
    tensor(weight, "weight", shape=("C_in", "C_out", "kH", "kW"), dtype="float")
    if weight.dtype != x.dtype:
        raise ValueError(f"weight must have x's dtype {x.dtype}, got {weight.dtype}")
    if weight.shape[0] != in_channels:
        raise ValueError(
            f"weight must have C_in = {in_channels} (the channels of x) as its first dimension, "
            f"got weight of shape {tuple(weight.shape)}"
        )


# --- fixed upsampling -----------------------------------------------------------------------

def nearest(x: torch.Tensor, scale: Pair = 2) -> torch.Tensor:
    """Nearest-neighbour upsampling: every value fills an ``s x s`` block.

    ``x [N, C, H, W]`` -> ``[N, C, H * sH, W * sW]``; equals
    ``F.interpolate(x, scale_factor=scale, mode="nearest")`` for integer scales.
    """
    _check_images(x)
    sh, sw = _pair(scale, "scale", 1)
    return x.repeat_interleave(sh, dim=2).repeat_interleave(sw, dim=3)


def bed_of_nails(x: torch.Tensor, scale: Pair = 2) -> torch.Tensor:
    """"Bed of nails" unpooling: every value goes to the top-left corner of its ``s x s`` block,
    the rest of the block is zero.

    ``x [N, C, H, W]`` -> ``[N, C, H * sH, W * sW]``.
    """
    _check_images(x)
    sh, sw = _pair(scale, "scale", 1)
    n, c, h, w = x.shape
    out = x.new_zeros(n, c, h * sh, w * sw)
    out[:, :, ::sh, ::sw] = x
    return out


def max_unpool(x: torch.Tensor, indices: torch.Tensor, output_size: Pair) -> torch.Tensor:
    """Max unpooling: put every value back where the matching max-pooling layer found its max.

    ``x [N, C, h, w]`` are the values to place, ``indices [N, C, h, w]`` (int64) the positions
    returned by ``F.max_pool2d(..., return_indices=True)``, i.e. flat indices ``row * W + col``
    into one ``H x W`` plane, and ``output_size = (H, W)`` the size of the pooling layer's input.
    Returns ``[N, C, H, W]``, zero wherever no value lands; equals ``F.max_unpool2d``.
    """
    _check_images(x)
    if tensor(indices, "indices", dtype="int").shape != x.shape:
        raise ValueError(f"indices must be a tensor of x's shape {tuple(x.shape)}, got {describe(indices)}")
    height, width = _pair(output_size, "output_size", 1)
    if indices.numel() and not 0 <= int(indices.min()) <= int(indices.max()) < height * width:
        raise ValueError(f"indices must lie in [0, {height * width}) for output_size {output_size}")
    n, c = x.shape[:2]
    out = x.new_zeros(n, c, height * width)
    out.scatter_(2, indices.flatten(2).long(), x.flatten(2))
    return out.view(n, c, height, width)


def _linear_taps(
    in_size: int, out_size: int, scale: float | None, align_corners: bool
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """For every output position along one axis: the two input positions ``i0, i1 [out_size]``
    it lies between and the weight ``t [out_size]`` of ``i1`` (``i0`` gets ``1 - t``)."""
    dst = torch.arange(out_size, dtype=torch.float64)
    if align_corners:  # the corner pixels' centres of input and output coincide
        src = dst * ((in_size - 1) / (out_size - 1) if out_size > 1 else 0.0)
    else:  # the corner pixels' outer edges coincide; PyTorch uses 1 / scale when it is given
        ratio = 1.0 / scale if scale is not None else in_size / out_size
        src = ((dst + 0.5) * ratio - 0.5).clamp(min=0.0)
    i0 = src.floor().long().clamp(max=in_size - 1)
    i1 = (i0 + 1).clamp(max=in_size - 1)
    return i0, i1, src - i0


def bilinear(
    x: torch.Tensor,
    scale: float | None = None,
    size: Pair | None = None,
    align_corners: bool = False,
) -> torch.Tensor:
    """Bilinear upsampling (or downsampling) written out: interpolate linearly along the rows,
    then along the columns.

    ``x [N, C, H, W]`` -> ``[N, C, H_out, W_out]`` with ``(H_out, W_out) = size``, or
    ``floor(H * scale), floor(W * scale)``. Give exactly one of ``scale`` and ``size``. Equals
    ``F.interpolate(x, scale_factor=scale or size=size, mode="bilinear",
    align_corners=align_corners)``.
    """
    _check_images(x, dtype="float")  # integer images would round the interpolation weights
    if (scale is None) == (size is None):
        raise ValueError(f"give exactly one of scale and size, got scale={scale!r}, size={size!r}")
    if scale is not None:
        number(scale, "scale", low=0, low_open=True)
    height, width = x.shape[2:]
    out_h, out_w = (
        _pair(size, "size", 1) if size is not None
        else (math.floor(height * scale), math.floor(width * scale))
    )
    if min(out_h, out_w) < 1:
        raise ValueError(f"scale={scale} gives an empty output for an input of {height}x{width}")
    y0, y1, ty = _linear_taps(height, out_h, scale, align_corners)
    x0, x1, tx = _linear_taps(width, out_w, scale, align_corners)
    ty, tx = ty.to(x.dtype)[:, None], tx.to(x.dtype)
    rows = x[:, :, y0] * (1 - ty) + x[:, :, y1] * ty  # [N, C, H_out, W]
    return rows[..., x0] * (1 - tx) + rows[..., x1] * tx


def bilinear_kernel(kernel_size: int) -> torch.Tensor:
    """The ``[k, k]`` filter that makes a transposed convolution upsample bilinearly (FCN's init).

    It is a pyramid, the outer product of the 1-D "tent" ``1 - |i - centre| / f`` with
    ``f = ceil(k / 2)``. For upsampling by an integer factor ``s`` use
    ``kernel_size = 2 * s - s % 2``, ``stride = s``, ``padding = ceil((s - 1) / 2)``: the
    output then equals ``bilinear(x, scale=s)`` except within ``s`` pixels of the border (where
    the transposed convolution sees zero padding and interpolation repeats the edge).
    """
    integer(kernel_size, "kernel_size", low=1)
    factor = (kernel_size + 1) // 2
    centre = factor - 1 if kernel_size % 2 == 1 else factor - 0.5
    tent = 1 - (torch.arange(kernel_size, dtype=torch.float32) - centre).abs() / factor
    return tent[:, None] * tent[None, :]


# --- transposed convolution -----------------------------------------------------------------

def transposed_output_size(
    in_size: int, kernel_size: int,
    stride: int = 1, padding: int = 0, output_padding: int = 0, dilation: int = 1,
) -> int:
    """Output length of a transposed convolution along one axis:

    ``(in_size - 1) * stride - 2 * padding + dilation * (kernel_size - 1) + output_padding + 1``

    The filter copies cover ``(in_size - 1) * stride + dilation * (kernel_size - 1) + 1`` pixels;
    ``padding`` crops that many from each side, ``output_padding`` adds (zero-filled, unless the
    cropping removed them) pixels at the end. ``output_padding`` must be smaller than
    ``max(stride, dilation)``: it only picks one of the input sizes that an ordinary convolution
    with this stride maps to the same output size.
    """
    for name, value, minimum in [("in_size", in_size, 1), ("kernel_size", kernel_size, 1),
                                 ("stride", stride, 1), ("padding", padding, 0),
                                 ("output_padding", output_padding, 0), ("dilation", dilation, 1)]:
        integer(value, name, low=minimum)
    if output_padding >= max(stride, dilation):
        raise ValueError(
            f"output_padding must be smaller than max(stride, dilation) = {max(stride, dilation)}, "
            f"got {output_padding}"
        )
    size = (in_size - 1) * stride - 2 * padding + dilation * (kernel_size - 1) + output_padding + 1
    if size < 1:
        raise ValueError(f"padding={padding} is too large: the output would have size {size}")
    return size


def _output_shape(x, weight, bias, stride, padding, output_padding, dilation) -> tuple[int, int]:
    """The checked ``(H_out, W_out)`` of a transposed convolution of ``x`` with ``weight``."""
    _check_images(x, dtype="float")
    _check_weight(weight, x)
    if bias is not None:
        tensor(bias, "bias", shape=(weight.shape[1],), dtype="float")
    args = [_pair(stride, "stride", 1), _pair(padding, "padding", 0),
            _pair(output_padding, "output_padding", 0), _pair(dilation, "dilation", 1)]
    return tuple(  # type: ignore[return-value]
        transposed_output_size(x.shape[2 + d], weight.shape[2 + d], *(a[d] for a in args))
        for d in range(2)
    )


def conv_transpose2d_scatter(
    x: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor | None = None,
    stride: Pair = 1, padding: Pair = 0, output_padding: Pair = 0, dilation: Pair = 1,
) -> torch.Tensor:
    """Transposed convolution as "each input value places a weighted copy of the filter, and
    overlapping copies are summed".

    ``x [N, C_in, H, W]``, ``weight [C_in, C_out, kH, kW]``, ``bias [C_out]`` ->
    ``[N, C_out, H_out, W_out]`` with sizes from :func:`transposed_output_size`. Equals
    ``F.conv_transpose2d`` (``groups=1``).

    Input pixel ``(r, c)`` puts its copy of the filter at output rows
    ``r * sH + i * dH`` and columns ``c * sW + j * dW`` for the taps ``(i, j)``. The loop runs
    over the ``kH * kW`` taps rather than over the input pixels: tap ``(i, j)`` of *all* copies
    lands on a strided grid of the output, shifted by ``(i * dH, j * dW)``. Finally ``padding``
    pixels are cropped from each side.
    """
    out_h, out_w = _output_shape(x, weight, bias, stride, padding, output_padding, dilation)
    (sh, sw), (ph, pw) = _pair(stride, "stride", 1), _pair(padding, "padding", 0)
    dh, dw = _pair(dilation, "dilation", 1)
    n, _, h, w = x.shape
    c_out, k_h, k_w = weight.shape[1:]
    # the uncropped canvas: ``padding`` on each side of the output (at the end it may be empty)
    canvas = x.new_zeros(n, c_out, out_h + 2 * ph, out_w + 2 * pw)
    for i in range(k_h):
        for j in range(k_w):
            copies = torch.einsum("nchw,co->nohw", x, weight[:, :, i, j])  # [N, C_out, H, W]
            rows = slice(i * dh, i * dh + (h - 1) * sh + 1, sh)
            cols = slice(j * dw, j * dw + (w - 1) * sw + 1, sw)
            canvas[:, :, rows, cols] += copies
    out = canvas[:, :, ph:ph + out_h, pw:pw + out_w]
    return out if bias is None else out + bias.view(1, -1, 1, 1)


def conv_transpose1d_scatter(
    x: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor | None = None,
    stride: int = 1, padding: int = 0, output_padding: int = 0, dilation: int = 1,
) -> torch.Tensor:
    """The 1-D transposed convolution: ``x [N, C_in, L]``, ``weight [C_in, C_out, K]`` ->
    ``[N, C_out, L_out]``; equals ``F.conv_transpose1d``.

    The lecture's example: filter ``[x, y, z]``, input ``[a, b]``, stride 2 gives
    ``[a x, a y, a z + b x, b y, b z]``: two copies of the filter, scaled by ``a`` and ``b``,
    two pixels apart, summed where they overlap.
    """
    tensor(x, "x", shape=("N", "C", "L"), dtype="float")
    tensor(weight, "weight", shape=("C_in", "C_out", "K"), dtype="float")
    out = conv_transpose2d_scatter(
        x[:, :, None], weight[:, :, None], bias, (1, stride), (0, padding), (0, output_padding),
        (1, dilation),
    )
    return out[:, :, 0]


def _conv_size(in_size: int, kernel_size: int, stride: int, padding: int, dilation: int) -> int:
    """Output length of an ordinary convolution along one axis."""
    return (in_size + 2 * padding - dilation * (kernel_size - 1) - 1) // stride + 1


def _single_conv_matrix(kernel: torch.Tensor, input_size, stride, padding, dilation):
    """``kernel [kH, kW]`` -> the ``[H_out * W_out, H * W]`` matrix of one channel pair."""
    (h, w), (sh, sw), (ph, pw), (dh, dw) = input_size, stride, padding, dilation
    k_h, k_w = kernel.shape
    out_h, out_w = _conv_size(h, k_h, sh, ph, dh), _conv_size(w, k_w, sw, pw, dw)
    if min(out_h, out_w) < 1:
        raise ValueError(f"input_size {tuple(input_size)} is smaller than the (dilated) kernel")
    # every (output pixel, tap) pair: the input pixel under that tap
    oy, ox, i, j = torch.meshgrid(*(torch.arange(n) for n in (out_h, out_w, k_h, k_w)),
                                  indexing="ij")
    iy, ix = oy * sh - ph + i * dh, ox * sw - pw + j * dw
    inside = (iy >= 0) & (iy < h) & (ix >= 0) & (ix < w)  # taps on the zero padding add nothing
    matrix = kernel.new_zeros(out_h * out_w, h * w)
    rows, cols = (oy * out_w + ox)[inside], (iy * w + ix)[inside]
    matrix[rows, cols] = kernel[i[inside], j[inside]]  # each pair of pixels shares one tap at most
    return matrix


def conv_matrix(
    weight: torch.Tensor,
    input_size: Pair,
    stride: Pair = 1,
    padding: Pair = 0,
    dilation: Pair = 1,
) -> torch.Tensor:
    """The explicit matrix ``C`` of an ordinary convolution (cross-correlation, as ``F.conv2d``).

    For one channel pair, ``weight [kH, kW]`` -> ``C [H_out * W_out, H * W]`` with
    ``(H, W) = input_size``: row ``p`` holds the filter weights at the input pixels that output
    pixel ``p`` sees, so ``conv2d(x).flatten() == C @ x.flatten()``. Most entries are zero.

    For ``weight [C_out, C_in, kH, kW]`` (``F.conv2d``'s layout) ``C`` is the block matrix
    ``[C_out * H_out * W_out, C_in * H * W]`` whose block ``(o, c)`` is the matrix of
    ``weight[o, c]``, so that ``conv2d(x)[n].flatten() == C @ x[n].flatten()``.
    """
    tensor(weight, "weight", ndim=(2, 4), dtype="float")
    args = (_pair(input_size, "input_size", 1), _pair(stride, "stride", 1),
            _pair(padding, "padding", 0), _pair(dilation, "dilation", 1))
    if weight.ndim == 2:
        return _single_conv_matrix(weight, *args)
    return torch.cat([
        torch.cat([_single_conv_matrix(kernel, *args) for kernel in filters], dim=1)
        for filters in weight
    ], dim=0)


def conv_transpose2d_matrix(
    x: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor | None = None,
    stride: Pair = 1, padding: Pair = 0, output_padding: Pair = 0, dilation: Pair = 1,
) -> torch.Tensor:
    """Transposed convolution as multiplication by the transpose of a convolution matrix.

    ``x [N, C_in, H, W]``, ``weight [C_in, C_out, kH, kW]``, ``bias [C_out]`` ->
    ``[N, C_out, H_out, W_out]``; equals ``F.conv_transpose2d`` (``groups=1``).

    The same ``weight``, read in ``F.conv2d``'s layout ``[out, in, kH, kW]``, is an ordinary
    convolution from ``C_out`` channels of size ``H_out x W_out`` down to ``C_in`` channels of
    size ``H x W``: its matrix ``C`` (:func:`conv_matrix`) is ``[C_in * H * W,
    C_out * H_out * W_out]`` and the transposed convolution is ``out = C.T @ x`` for every
    image. For one channel pair, ``C.T`` is ``[H_out * W_out, H * W]``.
    (When ``output_padding >= stride``, the convolution gives more than ``H x W`` outputs;
    only the rows of the first ``H x W`` are kept.)
    """
    out_h, out_w = _output_shape(x, weight, bias, stride, padding, output_padding, dilation)
    strides, paddings, dilations = (_pair(stride, "stride", 1), _pair(padding, "padding", 0),
                                    _pair(dilation, "dilation", 1))
    c = conv_matrix(weight, (out_h, out_w), strides, paddings, dilations)
    n, c_in, h, w = x.shape
    conv_h, conv_w = (_conv_size(size, weight.shape[2 + d], strides[d], paddings[d], dilations[d])
                      for d, size in enumerate((out_h, out_w)))
    c = c.view(c_in, conv_h, conv_w, -1)[:, :h, :w].reshape(c_in * h * w, -1)
    out = (x.reshape(n, -1) @ c).view(n, -1, out_h, out_w)  # row-vector form of C.T @ x
    return out if bias is None else out + bias.view(1, -1, 1, 1)


# --- where the filter copies overlap --------------------------------------------------------

def overlap_count(
    in_size: Pair, kernel_size: Pair,
    stride: Pair = 1, padding: Pair = 0, output_padding: Pair = 0, dilation: Pair = 1,
) -> torch.Tensor:
    """How many filter copies cover each output pixel of a transposed convolution: the output
    for an all-ones input ``[H, W] = in_size`` and an all-ones filter. Returns ``[H_out, W_out]``
    (float). It is constant away from the border exactly when ``stride`` divides
    ``kernel_size``."""
    (h, w), (k_h, k_w) = _pair(in_size, "in_size", 1), _pair(kernel_size, "kernel_size", 1)
    ones = torch.ones(1, 1, h, w)
    return conv_transpose2d_scatter(ones, torch.ones(1, 1, k_h, k_w), None, stride, padding,
                                    output_padding, dilation)[0, 0]


def checkerboard_score(kernel_size: int, stride: int, in_size: int = 12) -> float:
    """Relative unevenness ``std / mean`` of :func:`overlap_count` away from the border
    (``kernel_size`` pixels cropped on each side, no padding): 0 when every output pixel gets
    the same number of filter copies, > 0 when some get more (a checkerboard pattern)."""
    counts = overlap_count(integer(in_size, "in_size", low=1), integer(kernel_size, "kernel_size", low=1),
                           integer(stride, "stride", low=1))
    interior = counts[kernel_size:-kernel_size, kernel_size:-kernel_size]
    if interior.numel() < 4:
        raise ValueError(f"in_size={in_size} is too small for kernel_size={kernel_size}")
    return (interior.std(unbiased=False) / interior.mean()).item()
