"""cvlib.models.swin: window attention equals torchvision's shifted_window_attention with the same
weights (shifted or not, square or not), equals global attention when one window covers the grid,
the shift mask keeps regions apart, and the analytic multiply-adds equal what FlopCounterMode counts."""

from __future__ import annotations

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from torch.utils.flop_counter import FlopCounterMode
from torchvision.models.swin_transformer import shifted_window_attention

from cvlib.models.swin import (
    WindowAttention,
    attention_macs,
    shifted_window_mask,
    window_merge,
    window_partition,
)

torch.set_num_threads(1)
ATOL = 1e-5


def torchvision_window_attention(module: WindowAttention, x: torch.Tensor, shift: int) -> torch.Tensor:
    """torchvision's function with the module's weights and no relative position bias."""
    heads, tokens = module.attn.heads, module.window**2
    return shifted_window_attention(
        x, module.attn.qkv.weight, module.attn.proj.weight, torch.zeros(heads, tokens, tokens),
        [module.window, module.window], heads, [shift, shift], qkv_bias=module.attn.qkv.bias,
        proj_bias=module.attn.proj.bias, training=False)


@settings(max_examples=30, deadline=None)
@given(window=st.integers(1, 4), rows=st.integers(1, 3), cols=st.integers(1, 3),
       heads=st.sampled_from([1, 2, 4]), shifted=st.booleans(), batch=st.integers(1, 2),
       seed=st.integers(0, 2**16))
def test_window_attention_equals_torchvision(window, rows, cols, heads, shifted, batch, seed):
    torch.manual_seed(seed)
    shift = window // 2 if shifted else 0
    module = WindowAttention(8, heads, window, shift).eval()
    x = torch.randn(batch, rows * window, cols * window, 8)
    with torch.no_grad():
        out = module(x)
        ref = torchvision_window_attention(module, x, shift)
    assert out.shape == x.shape
    torch.testing.assert_close(out, ref, atol=ATOL, rtol=0)


def test_the_mask_matters():
    """Without the shift mask, tokens wrapped around the border would attend to each other."""
    torch.manual_seed(0)
    module = WindowAttention(8, 2, 4, 2).eval()
    x = torch.randn(1, 8, 8, 8)
    with torch.no_grad():
        windows = window_partition(torch.roll(x, (-2, -2), (1, 2)), 4)
        unmasked = torch.roll(window_merge(module.attn(windows)[0], 4, 8, 8), (2, 2), (1, 2))
        assert (module(x) - unmasked).abs().max() > 1e-2
    # the last window of the rolled 8 x 8 grid holds four regions of 4 tokens: each sees only its own
    mask = shifted_window_mask(8, 8, 4, 2)
    assert mask.shape == (4, 16, 16)
    assert mask[0].all() and mask[3].sum(-1).tolist() == [4] * 16
    assert mask[1].sum(-1).tolist() == [8] * 16 and mask[2].sum(-1).tolist() == [8] * 16
    assert shifted_window_mask(8, 8, 4, 0).all()
    assert torch.equal(mask, mask.transpose(1, 2))


@pytest.mark.parametrize("window", [3, 4])
def test_one_window_is_global_attention(window):
    """A window that covers the grid is global self-attention over the H W tokens (shift ignored)."""
    torch.manual_seed(0)
    module = WindowAttention(8, 2, window, window // 2).eval()
    x = torch.randn(2, window, window, 8)
    with torch.no_grad():
        out = module(x)
        ref = module.attn(x.reshape(2, window * window, 8))[0].reshape(x.shape)
    torch.testing.assert_close(out, ref, atol=ATOL, rtol=0)


@settings(max_examples=20, deadline=None)
@given(window=st.integers(1, 4), rows=st.integers(1, 3), cols=st.integers(1, 3), channels=st.integers(1, 5))
def test_partition_and_merge_are_inverse(window, rows, cols, channels):
    x = torch.randn(2, rows * window, cols * window, channels)
    windows = window_partition(x, window)
    assert windows.shape == (2 * rows * cols, window * window, channels)
    torch.testing.assert_close(windows[0].reshape(window, window, channels), x[0, :window, :window])
    assert torch.equal(window_merge(windows, window, rows * window, cols * window), x)


@pytest.mark.parametrize("window", [None, 2, 4])
@pytest.mark.parametrize("side", [4, 8])
def test_macs_equal_the_flop_counter(window, side):
    """FlopCounterMode counts 2 FLOPs per multiply-add of the matrix products (softmax not counted)."""
    module = WindowAttention(16, 4, window or side).eval()
    with FlopCounterMode(display=False) as counter, torch.no_grad():
        module(torch.randn(1, side, side, 16))
    assert counter.get_total_flops() == 2 * attention_macs(side * side, 16, window)["total"]


def test_window_cost_grows_linearly():
    small, large = attention_macs(64, 32, 4)["attention"], attention_macs(256, 32, 4)["attention"]
    assert large == 4 * small  # 4x the tokens, 4x the cost
    assert attention_macs(256, 32)["attention"] == 16 * attention_macs(64, 32)["attention"]


def test_bad_input():
    with pytest.raises(ValueError, match="window"):
        WindowAttention(8, 2, 3)(torch.randn(1, 4, 4, 8))
    with pytest.raises(ValueError, match="x"):
        WindowAttention(8, 2, 2)(torch.randn(1, 4, 4, 6))
    with pytest.raises(ValueError, match="shift"):
        WindowAttention(8, 2, 4, shift=4)
    with pytest.raises(ValueError, match="shift"):
        shifted_window_mask(8, 8, 4, -1)
    with pytest.raises(ValueError, match="window"):
        attention_macs(16, 8, window=5)
    with pytest.raises(ValueError, match="windows"):
        window_merge(torch.randn(3, 4, 2), 2, 4, 4)
