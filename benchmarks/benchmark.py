"""Benchmark harness: training throughput, decoding speed and peak memory, on Multi30k by default.

    python benchmarks/benchmark.py --data-dir PATH/TO/multi30k [--experiment multi30k_gru]
        [--checkpoint CKPT] [--windows 5] [--window-steps 10] [--warmup-steps 5] [--out benchmark.json]
        [--flop-steps 3] [--flop-sentences 200] [--matmul-n N]
        [--peer joeynmt [--peer-checkpoint JOEY_MODEL_DIR_OR_CKPT] [--peer-batch-type token|sentence]
         [--peer-batch-size N]
         [--peer-venv ~/.cache/seq2seq/joeynmt-venv] [--peer-timeout 1800]] [--repeats N]
        [KEY=VALUE ...]          # any config override, e.g. train.threads=2 model.hidden_size=256

Each measurement runs in a fresh worker process (so its peak resident memory is its own):
- training: target tokens per second of the update alone (`seq2seq.training.step.TrainStep`: forward,
  loss, backward, clipping, optimizer step; no validation, logging or checkpoints) over steady-state
  steps (the first --warmup-steps excluded), the median of --windows windows of --window-steps steps
  each, on the batches of the first epoch(s) of training;
- decoding (needs --checkpoint, a trained model): sentences per second on the test split
  (test_2016_flickr: 1,000 sentences) with greedy search and with beam 5, and their BLEU.
With --repeats N each measurement runs N times (the median over runs is reported).

Efficiency, in the same run:
- the matmul peak (worker `peak`, on the training device with its thread count): GFLOP/s of a square
  n x n `torch.mm` (2 n^3 FLOPs; n = --matmul-n, default 4096 on a GPU, 2048 on a CPU), the best of 5
  timings after warm-up; fp32 (TF32 off, PyTorch's default), and bf16 where it is native: on CUDA, and on
  CPUs with AVX512-BF16 or AMX (else `"bf16_gflops": null` and the reason), fp16 on CUDA;
- FLOPs (a multiply-add counts 2) by `torch.utils.flop_counter.FlopCounterMode`, never inside a timed
  window: training's per target token over --flop-steps more steps after the timed ones (forward, loss,
  backward, optimizer: `TrainStep.step`), decoding's per sentence over the first --flop-sentences test
  sentences (0: all), scaled to the split. GFLOP/s = FLOPs per token (sentence) x the median tokens
  (sentences) per second; its share of the peak is against the training precision's peak where measured
  (else fp32's), decoding's against fp32's. fp32 training with bf16 products (`train.matmul_precision`)
  is held to both peaks: the FLOPs of bf16 matrix products are counted apart ("bf16_flops_per_token"),
  and the share is the time all FLOPs would take at their peaks (bf16 ones at the bf16 peak, the rest at
  fp32's) over the time they took ("peak_used": "fp32+bf16").
  The counter has formulas for matmuls (mm, addmm, bmm, baddbmm), convolutions and attention kernels only.
  The fused recurrent kernels are counted analytically (ANALYTIC_FLOPS): per layer, direction and time
  step, forward 2 * batch * G * H * (input + H) with G = 1 (tanh RNN), 3 (GRU), 4 (LSTM), backward twice
  that: aten::mkldnn_rnn_layer (+ _backward; an unpacked LSTM on a CPU, e.g. the decoder's fused
  teacher-forced pass without input feeding), aten::_cudnn_rnn and aten::miopen_rnn (+ _backward: every
  nn.RNN/GRU/LSTM on GPUs). On a CPU packed sequences and the GRU and tanh RNN run as visible mm/addmm; the
  GPU cells' aten::_thnn_fused_*_cell kernels are pointwise (their gate matmuls are counted as mm). Not
  counted at all: pointwise ops (sigmoid, tanh, adds, dropout), softmax, the loss, reductions, embedding
  lookups, copies and the optimizer's element-wise updates: O(elements), not O(elements x width). The JSON
  lists every op that ran without a formula (views left out) as "analytic" or "not counted".

With --peer joeynmt the same run also times Joey NMT 2.3.0 on the same data, SentencePiece
vocabulary and architecture, alternating runs ours/theirs (--repeats defaults to 2 then): training
with Joey's token batches (--peer-batch-type token, the default: Joey at its best) at our token budget
(train.batch_tokens; --peer-batch-size overrides), or with its sentence batches (--peer-batch-type
sentence) of --peer-batch-size sentences (default 128), ours then getting the token budget whose mean
batch holds as many sentences (unless train.batch_tokens is given); and decoding (greedy, beam 5) when
--peer-checkpoint names a trained Joey model. The report adds Joey's numbers and the ratios
ours/theirs. Joey is driven by joeynmt_peer.py (beside this file), run as a command (never imported): it
installs Joey on demand into its own venv and answers each measurement with a line of JSON.

The results go to a JSON file and a markdown table on standard output.
"""

from __future__ import annotations

