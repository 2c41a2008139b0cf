"""cvlib.weights: checksums, provenance, safe loading, clear errors; the shipped checkpoints."""

import os
import pickle

import pytest
import torch

from cvlib import recipes, weights
from cvlib.models.blocks import SmallCNN
from cvlib.recipes import RECIPES


def _save(tmp_path, name="tiny"):
    model = SmallCNN(3, width=2)
    meta = {"command": f"python -m cvlib.train {name}", "seed": 0, "device": "cpu",
            "train_seconds": 1.0, "created": "now", "metrics": {"acc": 0.5}}
    return model, weights.save(name, model, meta, directory=tmp_path)


def test_save_load_round_trip(tmp_path):
    model, path = _save(tmp_path)
    assert path == tmp_path / "tiny.pt"
    assert weights.available(tmp_path) == ["tiny"]
    sums = (tmp_path / "SHA256SUMS").read_text()
    assert sums == f"{weights.sha256(path)}  tiny.pt\n"
    assert "`python -m cvlib.train tiny`" in (tmp_path / "README.md").read_text()
    checkpoint = weights.load("tiny", tmp_path)
    assert checkpoint["meta"]["metrics"] == {"acc": 0.5}
    for k, v in model.state_dict().items():
        assert torch.equal(checkpoint["state_dict"][k], v)


def test_missing_file_names_the_rebuild_command(tmp_path):
    with pytest.raises(weights.CheckpointError, match="python -m cvlib.train nothing"):
        weights.load("nothing", tmp_path)


def test_missing_checksum_entry(tmp_path):
    _save(tmp_path)
    (tmp_path / "SHA256SUMS").write_text("")
    with pytest.raises(weights.CheckpointError, match="no entry"):
        weights.load("tiny", tmp_path)


