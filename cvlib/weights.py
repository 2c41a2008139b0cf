"""Shipped checkpoints: ``data/weights/NAME.pt``, their SHA-256 sums and their provenance.

``python -m cvlib.train NAME`` trains a recipe and calls :func:`save`, which writes the
checkpoint, records its checksum in ``data/weights/SHA256SUMS`` and rewrites
``data/weights/README.md`` from the provenance stored inside every checkpoint (command, seed,
device, training time, held-out metrics). :func:`load` checks the sum and loads with
``torch.load(weights_only=True)``, so a checkpoint can never run code. Plain data that ships
with a checkpoint (loss curves) goes through :func:`save_json` / :func:`load_json`, checksummed
alike.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import torch
from torch import nn

__all__ = [
    "WEIGHTS_DIR", "ChecksumError", "save", "load", "load_model", "save_json", "load_json", "sha256",
    "available", "transfer",
]

WEIGHTS_DIR = Path(__file__).resolve().parent.parent / "data" / "weights"
SUMS = "SHA256SUMS"


class ChecksumError(ValueError):
    """A checkpoint's SHA-256 differs from the one recorded in ``SHA256SUMS``."""


def sha256(path: str | Path) -> str:
    """Hex SHA-256 of a file."""
    return hashlib.sha256(Path(path).read_bytes()).hexdigest()


def _rebuild_hint(name: str) -> str:
    return f"rebuild it with `python -m cvlib.train {name}`"


def _read_sums(directory: Path) -> dict[str, str]:
    path = directory / SUMS
    if not path.exists():
        return {}
    pairs = (line.split() for line in path.read_text().splitlines() if line.strip())
    return {filename: digest for digest, filename in pairs}


def available(directory: str | Path = WEIGHTS_DIR) -> list[str]:
    """Names of the checkpoints (``.pt`` files) recorded in ``SHA256SUMS``."""
    return sorted(Path(f).stem for f in _read_sums(Path(directory)) if f.endswith(".pt"))


def _record(path: Path) -> None:
    """Record the SHA-256 of ``path`` in its directory's ``SHA256SUMS``; rewrite the README."""
    sums = _read_sums(path.parent)
    sums[path.name] = sha256(path)
    (path.parent / SUMS).write_text("".join(f"{d}  {f}\n" for f, d in sorted(sums.items())))
    _write_readme(path.parent, sums)


def _verified(path: Path, name: str) -> Path:
    """``path``, after checking it against its entry in ``SHA256SUMS``.

    Raises:
        FileNotFoundError: the file or its checksum entry is missing.
        ChecksumError: the file is corrupted or was changed after it was recorded.
    """
    if not path.exists():
        raise FileNotFoundError(f"no file {path}; {_rebuild_hint(name)}")
    expected = _read_sums(path.parent).get(path.name)
    if expected is None:
        raise FileNotFoundError(f"{path.name} has no entry in {path.parent / SUMS}; {_rebuild_hint(name)}")
    if sha256(path) != expected:
        raise ChecksumError(
            f"{path} does not match its SHA-256 in {SUMS} (corrupted?); {_rebuild_hint(name)}"
        )
    return path


def save(name: str, model: nn.Module, meta: dict, directory: str | Path = WEIGHTS_DIR) -> Path:
    """Write ``model``'s state dict and ``meta`` to ``directory/NAME.pt``; update sums and README.

    ``meta`` must hold only plain values (str, int, float, bool, lists and dicts of them) so
    that the file loads with ``weights_only=True``.
    """
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    path = directory / f"{name}.pt"
    state = {k: v.detach().cpu().contiguous() for k, v in model.state_dict().items()}
    torch.save({"state_dict": state, "meta": meta}, path)
    _record(path)
    return path


def save_json(name: str, data, directory: str | Path = WEIGHTS_DIR) -> Path:
    """Write plain ``data`` (dicts, lists, numbers, strings) that a recipe ships next to its
    checkpoint, such as loss curves, to ``directory/NAME.json`` and record its checksum."""
    path = Path(directory) / f"{name}.json"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(data))
    _record(path)
    return path


def load_json(name: str, directory: str | Path = WEIGHTS_DIR):
    """The data of ``directory/NAME.json`` (see :func:`save_json`), after checking its SHA-256."""
    return json.loads(_verified(Path(directory) / f"{name}.json", name).read_text())


def load(name: str, directory: str | Path = WEIGHTS_DIR) -> dict:
    """Load ``directory/NAME.pt`` after checking its SHA-256: ``{"state_dict", "meta"}``.

    Raises:
        FileNotFoundError: the file or its checksum entry is missing.
        ChecksumError: the file is corrupted or was changed after it was recorded.
    """
    path = _verified(Path(directory) / f"{name}.pt", name)
    return torch.load(path, map_location="cpu", weights_only=True)


def load_model(
    name: str, device: torch.device | str = "cpu", directory: str | Path = WEIGHTS_DIR
) -> nn.Module:
    """The trained model of recipe ``name``, rebuilt by the recipe, in eval mode on ``device``."""
    from cvlib.recipes import RECIPES

    if name not in RECIPES:
        raise ValueError(f"unknown recipe {name!r}; known: {sorted(RECIPES)}")
    checkpoint = load(name, directory)
    model = RECIPES[name].build()
    model.load_state_dict(checkpoint["state_dict"])
    return model.to(device).eval()


def transfer(model: nn.Module, state_dict: dict) -> list[str]:
    """Fine-tuning's start: copy into ``model`` every tensor of ``state_dict`` whose name and
    shape match (a backbone and an RPN trained on other classes); return the names of the
    parameters and buffers left as initialised (e.g. the class-specific heads of a detector for
    a different number of classes). Raises ``ValueError`` when nothing matches."""
    own = model.state_dict()
    matching = {k: v for k, v in state_dict.items() if k in own and own[k].shape == v.shape}
    if not matching:
        raise ValueError("state_dict has no tensor with the name and shape of one of model's")
    model.load_state_dict(matching, strict=False)
    return [k for k in own if k not in matching]


def _write_readme(directory: Path, sums: dict[str, str]) -> None:
    lines = [
        "# Shipped checkpoints",
        "",
        "Written by `python -m cvlib.train NAME` (`cvlib.weights.save`); do not edit by hand.",
        "Each file holds `{\"state_dict\", \"meta\"}` and loads with `torch.load(weights_only=True)`;",
        "`cvlib.weights.load` checks it against `SHA256SUMS` first. The metrics are measured on",
        "held-out scenes (a seed the training never saw) at the end of the recipe.",
        "A `NAME.json` next to a checkpoint holds data its recipe ships with it (the loss curves of",
        "the twin recipes), written by `cvlib.weights.save_json` and checksummed alike.",
        "",
        "| name | size | made by | seed | device | training | held-out metrics | created |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for filename in sorted(f for f in sums if f.endswith(".pt")):
        meta = torch.load(directory / filename, map_location="cpu", weights_only=True)["meta"]
        size = (directory / filename).stat().st_size / 1e6
        metrics = ", ".join(f"{k} {v}" for k, v in meta.get("metrics", {}).items())
        lines.append(
            f"| `{filename}` | {size:.2f} MB | `{meta['command']}` | {meta['seed']} | "
            f"{meta['device']} | {meta['train_seconds']} s | {metrics} | {meta['created']} |"
        )
    (directory / "README.md").write_text("\n".join(lines) + "\n")