import argparse
import json
import math
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch.utils._python_dispatch import TorchDispatchMode
from torch.utils.flop_counter import FlopCounterMode, flop_registry

from seq2seq.checkpoint import model_from_checkpoint
from seq2seq.data.batches import make_batch, token_batches
from seq2seq.data.corpus import load_split
from seq2seq.decoding.inference import translate_sentences
from seq2seq.device import native_cpu_bf16
from seq2seq.model.seq2seq import count_parameters
from seq2seq.training.validation import search_bleu

from common import (
    add_experiment_options,
    command_line,
    config_and_device,
    config_from_args,
    experiment_argv,
    machine,
    markdown_table,
    peak_rss_mb,
    synchronize,
    training_batches,
    training_setup,
)

PEER_SCRIPT = Path(__file__).resolve().with_name("joeynmt_peer.py")  # run as a command, never imported
SEARCHES = (("greedy", 1), ("beam5", 5))  # report key, beam size


# ----------------------------------------------------------------------------- the measurements (workers)


def timed_windows(
    batches: Iterator[list[int]],
    train_on: Callable[[int, list[int]], int],
    warmup_steps: int,
    windows: int,
    window_steps: int,
) -> tuple[list[float], int]:
    """Tokens/s of each window of `window_steps` steps after `warmup_steps` untimed ones, and the sentences timed.

    `train_on(step, indices)` trains one step on the pairs `indices` and returns its target tokens.
    """
    for step in range(warmup_steps):
        train_on(step, next(batches))
    rates: list[float] = []
    sentences, step = 0, warmup_steps
    for _ in range(windows):
        tokens, start = 0, time.perf_counter()
        for _ in range(window_steps):
            indices = next(batches)
            tokens += train_on(step, indices)
            sentences += len(indices)
            step += 1
        rates.append(tokens / (time.perf_counter() - start))
    return rates, sentences


def measure_training(args: argparse.Namespace) -> dict:
    """Target tokens/s of `TrainStep` alone on the experiment's model and training data."""
    config, device, data, model, update = training_setup(args)
    lengths = data.train.src_lengths, data.train.tgt_lengths
    batch_tokens = config.train.batch_tokens
    if args.batch_sentences:
        batch_tokens = budget_for_sentences(*lengths, args.batch_sentences)
    tok = data.tokenizer

    def train_on(step: int, indices: list[int]) -> int:
        batch = make_batch(*data.train.pairs(indices))
        result = update.step(batch.to(device), step)
        synchronize(device)
        return result.tokens

    batches = training_batches(*lengths, batch_tokens, config.train.seed)
    windows, sentences = timed_windows(batches, train_on, args.warmup_steps, args.windows, args.window_steps)
    steps = args.windows * args.window_steps
    rss = peak_rss_mb()  # before counting FLOPs (after the timed windows, on the next batches)
    flops = training_flops(batches, train_on, args.flop_steps, args.warmup_steps + steps) if args.flop_steps else {}
    return {
        "tokens_per_sec": round(statistics.median(windows)),
        "tokens_per_sec_windows": [round(w) for w in windows],
        "steps_timed": steps,
        "sentences_per_batch": round(sentences / steps, 1),
        "batch_tokens": batch_tokens,
        "threads": torch.get_num_threads(),
        "device": str(device),
        "precision": config.train.precision,
        "matmul_precision": update.matmul_precision,  # auto: what the first step measured and chose
        "parameters": count_parameters(model),
        "vocab": [tok.src_vocab_size, tok.tgt_vocab_size],
        "peak_rss_mb": round(rss),
        **flops,
    }


def budget_for_sentences(src_lengths: Sequence[int], tgt_lengths: Sequence[int], sentences: int) -> int:
    """The smallest token budget whose batches (seq2seq.data.batches.token_batches) hold >= `sentences` on average."""

    def mean_rows(budget: int) -> float:
        return len(src_lengths) / len(token_batches(src_lengths, tgt_lengths, budget))

    low, high = 1, max(2, sentences * (int(max(np.max(src_lengths), np.max(tgt_lengths))) + 1))
    while low < high:
        middle = (low + high) // 2
        if mean_rows(middle) >= sentences:
            high = middle
        else:
            low = middle + 1
    return low