def test_corrupted_file_is_refused(tmp_path):
    _, path = _save(tmp_path)
    data = bytearray(path.read_bytes())
    data[len(data) // 2] ^= 0xFF
    path.write_bytes(bytes(data))
    with pytest.raises(weights.ChecksumError, match="python -m cvlib.train tiny"):
        weights.load("tiny", tmp_path)


def _record(directory, filename: str, data: bytes) -> None:
    """Write ``data`` to ``directory/filename`` and record its true SHA-256, in ``sha256sum -b``
    style (`` *name``), so that only what the file holds can make it fail to load."""
    (directory / filename).write_bytes(data)
    digest = weights.sha256(directory / filename)
    with open(directory / "SHA256SUMS", "a") as sums:
        sums.write(f"{digest} *{filename}\n")


class _RunsCode:
    """Unpickling this calls ``os.system``: what a malicious checkpoint would do."""

    def __init__(self, marker):
        self.marker = marker

    def __reduce__(self):
        return os.system, (f"touch {self.marker}",)


def test_malicious_pickle_is_refused_without_running_it(tmp_path):
    marker = tmp_path / "code_ran"
    path = tmp_path / "evil.pt"
    torch.save({"state_dict": {}, "meta": _RunsCode(marker)}, path)
    _record(tmp_path, "evil.pt", path.read_bytes())
    with pytest.raises(weights.CheckpointError, match="weights_only=True") as error:
        weights.load("evil", tmp_path)
    assert not marker.exists(), "loading the checkpoint ran its code"
    assert "python -m cvlib.train evil" in str(error.value)
    assert "weights_only=False" not in str(error.value)  # never torch's advice to run the code
    assert isinstance(error.value.__cause__, pickle.UnpicklingError)


def test_truncated_and_foreign_files_raise_checkpoint_error(tmp_path):
    _, path = _save(tmp_path)
    _record(tmp_path, "cut.pt", path.read_bytes()[: path.stat().st_size // 2])
    with pytest.raises(weights.CheckpointError, match="truncated or damaged"):
        weights.load("cut", tmp_path)
    _record(tmp_path, "empty.pt", b"")
    with pytest.raises(weights.CheckpointError, match="python -m cvlib.train empty"):
        weights.load("empty", tmp_path)
    torch.save([1, 2], tmp_path / "other.pt")
    _record(tmp_path, "other.pt", (tmp_path / "other.pt").read_bytes())
    with pytest.raises(weights.CheckpointError, match="lacks 'state_dict'"):
        weights.load("other", tmp_path)


def test_binary_style_sums_parse(tmp_path):
    _, path = _save(tmp_path)
    (tmp_path / "SHA256SUMS").write_text(f"{weights.sha256(path).upper()} *tiny.pt\n")
    assert weights.available(tmp_path) == ["tiny"]
    assert weights.load("tiny", tmp_path)["meta"]["seed"] == 0


@pytest.mark.parametrize("name", ["../../x", "tiny.pt", "/etc/passwd", "Tiny", "", 3, None])
def test_names_are_names_not_paths(tmp_path, name):
    _save(tmp_path)
    with pytest.raises(ValueError, match="name must be a checkpoint name"):
        weights.load(name, tmp_path)
    with pytest.raises(ValueError, match="name must be a checkpoint name"):
        weights.load_json(name, tmp_path)


def test_every_load_failure_is_one_checkpoint_error():
    assert issubclass(weights.ChecksumError, weights.CheckpointError)
    assert issubclass(weights.CheckpointError, ValueError)


def test_json_round_trip_and_checksum(tmp_path):
    _save(tmp_path)  # a checkpoint in the same directory: available() lists only checkpoints
    data = {"loss": [[1.0, 0.5], [0.9, 0.4]], "seeds": [0, 1]}
    path = weights.save_json("tiny_curves", data, directory=tmp_path)
    assert weights.load_json("tiny_curves", directory=tmp_path) == data
    assert weights.available(tmp_path) == ["tiny"]
    path.write_text(path.read_text().replace("0.5", "0.6"))
    with pytest.raises(weights.ChecksumError, match="tiny_curves.json"):
        weights.load_json("tiny_curves", directory=tmp_path)
    with pytest.raises(weights.CheckpointError, match="python -m cvlib.train other"):
        weights.load_json("other", directory=tmp_path)


def test_unknown_recipe():
    with pytest.raises(ValueError, match="name must be a recipe, one of"):
        recipes.load_model("no_such_model")


@pytest.mark.parametrize("name", weights.available())
def test_shipped_checkpoints_verify_and_load(name):
    """Every shipped file matches its checksum, is small, and loads into its recipe's model."""
    assert name in RECIPES, f"{name}.pt has no recipe in cvlib.recipes"
    assert (weights.WEIGHTS_DIR / f"{name}.pt").stat().st_size <= 10e6
    model = recipes.load_model(name)
    assert not model.training
    meta = weights.load(name)["meta"]
    assert meta["command"].startswith(f"python -m cvlib.train {name}")
    assert meta["metrics"], "a shipped checkpoint records its held-out metrics"


DETECTORS = {"faster_rcnn": ("bbox",), "mask_rcnn": ("bbox", "segm"), "mask_rcnn_roipool": ("bbox", "segm"),
             "mask_rcnn_softmax": ("bbox", "segm"), "yolo": ("bbox",), "yolo_focal": ("bbox",),
             "yolo_width8": ("bbox",), "detr": ("bbox",)}


@pytest.mark.parametrize("name", DETECTORS)
def test_shipped_detectors_reproduce_their_recorded_metrics(name):
    """The held-out metrics in data/weights/README.md come from the file that ships: evaluating it
    again (the recipes' own evaluation) gives the same numbers."""
    from cvlib.recipes import _evaluate_detector

    recorded = weights.load(name)["meta"]["metrics"]
    measured = _evaluate_detector(recipes.load_model(name), torch.device("cpu"), DETECTORS[name])
    assert measured == pytest.approx({k: recorded[k] for k in measured}, abs=2e-3)


@pytest.mark.parametrize("name", ["faster_rcnn_single_sizes", "faster_rcnn_fpn"])
def test_shipped_fpn_detectors_reproduce_their_recorded_metrics(name):
    """The same for the pair of notebook 05's feature-pyramid section, AP by size included."""
    from cvlib.recipes import _evaluate_by_size

    recorded = weights.load(name)["meta"]["metrics"]
    measured = _evaluate_by_size(recipes.load_model(name), torch.device("cpu"))
    assert measured == pytest.approx({k: recorded[k] for k in measured}, abs=2e-3)


def test_transfer_copies_the_tensors_whose_name_and_shape_match():
    """Fine-tuning a 3-class SmallCNN from a 5-class one: every tensor but the classifier is
    copied; the classifier (other shape) and a tensor of another name are left alone."""
    torch.manual_seed(0)
    source, target = SmallCNN(5, width=2), SmallCNN(3, width=2)
    before = {k: v.clone() for k, v in target.state_dict().items()}
    state = {**source.state_dict(), "extra.weight": torch.zeros(2)}
    assert weights.transfer(target, state) == ["fc.weight", "fc.bias"]
    for key, value in target.state_dict().items():
        assert torch.equal(value, before[key] if key.startswith("fc.") else state[key]), key
    with pytest.raises(ValueError, match="no tensor"):
        weights.transfer(target, {"fc.weight": torch.zeros(5, 16)})  # the name, not the shape
    with pytest.raises(TypeError, match="state_dict must be"):
        weights.transfer(target, [torch.zeros(1)])
    with pytest.raises(TypeError, match="model must be"):
        weights.transfer("smallcnn", state)
