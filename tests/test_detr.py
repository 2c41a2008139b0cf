"""cvlib.models.detr: the Hungarian matcher equals brute force, the set loss falls, DETR follows
torchvision's detection contract (images without objects included), and bad input is rejected."""

from __future__ import annotations

import itertools

import pytest
import torch
from hypothesis import given
from hypothesis import strategies as st
from model_checks import (
    check_eval_contract,
    check_rejects_bad_input,
    check_trains_on_empty_images,
    totals,
    train_steps,
)

from cvlib.data import ShapesDataset, collate_detection
from cvlib.models.detr import (
    DETR,
    HungarianMatcher,
    SetCriterion,
    brute_force_assignment,
    hungarian_assignment,
    sine_position_encoding,
)

EMPTY = {"boxes": torch.zeros((0, 4)), "labels": torch.zeros(0, dtype=torch.int64)}


def tiny(**kwargs):
    """DETR at a test size: width 4 backbone, d_model 32, 32 x 32 images -> 4 x 4 cells."""
    settings = dict(width=4, d_model=32, num_heads=2, num_encoder_layers=1, num_decoder_layers=2,
                    dim_feedforward=64, num_queries=6)
    return DETR(**{**settings, **kwargs})


def scenes(n=4, size=32, seed=0):
    return collate_detection([ShapesDataset(n, image_size=size, seed=seed)[i] for i in range(n)])


def total(cost, rows, cols):
    return cost[rows, cols].sum().item()


@given(n=st.integers(1, 6), data=st.data())
def test_hungarian_equals_brute_force(n, data):
    m = data.draw(st.integers(0, n))  # more queries than objects, and no object at all
    seed = data.draw(st.integers(0, 2**16))
    cost = torch.rand(n, m, generator=torch.Generator().manual_seed(seed), dtype=torch.float64)
    rows, cols = hungarian_assignment(cost)
    assert rows.shape == cols.shape == (m,)
    assert len(set(rows.tolist())) == m and sorted(cols.tolist()) == list(range(m))  # one to one
    best = min((sum(cost[r, c].item() for c, r in enumerate(p)) for p in itertools.permutations(range(n), m)),
               default=0.0)
    assert total(cost, rows, cols) == pytest.approx(best, abs=1e-9)
    brute_rows, brute_cols = brute_force_assignment(cost)
    assert total(cost, brute_rows, brute_cols) == pytest.approx(best, abs=1e-9)


def test_assignment_of_a_small_example():
    cost = torch.tensor([[4.0, 1.0, 3.0], [2.0, 0.0, 5.0], [3.0, 2.0, 2.0], [9.0, 9.0, 9.0]])
    rows, cols = hungarian_assignment(cost)
    assert rows.tolist() == [0, 1, 2] and cols.tolist() == [1, 0, 2]  # total 1 + 2 + 2 = 5
    assert [t.tolist() for t in brute_force_assignment(cost)] == [[0, 1, 2], [1, 0, 2]]


def test_assignment_bad_input():
    with pytest.raises(ValueError, match="N >= M"):
        hungarian_assignment(torch.rand(2, 3))
    with pytest.raises(ValueError, match="cost"):
        hungarian_assignment(torch.rand(3))
    with pytest.raises(ValueError, match="finite"):
        brute_force_assignment(torch.tensor([[float("nan")]]))
    with pytest.raises(ValueError, match="brute force"):
        brute_force_assignment(torch.rand(12, 8))


def test_matcher_finds_the_true_pairs():
    """Predictions equal to the objects (shuffled among extra queries) match their own object."""
    boxes = torch.tensor([[0.3, 0.3, 0.2, 0.2], [0.7, 0.6, 0.3, 0.4], [0.5, 0.5, 0.1, 0.3]])
    labels = torch.tensor([1, 3, 2])
    where = torch.tensor([4, 0, 2])  # object j is predicted by query where[j]
    pred_boxes = torch.rand(1, 6, 4) * 0.5 + 0.25
    pred_boxes[0, where] = boxes
    logits = torch.zeros(1, 6, 4)
    logits[0, where, labels] = 5.0
    [(rows, cols)] = HungarianMatcher()(logits, pred_boxes, [{"boxes": boxes, "labels": labels}])
    assert torch.equal(where[cols], rows)


def test_set_loss_is_zero_for_a_perfect_prediction_and_handles_no_object():
    criterion = SetCriterion(num_classes=3)
    boxes = torch.tensor([[0.3, 0.3, 0.2, 0.2], [0.7, 0.6, 0.3, 0.4]])
    logits = torch.full((1, 1, 4, 4), -20.0)
    logits[..., 0] = 20.0  # every query says "no object"
    logits[0, 0, [1, 3], [2, 1]] = 20.0
    logits[0, 0, [1, 3], 0] = -20.0
    pred = torch.full((1, 1, 4, 4), 0.5)
    pred[0, 0, [1, 3]] = boxes
    losses = criterion({"logits": logits, "boxes": pred}, [{"boxes": boxes, "labels": torch.tensor([2, 1])}])
    assert set(losses) == {"loss_ce", "loss_bbox", "loss_giou"}
    assert all(v.item() == pytest.approx(0.0, abs=1e-6) for v in losses.values())
    losses = criterion({"logits": logits, "boxes": pred}, [EMPTY])  # no object: only "no object" CE
    assert losses["loss_ce"].item() > 1 and losses["loss_bbox"] == 0 and losses["loss_giou"] == 0


