"""cvlib.explain's understanding half (notebook 11): sanity checks, faithfulness curves, feature
inversion, Gram matrices and style transfer, network dissection, neighbour agreement. Each is
checked against a definition or a reference (scipy's Spearman, pytorch-grad-cam's perturbation
metric) and leaves the model as it found it."""

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from scipy.stats import spearmanr
from torch import nn

from cvlib import explain, recipes, weights
from cvlib.data import ShapesClassification, held_out_classification
from cvlib.explain import dissection, faithfulness, inversion, sanity, style
from cvlib.models.blocks import SmallCNN


@pytest.fixture(scope="module")
def trained():
    model = recipes.load_model("shapes_cnn")
    scenes = ShapesClassification(6, seed=1)
    images = torch.stack([scenes[i][0] for i in range(6)])
    labels = torch.tensor([scenes[i][1] for i in range(6)])
    return model, images, labels


def _state(model):
    state = {k: v.clone() for k, v in model.state_dict().items()}
    return (state, [p.requires_grad for p in model.parameters()], [m.training for m in model.modules()], None)


def _unchanged(model, before):
    state, grads, modes, _ = before
    assert all(torch.equal(v, model.state_dict()[k]) for k, v in state.items())
    assert [p.requires_grad for p in model.parameters()] == grads
    assert [m.training for m in model.modules()] == modes
    assert not any(m._forward_hooks for m in model.modules())


@settings(max_examples=30)
@given(seed=st.integers(0, 1000), ties=st.booleans())
def test_rank_correlation_is_scipys_spearman(seed, ties):
    g = torch.Generator().manual_seed(seed)
    a, b = torch.rand(3, 5, 6, generator=g), torch.rand(3, 5, 6, generator=g)
    if ties:
        a, b = (a * 4).round(), (b * 3).round()
    ours = sanity.rank_correlation(a, b)
    for k in range(3):
        expected = spearmanr(a[k].flatten().numpy(), b[k].flatten().numpy()).statistic
        assert ours[k].item() == pytest.approx(expected, abs=1e-5)
    assert torch.allclose(sanity.rank_correlation(a, a), torch.ones(3))


def test_rank_correlation_rejects_bad_input():
    with pytest.raises(ValueError, match="maps_b"):
        sanity.rank_correlation(torch.rand(2, 4, 4), torch.rand(2, 4, 5))
    with pytest.raises(ValueError, match="maps_a"):
        sanity.rank_correlation(torch.full((1, 2, 2), float("nan")), torch.rand(1, 2, 2))


def test_randomization_is_cumulative_seeded_and_leaves_the_model(trained):
    model, _, _ = trained
    before = _state(model)
    order = ["fc", "features.6", "features.5"]
    copies = list(sanity.cascading_randomization(model, order))
    _unchanged(model, before)
    assert [name for name, _ in copies] == order
    last = copies[-1][1]
    for name, module in [("fc", last.fc), ("features.6", last.features[6]), ("features.5", last.features[5])]:
        original = model.get_submodule(name)
        assert not torch.equal(next(module.parameters()), next(original.parameters())), name
    assert torch.equal(last.features[4][0].weight, model.features[4][0].weight)  # below: untouched
    first = copies[0][1]
    assert torch.equal(first.features[6][0].weight, model.features[6][0].weight)
    again = sanity.randomized_copy(model, ["fc"], seed=0)
    assert torch.equal(again.fc.weight, first.fc.weight)
    with pytest.raises(ValueError, match="layer"):
        sanity.randomized_copy(model, ["nope"])


def test_deletion_and_insertion_curves_end_where_they_should(trained):
    model, images, labels = trained
    before = _state(model)
    maps = explain.grad_cam(model, images, labels)
    deletion = faithfulness.deletion_curve(model, images, maps, labels, steps=4)
    insertion = faithfulness.insertion_curve(model, images, maps, labels, steps=4)
    _unchanged(model, before)
    with torch.no_grad():
        p = model(images).softmax(1).gather(1, labels[:, None])[:, 0]
        p_grey = model(torch.full_like(images, 0.5)).softmax(1).gather(1, labels[:, None])[:, 0]
        p_blur = model(faithfulness.blur(images)).softmax(1).gather(1, labels[:, None])[:, 0]
    assert deletion.shape == insertion.shape == (6, 5)
    torch.testing.assert_close(deletion[:, 0], p)
    torch.testing.assert_close(deletion[:, -1], p_grey)
    torch.testing.assert_close(insertion[:, 0], p_blur)
    torch.testing.assert_close(insertion[:, -1], p)


