"""cvlib.pretrained offline: cached random weights under torchvision's file names load and are
reported as not genuine; nothing cached and no network gives None and one line, never a
traceback; cvlib's ViT loads torchvision's ViT weights and gives the same logits.

No test touches the network: the reachability probe and torch.hub's download are patched."""

from __future__ import annotations

import hashlib
import urllib.error

import pytest
import torch
from torchvision.models.vision_transformer import VisionTransformer, vit_b_16

from cvlib import pretrained
from cvlib.models.vit import ViT, from_torchvision, torchvision_key


@pytest.fixture
def torch_home(tmp_path, monkeypatch):
    monkeypatch.setenv("TORCH_HOME", str(tmp_path))
    monkeypatch.setattr(pretrained, "_reachable", lambda url, timeout=5.0: False)

    def no_download(*args, **kwargs):
        raise urllib.error.URLError("no network in tests")

    monkeypatch.setattr(torch.hub, "download_url_to_file", no_download)
    return tmp_path


def test_catalogue_sizes_and_file_names():
    for name in pretrained.CATALOGUE:
        assert 10 < pretrained.download_mb(name) < 600  # VGG-16 (528 MB) the largest
        file_name = pretrained.checkpoint_path(name).name
        assert file_name.startswith(name.split("320")[0][:8]) and file_name.endswith(".pth")
    assert pretrained.checkpoint_path("resnet18").name == "resnet18-f37072fd.pth"


def test_random_cached_weights_load_and_are_not_genuine(torch_home, capsys):
    path = pretrained.write_random_weights("resnet18")
    assert path == torch_home / "hub" / "checkpoints" / "resnet18-f37072fd.pth"
    model, genuine, message = pretrained.load("resnet18")
    assert model is not None and not model.training and not genuine
    assert "44.7 MB" in message and "NOT genuine" in message
    assert capsys.readouterr().out.strip() == message  # one printed line
    expected = torch.load(path, weights_only=True)
    assert all(torch.equal(v, expected[k]) for k, v in model.state_dict().items())


def test_genuine_means_the_hash_prefix_matches(tmp_path):
    content = b"pretend weights"
    prefix = hashlib.sha256(content).hexdigest()[:8]
    good, bad = tmp_path / f"net-{prefix}.pth", tmp_path / "net-00000000.pth"
    good.write_bytes(content)
    bad.write_bytes(content)
    assert pretrained.is_genuine(good) and not pretrained.is_genuine(bad)
    assert not pretrained.is_genuine(tmp_path / "missing-12345678.pth")


def test_offline_gives_none_and_one_line(torch_home, capsys):
    result = pretrained.load("ssdlite320_mobilenet_v3_large")
    assert result.model is None and not result.genuine
    assert "offline" in result.message and "13.4 MB" in result.message and "\n" not in result.message
    assert capsys.readouterr().out.count("\n") == 1
    assert "downloads switched off" in pretrained.load("resnet18", download=False, verbose=False).message


def test_no_download_environment_variable(torch_home, monkeypatch):
    monkeypatch.setenv("CVLIB_NO_DOWNLOAD", "1")
    monkeypatch.setattr(pretrained, "_reachable", lambda url, timeout=5.0: pytest.fail("probed the network"))
    assert "downloads switched off" in pretrained.load("resnet18", verbose=False).message


def test_failed_download_and_broken_file_give_a_reason(torch_home, monkeypatch):
    monkeypatch.setattr(pretrained, "_reachable", lambda url, timeout=5.0: True)
    result = pretrained.load("resnet18", verbose=False)  # the patched download raises URLError
    assert result.model is None and "offline" in result.message
    path = pretrained.checkpoint_path("resnet18")
    path.write_bytes(b"truncated")
    result = pretrained.load("resnet18", verbose=False)
    assert result.model is None and "does not load" in result.message and str(path) in result.message


