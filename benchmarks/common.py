"""What the benchmark harnesses of this folder share: the machine they ran on, the options that name an experiment
and the config, device and model they give, reading sentence files, peak memory and markdown tables.

A harness runs as `python benchmarks/NAME.py`, and Python puts the script's own folder first on sys.path, so it
imports this module as `common` (tests/conftest.py's `load_script` puts benchmarks/ on sys.path likewise). The
harnesses import this module and the package, never each other (tests/test_layout.py).

Only the standard library is imported here at the top; torch and the package where they are used. So a harness
that only drives commands (decode_benchmark.py, serve_benchmark.py) never imports torch, and a worker of
paired_benchmark.py imports the package of the checkout its PYTHONPATH names, not this checkout's.
"""

from __future__ import annotations

import argparse
import gzip
import itertools
import os
import platform
import resource
import shlex
import sys
from collections.abc import Iterable, Iterator, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any, NamedTuple

if TYPE_CHECKING:
    import torch

    from seq2seq.config import Config
    from seq2seq.data.prepare import PreparedData
    from seq2seq.model.seq2seq import Seq2Seq
    from seq2seq.training.step import TrainStep

CHECKOUT = Path(__file__).resolve().parents[1]  # this checkout: the folder above benchmarks/


# ----------------------------------------------------------------------------- the machine and the command


def cpu_model() -> str:
    """The CPU's model name (from /proc/cpuinfo on Linux), else what `platform` knows."""
    model = platform.processor() or platform.machine()
    cpuinfo = Path("/proc/cpuinfo")
    if cpuinfo.is_file():
        names = [ln.split(":", 1)[1].strip() for ln in cpuinfo.read_text().splitlines() if ln.startswith("model name")]
        model = names[0] if names else model
    return model


def machine() -> str:
    """CPU model and core count (and the GPU, when there is one)."""
    import torch

    text = f"{cpu_model()}, {os.cpu_count()} cores"
    if torch.cuda.is_available():
        text += f", {torch.cuda.get_device_name(0)}"
    return text


def command_line(script: str, argv: Sequence[str] | None) -> str:
    """The command that ran a harness (`script`: its __file__), as the report gives it: `python benchmarks/NAME.py
    ARGS`, with `argv` (its main's arguments) or, when None, this process's own."""
    args = sys.argv[1:] if argv is None else list(argv)
    return shlex.join(["python", f"benchmarks/{Path(script).name}", *map(str, args)])


# ----------------------------------------------------------------------------- the experiment


def add_experiment_options(parser: argparse.ArgumentParser, experiment: str) -> None:
    """--data-dir, --src, --tgt and --experiment (default `experiment`): what `config_from_args` composes."""
    parser.add_argument("--data-dir", required=True, help="the corpus folder, e.g. PATH/TO/multi30k")
    parser.add_argument("--src", default="de")
    parser.add_argument("--tgt", default="en")
    parser.add_argument("--experiment", default=experiment)


def experiment_argv(args: argparse.Namespace) -> list[str]:
    """The options of `add_experiment_options` again, to hand the same experiment to another process."""
    return ["--data-dir", str(args.data_dir), "--src", args.src, "--tgt", args.tgt, "--experiment", args.experiment]


def config_from_args(args: argparse.Namespace) -> Config:
    """The run's config: the experiment, the data folder and languages, then the KEY=VALUE overrides."""
    from seq2seq.compose import compose

    data = [f"data.dir={args.data_dir}", f"data.src_lang={args.src}", f"data.tgt_lang={args.tgt}"]
    return compose(args.experiment, [*data, *args.overrides])


def config_and_device(args: argparse.Namespace) -> tuple[Config, torch.device]:
    """`config_from_args`, and the training device; torch's thread count set to train.threads when given."""
    import torch

    from seq2seq.device import resolve_device

    config = config_from_args(args)
    if config.train.threads is not None:
        torch.set_num_threads(config.train.threads)
    return config, resolve_device(config.train.device)


class Training(NamedTuple):
    """What the trainer builds before its first step: the config, the device, the data, the model, its update."""

    config: Config
    device: torch.device
    data: PreparedData
    model: Seq2Seq
    update: TrainStep


def training_setup(args: argparse.Namespace) -> Training:
    """The experiment's data and model as the trainer builds them (seeded alike), with one `TrainStep` update."""
    import torch

    from seq2seq.data.prepare import prepare_data
    from seq2seq.model.seq2seq import build_model
    from seq2seq.training.step import TrainStep

    config, device = config_and_device(args)
    data = prepare_data(config)
    torch.manual_seed(config.train.seed)  # the trainer's initial weights
    model = build_model(config.model, data.tokenizer.src_vocab_size, data.tokenizer.tgt_vocab_size).to(device)
    return Training(config, device, data, model, TrainStep(model, config.train, device))


def training_batches(
    src_lengths: Sequence[int], tgt_lengths: Sequence[int], batch_tokens: int, seed: int
) -> Iterator[list[int]]:
    """The batches (lists of pair indices) training would take, epoch after epoch, as the trainer draws them."""
    from seq2seq.data.batches import epoch_batches

    for epoch in itertools.count(1):
        yield from epoch_batches(src_lengths, tgt_lengths, batch_tokens, seed, epoch)


def synchronize(device: torch.device) -> None:
    """Wait for the GPU's queued work (a timing must not stop before it ends); nothing on a CPU."""
    if device.type == "cuda":
        import torch

        torch.cuda.synchronize(device)


# ----------------------------------------------------------------------------- files, memory, tables


def read_lines(path: Path) -> Iterator[str]:
    """The lines of a UTF-8 text file, gzip-compressed when it ends in .gz, without their line breaks, one by one."""
    opener = gzip.open if Path(path).suffix == ".gz" else open
    with opener(path, "rt", encoding="utf-8", newline="") as f:  # type: ignore[operator]
        for line in f:
            yield line.rstrip("\r\n")


def peak_rss_mb(children: bool = False) -> float:
    """The peak resident memory of this process (or of its largest waited-for child), in MB."""
    usage = resource.getrusage(resource.RUSAGE_CHILDREN if children else resource.RUSAGE_SELF)
    return usage.ru_maxrss / 1024  # Linux reports KiB


def markdown_table(header: Sequence[str], rows: Iterable[Sequence[Any]]) -> str:
    """A markdown table: the header, the `| --- |` line, then one line per row (cells as str() gives them; an empty
    one as `| |`)."""
    lines = [header, ["---"] * len(header), *rows]
    return "\n".join("|" + "|".join(f" {cell} " if str(cell) else " " for cell in line) + "|" for line in lines)
