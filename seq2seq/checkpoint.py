"""One self-contained checkpoint file: weights, model config, tokenizer, training state.

Everything in it is a tensor or a plain Python value (dict, list, str, bytes,
numbers), so it loads with `torch.load(weights_only=True)`: a file crafted to
run code when unpickled is refused, not executed. Writes are atomic, so a
crash mid-save never replaces a good checkpoint with a broken one.
"""

from __future__ import annotations

import io
import pickle
from pathlib import Path
from typing import Any

import torch

from seq2seq.config import Config
from seq2seq.files import write_atomic
from seq2seq.model import Seq2Seq, build_model
from seq2seq.tokenizer import Tokenizer

FORMAT_VERSION = 1


class CheckpointError(RuntimeError):
    """A checkpoint could not be read; the message names the file and the reason in one line."""


def save_checkpoint(path: Path, payload: dict[str, Any]) -> None:
    """Serialize `payload` (tensors and plain values only) and write it atomically to `path`."""
    buffer = io.BytesIO()
    torch.save({"format_version": FORMAT_VERSION, **payload}, buffer)
    write_atomic(Path(path), buffer.getvalue())


def load_checkpoint(path: str | Path, map_location: str | torch.device = "cpu") -> dict[str, Any]:
    """Load safely (`weights_only=True`); any failure becomes a one-line `CheckpointError` naming the file."""
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"{path}: no such checkpoint file")
    if path.stat().st_size == 0:
        raise CheckpointError(f"{path}: the file is empty, not a checkpoint")
    try:
        payload = torch.load(path, map_location=map_location, weights_only=True)
    except pickle.UnpicklingError as exc:
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise CheckpointError(
            f"{path}: refused to load: it holds objects other than tensors and plain data ({first})"
        ) from None
    except Exception as exc:  # a foreign or truncated file fails in many ways inside the unpickler
        reason = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise CheckpointError(f"{path}: not a readable checkpoint (truncated or foreign file?): {reason}") from None
    if not isinstance(payload, dict) or "model" not in payload or "config" not in payload:
        raise CheckpointError(f"{path}: not a seq2seq checkpoint (expected a dict with 'model' and 'config')")
    return payload


def model_from_checkpoint(
    path: str | Path, device: str | torch.device = "cpu"
) -> tuple[Seq2Seq, Tokenizer, Config, dict[str, Any]]:
    """Rebuild the model (in eval mode, on `device`) and its tokenizer from a checkpoint alone."""
    payload = load_checkpoint(path, map_location="cpu")
    try:
        config = Config.from_dict(payload["config"])
        tokenizer = Tokenizer.from_dict(payload["tokenizer"])
        model = build_model(config.model, tokenizer.src_vocab_size, tokenizer.tgt_vocab_size)
        model.load_state_dict(payload["model"])
    except (KeyError, TypeError, ValueError, RuntimeError) as exc:
        reason = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise CheckpointError(f"{path}: checkpoint contents do not match this version of seq2seq: {reason}") from None
    model.to(device).eval()
    return model, tokenizer, config, payload


def average_state_dicts(state_dicts: list[dict[str, torch.Tensor]]) -> dict[str, torch.Tensor]:
    """The element-wise mean of model state dicts: checkpoint averaging (as in fairseq and Joey NMT).

    Floating-point tensors are summed in float64, divided, and cast back to their own dtype; other
    tensors (integer buffers such as counters) are copied from the last state dict, taken as the newest.
    All state dicts must hold the same keys with the same shapes.
    """
    if not state_dicts:
        raise ValueError("average_state_dicts needs at least one state dict")
    newest = state_dicts[-1]
    for i, state in enumerate(state_dicts):
        if state.keys() != newest.keys():
            missing, extra = sorted(newest.keys() - state.keys()), sorted(state.keys() - newest.keys())
            raise ValueError(
                f"cannot average: state dict {i} has different keys from the last one "
                f"(missing {missing}, unexpected {extra})"
            )
        for key, tensor in state.items():
            if tensor.shape != newest[key].shape:
                raise ValueError(
                    f"cannot average {key!r}: shape {tuple(tensor.shape)} in state dict {i}, "
                    f"{tuple(newest[key].shape)} in the last one"
                )
    averaged: dict[str, torch.Tensor] = {}
    for key, last in newest.items():
        if last.is_floating_point():
            total = sum(state[key].to(torch.float64) for state in state_dicts)
            averaged[key] = (total / len(state_dicts)).to(last.dtype)
        else:
            averaged[key] = last.clone()
    return averaged
