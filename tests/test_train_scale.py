"""cvlib.train at scale: checkpoints and --resume give the losses of an uninterrupted run; the
CLI trains any COCO folder and writes a checkpoint that loads with weights_only=True into the
model its recipe builds; --device cuda without CUDA is one clear line; AMP on the CPU is a
float32 no-op; two processes under torch.distributed take the steps of one with the whole batch,
and only rank 0 writes files."""

import json
import os
import socket
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from torch import nn
from torch.utils.data import DataLoader, Dataset

from cvlib import recipes
from cvlib.data import (
    ShapesClassification,
    ShapesDataset,
    collate_classification,
    collate_detection,
    export_coco,
)
from cvlib.models.rcnn import build_faster_rcnn
from cvlib.train import CHECKPOINT, fit, main

ROOT = Path(__file__).resolve().parent.parent


class _Crashing(Dataset):
    """``dataset`` that raises on its ``after``-th read: a run that stops in the middle."""

    def __init__(self, dataset, after):
        self.dataset, self.after, self.reads = dataset, after, 0

    def __len__(self):
        return len(self.dataset)

    def __getitem__(self, index):
        self.reads += 1
        if self.reads == self.after:
            raise RuntimeError("the machine went away")
        return self.dataset[index]


def _detector_run(out, dataset, **kwargs):
    """A tiny Faster R-CNN (random RPN and head sampling) on shuffled scenes with a warm-up
    schedule: every random state and the data order matter for the losses."""
    torch.manual_seed(0)
    model = build_faster_rcnn(num_classes=3, width=4)
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-3)
    warmup = torch.optim.lr_scheduler.LambdaLR(optimizer, lambda step: min(1.0, (step + 1) / 4))
    loader = DataLoader(dataset, batch_size=2, shuffle=True, collate_fn=collate_detection)
    history = fit(model, loader, epochs=2, optimizer=optimizer, scheduler=warmup, device="cpu", out=out,
                  checkpoint_every=2, meta={"width": 4}, **kwargs)
    return model, history


def test_resume_continues_to_the_losses_of_an_uninterrupted_run(tmp_path):
    scenes = ShapesDataset(8, image_size=32, seed=0)  # 4 batches an epoch, 2 epochs: 8 steps
    model, history = _detector_run(tmp_path / "whole", scenes)
    assert history["step"] == list(range(1, 9))
    with pytest.raises(RuntimeError, match="went away"):  # stops while reading step 6's batch
        _detector_run(tmp_path / "stopped", _Crashing(scenes, after=11))
    checkpoint = torch.load(tmp_path / "stopped" / CHECKPOINT, weights_only=True)
    assert (checkpoint["step"], checkpoint["epoch"], checkpoint["batch"]) == (4, 0, 4)  # step 5 was not saved
    resumed_model, resumed = _detector_run(tmp_path / "stopped", scenes, resume=True)
    assert resumed["step"] == history["step"] and resumed["loss"] == history["loss"]  # exactly, step by step
    for name, value in model.state_dict().items():
        assert torch.equal(resumed_model.state_dict()[name], value), name
    rows = [json.loads(line) for line in (tmp_path / "stopped" / "metrics.jsonl").read_text().splitlines()]
    assert [row["step"] for row in rows] == list(range(1, 9)) and rows[-1]["loss"] == history["loss"][-1]
    assert {"loss_objectness", "loss_classifier", "lr", "time"} <= rows[0].keys()
    final = torch.load(tmp_path / "stopped" / CHECKPOINT, weights_only=True)
    assert final["step"] == 8 and final["meta"] == {"width": 4} and final["scheduler"]["last_epoch"] == 8
    _, again = _detector_run(tmp_path / "stopped", scenes, resume=True)  # a finished run stays finished
    assert again["loss"] == history["loss"]


def test_checkpoint_mid_epoch_and_fit_arguments(tmp_path):
    scenes = ShapesDataset(8, image_size=32, seed=0)
    _, history = _detector_run(tmp_path / "whole", scenes)
    _detector_run(tmp_path / "part", scenes, max_steps=3)  # stops in the middle of epoch 0
    checkpoint = torch.load(tmp_path / "part" / CHECKPOINT, weights_only=True)
    assert (checkpoint["step"], checkpoint["epoch"], checkpoint["batch"]) == (3, 0, 3)
    _, resumed = _detector_run(tmp_path / "part", scenes, resume=True)
    assert resumed["loss"] == history["loss"]
    model, batches = SmallLinear(), [(torch.rand(2, 3, 8, 8), torch.tensor([0, 1]))]
    with pytest.raises(ValueError, match="resume=True needs out"):
        fit(model, batches, loss_fn=nn.functional.cross_entropy, resume=True)
    with pytest.raises(ValueError, match="checkpoint_every"):
        fit(model, batches, loss_fn=nn.functional.cross_entropy, checkpoint_every=0, out=tmp_path)
    with pytest.raises(ValueError, match="checkpoint_every"):
        fit(model, batches, loss_fn=nn.functional.cross_entropy, checkpoint_every=5)