def measure_decoding(args: argparse.Namespace) -> dict:
    """Sentences/s of --checkpoint on the test split, greedy and beam 5 (`seq2seq.training.validation.search_bleu`).

    Timed around tokenizing, searching and detokenizing (scoring and model loading excluded). Then, untimed, the
    FLOPs of each search over the first --flop-sentences sentences (0: all), per sentence and scaled to the split.
    """
    config, device = config_and_device(args)
    model, tokenizer, saved, _ = model_from_checkpoint(args.checkpoint, device)
    test = load_split(config.data, "test")
    results: dict[str, Any] = {"sentences": len(test), "threads": torch.get_num_threads(), "device": str(device)}
    decodes = {
        name: replace(saved.decode, beam_size=beam, nbest=1, batch_size=args.decode_batch_size)
        for name, beam in SEARCHES
    }
    for name, decode in decodes.items():
        scores, hyps = search_bleu(model, tokenizer, test, decode, device)
        rate = scores.sentences_per_sec
        results[name] = {
            "sentences_per_sec": rate,
            "seconds": round(len(hyps) / rate, 1) if rate else None,
            "words_per_sentence": round(statistics.mean(len(h.split()) for h in hyps), 2),
            "bleu": scores.bleu,
            "chrf": scores.chrf,
            "signature": scores.bleu_signature,
        }
    results["peak_rss_mb"] = round(peak_rss_mb())  # before counting FLOPs
    counted = test.src[: args.flop_sentences] if args.flop_sentences else test.src
    results.update(flop_sentences=len(counted), uncounted_ops={})
    for name, decode in decodes.items():  # FLOPs per sentence, from the first `counted`, scaled to the split
        flops = count_flops(lambda decode=decode: translate_sentences(model, tokenizer, counted, decode, device))
        per_sentence = flops.total / max(1, len(counted))
        results[name].update(flops_per_sentence=round(per_sentence), flops=round(per_sentence * len(test)))
        results["uncounted_ops"].update(flops.uncounted)
    return results


# ----------------------------------------------------------------------------- FLOPs and the matmul peak


def rnn_flops(tokens: int, weights: Sequence[torch.Tensor]) -> int:
    """Forward FLOPs of a fused recurrent kernel over `tokens` (time steps x batch rows, or packed rows).

    2 x tokens x the elements of its weight matrices (W_ih, W_hh, and W_hr with projections; the 1-D biases
    are skipped): per layer, direction and step that is 2 * batch * G * H * (input + H), G = 1 (tanh RNN),
    3 (GRU), 4 (LSTM), summed over the layers and directions the kernel runs.
    """
    return 2 * tokens * sum(w.numel() for w in weights if w.dim() == 2)


def rows(x: torch.Tensor) -> int:
    return math.prod(x.shape[:-1])  # (steps, batch, features) or (batch, steps, ...) or packed (rows, features)


def mkldnn_layer_flops(x: torch.Tensor, w_ih: torch.Tensor, w_hh: torch.Tensor, *_: Any, **__: Any) -> int:
    """aten::mkldnn_rnn_layer: one layer and direction of an LSTM (GRU, RNN) on a CPU, via oneDNN."""
    return rnn_flops(rows(x), (w_ih, w_hh))


def mkldnn_layer_backward_flops(x: torch.Tensor, w_ih: torch.Tensor, w_hh: torch.Tensor, *_: Any, **__: Any) -> int:
    """Its backward: the gradients of the inputs and of the weights, each as dear as the forward."""
    return 2 * rnn_flops(rows(x), (w_ih, w_hh))


def cudnn_rnn_flops(x: torch.Tensor, weights: Sequence[torch.Tensor], *_: Any, **__: Any) -> int:
    """aten::_cudnn_rnn (and aten::miopen_rnn): every layer and direction at once; `weights` the flat list."""
    return rnn_flops(rows(x), weights)


def cudnn_rnn_backward_flops(x: torch.Tensor, weights: Sequence[torch.Tensor], *args: Any, **kwargs: Any) -> int:
    """Its backward: the data gradients (always), plus the weight gradients when asked (output_mask[3])."""
    output_mask = kwargs.get("output_mask", args[-1] if args else (True,) * 4)
    return rnn_flops(rows(x), weights) * (1 + bool(output_mask[3]))


for _formula in (mkldnn_layer_flops, mkldnn_layer_backward_flops, cudnn_rnn_flops, cudnn_rnn_backward_flops):
    _formula._get_raw = True  # type: ignore[attr-defined]  # FlopCounterMode: the arguments, not their shapes

# the fused recurrent kernels FlopCounterMode has no formula for, counted analytically (op -> its FLOPs)
ANALYTIC_FLOPS: dict[Any, Callable[..., int]] = {
    torch.ops.aten.mkldnn_rnn_layer: mkldnn_layer_flops,
    torch.ops.aten.mkldnn_rnn_layer_backward: mkldnn_layer_backward_flops,
    torch.ops.aten._cudnn_rnn: cudnn_rnn_flops,
    torch.ops.aten._cudnn_rnn_backward: cudnn_rnn_backward_flops,
    torch.ops.aten.miopen_rnn: cudnn_rnn_flops,
    torch.ops.aten.miopen_rnn_backward: cudnn_rnn_backward_flops,
}
# the GPU cells' fused gate kernels: pointwise only, their gate matmuls run before them as (counted) mm/addmm
POINTWISE_CELL_KERNELS = {
    f"aten._thnn_fused_{cell}_cell{suffix}" for cell in ("gru", "lstm") for suffix in ("", "_backward")
}


