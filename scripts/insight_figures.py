"""PNG figures of what trained models show about themselves, for docs/insight.md.

    python scripts/insight_figures.py CKPT [CKPT ...] --src-file test.de [--tgt-file test.en] --out DIR [--sentences N]

From the first N source lines (and their references, with `--tgt-file`) it writes to DIR:

- `gradient_by_distance.png`: the gradient norm against distance from the source end, one line per
  checkpoint (labelled by its cell and attention);
- `gates_LABEL.png`: each checkpoint's gate means and saturated shares, per encoder/decoder layer;
- `attention_LABEL.png`: each checkpoint's attention heatmap for the first sentence (models with attention).

Without `--tgt-file` each model's own greedy translations stand in for the references.
"""

from __future__ import annotations

import argparse
import json
import re
from dataclasses import replace
from pathlib import Path

import torch

from seq2seq.checkpoint import model_from_checkpoint
from seq2seq.config import Config
from seq2seq.data.batches import make_batch
from seq2seq.data.tokenizer import Tokenizer
from seq2seq.decoding.model_search import translate_batch
from seq2seq.model.seq2seq import Seq2Seq
from seq2seq.training.insight import (
    attention_figure,
    gate_figure,
    gate_statistics,
    gradient_figure,
    greedy_attention,
    norms_by_distance,
    trace_batch,
)


def read_lines(path: Path, n: int) -> list[str]:
    with path.open(encoding="utf-8") as f:
        return [line.rstrip("\n") for line, _ in zip(f, range(n))]


def unique_label(label: str, taken: set[str]) -> str:
    name, k = label, 2
    while name in taken:
        name, k = f"{label} ({k})", k + 1
    taken.add(name)
    return name


def parse_args(argv: list[str] | None) -> tuple[argparse.Namespace, list[str], list[str] | None]:
    """The options, the source lines and (with --tgt-file) their references."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("checkpoints", nargs="+", type=Path)
    parser.add_argument("--src-file", type=Path, required=True, help="source sentences, one per line")
    parser.add_argument("--tgt-file", type=Path, help="their references (default: each model's greedy output)")
    parser.add_argument("--out", type=Path, required=True, help="folder for the PNGs")
    parser.add_argument("--sentences", type=int, default=16, help="how many lines to use (default 16)")
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--dpi", type=int, default=120)
    args = parser.parse_args(argv)
    src_lines = read_lines(args.src_file, args.sentences)
    tgt_lines = read_lines(args.tgt_file, args.sentences) if args.tgt_file else None
    if not src_lines:
        parser.error(f"{args.src_file} is empty")
    if tgt_lines is not None and len(tgt_lines) != len(src_lines):
        parser.error(f"{args.tgt_file} has fewer lines than the {len(src_lines)} source lines used")
    return args, src_lines, tgt_lines


def figures_for(
    loaded: tuple[Seq2Seq, Tokenizer, Config],
    label: str,
    src_lines: list[str],
    tgt_lines: list[str] | None,
    args: argparse.Namespace,
) -> tuple[list[float], dict[str, float]]:
    """One model's gate and attention figures (written to --out); returns its gradient curve and gate statistics.

    The model decodes as its checkpoint says (`decode.max_len_*`), always greedily.
    """
    model, tokenizer, config = loaded
    device = torch.device(args.device)
    stem = re.sub(r"[^A-Za-z0-9]+", "_", label).strip("_")
    src_ids = tokenizer.encode_src(src_lines)
    if tgt_lines is not None:
        tgt_ids = tokenizer.encode_tgt(tgt_lines)
    else:  # the model's own greedy translations as targets
        greedy = replace(config.decode, beam_size=1, nbest=1)
        tgt_ids = [hyps[0].tokens for hyps in translate_batch(model, make_batch(src_ids).to(device), greedy)]
    batch = make_batch(src_ids, tgt_ids).to(device)
    trace = trace_batch(model, batch)
    curve = norms_by_distance(trace.grad_norms, trace.src_lengths)
    gates = gate_statistics(trace.gates)
    gate_figure(gates, title=label).savefig(args.out / f"gates_{stem}.png", dpi=args.dpi)
    if model.decoder.attention is not None:
        (ids, weights), *_ = greedy_attention(model, batch.src[:1], batch.src_lengths[:1], config.decode)
        src_pieces = [tokenizer.src.id_to_piece(i) for i in src_ids[0]] + ["</s>"]
        fig = attention_figure(weights, src_pieces, tokenizer.tgt_pieces(ids), title=label)
        fig.savefig(args.out / f"attention_{stem}.png", dpi=args.dpi)
    return curve, gates


def main(argv: list[str] | None = None) -> None:
    args, src_lines, tgt_lines = parse_args(argv)
    args.out.mkdir(parents=True, exist_ok=True)
    curves: dict[str, list[float]] = {}
    gates: dict[str, dict[str, float]] = {}
    taken: set[str] = set()
    for path in args.checkpoints:
        model, tokenizer, config, _ = model_from_checkpoint(path, args.device)
        label = unique_label(f"{config.model.cell}, attention={config.model.attention}", taken)
        curves[label], gates[label] = figures_for((model, tokenizer, config), label, src_lines, tgt_lines, args)
        print(f"{path}: {label}; gradient norm at the end {curves[label][0]:.3g}, farthest {curves[label][-1]:.3g}")
    title = f"{len(src_lines)} sentences from {args.src_file.name}"
    gradient_figure(curves, title=title).savefig(args.out / "gradient_by_distance.png", dpi=args.dpi)
    numbers = {"gradient_by_distance": curves, "gates": gates}  # the figures' numbers, for the text beside them
    (args.out / "insight.json").write_text(json.dumps(numbers, indent=1) + "\n")
    print(f"figures written to {args.out}")


if __name__ == "__main__":
    main()
