"""Decoding speed and BLEU of one checkpoint under several decoding options, runs interleaved.

    python benchmarks/decode_benchmark.py PATH/TO/averaged.pt --src PATH/TO/test_2016_flickr.de.gz \
        --ref PATH/TO/test_2016_flickr.en.gz [--baseline PATH/TO/other/checkout [--baseline-checkpoint CKPT]] \
        [--export PATH/TO/export] [--repeats 3] [--variant NAME=OPTIONS ...] [--batch-size 64] [--out decode.json]

Every variant is one `python -m seq2seq.evaluate CHECKPOINT --src --ref --json OPTIONS` run (a fresh process
each time: what a user's command measures, tokenizing, searching and detokenizing, without model loading).
The default variants are greedy and beam 5, each in fp32, with `--quantize int8`, with `--shortlist`, and with
both. With --export (an export folder of the checkpoint), the PyTorch-free translator decodes greedy and beam 5
too (`evaluate EXPORT`). Every variant's translations are compared line by line with those of its search's
fp32 variant. With --baseline (a checkout of this project, e.g. a git worktree of the commit to compare with), the
baseline's own `evaluate` decodes greedy and beam 5 as well. Each repeat runs every variant once, in an order
rotated from repeat to repeat, so that a machine that speeds up or slows down hits all variants alike. The
report: per variant the median sentences/s over the repeats, BLEU and chrF (equal in every repeat, as
decoding is deterministic), and the speed-up over the baseline of the same search (or, without --baseline,
over this checkout's fp32 of the same search): the ratio of the medians, and the median of each repeat's
ratio (paired: drift between repeats cancels).
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

from common import CHECKOUT, markdown_table

SEARCHES = {"greedy": ["--beam-size", "1"], "beam5": ["--beam-size", "5"]}
OPTIONS = {"fp32": [], "int8": ["--quantize", "int8"], "shortlist": ["--shortlist"]}
DEFAULT_VARIANTS = [
    f"{search}-{name}={' '.join(SEARCHES[search] + options)}"
    for search in SEARCHES
    for name, options in (*OPTIONS.items(), ("int8+shortlist", OPTIONS["int8"] + OPTIONS["shortlist"]))
]


def parse_variant(text: str) -> tuple[str, list[str]]:
    """NAME=OPTIONS (evaluate's options, space-separated) -> (name, options)."""
    name, sep, options = text.partition("=")
    if not sep or not name:
        raise argparse.ArgumentTypeError(f"--variant {text!r}: expected NAME=OPTIONS, e.g. beam5=--beam-size 5")
    return name, options.split()


def evaluate_once(
    checkout: Path, args: argparse.Namespace, options: list[str], checkpoint: str | None = None
) -> tuple[dict, list[str]]:
    """One `seq2seq.evaluate --json` run of the package in `checkout` (of `checkpoint`, default: the one
    benchmarked): its JSON line and its translations."""
    if checkpoint is None:
        baseline = checkout != CHECKOUT and args.baseline_checkpoint
        checkpoint = args.baseline_checkpoint if baseline else args.checkpoint
    with tempfile.TemporaryDirectory(prefix="decode_benchmark_") as tmp:
        output = Path(tmp) / "out.txt"
        command = [sys.executable, "-m", "seq2seq.evaluate", checkpoint, "--src", args.src, "--ref", args.ref]
        command += ["--json", "--device", "cpu", "--batch-size", str(args.batch_size), "--output", str(output)]
        env = {**os.environ, "PYTHONPATH": str(checkout)}
        done = subprocess.run([*command, *options], env=env, cwd=checkout, capture_output=True, text=True, check=False)
        if done.returncode != 0:
            raise SystemExit(f"decode_benchmark: {' '.join(command)} failed:\n{done.stderr[-2000:]}")
        return json.loads(done.stdout.strip().splitlines()[-1]), output.read_text(encoding="utf-8").splitlines()


def run_all(args: argparse.Namespace) -> dict[str, list[dict]]:
    """name -> one result per repeat; every repeat runs each variant once, in a rotated order. Each result
    also says how many of its translations equal those of its search's fp32 variant (`identical`)."""
    variants = [
        (name, CHECKOUT, options, None) for name, options in (args.variant or map(parse_variant, DEFAULT_VARIANTS))
    ]
    if args.baseline:
        variants += [(f"{search}-baseline", Path(args.baseline), options, None) for search, options in SEARCHES.items()]
    if args.export:
        variants += [(f"{search}-onnx", CHECKOUT, options, args.export) for search, options in SEARCHES.items()]
    results: dict[str, list[dict]] = {name: [] for name, *_ in variants}
    outputs: dict[str, list[str]] = {}
    for repeat in range(args.repeats):
        shift = repeat % len(variants)
        for name, checkout, options, checkpoint in variants[shift:] + variants[:shift]:
            result, outputs[name] = evaluate_once(checkout, args, options, checkpoint)
            results[name].append(result)
            print(
                f"repeat {repeat + 1}: {name}: {result['sentences_per_sec']} sent/s, BLEU {result['bleu']:.2f}",
                file=sys.stderr,
            )
    for name, runs in results.items():
        reference = outputs.get(f"{name.split('-')[0]}-fp32")
        if reference is not None:
            for run in runs:
                run["identical"] = sum(a == b for a, b in zip(outputs[name], reference))
    return results


def summarize(results: dict[str, list[dict]]) -> dict[str, dict]:
    """name -> median sentences/s, the runs, BLEU, chrF and the speed-up over its search's reference."""
    summary = {}
    for name, runs in results.items():
        speeds = [run["sentences_per_sec"] for run in runs]
        summary[name] = {
            "sentences_per_sec": round(statistics.median(speeds), 1),
            "runs": speeds,
            "bleu": runs[0]["bleu"],
            "chrf": runs[0]["chrf"],
            "sentences": runs[0].get("sentences"),
        }
        if "identical" in runs[0]:
            summary[name]["identical"] = runs[0]["identical"]  # of the last repeat: decoding is deterministic
    for name, entry in summary.items():
        search = name.split("-")[0]
        reference = summary.get(f"{search}-baseline") or summary.get(f"{search}-fp32")
        if reference:
            entry["speedup"] = round(entry["sentences_per_sec"] / reference["sentences_per_sec"], 3)
            # each repeat's ratio: drift between repeats cancels, as both ran in the same repeat
            paired = [ours / theirs for ours, theirs in zip(entry["runs"], reference["runs"])]
            entry["paired_speedup"] = round(statistics.median(paired), 3)
            entry["bleu_change"] = round(entry["bleu"] - reference["bleu"], 2)
    return summary


def markdown(summary: dict[str, dict]) -> str:
    header = ["variant", "sentences/s (median)", "runs", "BLEU", "chrF", "speed-up of medians", "paired speed-up"]
    rows = [
        [
            name,
            f"{e['sentences_per_sec']:.1f}",
            ", ".join(f"{s:.1f}" for s in e["runs"]),
            f"{e['bleu']:.2f}",
            f"{e['chrf']:.2f}",
            e.get("speedup", ""),
            e.get("paired_speedup", ""),
            e.get("bleu_change", ""),
            f"{e['identical']}/{e['sentences']}" if "identical" in e else "",
        ]
        for name, e in summary.items()
    ]
    return markdown_table([*header, "BLEU change", "lines equal to fp32's"], rows)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("checkpoint", help="the checkpoint to decode with (with a shortlist for --shortlist variants)")
    parser.add_argument("--src", required=True, help="source sentences, one per line (.gz allowed)")
    parser.add_argument("--ref", required=True, help="reference translations, line-aligned")
    parser.add_argument("--baseline", help="another checkout of this project whose evaluate decodes greedy and beam 5")
    parser.add_argument(
        "--baseline-checkpoint",
        help="the same model as the baseline's version reads it (an older version may not read newer config keys)",
    )
    parser.add_argument(
        "--export", help="an export folder of the checkpoint (python -m seq2seq.export): adds greedy-onnx, beam5-onnx"
    )
    parser.add_argument("--repeats", type=int, default=3, help="runs of every variant")
    parser.add_argument("--batch-size", type=int, default=64, help="sentences per decoding batch (all variants)")
    parser.add_argument("--variant", action="append", type=parse_variant, help="NAME=OPTIONS, repeatable")
    parser.add_argument("--out", default="decode.json")
    args = parser.parse_args(argv)
    if args.baseline and not (Path(args.baseline) / "seq2seq" / "evaluate.py").is_file():
        parser.error(f"--baseline {args.baseline}: not a checkout of this project (no seq2seq/evaluate.py)")
    args.checkpoint = str(Path(args.checkpoint).resolve())
    if args.baseline_checkpoint:
        args.baseline_checkpoint = str(Path(args.baseline_checkpoint).resolve())
    args.src, args.ref = str(Path(args.src).resolve()), str(Path(args.ref).resolve())
    if args.export:
        args.export = str(Path(args.export).resolve())
    summary = summarize(run_all(args))
    Path(args.out).write_text(json.dumps(summary, indent=2) + "\n", encoding="utf-8")
    print(markdown(summary))


if __name__ == "__main__":
    main()
