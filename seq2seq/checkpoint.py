"""One self-contained checkpoint file: weights, model config, tokenizer, training state.

Everything in it is a tensor or a plain Python value (dict, list, str, bytes,
numbers), so it loads with `torch.load(weights_only=True)`: a file crafted to
run code when unpickled is refused, not executed. Writes are atomic, so a
crash mid-save never replaces a good checkpoint with a broken one.
"""

from __future__ import annotations

import codecs
import io
import pickle
import re
import warnings
from pathlib import Path
from typing import Any

import torch

from seq2seq.config import Config
from seq2seq.data.tokenizer import Tokenizer
from seq2seq.files import write_atomic
from seq2seq.model.seq2seq import Seq2Seq, build_model

FORMAT_VERSION = 1
ZIP_MAGIC = b"PK\x03\x04"  # how every torch.save file starts
# lines of torch's load errors that are boilerplate, among them its advice to retry with weights_only=False
_TORCH_BOILERPLATE = re.compile(r"weights.only|Please file an issue|Check the documentation", re.IGNORECASE)
_ENFORCE = re.compile(r"^\s*\[enforce fail at [^\]]*\]\s*\.?")  # a C++ source location, not a reason


class CheckpointError(RuntimeError):
    """A checkpoint could not be read; the message names the file and the reason in one line."""


def save_checkpoint(path: Path, payload: dict[str, Any]) -> None:
    """Serialize `payload` (tensors and plain values only) and write it atomically to `path`."""
    buffer = io.BytesIO()
    torch.save({"format_version": FORMAT_VERSION, **payload}, buffer)
    write_atomic(Path(path), buffer.getvalue())


def load_checkpoint(path: str | Path, map_location: str | torch.device = "cpu") -> dict[str, Any]:
    """Load safely (`weights_only=True`); any failure becomes a one-line `CheckpointError` naming the file.

    A file that is not a `torch.save` archive (a text file, a plain pickle) is refused before torch reads
    it; torch's own messages are cut to their reason, never passing on its advice to load unsafely.
    """
    path = Path(path)
    if path.is_dir():
        raise CheckpointError(f"{path} is a folder, not a checkpoint file")
    if not path.is_file():
        raise CheckpointError(f"{path}: no such checkpoint file")
    try:
        with path.open("rb") as f:
            head = f.read(512)
    except OSError as exc:
        raise CheckpointError(f"{path}: cannot read the checkpoint ({exc.strerror or exc})") from None
    if not head:
        raise CheckpointError(f"{path}: the file is empty, not a checkpoint")
    if not head.startswith(ZIP_MAGIC):  # torch.save writes a zip archive; anything else is someone else's file
        raise CheckpointError(
            f"{path}: not a seq2seq checkpoint ({_file_kind(head)}; expected a .pt file written by seq2seq.train)"
        )
    try:
        with warnings.catch_warnings():  # e.g. "Detected pickle protocol 4": noise next to the one-line error
            warnings.simplefilter("ignore", UserWarning)
            payload = torch.load(path, map_location=map_location, weights_only=True)
    except pickle.UnpicklingError as exc:
        if "Unsupported operand" in str(exc):  # a pickle protocol or opcode torch.save never writes
            raise CheckpointError(f"{path}: not a seq2seq checkpoint (foreign file{_reason(exc, ': {}')})") from None
        raise CheckpointError(
            f"{path}: refused to load: it holds objects other than tensors and plain data{_reason(exc, ' ({})')}"
        ) from None
    except Exception as exc:  # a foreign or truncated file fails in many ways inside the unpickler
        raise CheckpointError(
            f"{path}: not a readable checkpoint (truncated or foreign file?){_reason(exc, ': {}')}"
        ) from None
    if not isinstance(payload, dict) or "model" not in payload or "config" not in payload:
        raise CheckpointError(f"{path}: not a seq2seq checkpoint (expected a dict with 'model' and 'config')")
    return payload


def is_text_file(path: str | Path) -> bool:
    """Whether `path` is a file of text (UTF-8 without NUL bytes in its first bytes, not empty), so not a
    checkpoint: e.g. the input that `translate CHECKPOINT input.de` passes where a checkpoint is expected."""
    path = Path(path)
    if not path.is_file():  # missing, a folder, a pipe: load_checkpoint says which
        return False
    try:
        with path.open("rb") as f:
            head = f.read(512)
    except OSError:
        return False
    return bool(head) and _file_kind(head) == "a text file"


def _file_kind(head: bytes) -> str:
    """What the first bytes of a file that is not a `torch.save` archive look like, in a few words."""
    if head.startswith(b"\x80"):
        return "a plain pickle file"
    if b"\x00" not in head:
        try:
            codecs.getincrementaldecoder("utf-8")().decode(head, final=False)
            return "a text file"
        except UnicodeDecodeError:
            pass
    return "unknown file format"


def _reason(exc: BaseException, template: str, limit: int = 160) -> str:
    """The first informative sentence of torch's message, formatted by `template` ('' when there is none).

    Torch's boilerplate lines, among them its advice to retry with `weights_only=False` (which would run
    whatever code the file holds), are left out.
    """
    lines = [_ENFORCE.sub("", line).strip() for line in str(exc).splitlines()]
    lines = [line for line in lines if line]
    useful = [line for line in lines if not _TORCH_BOILERPLATE.search(line)]
    if not useful:
        return "" if lines else template.format(type(exc).__name__)
    sentence = useful[0].split(". ")[0].rstrip(".")
    return template.format(sentence if len(sentence) <= limit else sentence[: limit - 3] + "...")


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
    except (AttributeError, KeyError, TypeError, ValueError, RuntimeError) as exc:
        raise CheckpointError(
            f"{path}: checkpoint contents do not match this version of seq2seq{_reason(exc, ': {}')}"
        ) from None
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