def test_a_perfect_map_deletes_faster_than_random():
    """A toy model whose score is the mean of the top-left quarter: the map that marks that
    quarter deletes the evidence in the first quarter of the curve."""
    class Quarter(nn.Module):
        def forward(self, x):
            score = x[:, :, :4, :4].mean(dim=(1, 2, 3)) * 20
            return torch.stack([score, -score], dim=1)

    images = torch.ones(2, 3, 8, 8)
    perfect = torch.zeros(2, 8, 8)
    perfect[:, :4, :4] = 1
    random = torch.rand(2, 8, 8, generator=torch.Generator().manual_seed(0))
    curves = {name: faithfulness.deletion_curve(Quarter(), images, m, 0, steps=8, fill=0)
              for name, m in [("perfect", perfect), ("random", random)]}
    auc = {name: explain.area_under_curve(curve) for name, curve in curves.items()}
    assert (auc["perfect"] < auc["random"] - 0.2).all()
    curve = faithfulness.deletion_curve(Quarter(), images, perfect, 0, steps=4, fill=0.0)
    assert torch.allclose(curve[:, 1:], curve[:, -1:])  # after the first quarter nothing is left to delete


def test_deletion_point_equals_pytorch_grad_cams_perturbation_metric(trained):
    """pytorch-grad-cam's RemoveMostRelevantFirst at a percentile deletes the same pixels as our
    curve at the matching fraction (maps without ties), and gives the same probability."""
    metrics = pytest.importorskip("pytorch_grad_cam.metrics.perturbation_confidence")
    targets_module = pytest.importorskip("pytorch_grad_cam.utils.model_targets")
    model, images, labels = trained
    maps = explain.saliency(model, images, labels) + 1e-6 * torch.rand(6, 64, 64)  # no ties
    fill = 0.5
    metric = metrics.PerturbationConfidenceMetric(metrics.RemoveMostRelevantFirst(
        75, lambda image, keep: image * keep + fill * (1 - keep)))
    targets = [targets_module.ClassifierOutputSoftmaxTarget(int(c)) for c in labels]
    theirs = metric(images, maps.numpy(), targets, model.eval(), return_diff=False)
    ours = faithfulness.deletion_curve(model, images, maps, labels, steps=4, fill=fill)[:, 1]  # 1/4 deleted
    np.testing.assert_allclose(ours.numpy(), theirs, atol=2e-3)


def test_area_under_curve():
    assert explain.area_under_curve(torch.full((2, 5), 0.3)).tolist() == pytest.approx([0.3, 0.3])
    assert explain.area_under_curve(torch.tensor([[0.0, 1.0]])).item() == pytest.approx(0.5)
    with pytest.raises(ValueError, match="curves"):
        explain.area_under_curve(torch.zeros(2, 1))


def test_feature_inversion_recovers_the_image_from_the_first_layer(trained):
    model, images, _ = trained
    before = _state(model)
    shallow, error = inversion.invert_features(model, images[:1], "features.0", steps=60)
    _unchanged(model, before)
    start = torch.full_like(images[:1], 0.5)
    assert error.item() < 0.01
    assert (shallow - images[:1]).pow(2).mean() < 0.2 * (start - images[:1]).pow(2).mean()
    assert shallow.min() >= 0 and shallow.max() <= 1
    assert inversion.total_variation(torch.ones(1, 3, 4, 4)).item() == 0


def test_gram_matrix_definition():
    f = torch.rand(2, 3, 4, 5)
    expected = torch.einsum("bchw,bdhw->bcd", f, f) / 20
    torch.testing.assert_close(style.gram_matrix(f), expected)
    shifted = torch.roll(f, 2, dims=3)  # the Gram matrix forgets where
    torch.testing.assert_close(style.gram_matrix(shifted), expected)