class UncountedOps(TorchDispatchMode):
    """Records the names of the ops that run without one of FlopCounterMode's own formulas.

    Entered *before* FlopCounterMode, so it sees the ops that actually run (after the counter's decompositions).
    Views (ops whose outputs alias their inputs) compute nothing and are left out.
    """

    def __init__(self) -> None:
        super().__init__()
        self.names: set[str] = set()

    def __torch_dispatch__(self, func: Any, types: Any, args: Any = (), kwargs: Any = None) -> Any:
        returns = func._schema.returns
        view = bool(returns) and all(r.alias_info is not None and not r.alias_info.is_write for r in returns)
        if func._overloadpacket not in flop_registry and not view and func.namespace != "profiler":
            self.names.add(str(func._overloadpacket))  # e.g. "aten.mkldnn_rnn_layer"
        return func(*args, **(kwargs or {}))


MATMULS = {torch.ops.aten.mm, torch.ops.aten.addmm, torch.ops.aten.bmm, torch.ops.aten.baddbmm}
WITH_BIAS = {torch.ops.aten.addmm, torch.ops.aten.baddbmm}


class Bf16Matmuls(TorchDispatchMode):
    """Adds up the FLOPs of the matrix products whose operands are bf16 (`train.matmul_precision=bf16`, autocast):
    held to the bf16 peak, the rest to the fp32 peak."""

    def __init__(self) -> None:
        super().__init__()
        self.flops = 0

    def __torch_dispatch__(self, func: Any, types: Any, args: Any = (), kwargs: Any = None) -> Any:
        if func._overloadpacket in MATMULS:
            a, b = args[1:3] if func._overloadpacket in WITH_BIAS else args[:2]  # addmm(bias, a, b)
            if a.dtype == torch.bfloat16:
                self.flops += 2 * a.numel() * b.size(-1)  # (..., M, K) x (..., K, N): 2 M K N per matrix
        return func(*args, **(kwargs or {}))


@dataclass
class FlopCount:
    """FLOPs (a multiply-add counts 2) of some work, per op, and the ops that ran without a formula."""

    total: int
    by_op: dict[str, int]  # "aten.mm" -> FLOPs
    uncounted: dict[str, str]  # op -> "analytic" | "not counted" | "not counted (pointwise gates: ...)"
    bf16: int = 0  # of `total`, the FLOPs of matrix products in bf16


def count_flops(run: Callable[[], Any]) -> FlopCount:
    """The FLOPs of `run()`: FlopCounterMode's matmul/attention formulas, plus ANALYTIC_FLOPS for fused RNNs."""
    uncounted, bf16 = UncountedOps(), Bf16Matmuls()
    with uncounted, bf16, FlopCounterMode(display=False, custom_mapping=ANALYTIC_FLOPS) as counter:
        run()
    by_op = {str(op): int(n) for op, n in counter.get_flop_counts().get("Global", {}).items()}
    analytic = {str(op) for op in ANALYTIC_FLOPS}

    def how(name: str) -> str:
        if name in analytic:
            return "analytic"
        if name in POINTWISE_CELL_KERNELS:
            return "not counted (pointwise gates; their matmuls are counted as mm)"
        return "not counted"

    uncounted_ops = {name: how(name) for name in sorted(uncounted.names)}
    return FlopCount(int(counter.get_total_flops()), by_op, uncounted_ops, bf16.flops)


def matmul_gflops(n: int, dtype: torch.dtype, device: torch.device, repeats: int = 5) -> float:
    """GFLOP/s of a square `torch.mm` (n x n by n x n: 2 n^3 FLOPs), the best of `repeats` timings after warm-up."""
    a, b = (torch.randn(n, n, device=device).to(dtype) for _ in range(2))

    def seconds_per_call(calls: int) -> float:
        synchronize(device)
        start = time.perf_counter()
        for _ in range(calls):
            torch.mm(a, b)
        synchronize(device)
        return (time.perf_counter() - start) / calls

    seconds_per_call(2)  # warm-up: allocation, library start-up, clocks
    calls = max(1, min(1000, math.ceil(0.05 / seconds_per_call(1))))  # short calls (GPUs): several per timing
    return 2 * n**3 / min(seconds_per_call(calls) for _ in range(repeats)) / 1e9


def native_half(dtype: torch.dtype, device: torch.device) -> str | None:
    """None when `dtype` (bf16, fp16) matmuls are native on `device`, else why they are not measured."""
    if device.type == "cuda":
        return None if dtype != torch.bfloat16 or torch.cuda.is_bf16_supported() else "no bf16 on this GPU"
    if device.type != "cpu" or dtype != torch.bfloat16:
        return f"not measured on {device.type}"
    capability = torch.backends.cpu.get_cpu_capability()  # e.g. "AVX2", "AVX512"
    return None if capability.startswith("AVX512") and native_cpu_bf16() else "no native bf16 on this CPU"


