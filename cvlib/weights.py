"""Shipped checkpoints: ``data/weights/NAME.pt``, their SHA-256 sums and their provenance.

``python -m cvlib.train NAME`` trains a recipe and calls :func:`save`, which writes the
checkpoint, records its checksum in ``data/weights/SHA256SUMS`` and rewrites
``data/weights/README.md`` from the provenance stored inside every checkpoint (command, seed,
device, training time, held-out metrics). :func:`load` checks the sum and loads with
``torch.load(weights_only=True)``, so a checkpoint can never run code. Plain data that ships
with a checkpoint (loss curves) goes through :func:`save_json` / :func:`load_json`, checksummed
alike.

A checkpoint is found by its name (``[a-z0-9_]+``, never a path) in the weights directory, and
whatever goes wrong when loading it (missing file or checksum entry, wrong checksum, truncated
file, content that ``weights_only=True`` refuses) raises one :class:`CheckpointError` that says
what is wrong and how to rebuild the file.
"""

from __future__ import annotations

import hashlib
import json
import pickle
import re
from pathlib import Path

import torch
from torch import nn

from cvlib._checks import describe, module

__all__ = [
    "WEIGHTS_DIR", "CheckpointError", "ChecksumError", "save", "load", "save_json",
    "load_json", "sha256", "available", "transfer",
]

WEIGHTS_DIR = Path(__file__).resolve().parent.parent / "data" / "weights"
SUMS = "SHA256SUMS"
NAME = re.compile(r"[a-z0-9_]+")
SUM_LINE = re.compile(r"([0-9a-fA-F]{64}) [ *](.+)")  # `sha256sum` text (two spaces) or binary (` *`)


class CheckpointError(ValueError):
    """A shipped file could not be loaded: missing, unrecorded, corrupted, truncated or unsafe.
    The message says which, and the command that rebuilds it."""


class ChecksumError(CheckpointError):
    """A checkpoint's SHA-256 differs from the one recorded in ``SHA256SUMS``."""


def sha256(path: str | Path) -> str:
    """Hex SHA-256 of a file."""
    if not Path(path).is_file():
        raise ValueError(f"path must be a file, got {str(path)!r}")
    return hashlib.sha256(Path(path).read_bytes()).hexdigest()


def _rebuild_hint(name: str) -> str:
    return f"rebuild it with `python -m cvlib.train {name}`"


def _check_name(name) -> str:
    """``name`` if it is a checkpoint name (``[a-z0-9_]+``), not a path."""
    if not isinstance(name, str) or not NAME.fullmatch(name):
        raise ValueError(f"name must be a checkpoint name of [a-z0-9_]+ (not a path), got {describe(name)}")
    return name


def _read_sums(directory: Path) -> dict[str, str]:
    """``{filename: hex digest}`` from ``SHA256SUMS`` in ``sha256sum``'s text or binary format."""
    path = directory / SUMS
    if not path.exists():
        return {}
    matches = (SUM_LINE.fullmatch(line.strip()) for line in path.read_text().splitlines())
    return {m[2]: m[1].lower() for m in matches if m}


def available(directory: str | Path = WEIGHTS_DIR) -> list[str]:
    """Names of the checkpoints (``.pt`` files) recorded in ``SHA256SUMS`` of ``directory``."""
    if not Path(directory).is_dir():
        raise ValueError(f"directory must be a folder of checkpoints, got {str(directory)!r}")
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
        CheckpointError: the file or its checksum entry is missing.
        ChecksumError: the file is corrupted or was changed after it was recorded.
    """
    if not path.is_file():
        raise CheckpointError(f"no file {path}; {_rebuild_hint(name)}")
    expected = _read_sums(path.parent).get(path.name)
    if expected is None:
        raise CheckpointError(f"{path.name} has no entry in {path.parent / SUMS}; {_rebuild_hint(name)}")
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
    path = directory / f"{_check_name(name)}.pt"
    module(model)
    state = {k: v.detach().cpu().contiguous() for k, v in model.state_dict().items()}
    torch.save({"state_dict": state, "meta": meta}, path)
    _record(path)
    return path


def save_json(name: str, data, directory: str | Path = WEIGHTS_DIR) -> Path:
    """Write plain ``data`` (dicts, lists, numbers, strings) that a recipe ships next to its
    checkpoint, such as loss curves, to ``directory/NAME.json`` and record its checksum."""
    path = Path(directory) / f"{_check_name(name)}.json"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(data))
    _record(path)
    return path


def load_json(name: str, directory: str | Path = WEIGHTS_DIR):
    """The data of ``directory/NAME.json`` (see :func:`save_json`), after checking its SHA-256.
    Raises :class:`CheckpointError` when it cannot be loaded."""
    path = _verified(Path(directory) / f"{_check_name(name)}.json", name)
    try:
        return json.loads(path.read_text())
    except (UnicodeDecodeError, json.JSONDecodeError) as error:
        raise CheckpointError(f"{path} is not valid JSON ({error}); {_rebuild_hint(name)}") from error


def load(name: str, directory: str | Path = WEIGHTS_DIR) -> dict:
    """Load ``directory/NAME.pt`` after checking its SHA-256: ``{"state_dict", "meta"}``.

    Raises:
        ValueError: ``name`` is not a checkpoint name (``[a-z0-9_]+``).
        CheckpointError: the file or its checksum entry is missing, the file does not load
            (truncated, not a checkpoint, or holding objects that ``weights_only=True``
            refuses because loading them could run code), or lacks ``state_dict`` / ``meta``.
        ChecksumError: (a ``CheckpointError``) the file was changed after it was recorded.
    """
    path = _verified(Path(directory) / f"{_check_name(name)}.pt", name)
    try:
        checkpoint = torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as error:  # torch's advice (weights_only=False) would run code
        raise CheckpointError(
            f"{path} holds objects other than tensors and plain data, which "
            f"torch.load(weights_only=True) refuses (loading them could run code); {_rebuild_hint(name)}"
        ) from error
    except Exception as error:  # EOFError, RuntimeError (bad zip), ...: the file is damaged
        raise CheckpointError(
            f"{path} is not a readable checkpoint (truncated or damaged: {type(error).__name__}); "
            f"{_rebuild_hint(name)}"
        ) from error
    if not isinstance(checkpoint, dict) or not {"state_dict", "meta"} <= set(checkpoint):
        raise CheckpointError(f"{path} lacks 'state_dict' and 'meta'; {_rebuild_hint(name)}")
    return checkpoint


def transfer(model: nn.Module, state_dict: dict) -> list[str]:
    """Fine-tuning's start: copy into ``model`` every tensor of ``state_dict`` whose name and
    shape match (a backbone and an RPN trained on other classes); return the names of the
    parameters and buffers left as initialised (e.g. the class-specific heads of a detector for
    a different number of classes). Raises ``ValueError`` when nothing matches."""
    if not isinstance(model, nn.Module):
        raise TypeError(f"model must be a torch.nn.Module, got {describe(model)}")
    if not isinstance(state_dict, dict):
        raise TypeError(f"state_dict must be a dict of tensors, got {describe(state_dict)}")
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
