"""cvlib.losses.sigmoid_focal_loss equals torchvision's, and focuses on the hard examples."""

import pytest
import torch
import torchvision
from hypothesis import given
from hypothesis import strategies as st

from cvlib.losses import sigmoid_focal_loss


@given(
    st.integers(0, 1000),
    st.sampled_from([0.25, 0.5, -1.0]),
    st.sampled_from([0.0, 1.0, 2.0, 3.5]),
    st.sampled_from(["none", "mean", "sum"]),
    st.booleans(),
)
def test_sigmoid_focal_loss_equals_torchvision(seed, alpha, gamma, reduction, soft):
    g = torch.Generator().manual_seed(seed)
    inputs = torch.randn(6, 5, generator=g) * 4
    targets = torch.rand(6, 5, generator=g) if soft else (torch.rand(6, 5, generator=g) < 0.2).float()
    ours = sigmoid_focal_loss(inputs, targets, alpha, gamma, reduction)
    theirs = torchvision.ops.sigmoid_focal_loss(inputs, targets, alpha, gamma, reduction)
    torch.testing.assert_close(ours, theirs)


def test_focal_loss_gradient_equals_torchvision():
    inputs = torch.randn(20, requires_grad=True)
    targets = (torch.rand(20) < 0.3).float()
    sigmoid_focal_loss(inputs, targets, reduction="sum").backward()
    ours, inputs.grad = inputs.grad, None
    torchvision.ops.sigmoid_focal_loss(inputs, targets, reduction="sum").backward()
    torch.testing.assert_close(ours, inputs.grad)


def test_focal_loss_down_weights_easy_examples():
    """gamma = 0 and alpha < 0 is binary cross-entropy; gamma = 2 shrinks an easy negative
    (p = 0.01) by (0.01)^2 but a hard one (p = 0.9) only by 0.9^2."""
    logits = torch.logit(torch.tensor([0.01, 0.9]))
    targets = torch.zeros(2)
    bce = torch.nn.functional.binary_cross_entropy_with_logits(logits, targets, reduction="none")
    torch.testing.assert_close(sigmoid_focal_loss(logits, targets, alpha=-1, gamma=0), bce)
    ratio = sigmoid_focal_loss(logits, targets, alpha=-1, gamma=2) / bce
    torch.testing.assert_close(ratio, torch.tensor([0.01**2, 0.9**2]))


def test_focal_loss_bad_input():
    with pytest.raises(ValueError, match="same shape"):
        sigmoid_focal_loss(torch.zeros(2, 3), torch.zeros(3, 2))
    with pytest.raises(ValueError, match="gamma"):
        sigmoid_focal_loss(torch.zeros(2), torch.zeros(2), gamma=-1)
    with pytest.raises(ValueError, match="reduction"):
        sigmoid_focal_loss(torch.zeros(2), torch.zeros(2), reduction="max")
