"""Paired training-speed comparison: two checkouts of this project (or two configs), step for step.

    python benchmarks/paired_benchmark.py --data-dir PATH/TO/multi30k [--experiment multi30k_gru_cpu]
        [--baseline PATH/TO/other/checkout] [--baseline-override KEY=VALUE ...]
        [--steps 40] [--warmup-steps 3] [--out paired.json] [KEY=VALUE ...]

On a shared or thermally drifting machine, two training runs measured one after the other can differ
by 10% with identical code (docs/benchmarks.md), which hides a lever worth 5%. Here two worker
processes, "ours" (this checkout's package) and "baseline" (the package in --baseline, e.g. a git
worktree of an older commit: `git worktree add PATH/TO/base HEAD~1`; default: this checkout again), build
the same experiment with the same seed, and then take turns: each training step (`TrainStep.step`:
forward, loss, backward, clipping, optimizer update) runs on the same batch in both, one process at a
time, in alternating order, while the other waits. Drift hits both alike, so the ratio of each
step's two times is stable. The report: each side's tokens/s over the paired steps and the median
(and quartiles) of the per-step speed-up, baseline seconds / ours.

--baseline-override (repeatable) applies to the baseline only, on top of the shared KEY=VALUE overrides,
so one checkout compares configurations, e.g. `--baseline-override model.input_feeding=true`. Both sides
must train on the same batches; the script checks that every step had the same target tokens.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path
from typing import IO, Any

from common import (
    CHECKOUT,
    add_experiment_options,
    command_line,
    experiment_argv,
    markdown_table,
    synchronize,
    training_batches,
    training_setup,
)

# ----------------------------------------------------------------------------- the worker (one side)


def worker(args: argparse.Namespace) -> None:
    """Build the experiment's model and batches; then one training step per "step" line on standard input,
    answered by a JSON line {tokens, seconds}; "quit" ends it. Imports the package PYTHONPATH points at (`common`
    imports it only when called)."""
    from seq2seq.data.batches import make_batch

    config, device, data, _, update = training_setup(args)
    batches = training_batches(
        data.train.src_lengths, data.train.tgt_lengths, config.train.batch_tokens, config.train.seed
    )

    def train_step(step: int) -> dict[str, float]:
        batch = make_batch(*data.train.pairs(next(batches))).to(device)
        start = time.perf_counter()
        tokens = update.step(batch, step).tokens
        synchronize(device)
        return {"tokens": tokens, "seconds": time.perf_counter() - start}

    print(json.dumps({"ready": str(Path(sys.modules["seq2seq"].__file__).parent)}), flush=True)
    for step, line in enumerate(sys.stdin):
        if line.strip() != "step":
            break
        print(json.dumps(train_step(step)), flush=True)


# ----------------------------------------------------------------------------- the pairing (parent)


class Side:
    """One worker process, with the package of `checkout` and its own overrides."""

    def __init__(self, name: str, checkout: Path, args: argparse.Namespace, overrides: list[str]) -> None:
        self.name = name
        paths = [str(checkout), *filter(None, os.environ.get("PYTHONPATH", "").split(os.pathsep))]
        env = dict(os.environ, PYTHONPATH=os.pathsep.join(paths))
        argv = [sys.executable, __file__, "--worker", *experiment_argv(args), *overrides]
        self.proc = subprocess.Popen(argv, stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True, env=env)
        self.package = self.answer()["ready"]

    def answer(self) -> dict[str, Any]:
        stdout: IO[str] = self.proc.stdout  # type: ignore[assignment]
        line = stdout.readline()
        if not line:
            raise SystemExit(f"the {self.name} worker stopped (exit status {self.proc.wait()}); its messages are above")
        return json.loads(line)

    def step(self) -> dict[str, Any]:
        stdin: IO[str] = self.proc.stdin  # type: ignore[assignment]
        stdin.write("step\n")
        stdin.flush()
        return self.answer()

    def close(self) -> None:
        if self.proc.poll() is None:
            self.proc.communicate("quit\n", timeout=60)


def quartiles(values: list[float]) -> list[float]:
    return [round(q, 3) for q in statistics.quantiles(values, n=4)] if len(values) > 1 else [values[0]] * 3


def compare(args: argparse.Namespace) -> dict[str, Any]:
    """Warm-up steps, then `args.steps` paired steps in alternating order; the report's numbers."""
    baseline = Path(args.baseline).resolve() if args.baseline else CHECKOUT
    sides = [
        Side("ours", CHECKOUT, args, args.overrides),
        Side("baseline", baseline, args, [*args.overrides, *args.baseline_overrides]),
    ]
    times: dict[str, list[float]] = {"ours": [], "baseline": []}
    tokens: dict[str, list[int]] = {"ours": [], "baseline": []}
    try:
        for step in range(args.warmup_steps + args.steps):
            for side in sides if step % 2 == 0 else sides[::-1]:
                result = side.step()
                if step >= args.warmup_steps:
                    times[side.name].append(result["seconds"])
                    tokens[side.name].append(result["tokens"])
    finally:
        for side in sides:
            side.close()
    speedups = [b / o for o, b in zip(times["ours"], times["baseline"])]
    return {
        "ours": {"package": sides[0].package, "tokens_per_sec": round(sum(tokens["ours"]) / sum(times["ours"]))},
        "baseline": {
            "package": sides[1].package,
            "overrides": args.baseline_overrides,
            "tokens_per_sec": round(sum(tokens["baseline"]) / sum(times["baseline"])),
        },
        "same_batches": tokens["ours"] == tokens["baseline"],
        "steps": args.steps,
        "speedup_median": round(statistics.median(speedups), 3),
        "speedup_quartiles": quartiles(speedups),
        "speedups": [round(s, 3) for s in speedups],
    }


