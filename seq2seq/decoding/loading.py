"""One loader for decoding: what translate, evaluate, score and serve decode with, from checkpoints.

`load_for_decoding` resolves the device, reads one checkpoint (a `Seq2Seq`) or several (an `Ensemble`, whose
members must share the vocabularies), applies int8 quantization and reads the first checkpoint's lexical
shortlist when asked. A checkpoint may be named by its run folder (`checkpoint_path`).
"""

from __future__ import annotations

import contextlib
import logging
import os
from collections.abc import Sequence
from pathlib import Path
from typing import NamedTuple

import torch

from seq2seq.checkpoint import CheckpointError, load_checkpoint, model_from_checkpoint
from seq2seq.config import Config
from seq2seq.data.tokenizer import Tokenizer
from seq2seq.decoding.ensemble import DecodingModel, Ensemble, check_same_vocabularies
from seq2seq.decoding.lexicon import LexicalShortlist
from seq2seq.device import resolve_device
from seq2seq.model.quantize import quantize_int8
from seq2seq.model.seq2seq import count_parameters
from seq2seq.results import RunResults

log = logging.getLogger(__name__)

MAX_SOURCE_TOKENS = 1000  # longer inputs are truncated (and still get their one output line)


def checkpoint_path(path: str | Path) -> Path:
    """The checkpoint file `path` names: itself, or for a run folder its test model (results.json's
    `checkpoint`: `best.pt`, or `averaged.pt` when averaging won), else its `checkpoints/best.pt` (logged).

    A folder that is no run folder (`outputs`, a data folder) is a `CheckpointError` that lists the checkpoints
    found below it (`checkpoints_below`), newest run first, or says that none is there and where training writes
    them: it never suggests a file that does not exist.
    """
    path = Path(path)
    if not path.is_dir():
        return path  # a file, or missing: load_checkpoint says which
    chosen = run_checkpoint(path)
    if chosen is not None:
        log.info("%s is a folder: using %s", path, chosen)
        return chosen
    found, more = checkpoints_below(path)
    if not found:
        raise CheckpointError(
            f"{path} is a folder, not a checkpoint file, and no checkpoint was found below it; pass a run's "
            f"best.pt: python -m seq2seq.train writes them to {TRAIN_WRITES}"
        )
    others = f" (and {more} more)" if more else ""
    raise CheckpointError(
        f"{path} is a folder, not a checkpoint file; checkpoints below it, newest first: "
        f"{', '.join(map(str, found))}{others}"
    )


TRAIN_WRITES = "outputs/DATE/TIME/checkpoints/"  # where `python -m seq2seq.train` leaves a run's checkpoints
SEARCH_DEPTH = 6  # folder levels `checkpoints_below` looks into (multirun/DATE/TIME/JOB/checkpoints is 4)
SEARCH_FOLDERS = 20_000  # and at most this many folders (`translate ~` must not walk a whole home folder)


def run_checkpoint(run: Path) -> Path | None:
    """The checkpoint a run folder stands for: results.json's `checkpoint` (a finished run's test model; the file
    of that name in the folder's own `checkpoints/` first, should the run have been moved), else
    `checkpoints/best.pt`, else `best.pt` (the folder is a `checkpoints/` folder); None when none exists."""
    candidates = [run / "checkpoints" / "best.pt", run / "best.pt"]
    with contextlib.suppress(OSError, ValueError):  # a finished run names its test model (maybe averaged.pt)
        recorded = Path(RunResults.load(run / "results.json").checkpoint)  # absolute: where the run was trained
        candidates[:0] = [run / "checkpoints" / recorded.name, recorded]  # the run folder's own copy first
    return next((candidate for candidate in candidates if candidate.is_file()), None)


