"""One loader for decoding: what translate, evaluate, score and serve decode with, from checkpoints (and,
for translate and evaluate, from an export folder: `load_export`).

`load_for_decoding` resolves the device, reads one checkpoint (a `Seq2Seq`) or several (an `Ensemble`, whose
members must share the vocabularies), applies int8 quantization and reads the first checkpoint's lexical
shortlist when asked. A checkpoint may be named by its run folder (`seq2seq.run_folders.checkpoint_path`).
"""

from __future__ import annotations

import argparse
import logging
from collections.abc import Sequence
from dataclasses import fields
from pathlib import Path
from typing import TYPE_CHECKING, NamedTuple

import torch

from seq2seq.checkpoint import CheckpointError, load_checkpoint, model_from_checkpoint
from seq2seq.config import Config, ConfigError, DecodeConfig
from seq2seq.data.tokenizer import Tokenizer
from seq2seq.decoding.ensemble import DecodingModel, Ensemble, check_same_vocabularies
from seq2seq.decoding.lexicon import LexicalShortlist
from seq2seq.device import resolve_device
from seq2seq.model.quantize import quantize_int8
from seq2seq.model.seq2seq import count_parameters
from seq2seq.options import decode_config
from seq2seq.run_folders import checkpoint_path

if TYPE_CHECKING:  # for annotations only: onnxruntime is imported when an export is loaded
    from seq2seq.portable.translator import ExportedTranslator

log = logging.getLogger(__name__)

MAX_SOURCE_TOKENS = 1000  # longer inputs are truncated (and still get their one output line)


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


def is_export(checkpoints: Sequence[str | Path]) -> bool:
    """Whether the command line names one export folder (`python -m seq2seq.export`) instead of checkpoints."""
    return len(checkpoints) == 1 and (Path(checkpoints[0]) / "settings.json").is_file()


def load_export(args: argparse.Namespace) -> tuple[ExportedTranslator, DecodeConfig]:
    """The export folder `args.checkpoint[0]` as a PyTorch-free translator (`seq2seq.portable`), and its decode
    settings overridden by the command line as for a checkpoint (`options.decode_config`).

    Raises `ConfigError` naming the options an export cannot honour (sampling, steering, alignments, a
    shortlist, int8, target language, a device other than cpu, or cuda where onnxruntime has its CUDA
    provider) and `ExportError` for a folder that is not a readable export."""
    import onnxruntime

    from seq2seq.portable.translator import ExportedTranslator

    unsupported = [
        "--" + name.replace("_", "-")
        for name in ("sampling", "constraints", "prefixes", "jsonl", "alignment", "shortlist", "target_lang")
        if getattr(args, name, None)
    ]
    if getattr(args, "quantize", "none") != "none":
        unsupported.append("--quantize")
    folder = args.checkpoint[0]
    if unsupported:
        raise ConfigError(
            f"{', '.join(unsupported)} not available with an export folder ({folder}); use the checkpoint instead"
        )
    available = onnxruntime.get_available_providers()
    cuda = "CUDAExecutionProvider" in available
    if args.device not in ("auto", "cpu", "cuda") or (args.device == "cuda" and not cuda):
        raise ConfigError(
            f"--device {args.device} not available with an export folder: onnxruntime here offers "
            f"{', '.join(available)} (cpu, and cuda with onnxruntime-gpu)"
        )
    providers = ["CUDAExecutionProvider", "CPUExecutionProvider"] if cuda and args.device != "cpu" else None
    translator = ExportedTranslator(folder, providers=providers)
    given = {f.name: translator.decode[f.name] for f in fields(DecodeConfig) if f.name in translator.decode}
    decode = decode_config(args, DecodeConfig(**given), nbest=getattr(args, "nbest", None))
    translator.decode.update(
        max_len_a=decode.max_len_a, max_len_b=decode.max_len_b, coverage_penalty=decode.coverage_penalty
    )
    return translator, decode