def markdown(report: dict[str, Any]) -> str:
    ours, base = report["ours"], report["baseline"]
    rows = [
        ("ours: package", ours["package"]),
        ("baseline: package (extra overrides)", f"{base['package']} ({' '.join(base['overrides']) or 'none'})"),
        (
            "target tokens/s in the paired steps, ours / baseline",
            f"{ours['tokens_per_sec']} / {base['tokens_per_sec']}",
        ),
        ("per-step speed-up, median (quartiles)", f"{report['speedup_median']} {report['speedup_quartiles']}"),
        ("paired steps; same batches", f"{report['steps']}; {report['same_batches']}"),
    ]
    return markdown_table(["measurement", "value"], rows)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    add_experiment_options(parser, "multi30k_gru_cpu")
    parser.add_argument("--baseline", help="another checkout of this project (default: this one)")
    parser.add_argument(
        "--baseline-override", dest="baseline_overrides", action="append", default=[], help="KEY=VALUE, baseline only"
    )
    parser.add_argument("--steps", type=int, default=40, help="paired steps timed")
    parser.add_argument("--warmup-steps", type=int, default=3, help="paired steps run first, not timed")
    parser.add_argument("--out", default="paired.json")
    parser.add_argument("--worker", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("overrides", nargs="*", help="config overrides for both sides, KEY=VALUE")
    return parser


def main(argv: list[str] | None = None) -> None:
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.worker:
        worker(args)
        return
    if args.steps < 1 or args.warmup_steps < 0:
        parser.error("--steps must be at least 1 and --warmup-steps at least 0")
    if args.baseline and not (Path(args.baseline) / "seq2seq" / "__init__.py").is_file():
        parser.error(f"--baseline {args.baseline}: not a checkout of this project (no seq2seq/__init__.py there)")
    report = {"date": time.strftime("%Y-%m-%d %H:%M"), "command": command_line(__file__, argv), **compare(args)}
    Path(args.out).write_text(json.dumps(report, indent=2) + "\n")
    print(markdown(report))
    if not report["same_batches"]:
        print(
            "note: the two sides trained on different target tokens (a config that changes the data?)", file=sys.stderr
        )
    print(f"\n(written to {args.out})")


if __name__ == "__main__":
    main()