class SmallLinear(nn.Module):
    """A classifier without batch norm: its gradient over a batch is the mean of the gradients
    over the batch's halves, which is what data-parallel training relies on."""

    def __init__(self):
        super().__init__()
        self.conv = nn.Conv2d(3, 4, 3, stride=2)
        self.linear = nn.Linear(4, 3)

    def forward(self, images):
        return self.linear(self.conv(images).relu().mean(dim=(2, 3)))


def test_amp_on_the_cpu_is_float32_with_one_line(capsys):
    def run(amp):
        torch.manual_seed(0)
        loader = DataLoader(ShapesClassification(16, image_size=32), batch_size=8,
                            collate_fn=collate_classification)
        return fit(SmallLinear(), loader, loss_fn=nn.functional.cross_entropy, epochs=2, device="cpu",
                   amp=amp)

    assert run(amp=True)["loss"] == run(amp=False)["loss"]
    assert capsys.readouterr().out.strip() == "amp: mixed precision needs CUDA; training in float32 on cpu"


def _labelled_folder(tmp_path):
    """Scenes exported to COCO, then made to look like a labelling tool's file: category ids
    4, 9, 17 and an extra crowd annotation; scene 1 has no objects."""
    annotation_file, image_dir = export_coco(ShapesDataset(6, image_size=48, seed=2, min_objects=0), tmp_path)
    data = json.loads(annotation_file.read_text())
    ids = {1: 4, 2: 9, 3: 17}
    for category in data["categories"]:
        category["id"] = ids[category["id"]]
    for annotation in data["annotations"]:
        annotation["category_id"] = ids[annotation["category_id"]]
    data["annotations"].append({"id": 999, "image_id": 0, "category_id": 9, "bbox": [0, 0, 20, 20],
                                "area": 400, "iscrowd": 1, "segmentation": [[0, 0, 20, 0, 20, 20, 0, 20]]})
    annotation_file.write_text(json.dumps(data))
    return f"coco:{annotation_file}:{image_dir}"


def test_cli_trains_on_a_coco_folder_and_the_checkpoint_loads_into_the_recipe(tmp_path, capsys):
    data, out = _labelled_folder(tmp_path), str(tmp_path / "run")
    args = ["faster_rcnn", "--data", data, "--batch-size", "2", "--lr", "2e-3", "--out", out,
            "--device", "cpu"]
    assert main([*args, "--max-steps", "2"]) == 0
    assert main([*args, "--max-steps", "3", "--resume"]) == 0
    assert "3 steps" in capsys.readouterr().out
    checkpoint = torch.load(Path(out) / CHECKPOINT, weights_only=True)
    meta = checkpoint["meta"]
    assert meta["category_ids"] == [4, 9, 17] and meta["num_classes"] == 3 and meta["recipe"] == "faster_rcnn"
    model = recipes.build_for_data(meta["recipe"], meta["num_classes"], meta["backbone"])
    model.load_state_dict(checkpoint["model"])
    assert checkpoint["optimizer"]["param_groups"][0]["lr"] == pytest.approx(2e-3 * 4 / 100)  # warm-up
    assert [json.loads(line)["step"] for line in open(Path(out) / "metrics.jsonl")] == [1, 2, 3]


def test_cli_errors(capsys):
    if not torch.cuda.is_available():
        assert main(["faster_rcnn", "--data", "shapes:4", "--device", "cuda"]) == 2
        assert main(["shapes_cnn", "--device", "cuda"]) == 2
        err = capsys.readouterr().err
        assert err.count("\n") == 2 and "no usable CUDA GPU" in err and "Traceback" not in err
    for argv, message in [(["faster_rcnn", "--epochs", "2"], "--epochs need --data"),
                          (["rcnn", "--data", "shapes:4"], "NAME must be one of"),
                          (["yolo", "--device", "gpu"], "--device")]:
        with pytest.raises(SystemExit):
            main(argv)
        assert message in capsys.readouterr().err
    with pytest.raises(ValueError, match=r"\(--data\) must be"):
        main(["yolo", "--data", "voc:x"])
    assert main(["--list"]) == 0 and "with --data: faster_rcnn" in capsys.readouterr().out


@pytest.mark.parametrize("name", ["faster_rcnn", "mask_rcnn", "yolo", "detr", "fcn"])
def test_models_accept_a_torchvision_backbone(name):
    model = recipes.build_for_data(name, 2, backbone="resnet18", pretrained=False)
    scenes = ShapesDataset(2, image_size=48, seed=1, classes=("circle", "square"))
    images, targets = collate_detection([scenes[i] for i in range(2)])
    if name == "fcn":
        scores = model(torch.stack(images))
        assert scores.shape == (2, 3, 48, 48)
        return
    losses = model.train()(images, targets)
    assert all(torch.isfinite(v) for v in losses.values())
    assert model.backbone.stride == 16 and not model.backbone.pretrained