def measure_peak(args: argparse.Namespace) -> dict:
    """The matmul peak of the training device, with the run's thread count: fp32, and bf16/fp16 where native."""
    _, device = config_and_device(args)
    n = args.matmul_n or (4096 if device.type == "cuda" else 2048)
    result: dict[str, Any] = {"matmul_n": n, "fp32_gflops": three_digits(matmul_gflops(n, torch.float32, device))}
    for name, dtype in (("bf16", torch.bfloat16), ("fp16", torch.float16)):
        why_not = native_half(dtype, device)
        result[f"{name}_gflops"] = None if why_not else three_digits(matmul_gflops(n, dtype, device))
        if why_not:
            result[f"{name}_note"] = why_not
    cpu = torch.backends.cpu.get_cpu_capability()
    return {**result, "threads": torch.get_num_threads(), "device": str(device), "cpu_capability": cpu}


def training_flops(
    batches: Iterator[list[int]], train_on: Callable[[int, list[int]], int], steps: int, first_step: int
) -> dict[str, Any]:
    """FLOPs per target token of `steps` more training steps (forward, backward, optimizer), counted untimed."""
    tokens = 0

    def run() -> None:
        nonlocal tokens
        for step in range(first_step, first_step + steps):
            tokens += train_on(step, next(batches))

    count = count_flops(run)
    return {
        "flops_per_token": round(count.total / tokens),
        "bf16_flops_per_token": round(count.bf16 / tokens),  # of those, in bf16 matrix products
        "flop_steps": steps,
        "flops_per_token_by_op": {op: round(n / tokens) for op, n in sorted(count.by_op.items())},
        "uncounted_ops": count.uncounted,
    }


WORKERS: dict[str, Callable[[argparse.Namespace], dict]] = {
    "train": measure_training,
    "decode": measure_decoding,
    "peak": measure_peak,
}


# ----------------------------------------------------------------------------- the processes


def run_json(command: Sequence[str], what: str, stream_stderr: bool = False) -> dict:
    """Run a measuring process; its answer is the JSON object on the last line of its standard output.

    Its standard error is shown only if it fails, unless `stream_stderr` (then as it comes).
    """
    proc = subprocess.run(
        list(command), stdout=subprocess.PIPE, stderr=None if stream_stderr else subprocess.PIPE, text=True
    )
    if proc.returncode != 0:
        raise SystemExit(f"{what} failed:\n" + ("(its messages are above)" if stream_stderr else proc.stderr[-3000:]))
    lines = proc.stdout.strip().splitlines()
    if not lines:
        raise SystemExit(f"{what} printed no result")
    return json.loads(lines[-1])


def run_worker(kind: str, argv: list[str]) -> dict:
    return run_json([sys.executable, __file__, "--worker", kind, *argv], f"{kind} worker")


def peer_command(args: argparse.Namespace, command: str, work: Path, *options: str) -> list[str]:
    """`python benchmarks/joeynmt_peer.py COMMAND WORK ...` for our experiment and overrides."""
    return [
        *(sys.executable, str(PEER_SCRIPT), command, str(work)),
        *experiment_argv(args),
        *("--venv", args.peer_venv),
        *options,
        *args.overrides,
    ]


def peer_train_command(args: argparse.Namespace, work: Path) -> list[str]:
    """Joey's training throughput, with our warm-up and windows, in batches of --peer-batch-size."""
    return peer_command(
        args,
        "measure-train",
        work,
        *("--batch-type", args.peer_batch_type, "--batch-size", str(args.peer_batch_size)),
        *("--warmup-steps", str(args.warmup_steps)),
        *("--windows", str(args.windows), "--window-steps", str(args.window_steps)),
        *("--timeout", str(args.peer_timeout)),
    )


def peer_decode_command(args: argparse.Namespace, work: Path) -> list[str]:
    """Joey's decoding speed with --peer-checkpoint, in batches of --decode-batch-size sentences."""
    return peer_command(
        args,
        "measure-decode",
        work,
        *("--checkpoint", args.peer_checkpoint, "--batch-size", str(args.decode_batch_size)),
        *("--timeout", str(args.peer_timeout)),
    )


def default_peer_batch_size(args: argparse.Namespace) -> int:
    """Joey's training batch when --peer-batch-size is not given: our token budget, or 128 sentences."""
    return 128 if args.peer_batch_type == "sentence" else config_from_args(args).train.batch_tokens


class JoeyPeer:
    """Joey NMT through joeynmt_peer.py: one fresh process per measurement (its peak RSS its own)."""

    def __init__(self, args: argparse.Namespace, work: Path) -> None:
        """Install Joey (once) and write its inputs to `work`."""
        self.args, self.work = args, work
        answer = run_json(peer_command(args, "prepare", work), "Joey NMT setup", stream_stderr=True)
        self.version: str = answer["version"]

    def train(self) -> dict:
        return run_json(peer_train_command(self.args, self.work), "Joey training")

    def decode(self) -> dict:
        return run_json(peer_decode_command(self.args, self.work), "Joey decoding")