def test_no_space(torch_home, monkeypatch):
    monkeypatch.setattr(pretrained.shutil, "disk_usage", lambda p: type("U", (), {"free": 10**6})())
    assert "no space" in pretrained.load("resnet18", verbose=False).message


def test_cli_lists_sizes(torch_home, capsys):
    assert pretrained.main(["--list", "resnet18", "vit_b_16"]) == 0
    out = capsys.readouterr().out
    assert "44.7 MB" in out and "330.3 MB" in out and "374.9 MB" in out
    assert pretrained.main(["--download", "resnet18"]) == 1  # offline: reported, not raised
    with pytest.raises(ValueError, match="name"):
        pretrained.load("resnet1000")


def test_vit_from_torchvision_gives_the_same_logits():
    reference = VisionTransformer(image_size=32, patch_size=8, num_layers=2, num_heads=2, hidden_dim=16,
                                  mlp_dim=40, num_classes=5).eval()
    for p in reference.parameters():  # non-trivial values everywhere (LayerNorms included)
        torch.nn.init.normal_(p, std=0.2)
    vit = from_torchvision(reference)
    images = torch.rand(3, 3, 32, 32)
    with torch.no_grad():
        torch.testing.assert_close(vit(images), reference(images), atol=1e-5, rtol=1e-4)
    with pytest.raises(TypeError, match="model"):
        from_torchvision(torch.nn.Linear(2, 2))


def test_vit_b_16_names_map_onto_vit():
    with torch.device("meta"):
        official = vit_b_16().state_dict()
        ours = ViT(224, 16, 1000, 768, 12, 12, mlp_ratio=4.0, norm_eps=1e-6).state_dict()
    mapped = {torchvision_key(k): v.shape for k, v in official.items()}
    assert mapped == {k: v.shape for k, v in ours.items()}
    with pytest.raises(ValueError, match="name"):
        torchvision_key("heads.pre_logits.weight")


def test_trace_rcnn_and_cvlib_ops_equal_the_models_own():
    """On a random-weight torchvision Faster R-CNN: cvlib's anchors, multi-level RoI Align and
    batched NMS give exactly what the model computed inside."""
    from torchvision.models.detection import fasterrcnn_mobilenet_v3_large_320_fpn

    from cvlib import ops
    from cvlib.data import photos

    model = fasterrcnn_mobilenet_v3_large_320_fpn(weights=None, weights_backbone=None).eval()
    trace = pretrained.trace_rcnn(model, photos.load("coffee", max_side=160))
    assert trace["input"].shape[-2:] == (320, 480)  # the model's own resizing (min_size 320)
    anchors = pretrained.multiscale_anchors(model.rpn.anchor_generator, trace["input"].shape[-2:],
                                            trace["features"])
    assert torch.equal(anchors, trace["anchors"])
    pool = model.roi_heads.box_roi_pool
    ours = pretrained.multiscale_roi_align(pool, trace["features"], trace["proposals"])
    torch.testing.assert_close(ours, trace["box_features"], atol=1e-5, rtol=1e-4)
    assert trace["nms"] and all(
        torch.equal(ops.batched_nms(c["boxes"], c["scores"], c["idxs"], c["iou_threshold"]), c["keep"])
        for c in trace["nms"])
    assert set(trace["detections"]) == {"boxes", "labels", "scores"}


def test_a_download_prints_its_size_first(torch_home, monkeypatch, capsys):
    monkeypatch.setattr(pretrained, "_reachable", lambda url, timeout=5.0: True)

    def fake_download(url, destination, *args, **kwargs):  # writes where torch.hub would
        assert str(destination) == str(pretrained.checkpoint_path("resnet18"))
        pretrained.write_random_weights("resnet18")

    monkeypatch.setattr(torch.hub, "download_url_to_file", fake_download)
    assert pretrained.load("resnet18").model is not None
    lines = capsys.readouterr().out.splitlines()
    first, last = lines[0], lines[-1]
    assert "44.7 MB" in first and "downloading" in first and "NOT genuine" in last
