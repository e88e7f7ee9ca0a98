"""`train.matmul_precision`: which precision the decoder's and output layer's training products run in.

`fp32` and `bf16` force it; the layers that honour it are in `seq2seq.model.precision`.

Whether bf16 pays is a property of the machine, not of its flags: one AVX512-BF16 CPU multiplied bf16 4x as
fast as fp32, another (with the same flags) half as fast. So `auto` measures. On a CPU with native bf16 under
fp32 training, the first training step times a forward and backward pass of the model on its own first batch
with fp32 products and with bf16 ones (interleaved, median of three each), keeps the faster, and logs both
figures. The decision is cached per machine, thread count, PyTorch version, model shape and batch budget
(`matmul_precision.json` in `data.cache_dir`), so the next run on the machine takes it without measuring.
"""

from __future__ import annotations

import hashlib
import json
import logging
import platform
import statistics
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path

import torch
from torch import nn

from seq2seq.config import ConfigError
from seq2seq.device import native_cpu_bf16
from seq2seq.files import write_atomic

log = logging.getLogger(__name__)

DTYPES = {"fp32": torch.float32, "bf16": torch.bfloat16}
BF16_MARGIN = 0.97  # auto takes bf16 only when it is at least 3% faster: on a near tie, exact fp32 products
CACHE_FILE = "matmul_precision.json"  # in data.cache_dir: one decision per machine and model shape


def measures_matmul_precision(setting: str, precision: str, device: torch.device) -> bool:
    """Whether `train.matmul_precision=auto` has a choice to measure: fp32 training on a CPU with native bf16.
    Elsewhere auto is fp32 (emulated bf16 is always slower; on a GPU, autocast, `train.precision=bf16`, is the
    way)."""
    return setting == "auto" and device.type == "cpu" and precision == "fp32" and native_cpu_bf16()


def matmul_dtype(setting: str, precision: str, device: torch.device) -> torch.dtype:
    """`train.matmul_precision` -> the dtype of the layers' training products until (for auto) measured:
    fp32 or bf16 as forced; auto starts fp32 (`measures_matmul_precision` says whether it is then measured)."""
    if setting == "bf16" and precision != "fp32":
        raise ConfigError(f"train.matmul_precision=bf16 is for fp32 training; train.precision={precision} autocasts")
    if setting == "bf16" and device.type == "cpu" and not native_cpu_bf16():
        log.warning("train.matmul_precision=bf16: oneDNN reports no native bf16 on this CPU; expect it to be slow")
    return torch.bfloat16 if setting == "bf16" else torch.float32


@dataclass
class MatmulDecision:
    """What `auto` chose and the two figures it chose by: ms for one forward and backward pass."""

    choice: str  # fp32 | bf16
    fp32_ms: float
    bf16_ms: float
    batch: tuple[int, int, int]  # (sentences, source length, target length) of the measured batch
    measured_on: str  # the machine, as `machine_description` says it
    date: str  # when it was measured (YYYY-MM-DD)

    @property
    def dtype(self) -> torch.dtype:
        return DTYPES[self.choice]

    def describe(self, cache: Path | None, cached: bool) -> str:
        """The log line: both figures, the choice, and where the decision came from."""
        rows, src_len, tgt_len = self.batch
        where = f"measured {self.date}, cached in {cache}" if cached else "measured now"
        if not cached and cache is not None:
            where += f", saved to {cache}"
        return (
            f"train.matmul_precision=auto: a forward and backward pass at this model's shapes ({rows} sentences, "
            f"{src_len} source and {tgt_len} target tokens) takes {self.fp32_ms:.1f} ms with fp32 products and "
            f"{self.bf16_ms:.1f} ms with bf16 on {self.measured_on} ({where}): {self.choice} products"
        )


def decide_matmul_dtype(time_pass: Callable[[str], float], rounds: int = 3) -> tuple[str, float, float]:
    """Time `time_pass("fp32")` against `time_pass("bf16")` (seconds for one pass); returns (choice, fp32 ms,
    bf16 ms). One untimed pass of each first, then `rounds` of each interleaved, so that a drift of the
    machine's speed hits both; medians compared, bf16 chosen only when at least 3% faster."""
    for name in DTYPES:
        time_pass(name)  # warm-up: oneDNN builds its kernels for the shapes, the allocator grows
    times: dict[str, list[float]] = {name: [] for name in DTYPES}
    for _ in range(rounds):
        for name in DTYPES:
            times[name].append(time_pass(name))
    fp32, bf16 = (statistics.median(times[name]) * 1000 for name in DTYPES)
    return ("bf16" if bf16 < BF16_MARGIN * fp32 else "fp32"), fp32, bf16


def machine_description() -> str:
    """The CPU's model name, its vector extensions as PyTorch uses them, and the thread count."""
    name = platform.processor() or platform.machine()
    try:
        with open("/proc/cpuinfo") as cpuinfo:
            name = next((line.split(":", 1)[1].strip() for line in cpuinfo if line.startswith("model name")), name)
    except OSError:
        pass
    capability = torch.backends.cpu.get_cpu_capability()
    bf16 = ", native bf16" if native_cpu_bf16() else ""
    return f"{name} ({capability}{bf16}, {torch.get_num_threads()} threads)"


def decision_key(model: nn.Module, batch_tokens: int) -> str:
    """What a cached decision holds for: this machine, PyTorch's version, the model's parameter shapes and the
    batch budget."""
    shapes = [(name, tuple(p.shape)) for name, p in model.named_parameters()]
    text = json.dumps([machine_description(), torch.__version__, shapes, batch_tokens])
    return hashlib.sha256(text.encode()).hexdigest()[:16]


def cached_decision(cache: Path | None, key: str) -> MatmulDecision | None:
    """The decision stored under `key`, if any (an unreadable cache is ignored: it is measured again)."""
    if cache is None or not cache.exists():
        return None
    try:
        entry = json.loads(cache.read_text())[key]
        entry["batch"] = tuple(entry["batch"])
        return MatmulDecision(**entry)
    except (OSError, ValueError, KeyError, TypeError):
        return None


def store_decision(cache: Path, key: str, decision: MatmulDecision) -> None:
    """Add `decision` under `key` to the cache file (rewritten atomically: never half a file)."""
    try:
        entries = json.loads(cache.read_text()) if cache.exists() else {}
        if not isinstance(entries, dict):
            entries = {}
    except (OSError, ValueError):
        entries = {}
    entries[key] = asdict(decision)
    write_atomic(cache, json.dumps(entries, indent=1).encode())


def choose_matmul_dtype(
    time_pass: Callable[[str], float],
    key: str,
    batch: tuple[int, int, int],
    cache: Path | None = None,
) -> MatmulDecision:
    """auto's decision: from the cache under `key`, else measured with `time_pass` (`decide_matmul_dtype`)
    and stored. Logs both figures and the choice."""
    decision = cached_decision(cache, key)
    if decision is not None:
        log.info(decision.describe(cache, cached=True))
        return decision
    choice, fp32_ms, bf16_ms = decide_matmul_dtype(time_pass)
    date = time.strftime("%Y-%m-%d")
    decision = MatmulDecision(choice, round(fp32_ms, 2), round(bf16_ms, 2), batch, machine_description(), date)
    if cache is not None:
        try:
            store_decision(cache, key, decision)
        except OSError as err:
            log.warning("train.matmul_precision=auto: could not cache the decision in %s (%s)", cache, err)
            cache = None
    log.info(decision.describe(cache, cached=False))
    return decision