def measure_all(args: argparse.Namespace, repeats: int, peer: JoeyPeer | None) -> dict:
    """Training, then decoding, each `repeats` times, alternating ours and the peer's runs."""
    argv = [
        *experiment_argv(args),
        *("--warmup-steps", str(args.warmup_steps), "--windows", str(args.windows)),
        *("--window-steps", str(args.window_steps), "--decode-batch-size", str(args.decode_batch_size)),
        *(("--checkpoint", args.checkpoint) if args.checkpoint else ()),
        *("--flop-steps", str(args.flop_steps), "--flop-sentences", str(args.flop_sentences)),
        *(("--matmul-n", str(args.matmul_n)) if args.matmul_n else ()),
    ]
    train_argv = list(argv)
    budget_given = any(o.lstrip("+").startswith("train.batch_tokens=") for o in args.overrides)
    if peer and args.peer_batch_type == "sentence" and not budget_given:
        train_argv += ["--batch-sentences", str(args.peer_batch_size)]
    report: dict[str, Any] = {"peak": run_worker("peak", [*argv, *args.overrides])}
    ours, theirs = [], []
    for _ in range(repeats):
        ours.append(run_worker("train", [*train_argv, *args.overrides]))
        if peer:
            theirs.append(peer.train())
    report["training"] = combine_training(ours)
    if peer:
        report["peer"] = {"name": args.peer, "version": peer.version, "training": combine_training(theirs)}
    ours, theirs = [], []
    for _ in range(repeats):
        if args.checkpoint:
            ours.append(run_worker("decode", [*argv, *args.overrides]))
        if peer and args.peer_checkpoint:
            theirs.append(peer.decode())
    if ours:
        report["decoding"] = combine_decoding(ours)
    if peer:
        if theirs:
            report["peer"]["decoding"] = combine_decoding(theirs)
        else:
            report["peer"]["decoding"] = {"skipped": "no --peer-checkpoint: Joey's decoding was not measured"}
            print("note: no --peer-checkpoint, so Joey's decoding was not measured", file=sys.stderr)
        report["ratios"] = ratios(report)
    add_efficiency(report)
    return report


# ----------------------------------------------------------------------------- the report


def combine_training(runs: list[dict]) -> dict:
    """One training entry from repeated runs: the median over all their windows."""
    out = dict(runs[0])
    windows = [w for r in runs for w in r["tokens_per_sec_windows"]]
    out["tokens_per_sec"] = round(statistics.median(windows))
    out["tokens_per_sec_windows"] = windows
    out["tokens_per_sec_runs"] = [r["tokens_per_sec"] for r in runs]
    out["peak_rss_mb"] = max(r["peak_rss_mb"] for r in runs)
    if "sentences_per_batch" in out:
        out["sentences_per_batch"] = round(statistics.mean(r["sentences_per_batch"] for r in runs), 1)
    return out


def combine_decoding(runs: list[dict]) -> dict:
    """One decoding entry from repeated runs: the median sentences/s per search."""
    out = dict(runs[0])
    for name, _ in SEARCHES:
        out[name] = dict(runs[0][name])
        out[name]["sentences_per_sec"] = round(statistics.median(r[name]["sentences_per_sec"] for r in runs), 1)
        out[name]["sentences_per_sec_runs"] = [r[name]["sentences_per_sec"] for r in runs]
    out["peak_rss_mb"] = max(r["peak_rss_mb"] for r in runs)
    return out


def three_digits(x: float) -> float:
    return float(f"{x:.3g}")


def add_efficiency(report: dict) -> None:
    """GFLOP/s achieved (FLOPs per token or sentence x the median rate) and their share of the matmul peak.

    Training is held to the peak of its precision where that was measured (bf16/fp16), else to fp32's; with
    bf16 products in fp32 training (`train.matmul_precision`), to both: the share is the time the FLOPs would
    take at the peaks (bf16 products at the bf16 peak, the rest at fp32's) over the time they took. Decoding
    (always fp32) is held to fp32's. In place, on our entries (the peer's FLOPs are not counted).
    """
    peak, t = report.get("peak") or {}, report["training"]
    if t.get("flops_per_token"):
        precision = t.get("precision", "fp32")
        t["peak_used"] = precision if peak.get(f"{precision}_gflops") else "fp32"
        t["gflops"] = three_digits(t["flops_per_token"] * t["tokens_per_sec"] / 1e9)
        t["share_of_peak"] = share(t["gflops"], peak.get(f"{t['peak_used']}_gflops"))
        bf16 = t.get("bf16_flops_per_token", 0)
        if precision == "fp32" and bf16 and peak.get("bf16_gflops"):
            fp32 = t["flops_per_token"] - bf16
            ideal = (fp32 / peak["fp32_gflops"] + bf16 / peak["bf16_gflops"]) / 1e9  # seconds per token at the peaks
            t["peak_used"], t["bf16_share_of_flops"] = "fp32+bf16", float(f"{bf16 / t['flops_per_token']:.3g}")
            t["share_of_peak"] = float(f"{ideal * t['tokens_per_sec']:.3g}")
    d = report.get("decoding")
    for name, _ in SEARCHES if d else ():
        entry = d[name]
        entry["gflops"] = three_digits(entry["flops_per_sentence"] * entry["sentences_per_sec"] / 1e9)
        entry["share_of_peak"] = share(entry["gflops"], peak.get("fp32_gflops"))


