"""cvlib.models.resnet: shapes, the plain twin differs only by the shortcut, stochastic depth keeps
the expectation, the loss falls, and bad input raises a ValueError naming the argument."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from model_checks import totals, train_steps

from cvlib.models.resnet import BasicBlock, ResNet, drop_path

torch.set_num_threads(1)


@pytest.mark.parametrize("residual", [True, False])
@pytest.mark.parametrize("size", [(32, 32), (40, 24)])
def test_shapes_and_depth(residual, size):
    model = ResNet(num_classes=3, width=4, blocks=2, residual=residual)
    assert model(torch.rand(2, 3, *size)).shape == (2, 3)
    convs = [m for m in model.modules() if isinstance(m, torch.nn.Conv2d) and m.kernel_size == (3, 3)]
    assert len(convs) + 1 == 6 * 2 + 2  # 3x3 convs + the fc layer


def test_plain_twin_differs_only_by_the_shortcut():
    residual, plain = ResNet(width=4, blocks=2), ResNet(width=4, blocks=2, residual=False)
    plain_names = set(dict(plain.named_parameters()))
    extra = set(dict(residual.named_parameters())) - plain_names
    assert plain_names <= set(dict(residual.named_parameters()))
    assert extra and all(".shortcut." in name for name in extra)  # the 1x1 projections only


def test_block_is_identity_plus_branch():
    block = BasicBlock(4, 4).eval()
    x = torch.rand(2, 4, 8, 8)
    torch.testing.assert_close(block(x), torch.relu(block.body(x) + x))
    plain = BasicBlock(4, 4, residual=False).eval()
    plain.load_state_dict(block.state_dict())
    torch.testing.assert_close(plain(x), torch.relu(block.body(x)))


def test_drop_path():
    torch.manual_seed(0)
    x = torch.ones(4000, 3)
    out = drop_path(x, 0.25)
    kept = out[:, 0] != 0
    assert 0.7 < kept.float().mean() < 0.8
    assert torch.allclose(out[kept], torch.full_like(out[kept], 1 / 0.75))  # whole samples, rescaled
    assert out.mean().item() == pytest.approx(1.0, abs=0.05)
    assert torch.equal(drop_path(x, 0.25, training=False), x)
    with pytest.raises(ValueError, match="p must"):
        drop_path(x, 1.0)


def test_stochastic_depth_rises_with_depth_and_is_off_in_eval():
    model = ResNet(width=4, blocks=2, drop_path_rate=0.5)
    probs = [block.drop_prob for block in model.layers]
    assert probs[0] == 0 and probs[-1] == pytest.approx(0.5) and probs == sorted(probs)
    model.eval()
    x = torch.rand(2, 3, 32, 32)
    torch.testing.assert_close(model(x), model(x))


@pytest.mark.parametrize("residual", [True, False])
def test_loss_falls(residual):
    torch.manual_seed(0)
    images, labels = torch.rand(16, 3, 32, 32), torch.arange(16) % 3
    model = ResNet(width=8, blocks=1, residual=residual)
    losses = totals(train_steps(model, lambda: {"loss": F.cross_entropy(model(images), labels)}, 40, 3e-3))
    assert losses[-1] < 0.3 * losses[0]


def test_bad_input():
    with pytest.raises(ValueError, match="images"):
        ResNet(width=4, blocks=1)(torch.rand(3, 32, 32))
    with pytest.raises(ValueError, match="blocks"):
        ResNet(blocks=0)
    with pytest.raises(ValueError, match="drop_path_rate"):
        ResNet(drop_path_rate=1.0)
    with pytest.raises(ValueError, match="drop_prob"):
        BasicBlock(4, 4, residual=False, drop_prob=0.1)


@pytest.mark.parametrize("name", ["resnet", "resnet_plain", "resnet_plain20"])
def test_shipped_checkpoints_and_histories(name):
    from cvlib.recipes import TWIN_STEPS, load_model, twin_history

    model = load_model(name)
    assert model(torch.rand(1, 3, 64, 64)).shape == (1, 3)
    assert [len(loss) for loss in twin_history(name)["loss"]] == [TWIN_STEPS] * 3