def checkpoints_below(folder: Path, limit: int = 3) -> tuple[list[Path], int]:
    """Up to `limit` checkpoint files below `folder` (`**/checkpoints/*.pt`, hidden folders and symbolic links
    left out, at most `SEARCH_DEPTH` levels down), one per run, the run whose checkpoints changed last first,
    and how many more runs hold some. A run offers what it stands for (`run_checkpoint`: results.json's, else
    `best.pt`) when that is in its `checkpoints/`, else its newest `.pt` file (e.g. `last.pt` before the first
    validation)."""
    runs: list[tuple[float, Path]] = []
    for visited, (root, dirs, files) in enumerate(os.walk(folder)):
        where = Path(root)
        depth = len(where.relative_to(folder).parts)
        dirs[:] = sorted(d for d in dirs if not d.startswith(".")) if depth < SEARCH_DEPTH else []
        if where.name == "checkpoints":
            times = []
            for name in files:
                if name.endswith(".pt"):
                    with contextlib.suppress(OSError):
                        times.append(((where / name).stat().st_mtime, where / name))
            if times:
                newest, pick = max(times), run_checkpoint(where.parent)
                runs.append((newest[0], pick if pick is not None and pick.parent == where else newest[1]))
        if visited >= SEARCH_FOLDERS:
            break
    runs.sort(key=lambda run: run[0], reverse=True)
    return [path for _, path in runs[:limit]], max(0, len(runs) - limit)


class LoadedModels(NamedTuple):
    """What `load_models` returns; unpacks as `model, tokenizer, config = load_models(...)`."""

    model: DecodingModel  # a Seq2Seq for one checkpoint, an Ensemble for several (eval mode, on the device)
    tokenizer: Tokenizer  # the first checkpoint's (all are the same)
    config: Config  # the first checkpoint's: its decode settings are the defaults


def load_models(checkpoints: Sequence[str | Path], device: str | torch.device = "cpu") -> LoadedModels:
    """The model(s) of one or more checkpoint files: one gives its `Seq2Seq`, several an `Ensemble`.

    All must hold the same source and target SentencePiece models (the members read the same source ids
    and their log-probabilities are averaged id by id); otherwise `CheckpointError` names the first
    checkpoint and the one that differs.
    """
    if not checkpoints:
        raise ValueError("load_models needs at least one checkpoint")
    first = checkpoints[0]
    model, tokenizer, config, _ = model_from_checkpoint(first, device)
    if len(checkpoints) == 1:
        return LoadedModels(model, tokenizer, config)
    members = [model]
    for path in checkpoints[1:]:
        member, member_tokenizer, _, _ = model_from_checkpoint(path, device)
        check_same_vocabularies(first, tokenizer, path, member_tokenizer)
        members.append(member)
    return LoadedModels(Ensemble(members).eval(), tokenizer, config)


class Loaded(NamedTuple):
    """What `load_for_decoding` returns."""

    model: DecodingModel  # a Seq2Seq for one checkpoint, an Ensemble for several (eval mode, on `device`)
    tokenizer: Tokenizer  # the first checkpoint's (all are the same)
    config: Config  # the first checkpoint's: its decode settings are the defaults
    shortlist: LexicalShortlist | None  # the first checkpoint's, when asked for
    device: torch.device
    parameters: int  # the model's (all members') trained parameters, counted before any quantization


def load_for_decoding(
    checkpoints: Sequence[str | Path],
    device: str = "auto",
    quantize: str = "none",
    shortlist: bool = False,
) -> Loaded:
    """The model(s) of `checkpoints` (files or run folders) on `device` (auto | cpu | cuda | mps, as the
    commands' `--device`), quantized to int8 when `quantize` says so, with the first checkpoint's lexical
    shortlist when `shortlist` (an ensemble's members share the vocabularies). Raises `CheckpointError` or
    `ConfigError` with a message for the user."""
    if not checkpoints:
        raise CheckpointError("no checkpoint given")
    where = resolve_device(device, "--device")
    paths = [checkpoint_path(c) for c in checkpoints]
    model, tokenizer, config = load_models(paths, where)
    parameters = count_parameters(model)
    if quantize == "int8":
        quantize_int8(model)
        log.info("decoding with int8 weights in the decoder (--quantize int8)")
    if len(paths) > 1:
        log.info("decoding with an ensemble of %d models", len(paths))
    lexicon = shortlist_from_checkpoint(paths[0]) if shortlist else None
    return Loaded(model, tokenizer, config, lexicon, where, parameters)


def shortlist_from_checkpoint(path: str | Path) -> LexicalShortlist:
    """The shortlist stored in a checkpoint; `CheckpointError` naming the file (and the command) if it has none."""
    payload = load_checkpoint(path)
    if "shortlist" not in payload:
        raise CheckpointError(
            f"{path} holds no lexical shortlist; add one with: python -m seq2seq.shortlist {path} "
            "--src TRAIN_SOURCE --tgt TRAIN_TARGET"
        )
    return LexicalShortlist.from_dict(payload["shortlist"])