def share(gflops: float, peak: float | None) -> float | None:
    return float(f"{gflops / peak:.3g}") if peak else None


def ratio(ours: float, theirs: float) -> float | None:
    return round(ours / theirs, 2) if theirs else None


def ratios(report: dict) -> dict[str, float | None]:
    """Ours/theirs: training tokens/s, and sentences/s per search where both decoded."""
    peer, d = report["peer"], report.get("decoding")
    pd = peer["decoding"]
    return {
        "training_tokens_per_sec": ratio(report["training"]["tokens_per_sec"], peer["training"]["tokens_per_sec"]),
        **{
            f"{s}_sentences_per_sec": ratio(d[s]["sentences_per_sec"], pd[s]["sentences_per_sec"])
            if d and s in pd
            else None
            for s, _ in SEARCHES
        },
    }


def efficiency_text(entry: dict | None) -> str:
    """'12.3 (4.5% of the fp32 peak)', or '—' where FLOPs were not counted."""
    if not entry or entry.get("gflops") is None:
        return "—"
    share = entry.get("share_of_peak")
    return f"{entry['gflops']:,}" + (f" ({share:.1%} of the {entry.get('peak_used', 'fp32')} peak)" if share else "")


def efficiency_rows(report: dict) -> list[tuple[str, str]]:
    """(measurement, our value): the matmul peak, training's and decoding's GFLOP/s, the analytically counted ops."""
    peak, t, d = report.get("peak") or {}, report["training"], report.get("decoding")
    bf16 = peak.get("bf16_gflops")
    rows = [
        (
            f"matmul peak fp32 (bf16), GFLOP/s, n={peak.get('matmul_n', '—')}",
            f"{peak['fp32_gflops']:,} ({f'{bf16:,}' if bf16 else peak.get('bf16_note', '—')})" if peak else "—",
        ),
        (
            "training GFLOP/s (share of peak)",
            efficiency_text(t) + (f"; {t['flops_per_token']:,} FLOPs/token" if t.get("flops_per_token") else ""),
        ),
    ]
    for name, _ in SEARCHES:
        rows.append((f"decoding {name} GFLOP/s (share of peak)", efficiency_text(d[name] if d else None)))
    analytic = {op for e in (t, d or {}) for op, how in e.get("uncounted_ops", {}).items() if how == "analytic"}
    rows.append(("ops with no FlopCounterMode formula, counted analytically", ", ".join(sorted(analytic)) or "none"))
    return rows


def markdown(report: dict) -> str:
    peer = report.get("peer")
    if peer:
        return markdown_with_peer(report)
    t = report["training"]
    rows = [
        (f"training target tokens/s (median of {len(t['tokens_per_sec_windows'])} windows)", t["tokens_per_sec"]),
        ("training windows (tokens/s)", ", ".join(map(str, t["tokens_per_sec_windows"]))),
        ("batch budget / mean sentences per batch", f"{t['batch_tokens']} tokens / {t['sentences_per_batch']}"),
        (
            "threads / device / precision (products)",
            f"{t['threads']} / {t['device']} / {t.get('precision', 'fp32')} ({t.get('matmul_precision', 'fp32')})",
        ),
        ("parameters", f"{t['parameters']:,}"),
        ("training peak RSS", f"{t['peak_rss_mb']} MB"),
    ]
    d = report.get("decoding")
    if d:
        for name in ("greedy", "beam5"):
            rows.append(
                (
                    f"decoding {name}: sentences/s ({d['sentences']} sentences)",
                    f"{d[name]['sentences_per_sec']} (BLEU {d[name]['bleu']})",
                )
            )
        rows.append(("decoding peak RSS", f"{d['peak_rss_mb']} MB"))
    return markdown_table(["measurement", "value"], [*rows, *efficiency_rows(report)])