def test_position_encoding():
    pe = sine_position_encoding(4, 6, 32)
    assert pe.shape == (24, 32) and pe.abs().max() <= 1
    assert len({tuple(row.tolist()) for row in pe}) == 24  # every cell has its own code
    assert torch.equal(pe[0, :16], pe[5, :16])  # same row, same first half (y)
    assert torch.equal(pe[0, 16:], pe[6, 16:])  # same column, same second half (x)
    with pytest.raises(ValueError, match="d_model"):
        sine_position_encoding(4, 4, 30)


def test_loss_falls():
    model = tiny()
    images, targets = scenes()
    history = train_steps(model, lambda: model(images, targets), steps=30, lr=2e-3)
    names = {"loss_ce", "loss_bbox", "loss_giou"}
    assert set(history[-1]) == names | {f"{n}_0" for n in names}  # auxiliary losses of decoder layer 0
    total = totals(history)
    assert sum(total[-3:]) / 3 < 0.6 * total[0], total
    assert set(tiny(aux_loss=False)(images, targets)) == names


def test_empty_images_train():
    model = tiny()
    images, targets = scenes(2)
    check_trains_on_empty_images(model, images[0], targets[0], EMPTY)


def test_eval_contract():
    pairs = check_eval_contract(tiny(score_thresh=0.0))
    assert all(len(out["scores"]) == 6 for _, out in pairs)  # one detection per query: no threshold here
    images = [image for image, _ in pairs]
    strict = tiny(score_thresh=1.0).eval()
    assert all(len(out["boxes"]) == 0 for out in strict(images))  # nothing passes: empty, well-formed
    assert all(out["boxes"].shape == (0, 4) for out in strict(images))


def test_outputs_and_attention_maps():
    model = tiny(num_decoder_layers=3).eval()
    images = [torch.rand(3, 32, 32), torch.rand(3, 32, 32)]
    with torch.no_grad():
        out = model.predict_sets(images)
    assert out["logits"].shape == (3, 2, 6, 4) and out["boxes"].shape == (3, 2, 6, 4)
    assert out["boxes"].min() >= 0 and out["boxes"].max() <= 1
    assert out["attention"].shape == (2, 6, 4, 4)
    assert torch.allclose(out["attention"].sum((2, 3)), torch.ones(2, 6))
    padded = model.predict_sets([torch.rand(3, 32, 32), torch.rand(3, 16, 24)])["attention"]
    assert padded[1, :, 2:, :].abs().max() == 0 and padded[1, :, :, 3:].abs().max() == 0  # padding unseen


def test_encoder_attention_is_softmax_of_the_encoder_queries_and_keys():
    """encoder_attention = softmax(Q K^T / sqrt(d)) of each encoder layer's own inputs (x + pos),
    by hand (cvlib's attention) and averaged over heads; maps sum to 1; outputs() is unchanged."""
    from cvlib.models.vit import scaled_dot_product_attention

    torch.manual_seed(0)
    model = tiny(num_encoder_layers=2).eval()
    images = [torch.rand(3, 32, 32), torch.rand(3, 32, 32)]
    inputs = []
    hooks = [layer.attention.register_forward_hook(lambda m, args, out: inputs.append(args[0]))
             for layer in model.encoder]
    with torch.no_grad():
        maps = model.encoder_attention(images)  # [L, B, h, w, h, w]
        before = model.predict_sets(images)
    for hook in hooks:
        hook.remove()
    assert maps.shape == (len(model.encoder), 2, 4, 4, 4, 4)
    torch.testing.assert_close(maps.sum((-1, -2)), torch.ones(maps.shape[:4]))
    heads, d = model.encoder[0].attention.num_heads, inputs[0].shape[-1]

    def split(t):  # [B, 16, d] -> [B, heads, 16, d / heads]
        return t.view(2, 16, heads, d // heads).transpose(1, 2)

    for layer, (module, q) in enumerate(zip(model.encoder, inputs)):  # q = k = x + pos
        w_q, w_k, _ = module.attention.in_proj_weight.split(d)
        b_q, b_k, _ = module.attention.in_proj_bias.split(d)
        by_hand = scaled_dot_product_attention(split(q @ w_q.T + b_q), split(q @ w_k.T + b_k), split(q))[1]
        torch.testing.assert_close(maps[layer].reshape(2, 16, 16), by_hand.mean(1), atol=1e-5, rtol=0)
    with torch.no_grad():
        after = model.predict_sets(images)
    torch.testing.assert_close(after["boxes"], before["boxes"])
    with pytest.raises(TypeError, match="images"):
        model.encoder_attention(torch.rand(3, 32, 32))


def test_bad_input():
    model = tiny()
    images, targets = scenes(1)
    check_rejects_bad_input(model, images, targets)
    with pytest.raises(ValueError, match="num_queries"):
        DETR(num_queries=0)


def test_shipped_model_on_scenes_without_objects():
    """The shipped DETR says "no object" with every query on empty scenes: empty, well-formed outputs."""
    from cvlib.recipes import load_model

    scenes_ = ShapesDataset(30, seed=5, min_objects=0, max_objects=1)
    empty = [image for image, target in scenes_ if len(target["labels"]) == 0]
    assert len(empty) >= 5
    with torch.no_grad():
        outputs = load_model("detr")(empty)
    for out in outputs:
        assert out["boxes"].shape == (0, 4) and out["labels"].shape == (0,) and out["scores"].shape == (0,)
        assert out["labels"].dtype == torch.int64