def test_backbones_and_their_errors(capsys):
    from cvlib.models.backbones import torchvision_backbone

    for name, channels in [("resnet50", 1024), ("mobilenet_v3", 112)]:
        backbone = torchvision_backbone(name, pretrained=False)
        assert backbone(torch.rand(1, 3, 64, 48)).shape == (1, channels, 4, 3)
        assert backbone.out_channels == channels
    with pytest.raises(ValueError, match="backbone must be one of"):
        torchvision_backbone("vgg16")
    with pytest.raises(ValueError, match="unet has no backbone option"):
        recipes.build_for_data("unet", 3, backbone="resnet18")
    with pytest.raises(ValueError, match="num_classes"):
        recipes.build_for_data("yolo", 0)


# ---------------------------------------------------------------------------------------------
# Two processes (gloo on the CPU) against one


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _classifier_run(out, steps=4):
    torch.manual_seed(0)
    model = SmallLinear()
    loader = DataLoader(ShapesClassification(32, image_size=32), batch_size=8,
                        collate_fn=collate_classification)
    history = fit(model, loader, loss_fn=nn.functional.cross_entropy, max_steps=steps, lr=1e-2, device="cpu",
                  out=out, checkpoint_every=2, progress=False)
    return model, history


def _worker(rank, port, directory):
    import torch.distributed as dist

    torch.set_num_threads(1)
    dist.init_process_group("gloo", init_method=f"tcp://127.0.0.1:{port}", rank=rank, world_size=2)
    try:
        model, history = _classifier_run(Path(directory) / f"out{rank}")  # only rank 0 may write
        torch.save({"state": model.state_dict(), "loss": history["loss"]}, Path(directory) / f"rank{rank}.pt")
    finally:
        dist.destroy_process_group()


def test_two_processes_take_the_steps_of_one_with_the_whole_batch(tmp_path):
    torch.multiprocessing.spawn(_worker, args=(_free_port(), str(tmp_path)), nprocs=2)
    model, history = _classifier_run(tmp_path / "single")
    for rank in (0, 1):
        result = torch.load(tmp_path / f"rank{rank}.pt", weights_only=True)
        for name, value in model.state_dict().items():
            torch.testing.assert_close(result["state"][name], value, atol=1e-5, rtol=1e-4)
        assert result["loss"] == pytest.approx(history["loss"], rel=1e-5)  # averaged over the processes
    assert (tmp_path / "out0" / CHECKPOINT).exists() and (tmp_path / "out0" / "metrics.jsonl").exists()
    assert not (tmp_path / "out1").exists()


def test_torchrun_two_processes_train_from_the_cli(tmp_path):
    data, out = _labelled_folder(tmp_path), tmp_path / "run"
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(ROOT), os.environ.get("PYTHONPATH", "")]),
           "OMP_NUM_THREADS": "1", "TQDM_DISABLE": "1"}
    command = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node=2", "-m",
               "cvlib.train", "faster_rcnn", "--data", data, "--max-steps", "2", "--batch-size", "4",
               "--out", str(out), "--device", "cpu"]
    result = subprocess.run(command, env=env, capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr[-3000:]
    assert result.stdout.count("2 steps, last loss") == 1  # rank 0 alone reports
    checkpoint = torch.load(out / CHECKPOINT, weights_only=True)
    model = recipes.build_for_data("faster_rcnn", checkpoint["meta"]["num_classes"])
    model.load_state_dict(checkpoint["model"])
    assert sorted(p.name for p in out.iterdir()) == [CHECKPOINT, "metrics.jsonl"]


def test_transfer_copies_what_matches():
    from cvlib import weights

    source, target = build_faster_rcnn(num_classes=3, width=4), build_faster_rcnn(num_classes=2, width=4)
    left = weights.transfer(target, source.state_dict())
    assert sorted(left) == ["roi_heads.box_head.bbox_pred.bias", "roi_heads.box_head.bbox_pred.weight",
                            "roi_heads.box_head.cls_score.bias", "roi_heads.box_head.cls_score.weight"]
    assert torch.equal(target.backbone.body[0][0].weight, source.backbone.body[0][0].weight)
    with pytest.raises(ValueError, match="no tensor"):
        weights.transfer(target, {"x": torch.zeros(1)})
    with pytest.raises(TypeError, match="state_dict must be"):
        weights.transfer(target, [torch.zeros(1)])
    with pytest.raises(TypeError, match="model must be"):
        weights.transfer("faster_rcnn", source.state_dict())


@pytest.mark.parametrize("name", sorted(recipes.DATA_RECIPES))
def test_every_data_recipe_trains_a_step_from_the_cli(name, tmp_path, capsys):
    out = tmp_path / name
    assert main([name, "--data", "shapes:4", "--max-steps", "1", "--batch-size", "2", "--out", str(out),
                 "--device", "cpu"]) == 0
    assert "1 step, last loss" in capsys.readouterr().out
    checkpoint = torch.load(out / CHECKPOINT, weights_only=True)
    recipes.build_for_data(name, checkpoint["meta"]["num_classes"]).load_state_dict(checkpoint["model"])