def markdown_with_peer(report: dict) -> str:
    peer, t, pt = report["peer"], report["training"], report["peer"]["training"]
    ratios = report["ratios"]
    name = f"{peer['name']} {peer['version']}"

    def fmt(x: object) -> str:
        return "—" if x is None else f"{x:,}" if isinstance(x, int) else str(x)

    windows = f"{len(t['tokens_per_sec_windows'])} / {len(pt['tokens_per_sec_windows'])}"
    rows = [
        (
            f"training target tokens/s (median of {windows} windows)",
            *(t["tokens_per_sec"], pt["tokens_per_sec"], fmt(ratios["training_tokens_per_sec"])),
        ),
        (
            "training tokens/s per run",
            *(", ".join(map(str, t["tokens_per_sec_runs"])), ", ".join(map(str, pt["tokens_per_sec_runs"])), ""),
        ),
        (
            "batches",
            f"{t['batch_tokens']} tokens, mean {t['sentences_per_batch']} sentences",
            f"{pt['batch_tokens']} tokens (Joey's count), random sentences"
            if pt.get("batch_type") == "token"
            else f"{pt['sentences_per_batch']} sentences",
            "",
        ),
        ("parameters", fmt(t["parameters"]), fmt(pt.get("parameters")), ""),
        ("training peak RSS", f"{t['peak_rss_mb']} MB", f"{pt['peak_rss_mb']} MB", ""),
    ]
    d, pd = report.get("decoding"), peer.get("decoding")

    def decoded(entry: dict) -> str:
        words = entry.get("words_per_sentence")
        return f"{entry['sentences_per_sec']} (BLEU {entry['bleu']}" + (f", {words} words/sentence)" if words else ")")

    for search in ("greedy", "beam5"):
        ours = decoded(d[search]) if d else "— (no --checkpoint)"
        theirs = decoded(pd[search]) if pd and search in pd else "— (no --peer-checkpoint)"
        rows.append((f"decoding {search}: sentences/s", ours, theirs, fmt(ratios.get(search + "_sentences_per_sec"))))
    rows.append(("threads / device", f"{t['threads']} / {t['device']}", pt["threads"], ""))
    rows += [(what, value, "—", "") for what, value in efficiency_rows(report)]  # Joey's FLOPs: not counted
    return markdown_table(["measurement", "ours", name, "ours/theirs"], rows)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    add_experiment_options(parser, "multi30k_gru")
    parser.add_argument("--checkpoint", help="a trained checkpoint for the decoding measurements")
    parser.add_argument("--warmup-steps", type=int, default=5)
    parser.add_argument("--windows", type=int, default=5)
    parser.add_argument("--window-steps", type=int, default=10)
    parser.add_argument("--decode-batch-size", type=int, default=64)
    parser.add_argument("--repeats", type=int, help="runs of each measurement (default: 2 with --peer, else 1)")
    parser.add_argument("--peer", choices=["joeynmt"], help="also time this system, alternating runs with ours")
    parser.add_argument("--peer-checkpoint", help="a trained Joey model directory (or a .ckpt in one), for decoding")
    parser.add_argument(
        "--peer-batch-type",
        choices=["token", "sentence"],
        default="token",
        help="Joey's training batches: tokens (its best, at our budget) or sentences",
    )
    parser.add_argument(
        "--peer-batch-size",
        type=int,
        help="Joey's tokens (default: our train.batch_tokens) or sentences (default: 128) per training batch",
    )
    parser.add_argument(
        "--peer-venv", default="~/.cache/seq2seq/joeynmt-venv", help="Joey's own venv (made if missing)"
    )
    parser.add_argument("--peer-timeout", type=float, default=1800, help="seconds before a Joey run is killed")
    parser.add_argument("--flop-steps", type=int, default=3, help="training steps whose FLOPs are counted (0: none)")
    parser.add_argument(
        "--flop-sentences", type=int, default=200, help="test sentences decoded to count FLOPs (0: all)"
    )
    parser.add_argument("--matmul-n", type=int, help="size of the peak's square matmul (default: 4096 GPU, 2048 CPU)")
    parser.add_argument("--out", default="benchmark.json")
    parser.add_argument("--worker", choices=sorted(WORKERS), help=argparse.SUPPRESS)
    parser.add_argument("--batch-sentences", type=int, help=argparse.SUPPRESS)
    parser.add_argument("overrides", nargs="*", help="config overrides, KEY=VALUE")
    return parser


def main(argv: list[str] | None = None) -> None:
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.worker:  # one measurement, in this fresh process: its JSON is the last line of standard output
        print(json.dumps(WORKERS[args.worker](args)))
        return
    if args.peer_checkpoint and not args.peer:
        parser.error("--peer-checkpoint needs --peer joeynmt")
    if args.warmup_steps < 0 or args.windows < 1 or args.window_steps < 1:
        parser.error("--windows and --window-steps must be at least 1, --warmup-steps at least 0")
    if args.flop_steps < 0 or args.flop_sentences < 0:
        parser.error("--flop-steps and --flop-sentences must be at least 0")
    if args.peer and args.peer_batch_size is None:
        args.peer_batch_size = default_peer_batch_size(args)
    repeats = args.repeats or (2 if args.peer else 1)
    report: dict[str, Any] = {
        "date": time.strftime("%Y-%m-%d %H:%M"),
        "machine": machine(),
        "command": command_line(__file__, argv),
        "experiment": args.experiment,
        "overrides": args.overrides,
        "repeats": repeats,
    }
    with tempfile.TemporaryDirectory(prefix="seq2seq-peer-") as work:
        peer = JoeyPeer(args, Path(work)) if args.peer else None
        report.update(measure_all(args, repeats, peer))
    Path(args.out).write_text(json.dumps(report, indent=2) + "\n")
    print(markdown(report))
    print(f"\n(written to {args.out})")


if __name__ == "__main__":
    main()
