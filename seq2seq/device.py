"""Which device to run on, and with what precision: shared by training, decoding and the benchmark."""

from __future__ import annotations

import logging

import torch

from seq2seq.config import ConfigError

log = logging.getLogger(__name__)


def native_cpu_bf16() -> bool:
    """Whether this CPU multiplies bf16 matrices natively (AVX512-BF16 or AMX), as oneDNN reports it."""
    checks = [getattr(torch.cpu, name, None) for name in ("_is_avx512_bf16_supported", "_is_amx_tile_supported")]
    return any(check() for check in checks if check is not None)


def resolve_device(name: str, option: str = "train.device") -> torch.device:
    """`auto` picks CUDA, then Apple's MPS, then the CPU.

    `option` is how the caller's user spells the setting (`train.device` for training, `--device` for
    the command-line tools), so that an error names the option the user actually typed.
    """
    if name == "auto":
        if torch.cuda.is_available():
            return torch.device("cuda")
        if mps_available():
            return torch.device("mps")
        return torch.device("cpu")
    sep = " " if option.startswith("--") else "="
    try:
        device = torch.device(name)
    except RuntimeError:
        raise ConfigError(f"{option}{sep}{name}: not a device; use auto, cpu, cuda or mps") from None
    instead = f"use {option}{sep}auto or {option}{sep}cpu"
    if device.type == "cuda" and not torch.cuda.is_available():
        raise ConfigError(f"{option}{sep}{name} but no CUDA device is available; {instead}")
    if device.type == "mps" and not mps_available():
        raise ConfigError(f"{option}{sep}{name} but Apple's MPS is not available here; {instead}")
    return device


def mps_available() -> bool:
    """Whether Apple's Metal (MPS) backend can run here (a Mac with Apple silicon or an AMD GPU)."""
    return getattr(torch.backends, "mps", None) is not None and torch.backends.mps.is_available()


def autocast_dtype(precision: str, device: torch.device) -> torch.dtype | None:
    """`train.precision` -> the autocast dtype (None for fp32), refusing combinations that cannot work."""
    if precision == "fp32":
        return None
    if device.type not in ("cpu", "cuda"):
        raise ConfigError(f"train.precision={precision} needs a CPU or CUDA device, not {device}; use fp32")
    if precision == "bf16":
        if device.type == "cuda" and not torch.cuda.is_bf16_supported():
            raise ConfigError("train.precision=bf16: this GPU has no bfloat16; use fp16 or fp32")
        if device.type == "cpu" and not native_cpu_bf16():
            log.warning("train.precision=bf16: oneDNN reports no native bf16 on this CPU; expect it to be slow")
        return torch.bfloat16
    if device.type == "cpu":
        log.warning("train.precision=fp16 on a CPU is slow; CPUs' mixed precision is bf16")
    return torch.float16


def training_device(name: str, local_rank: int | None = None) -> torch.device:
    """`train.device` for one training process; under torchrun (`local_rank` set) one GPU per process.

    Distributed training runs on CPUs (gloo) or CUDA GPUs (nccl), nothing else.
    """
    device = resolve_device(name)
    if local_rank is None:
        return device
    if device.type == "cuda":
        return torch.device("cuda", local_rank)
    if device.type != "cpu":
        raise ConfigError(f"distributed training runs on CPUs (gloo) or CUDA GPUs (nccl), not {device}")
    return device