def test_style_transfer_lowers_the_style_loss_and_texture_synthesis_works():
    torch.manual_seed(0)
    model = SmallCNN(width=4).eval()
    content, texture = torch.rand(3, 24, 24), torch.rand(3, 16, 16) * 0.5
    before = _state(model)
    image, history = style.style_transfer(model, content, texture, "features.2", ["features.0", "features.1"],
                                          steps=30, lr=0.05)
    _unchanged(model, before)
    assert image.shape == content.shape and len(history["style"]) == 31
    assert history["style"][-1] < 0.5 * history["style"][0] and history["content"][0] == 0
    synthesized, history = style.synthesize_texture(model, texture, (20, 20), ["features.0"], steps=30)
    assert synthesized.shape == (3, 20, 20) and history["style"][-1] < 0.5 * history["style"][0]


def test_unit_concept_iou_finds_a_unit_that_is_the_mask():
    """A one-unit 'layer' whose activation is the red channel: where the red objects (concept 1)
    are, it fires; its IoU with concept 1 is 1 and with concept 0 is 0."""
    class Red(nn.Module):
        def __init__(self):
            super().__init__()
            self.layer = nn.Identity()

        def forward(self, x):
            return self.layer(x[:, :1])

    images = torch.zeros(4, 3, 8, 8)
    masks = torch.zeros(4, 8, 8, dtype=torch.bool)
    masks[:, 2:5, 3:6] = True
    labels = torch.tensor([1, 1, 0, 0])
    images[:2, 0][masks[:2]] = 1.0
    iou = dissection.unit_concept_iou(Red(), images, "layer", masks, labels, 2, quantile=0.5)
    assert iou.shape == (1, 2)
    assert iou[0, 1].item() == pytest.approx(1.0) and iou[0, 0].item() == 0
    with pytest.raises(ValueError, match="labels"):
        dissection.unit_concept_iou(Red(), images, "layer", masks, labels + 2, 2)


def test_neighbour_agreement():
    points = torch.tensor([[0.0, 0], [0, 1], [10, 0], [10, 1]])
    assert explain.neighbour_agreement(points, torch.tensor([0, 0, 1, 1])) == 1.0
    assert explain.neighbour_agreement(points, torch.tensor([0, 1, 0, 1])) == 0.0
    with pytest.raises(ValueError, match="k must"):
        explain.neighbour_agreement(points, torch.tensor([0, 0, 1, 1]), k=4)


def test_random_label_recipe_memorises_shuffled_labels_and_learns_no_shapes():
    """A tiny run of the label-randomisation recipe (96 scenes, 40 steps): the training accuracy
    on the shuffled labels rises far above chance (1/3; its standard error on 96 scenes is
    0.05), the held-out accuracy on the true labels stays near chance (0.04 on 150 scenes)."""
    from cvlib import recipes
    from cvlib.train import seed_everything

    seed_everything(0)
    model = recipes.RECIPES["shapes_cnn_random_labels"].build()
    metrics = recipes.fit_random_labels(model, torch.device("cpu"), num_scenes=96, epochs=20, held_out=150)
    assert metrics["train_accuracy_shuffled_labels"] > 1 / 3 + 5 * 0.048, metrics
    assert abs(metrics["val_accuracy_true_labels"] - 1 / 3) < 4 * 0.038, metrics


def test_shipped_random_label_checkpoint_loads_and_does_not_know_the_shapes():
    trained_model = recipes.load_model("shapes_cnn")
    random_labels = recipes.load_model("shapes_cnn_random_labels")
    assert {k: v.shape for k, v in random_labels.state_dict().items()} == \
        {k: v.shape for k, v in trained_model.state_dict().items()}
    meta = weights.load("shapes_cnn_random_labels")["meta"]
    assert set(meta["metrics"]) == {"train_accuracy_shuffled_labels", "val_accuracy_true_labels"}
    images, labels, _ = held_out_classification(90)
    with torch.no_grad():
        accuracy = {name: (m.eval()(images).argmax(1) == labels).float().mean().item()
                    for name, m in [("trained", trained_model), ("random labels", random_labels)]}
    assert accuracy["trained"] > 0.9 and abs(accuracy["random labels"] - 1 / 3) < 4 * 0.05, accuracy
