"""Which device to run on, and with what precision: shared by training, decoding and the benchmark."""

from __future__ import annotations

import ctypes
import logging
import sys

import torch

from seq2seq.config import ConfigError
from seq2seq.precision import native_cpu_bf16

log = logging.getLogger(__name__)


def resolve_device(name: str, option: str = "train.device") -> torch.device:
    """`auto` picks CUDA, then Apple's MPS, then the CPU.

    `option` is how the caller's user spells the setting (`train.device` for training, `--device` for
    the command-line tools), so that an error names the option the user actually typed.
    """
    if name == "auto":
        if torch.cuda.is_available():
            return torch.device("cuda")
        if getattr(torch.backends, "mps", None) is not None and torch.backends.mps.is_available():
            return torch.device("mps")
        return torch.device("cpu")
    sep = " " if option.startswith("--") else "="
    if name == "cuda" and not torch.cuda.is_available():
        raise ConfigError(
            f"{option}{sep}cuda but no CUDA device is available; use {option}{sep}auto or {option}{sep}cpu"
        )
    try:
        return torch.device(name)
    except RuntimeError:
        raise ConfigError(f"{option}{sep}{name}: not a device; use auto, cpu, cuda or mps") from None


def reuse_freed_memory() -> bool:
    """Let glibc's malloc keep freed blocks of any size for reuse (`train.reuse_freed_memory`); True if it did.

    By default glibc serves each block over 32 MB with a fresh mmap and unmaps it when freed, so every
    training step's (target tokens, vocabulary) tensors, the logits and their gradient (60 MB each in the
    Multi30k CPU recipe), arrive as untouched pages that the kernel faults in and zeroes: about 43,000 page
    faults and 90 ms of system time per step on this project's 2-core CPU. With the mmap threshold raised
    to 1 GB and trimming off, the memory is mostly reused step after step (700 to 2,000 faults). The process
    keeps its peak memory instead of returning it to the system. Elsewhere than Linux with glibc: nothing.
    """
    if not sys.platform.startswith("linux"):
        return False
    try:
        libc = ctypes.CDLL("libc.so.6")
    except OSError:  # not glibc (e.g. musl)
        return False
    m_trim_threshold, m_mmap_threshold = -1, -3  # mallopt's parameter numbers (malloc.h)
    return bool(libc.mallopt(m_mmap_threshold, 1 << 30)) and bool(libc.mallopt(m_trim_threshold, (1 << 31) - 1))


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
