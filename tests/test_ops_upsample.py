"""cvlib.ops.upsample: the lecture's worked examples, equality with PyTorch's ops on random shapes
(hypothesis), and bad input."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from hypothesis import assume, given
from hypothesis import strategies as st

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

TWO_BY_TWO = torch.tensor([[[[1.0, 2.0], [3.0, 4.0]]]])


# --- the lecture's worked examples ----------------------------------------------------------

def test_nearest_lecture_table():
    expected = [[1, 1, 2, 2], [1, 1, 2, 2], [3, 3, 4, 4], [3, 3, 4, 4]]
    assert nearest(TWO_BY_TWO, 2)[0, 0].tolist() == expected


def test_bed_of_nails_lecture_table():
    expected = [[1, 0, 2, 0], [0, 0, 0, 0], [3, 0, 4, 0], [0, 0, 0, 0]]
    assert bed_of_nails(TWO_BY_TWO, 2)[0, 0].tolist() == expected


def test_max_unpool_lecture_table():
    pool_input = torch.tensor([[[[1.0, 2, 6, 3], [3, 5, 2, 1], [1, 2, 2, 1], [7, 3, 4, 8]]]])
    pooled, indices = F.max_pool2d(pool_input, 2, return_indices=True)
    assert pooled[0, 0].tolist() == [[5, 6], [7, 8]]
    expected = [[0, 0, 2, 0], [0, 1, 0, 0], [0, 0, 0, 0], [3, 0, 0, 4]]
    assert max_unpool(TWO_BY_TWO, indices, (4, 4))[0, 0].tolist() == expected


def test_transposed_conv_3x3_stride_2_pad_1_lecture_example():
    # 2x2 -> 4x4 needs output_padding=1; without it the output is 3x3
    assert transposed_output_size(2, 3, stride=2, padding=1, output_padding=1) == 4
    assert transposed_output_size(2, 3, stride=2, padding=1) == 3
    ones = torch.ones(1, 1, 3, 3)
    # copies of the all-ones filter at (0,0)*1, (0,2)*2, (2,0)*3, (2,2)*4 on a 5x5 canvas, crop 1
    expected = [[1, 3, 2, 2], [4, 10, 6, 6], [3, 7, 4, 4], [3, 7, 4, 4]]
    for transposed in (conv_transpose2d_scatter, conv_transpose2d_matrix):
        out = transposed(TWO_BY_TWO, ones, stride=2, padding=1, output_padding=1)
        assert out[0, 0].tolist() == expected
    torch_out = F.conv_transpose2d(TWO_BY_TWO, ones, stride=2, padding=1, output_padding=1)
    assert torch_out[0, 0].tolist() == expected


def test_transposed_conv_1d_lecture_example():
    a, b, x, y, z = 2.0, 3.0, 5.0, 7.0, 11.0
    out = conv_transpose1d_scatter(torch.tensor([[[a, b]]]), torch.tensor([[[x, y, z]]]), stride=2)
    assert out[0, 0].tolist() == [a * x, a * y, a * z + b * x, b * y, b * z]


def test_transposed_conv_1d_is_the_lecture_formula_symbolically():
    # the output is bilinear in (input, filter), so unit vectors give its formula term by term:
    # input[i] * filter[j] lands at output position i * stride + j and nowhere else
    eye_in, eye_filter = torch.eye(2), torch.eye(3)
    for i in range(2):
        for j in range(3):
            out = conv_transpose1d_scatter(eye_in[i].view(1, 1, 2), eye_filter[j].view(1, 1, 3),
                                           stride=2)
            assert out[0, 0].tolist() == torch.eye(5)[2 * i + j].tolist()


def test_conv_matrix_of_3x3_filter_on_4x4_input():
    kernel = torch.arange(1.0, 10.0).view(3, 3)
    matrix = conv_matrix(kernel, (4, 4))
    assert matrix.shape == (4, 16)  # [out_pixels = 2 * 2, in_pixels = 4 * 4]
    first_row = [1, 2, 3, 0, 4, 5, 6, 0, 7, 8, 9, 0, 0, 0, 0, 0]
    assert matrix[0].tolist() == first_row
    assert matrix[3].tolist() == [0] * 5 + first_row[:11]
    # stride 2 pad 1 on 4x4 -> 2x2, the lecture's "normal 3x3 convolution, stride 2 pad 1"
    assert conv_matrix(kernel, (4, 4), stride=2, padding=1).shape == (4, 16)


# --- equality with PyTorch ------------------------------------------------------------------

@st.composite
def transposed_conv_cases(draw):
    stride = (draw(st.integers(1, 3)), draw(st.integers(1, 3)))
    dilation = (draw(st.integers(1, 3)), draw(st.integers(1, 3)))
    kernel = (draw(st.integers(1, 4)), draw(st.integers(1, 4)))
    padding = (draw(st.integers(0, 2)), draw(st.integers(0, 2)))
    output_padding = tuple(draw(st.integers(0, max(s, d) - 1))
                           for s, d in zip(stride, dilation, strict=True))
    size = (draw(st.integers(1, 5)), draw(st.integers(1, 5)))
    channels = (draw(st.integers(1, 3)), draw(st.integers(1, 3)))
    out_size = [(n - 1) * s - 2 * p + d * (k - 1) + o + 1
                for n, s, p, d, k, o in zip(size, stride, padding, dilation, kernel, output_padding,
                                            strict=True)]
    assume(min(out_size) >= 1)
    generator = torch.Generator().manual_seed(draw(st.integers(0, 2**16)))
    x = torch.randn(2, channels[0], *size, generator=generator, dtype=torch.float64)
    weight = torch.randn(*channels, *kernel, generator=generator, dtype=torch.float64)
    bias = torch.randn(channels[1], generator=generator, dtype=torch.float64)
    return x, weight, bias, {"stride": stride, "padding": padding,
                             "output_padding": output_padding, "dilation": dilation}


@given(transposed_conv_cases())
def test_transposed_conv_both_ways_equal_torch(case):
    x, weight, bias, kwargs = case
    expected = F.conv_transpose2d(x, weight, bias, **kwargs)
    torch.testing.assert_close(conv_transpose2d_scatter(x, weight, bias, **kwargs), expected)
    torch.testing.assert_close(conv_transpose2d_matrix(x, weight, bias, **kwargs), expected)
    names = ("stride", "padding", "output_padding", "dilation")
    sizes = [transposed_output_size(x.shape[2 + d], weight.shape[2 + d],
                                    *(kwargs[n][d] for n in names)) for d in range(2)]
    assert list(expected.shape[2:]) == sizes


@given(transposed_conv_cases())
def test_conv_matrix_times_image_is_conv2d(case):
    x, weight, _, kwargs = case
    y = F.conv_transpose2d(x, weight, **kwargs)  # an input size the ordinary convolution accepts
    del kwargs["output_padding"]
    matrix = conv_matrix(weight, y.shape[2:], **kwargs)  # read as conv2d's [out, in, kH, kW]
    conv = F.conv2d(y, weight, **kwargs)
    torch.testing.assert_close(y.flatten(1) @ matrix.T, conv.flatten(1))


def test_conv_transpose1d_equals_torch():
    x, weight, bias = torch.randn(2, 3, 5), torch.randn(3, 2, 4), torch.randn(2)
    kwargs = {"stride": 3, "padding": 2, "output_padding": 1, "dilation": 2}
    torch.testing.assert_close(conv_transpose1d_scatter(x, weight, bias, **kwargs),
                               F.conv_transpose1d(x, weight, bias, **kwargs))


@given(st.integers(1, 4), st.integers(1, 4), st.integers(1, 5), st.integers(1, 5))
def test_nearest_and_bed_of_nails(sh, sw, h, w):
    x = torch.randn(2, 3, h, w)
    expected = F.interpolate(x, scale_factor=(sh, sw), mode="nearest")
    torch.testing.assert_close(nearest(x, (sh, sw)), expected)
    nails = bed_of_nails(x, (sh, sw))
    assert torch.equal(nails[:, :, ::sh, ::sw], x)
    assert torch.count_nonzero(nails) == torch.count_nonzero(x)  # zeros everywhere else


@given(st.integers(1, 3), st.integers(1, 3), st.integers(2, 8), st.integers(2, 8))
def test_max_unpool_equals_torch(kernel, stride, h, w):
    assume(kernel <= min(h, w))
    x = torch.randn(2, 3, h, w)
    pooled, indices = F.max_pool2d(x, kernel, stride, return_indices=True)
    # overlapping windows can pick the same maximum twice: unpool the pooled values (which then
    # agree); with disjoint windows any values
    values = torch.randn_like(pooled) if stride >= kernel else pooled
    expected = F.max_unpool2d(values, indices, kernel, stride, output_size=(h, w))
    assert torch.equal(max_unpool(values, indices, (h, w)), expected)


@given(st.integers(1, 6), st.integers(1, 6), st.integers(1, 9), st.integers(1, 9), st.booleans())
def test_bilinear_to_a_size_equals_torch(h, w, out_h, out_w, align_corners):
    x = torch.randn(2, 3, h, w)
    expected = F.interpolate(x, size=(out_h, out_w), mode="bilinear", align_corners=align_corners)
    out = bilinear(x, size=(out_h, out_w), align_corners=align_corners)
    torch.testing.assert_close(out, expected)


@given(st.sampled_from([1, 2, 3, 4, 0.5, 1.5, 2.5]), st.integers(2, 6), st.booleans())
def test_bilinear_by_a_scale_equals_torch(scale, size, align_corners):
    x = torch.randn(1, 2, size, size + 1)
    assume(int(size * scale) >= 1)
    expected = F.interpolate(x, scale_factor=scale, mode="bilinear", align_corners=align_corners)
    torch.testing.assert_close(bilinear(x, scale=scale, align_corners=align_corners), expected)


def test_bilinear_kernel_values():
    tent = torch.tensor([0.25, 0.75, 0.75, 0.25])
    torch.testing.assert_close(bilinear_kernel(4), tent[:, None] * tent[None, :])
    assert bilinear_kernel(3)[1, 1] == 1 and bilinear_kernel(3)[0, 0] == 0.25


@pytest.mark.parametrize("scale", [2, 3, 4])
def test_bilinear_kernel_makes_transposed_conv_bilinear_away_from_the_border(scale):
    x = torch.randn(1, 1, 8, 8)
    kernel = bilinear_kernel(2 * scale - scale % 2)[None, None]
    out = conv_transpose2d_scatter(x, kernel, stride=scale, padding=(scale - 1 + 1) // 2)
    expected = bilinear(x, scale=scale)
    assert out.shape == expected.shape
    inner = (..., slice(scale, -scale), slice(scale, -scale))
    torch.testing.assert_close(out[inner], expected[inner])


@pytest.mark.parametrize("kernel", range(1, 8))
@pytest.mark.parametrize("stride", range(1, 5))
def test_checkerboard_exactly_when_stride_does_not_divide_kernel(kernel, stride):
    score = checkerboard_score(kernel, stride)
    assert (score == 0) == (kernel % stride == 0)


def test_overlap_count_is_transposed_conv_of_ones():
    counts = overlap_count((3, 4), 3, stride=2, padding=1, output_padding=1)
    assert counts.shape == (6, 8)
    assert counts[1:-1, 1:-1].unique().tolist() == [1, 2, 4]


# --- bad input ------------------------------------------------------------------------------

X, W = torch.randn(1, 2, 3, 3), torch.randn(2, 1, 3, 3)


@pytest.mark.parametrize("call, name", [
    (lambda: conv_transpose2d_scatter(X, W, stride=-1), "stride"),
    (lambda: conv_transpose2d_matrix(X, W, stride=0), "stride"),
    (lambda: conv_transpose2d_scatter(X, W, padding=-1), "padding"),
    (lambda: conv_transpose2d_scatter(X, W, stride=2, output_padding=2), "output_padding"),
    (lambda: conv_transpose2d_scatter(X, W, dilation=0), "dilation"),
    (lambda: conv_transpose2d_scatter(X, W, padding=5), "padding"),
    (lambda: conv_transpose2d_scatter(X[0], W), "x"),
    (lambda: conv_transpose2d_matrix(X, W[0]), "weight"),
    (lambda: conv_transpose2d_scatter(X, torch.randn(3, 1, 3, 3)), "weight"),
    (lambda: conv_transpose1d_scatter(X, W), "x"),
    (lambda: conv_matrix(W[0, 0], (2, 2)), "input_size"),
    (lambda: conv_matrix(torch.randn(3), (4, 4)), "weight"),
    (lambda: conv_matrix(W[0, 0], (4, 4), stride=-2), "stride"),
    (lambda: nearest(X, 0), "scale"),
    (lambda: nearest(X[0], 2), "x"),
    (lambda: bed_of_nails(X, -1), "scale"),
    (lambda: max_unpool(X, torch.zeros(1, 2, 3, 3, dtype=torch.long) + 99, (4, 4)), "indices"),
    (lambda: max_unpool(X, torch.zeros(1, 2, 2, 2, dtype=torch.long), (4, 4)), "indices"),
    (lambda: max_unpool(X, torch.zeros_like(X, dtype=torch.long), (0, 4)), "output_size"),
    (lambda: bilinear(X), "scale and size"),
    (lambda: bilinear(X, scale=2, size=(4, 4)), "scale and size"),
    (lambda: bilinear(X, scale=-2), "scale"),
    (lambda: bilinear(X, scale=0.1), "scale"),
    (lambda: bilinear_kernel(0), "kernel_size"),
    (lambda: transposed_output_size(0, 3), "in_size"),
    (lambda: transposed_output_size(4, 3, stride=-2), "stride"),
    (lambda: transposed_output_size(4, 3, stride=2, dilation=3, output_padding=3),
     "output_padding"),
])
def test_bad_input_raises_value_error_naming_the_argument(call, name):
    with pytest.raises(ValueError, match=name):
        call()
