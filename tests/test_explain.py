"""cvlib.explain: map shapes, Grad-CAM against autograd, CAM == Grad-CAM up to scale on a
GAP + FC network, guided backprop rule, attention rollout on synthetic attention, scores, and
that every function leaves the model as it found it, even when it raises."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from cvlib import explain, recipes
from cvlib.models.blocks import SmallCNN


@pytest.fixture
def model() -> SmallCNN:
    torch.manual_seed(0)
    net = SmallCNN(num_classes=3, width=4)
    net.features[0][0].weight.requires_grad_(False)  # a mixed state that must survive
    return net.train()


@pytest.fixture
def images() -> torch.Tensor:
    return torch.rand(2, 3, 32, 32)


def _state(model: nn.Module):
    hooks = sum(len(m._forward_hooks) + len(m._forward_pre_hooks) + len(m._backward_hooks)
                for m in model.modules())
    return hooks, [p.requires_grad for p in model.parameters()], [m.training for m in model.modules()]


MAPS = {
    "saliency": lambda m, x: explain.saliency(m, x),
    "smoothgrad": lambda m, x: explain.smoothgrad(m, x, samples=2),
    "guided_backprop": lambda m, x: explain.guided_backprop(m, x).abs().amax(dim=1),
    "cam": lambda m, x: explain.cam(m, x),
    "grad_cam": lambda m, x: explain.grad_cam(m, x, layer="features.4"),
    "guided_grad_cam": lambda m, x: explain.guided_grad_cam(m, x).abs().amax(dim=1),
    "occlusion": lambda m, x: explain.occlusion(m, x, patch=8, stride=8),
}


@pytest.mark.parametrize("method", MAPS)
def test_maps_have_input_size_are_finite_and_model_restored(method, model, images):
    before = _state(model)
    maps = MAPS[method](model, images)
    assert maps.shape == (2, 32, 32)
    assert torch.isfinite(maps).all()
    assert _state(model) == before


@pytest.mark.parametrize("method", MAPS)
def test_model_restored_when_raising(method, model, images):
    before = _state(model)
    with pytest.raises(ValueError, match="target"):
        _call_with_bad_target(method, model, images)
    assert _state(model) == before


def _call_with_bad_target(method, model, images):
    calls = {
        "saliency": lambda: explain.saliency(model, images, 7),
        "smoothgrad": lambda: explain.smoothgrad(model, images, 7, samples=1),
        "guided_backprop": lambda: explain.guided_backprop(model, images, 7),
        "cam": lambda: explain.cam(model, images, 7),
        "grad_cam": lambda: explain.grad_cam(model, images, 7),
        "guided_grad_cam": lambda: explain.guided_grad_cam(model, images, 7),
        "occlusion": lambda: explain.occlusion(model, images, 7),
    }
    calls[method]()


def test_other_functions_restore_model_even_when_raising(model, images):
    before = _state(model)
    explain.layer_features(model, images, "features.2")
    explain.max_activating_patches(model, images, "features.2", channel=0, k=2)
    explain.class_visualization(model, 1, size=16, steps=2)
    explain.deep_dream(model, images[0], "features.2", steps=2)
    explain.fgsm(model, images, [0, 1])
    explain.iterative_attack(model, images, [0, 1], steps=2, target=2)
    assert _state(model) == before
    for bad in (
        lambda: explain.class_visualization(model, 9, size=16, steps=1),
        lambda: explain.fgsm(model, images, [0, 9]),
        lambda: explain.iterative_attack(model, images, [0, 1], steps=1, target=5),
    ):
        with pytest.raises((ValueError, IndexError)):
            bad()
        assert _state(model) == before
    with pytest.raises(ValueError, match="channel"):
        explain.max_activating_patches(model, images, "features.2", channel=99)
    with pytest.raises(ValueError, match="layer"):
        explain.grad_cam(model, images, layer="nope")
    assert _state(model) == before


def test_grad_cam_equals_direct_autograd(model, images):
    model.eval()
    activations = model.features[:5](images).detach().requires_grad_(True)
    logits = model.fc(model.features[5:](activations).mean(dim=(2, 3)))
    target = torch.tensor([2, 0])
    (grads,) = torch.autograd.grad(logits.gather(1, target[:, None]).sum(), activations)
    expected = (grads.mean(dim=(2, 3))[:, :, None, None] * activations).sum(dim=1).relu()
    got = explain.grad_cam(model, images, target, layer="features.4", upsample=False)
    torch.testing.assert_close(got, expected.detach(), rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("layer", ["features", "features.4"])
def test_grad_cam_equals_the_grad_cam_package(layer):
    """pytorch-grad-cam (``pip install grad-cam``, tests/requirements.txt) on the shipped
    classifier: its maps are ours, min-max normalised per image."""
    package = pytest.importorskip("pytorch_grad_cam")
    from pytorch_grad_cam.utils.model_targets import ClassifierOutputTarget

    from cvlib.data import ShapesClassification, collate_classification

    model = recipes.load_model("shapes_cnn")
    images, labels = collate_classification(list(ShapesClassification(8, seed=1)))
    ours = explain.grad_cam(model, images, labels, layer=layer)
    ours = ours - ours.amin(dim=(1, 2), keepdim=True)
    ours = ours / (ours.amax(dim=(1, 2), keepdim=True) + 1e-7)  # the package's scale_cam_image
    target_layer = model.get_submodule(layer)
    theirs = package.GradCAM(model=model, target_layers=[target_layer])(
        input_tensor=images, targets=[ClassifierOutputTarget(int(c)) for c in labels]
    )
    torch.testing.assert_close(ours, torch.from_numpy(theirs), rtol=0, atol=1e-5)


def test_cam_equals_grad_cam_up_to_scale_on_gap_fc(model, images):
    cam = explain.cam(model, images, 1, upsample=False)
    grad_cam = explain.grad_cam(model, images, 1, layer="features", upsample=False)
    z = cam.shape[-1] * cam.shape[-2]
    torch.testing.assert_close(grad_cam, cam.relu() / z, rtol=1e-5, atol=1e-7)
    up_cam, up_grad = explain.upsample_map(cam.relu(), (32, 32)), explain.grad_cam(model, images, 1)
    torch.testing.assert_close(up_grad, up_cam / z, rtol=1e-5, atol=1e-7)


def test_cam_matches_definition(model, images):
    model.eval()
    a = model.features(images)
    expected = torch.einsum("k,bkhw->bhw", model.fc.weight[2], a)
    torch.testing.assert_close(explain.cam(model, images, 2, upsample=False), expected)
    with pytest.raises(ValueError, match="fc"):
        explain.cam(model, images, fc="features")


def test_saliency_is_max_abs_input_gradient(model, images):
    model.eval()
    x = images.clone().requires_grad_(True)
    model(x)[:, 1].sum().backward()
    torch.testing.assert_close(explain.saliency(model, images, 1), x.grad.abs().amax(dim=1))


def test_smoothgrad_is_the_mean_saliency_of_the_noisy_copies(model, images):
    model.eval()
    close = dict(rtol=1e-4, atol=0.0)  # saliencies are ~1e-6: only a relative tolerance tests them
    torch.testing.assert_close(explain.smoothgrad(model, images, 1, samples=3, sigma=0.0),
                               explain.saliency(model, images, 1), **close)
    sigma, samples, seed = 0.2, 3, 5
    generator = torch.Generator().manual_seed(seed)
    scale = sigma * (images.amax(dim=(1, 2, 3)) - images.amin(dim=(1, 2, 3)))[:, None, None, None]
    noisy = [images + torch.randn(images.shape, generator=generator) * scale for _ in range(samples)]
    expected = sum(explain.saliency(model, x, 1) for x in noisy) / samples
    got = explain.smoothgrad(model, images, 1, samples=samples, sigma=sigma, seed=seed)
    torch.testing.assert_close(got, expected, **close)
    assert not torch.allclose(got, explain.saliency(model, images, 1))  # the noise matters


def test_deep_dream_takes_normalized_ascent_steps_on_the_layer_energy(model, images):
    model.eval()
    layer = model.features[2]
    image, lr = images[0], 0.02

    def energy(x):
        x = x.clone().requires_grad_(True)
        with explain.hooks.prepared(model) as handles, explain.hooks.capture(layer, handles) as store:
            model(x[None])
            value = store["output"].pow(2).sum() / 2
            (grad,) = torch.autograd.grad(value, x)
        return value.item(), grad

    start, grad = energy(image)
    one_step = explain.deep_dream(model, image, "features.2", steps=1, lr=lr)
    torch.testing.assert_close(one_step, (image + lr * grad / grad.abs().mean()).clamp(0, 1))
    dreamed = explain.deep_dream(model, image, "features.2", steps=5, lr=lr)
    assert dreamed.min() >= 0 and dreamed.max() <= 1
    assert energy(dreamed)[0] > energy(one_step)[0] > start  # each step raises what the layer sees


def test_guided_backprop_rule_on_a_tiny_net():
    net = nn.Sequential(nn.Linear(2, 2, bias=False), nn.ReLU(), nn.Linear(2, 1, bias=False))
    with torch.no_grad():
        net[0].weight.copy_(torch.tensor([[1.0, 0.0], [0.0, 1.0]]))
        net[2].weight.copy_(torch.tensor([[1.0, -1.0]]))
    x = torch.tensor([[1.0, 1.0]], requires_grad=True)
    net(x).sum().backward()
    assert x.grad.tolist() == [[1.0, -1.0]]  # plain backprop
    # guided: the negative gradient at the second ReLU is stopped
    wrapper = _Images2Vector(net)
    guided = explain.guided_backprop(wrapper, torch.ones(1, 3, 1, 1), 0)
    assert guided[0, :2, 0, 0].tolist() == [1.0, 0.0]
    assert _state(wrapper)[0] == 0


class _Images2Vector(nn.Module):
    """[B, 3, 1, 1] images -> the tiny net on the first two channels."""

    def __init__(self, net):
        super().__init__()
        self.net = net

    def forward(self, images):
        return self.net(images[:, :2, 0, 0])


def test_occlusion_finds_the_only_pixel_that_matters():
    class Peek(nn.Module):  # score = brightness of pixel (5, 9)
        def __init__(self):
            super().__init__()
            self.w = nn.Parameter(torch.ones(1))

        def forward(self, images):
            s = images[:, 0, 5, 9] * self.w
            return torch.stack([10 * s, torch.zeros_like(s)], dim=1)

    maps = explain.occlusion(Peek(), torch.ones(1, 3, 16, 16), 0, patch=3, stride=1, fill=0.0)
    assert maps[0, 5, 9] == maps.max() > 0
    assert maps[0, 0, 0] == 0 and maps[0, 12, 3] == 0


def test_features_filters_neighbours_pca(model, images):
    filters = explain.first_layer_filters(model)
    assert filters.shape == (4, 3, 3, 3) and filters.min() >= 0 and filters.max() <= 1
    feats = explain.layer_features(model, images, "features")
    assert feats.shape == (2, 32)
    gallery = torch.tensor([[0.0, 0.0], [5.0, 5.0], [1.0, 0.0]])
    assert explain.nearest_neighbours(torch.tensor([[0.9, 0.1]]), gallery, k=2).tolist() == [[2, 0]]
    points = torch.tensor([[0.0, 0.0], [2.0, 0.0], [4.0, 0.1], [6.0, 0.0]])
    proj, ratio = explain.pca(points, 1)
    assert ratio[0] > 0.99 and proj[:, 0].abs().argmax() in (0, 3)
    with pytest.raises(ValueError, match="k"):
        explain.nearest_neighbours(gallery, gallery, k=4)


def test_max_activating_patch_is_the_receptive_field(model, images):
    index, boxes, values = explain.max_activating_patches(model, images, "features.0", channel=1, k=2)
    assert sorted(index.tolist()) == [0, 1] and values[0] >= values[1]
    widths = boxes[:, 2] - boxes[:, 0]
    assert (widths <= 3).all() and (widths >= 2).all()  # 3x3 receptive field (2 at a border)


def test_adversarial_attacks_stay_in_the_eps_ball_and_flip_predictions():
    torch.manual_seed(0)
    net = nn.Sequential(nn.Flatten(), nn.Linear(3 * 8 * 8, 3))
    images = torch.rand(4, 3, 8, 8)
    labels = net(images).argmax(dim=1)
    adv = explain.fgsm(net, images, labels, eps=0.05)
    assert (adv - images).abs().max() <= 0.05 + 1e-6 and adv.min() >= 0 and adv.max() <= 1
    adv = explain.iterative_attack(net, images, labels, eps=0.3, step_size=0.05, steps=20)
    assert (adv - images).abs().max() <= 0.3 + 1e-6
    assert (net(adv).argmax(dim=1) != labels).all()
    fooled = explain.iterative_attack(net, images, labels, eps=0.5, step_size=0.05, steps=30, target=2)
    assert (net(fooled).argmax(dim=1) == 2).all()
    path = explain.iterative_attack(net, images, labels, eps=0.5, step_size=0.05, steps=30, target=2,
                                    return_path=True)
    assert path.shape == (31, 4, 3, 8, 8) and torch.equal(path[0], images) and torch.equal(path[-1], fooled)
    five = explain.iterative_attack(net, images, labels, eps=0.5, step_size=0.05, steps=5, target=2)
    assert torch.equal(path[5], five)  # step k of one run is the run of k steps


def test_class_visualization_raises_the_class_score():
    net = nn.Sequential(nn.Flatten(), nn.Linear(3 * 16 * 16, 3))
    image = explain.class_visualization(net, 2, size=16, steps=30)
    start = explain.class_visualization(net, 2, size=16, steps=1, blur_every=100)
    assert image.shape == (3, 16, 16) and 0 <= image.min() and image.max() <= 1
    assert net(image[None])[0, 2] > net(start[None])[0, 2] + 1


def _random_attention(layers=3, batch=2, heads=4, tokens=5):
    return [torch.rand(batch, heads, tokens, tokens).softmax(dim=-1) for _ in range(layers)]


def test_attention_rollout_on_synthetic_attention():
    eye = torch.eye(5).expand(2, 4, 5, 5)
    torch.testing.assert_close(explain.attention_rollout([eye, eye]), torch.eye(5).expand(2, 5, 5))
    attn = _random_attention(layers=1)
    expected = 0.5 * torch.eye(5) + 0.5 * attn[0].mean(dim=1)
    torch.testing.assert_close(explain.attention_rollout(attn), expected)
    attn = _random_attention()
    rollout = explain.attention_rollout(attn)
    torch.testing.assert_close(rollout.sum(dim=-1), torch.ones(2, 5))
    layers = [0.5 * torch.eye(5) + 0.5 * a.mean(dim=1) for a in attn]
    torch.testing.assert_close(rollout, layers[2] @ layers[1] @ layers[0])
    # a token every layer attends to only gets all the CLS flow without residuals
    focus = torch.zeros(1, 1, 5, 5)
    focus[..., 3] = 1
    assert explain.attention_rollout([focus, focus], residual=0.0)[0, 0].tolist() == [0, 0, 0, 1, 0]
    assert explain.cls_attention(attn).shape == (2, 4, 2, 2)
    with pytest.raises(ValueError, match="attentions"):
        explain.attention_rollout([])
    with pytest.raises(ValueError, match="head_fusion"):
        explain.attention_rollout(attn, head_fusion="min")


def test_attention_maps_of_a_vit():
    """The real interface: cvlib.models.vit.ViT(return_attention=True) feeds cls_attention and
    attention_rollout; both give one map per image over the patch grid."""
    from cvlib.models.vit import ViT

    torch.manual_seed(0)
    vit = ViT(image_size=32, patch_size=8, dim=16, depth=2, heads=2).eval()
    with torch.no_grad():
        logits, attentions = vit(torch.rand(3, 3, 32, 32), return_attention=True)
    assert logits.shape == (3, 3) and len(attentions) == 2
    assert explain.cls_attention(attentions).shape == (3, 2, 4, 4)
    rollout = explain.attention_rollout(attentions)
    torch.testing.assert_close(rollout.sum(dim=-1), torch.ones(3, 17))
    maps = explain.upsample_map(explain.tokens_to_grid(rollout[:, 0, 1:]), (32, 32))
    assert maps.shape == (3, 32, 32) and torch.isfinite(maps).all()


def test_pointing_game_and_map_iou():
    masks = torch.zeros(2, 8, 8, dtype=torch.bool)
    masks[:, 2:4, 2:4] = True
    maps = torch.zeros(2, 8, 8)
    maps[0, 3, 3] = 1.0  # inside
    maps[1, 5, 5] = 1.0  # 2 pixels outside
    assert explain.pointing_game(maps, masks).tolist() == [True, False]
    assert explain.pointing_game(maps, masks, tolerance=2).tolist() == [True, True]
    maps[0, 2:4, 2:4] = 1.0
    assert explain.map_iou(maps, masks).tolist() == [1.0, 0.0]
    with pytest.raises(ValueError, match="masks"):
        explain.map_iou(maps, masks[0])
    with pytest.raises(ValueError, match="threshold"):
        explain.map_iou(maps, masks, threshold=0)


def test_bad_images_raise(model):
    with pytest.raises(ValueError, match="images"):
        explain.saliency(model, torch.rand(3, 32, 32))
    with pytest.raises(TypeError, match="images"):
        explain.grad_cam(model, [[0.0]])
    with pytest.raises(ValueError, match="images"):
        explain.cam(model, torch.full((1, 3, 8, 8), float("nan")))
    with pytest.raises(TypeError, match="model"):
        explain.saliency("net", torch.rand(1, 3, 8, 8))


def test_gradients_work_inside_no_grad_and_guided_backprop_leaves_no_trace(model, images):
    before = explain.saliency(model, images, 0)
    with torch.no_grad():
        explain.guided_backprop(model, images, 0)
        inside = explain.saliency(model, images, 0)
    torch.testing.assert_close(explain.saliency(model, images, 0), before)
    torch.testing.assert_close(inside, before)
