"""Benchmark harness: training throughput, decoding speed and peak memory, on Multi30k by default.

    python scripts/benchmark.py [--data-dir ../shared/data/multi30k] [--experiment multi30k_gru]
        [--checkpoint CKPT] [--windows 5] [--window-steps 10] [--warmup-steps 5] [--out benchmark.json]
        [--peer joeynmt [--peer-checkpoint JOEY_MODEL_DIR_OR_CKPT] [--peer-batch-size 128]
         [--peer-venv ~/.cache/seq2seq/joeynmt-venv] [--peer-timeout 1800]] [--repeats N]
        [KEY=VALUE ...]          # any config override, e.g. train.threads=2 model.hidden_size=256

Each measurement runs in a fresh worker process (so its peak resident memory is its own):
- training: target tokens per second over steady-state steps (the first --warmup-steps excluded),
  the median of --windows windows of --window-steps steps each;
- decoding (needs --checkpoint, a trained model): sentences per second on the test split
  (test_2016_flickr: 1,000 sentences) with greedy search and with beam 5, and their BLEU.
With --repeats N each measurement runs N times (the median over runs is reported).

With --peer joeynmt the same run also times Joey NMT 2.3.0 (scripts/joeynmt_peer.py; installed on
demand into its own venv) on the same data, SentencePiece vocabulary and architecture, alternating
runs ours/theirs (--repeats defaults to 2 then): training with sentence batches of --peer-batch-size,
ours then gets the token budget whose mean batch holds as many sentences (unless train.batch_tokens
is given), and decoding (greedy, beam 5) when --peer-checkpoint names a trained Joey model. The
report adds Joey's numbers and the ratios ours/theirs.

The results go to a JSON file and a markdown table on standard output.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import platform
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))


def compose(experiment: str, data_dir: str, src: str, tgt: str, overrides: list[str]):  # noqa: ANN201
    from hydra import compose as hydra_compose
    from hydra import initialize_config_dir
    from omegaconf import OmegaConf

    from seq2seq.config import Config

    with initialize_config_dir(config_dir=str(REPO / "conf"), version_base="1.3"):
        cfg = hydra_compose(
            config_name="config",
            overrides=[
                f"+experiment={experiment}",
                f"data.dir={data_dir}",
                f"data.src_lang={src}",
                f"data.tgt_lang={tgt}",
                *overrides,
            ],
        )
    return Config.from_dict(OmegaConf.to_object(cfg))


def machine() -> str:
    """CPU model and core count (and the GPU, when there is one)."""
    model = platform.processor() or platform.machine()
    cpuinfo = Path("/proc/cpuinfo")
    if cpuinfo.is_file():
        names = [
            line.split(":", 1)[1].strip() for line in cpuinfo.read_text().splitlines() if line.startswith("model name")
        ]
        model = names[0] if names else model
    text = f"{model}, {os.cpu_count()} cores"
    import torch

    if torch.cuda.is_available():
        text += f", {torch.cuda.get_device_name(0)}"
    return text


def peak_rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # Linux reports KiB


def measure_training(args: argparse.Namespace) -> dict:
    import random

    import torch

    from seq2seq.data import make_batch, token_batches
    from seq2seq.model import count_parameters
    from seq2seq.trainer import Trainer, prepare_data

    config = config_from_args(args)
    if config.train.threads is not None:
        torch.set_num_threads(config.train.threads)
    torch.manual_seed(config.train.seed)
    data = prepare_data(config)
    src_lengths, tgt_lengths = [len(s) for s in data.train_src], [len(t) for t in data.train_tgt]
    batch_tokens = config.train.batch_tokens
    if args.batch_sentences:
        batch_tokens = budget_for_sentences(src_lengths, tgt_lengths, args.batch_sentences)
    with tempfile.TemporaryDirectory() as run_dir:
        trainer = Trainer(config, Path(run_dir), data)
        batches = token_batches(src_lengths, tgt_lengths, batch_tokens, random.Random(config.train.seed))
        needed = args.warmup_steps + args.windows * args.window_steps
        windows: list[float] = []
        sentences = 0
        tokens, start = 0, 0.0
        for step, indices in enumerate(batches[:needed]):
            if step >= args.warmup_steps and (step - args.warmup_steps) % args.window_steps == 0:
                if step > args.warmup_steps:
                    windows.append(tokens / (time.perf_counter() - start))
                tokens, start = 0, time.perf_counter()
            batch = make_batch([data.train_src[i] for i in indices], [data.train_tgt[i] for i in indices])
            _, ntokens, _, _ = trainer.train_step(batch.to(trainer.device))
            if trainer.device.type == "cuda":
                torch.cuda.synchronize()
            tokens += ntokens
            sentences += len(indices) if step >= args.warmup_steps else 0
        windows.append(tokens / (time.perf_counter() - start))
        trainer.writer.close()
    return {
        "tokens_per_sec": round(statistics.median(windows)),
        "tokens_per_sec_windows": [round(w) for w in windows],
        "steps_timed": args.windows * args.window_steps,
        "sentences_per_batch": round(sentences / (args.windows * args.window_steps), 1),
        "batch_tokens": batch_tokens,
        "threads": torch.get_num_threads(),
        "device": str(trainer.device),
        "precision": config.train.precision,
        "parameters": count_parameters(trainer.model),
        "vocab": [data.tokenizer.src_vocab_size, data.tokenizer.tgt_vocab_size],
        "peak_rss_mb": round(peak_rss_mb()),
    }


def budget_for_sentences(src_lengths: list[int], tgt_lengths: list[int], sentences: int) -> int:
    """The smallest token budget whose batches (seq2seq.data.token_batches) hold >= `sentences` on average."""
    from seq2seq.data import token_batches

    def mean_rows(budget: int) -> float:
        return len(src_lengths) / len(token_batches(src_lengths, tgt_lengths, budget))

    low, high = 1, max(2, sentences * (max(max(src_lengths), max(tgt_lengths)) + 1))
    while low < high:
        middle = (low + high) // 2
        if mean_rows(middle) >= sentences:
            high = middle
        else:
            low = middle + 1
    return low


def config_from_args(args: argparse.Namespace):  # noqa: ANN201
    """The run's config: the experiment, the data folder and languages, then the KEY=VALUE overrides."""
    return compose(args.experiment, args.data_dir, args.src, args.tgt, args.overrides)


@contextlib.contextmanager
def peer_workspace(args: argparse.Namespace) -> Iterator[tuple[Any, dict, Path]]:
    """What a Joey worker needs: our config, the inputs `prepare_peer` wrote, and a scratch folder."""
    inputs = json.loads((Path(args.peer_work) / "inputs.json").read_text())
    with tempfile.TemporaryDirectory(dir=args.peer_work) as work:
        yield config_from_args(args), inputs, Path(work)


def measure_peer_training(args: argparse.Namespace) -> dict:
    import joeynmt_peer

    with peer_workspace(args) as (config, inputs, work):
        return joeynmt_peer.measure_training(
            Path(args.peer_python),
            config,
            inputs,
            work,
            batch_size=args.peer_batch_size,
            warmup_steps=args.warmup_steps,
            windows=args.windows,
            window_steps=args.window_steps,
            timeout=args.peer_timeout,
            use_cuda=args.peer_cuda,
        )


def measure_peer_decoding(args: argparse.Namespace) -> dict:
    import joeynmt_peer

    with peer_workspace(args) as (config, inputs, work):
        return joeynmt_peer.measure_decoding(
            Path(args.peer_python),
            args.peer_checkpoint,
            inputs["prefixes"]["test"],
            work,
            batch_size=args.decode_batch_size,
            timeout=args.peer_timeout,
            threads=config.train.threads,
        )


def measure_decoding(args: argparse.Namespace) -> dict:
    import torch

    from seq2seq.checkpoint import model_from_checkpoint
    from seq2seq.corpus import load_split
    from seq2seq.inference import best_strings, translate_sentences
    from seq2seq.metrics import score
    from seq2seq.trainer import resolve_device

    config = config_from_args(args)
    device = resolve_device(config.train.device)
    if config.train.threads is not None:
        torch.set_num_threads(config.train.threads)
    model, tokenizer, saved, _ = model_from_checkpoint(args.checkpoint, device)
    test = load_split(config.data, "test")
    results = {"sentences": len(test), "threads": torch.get_num_threads(), "device": str(device)}
    for name, beam in (("greedy", 1), ("beam5", 5)):
        decode = replace(saved.decode, beam_size=beam, nbest=1, batch_size=args.decode_batch_size)
        start = time.perf_counter()
        hyps = best_strings(tokenizer, translate_sentences(model, tokenizer, test.src, decode, device))
        seconds = time.perf_counter() - start
        scores = score(hyps, test.tgt)
        results[name] = {
            "sentences_per_sec": round(len(hyps) / seconds, 1),
            "seconds": round(seconds, 1),
            "words_per_sentence": round(statistics.mean(len(h.split()) for h in hyps), 2),
            "bleu": scores.bleu,
            "chrf": scores.chrf,
            "signature": scores.bleu_signature,
        }
    results["peak_rss_mb"] = round(peak_rss_mb())
    return results


def run_worker(kind: str, argv: list[str]) -> dict:
    proc = subprocess.run([sys.executable, __file__, "--worker", kind, *argv], capture_output=True, text=True)
    if proc.returncode != 0:
        raise SystemExit(f"{kind} worker failed:\n{proc.stderr[-3000:]}")
    return json.loads(proc.stdout.strip().splitlines()[-1])


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
    for name in ("greedy", "beam5"):
        out[name] = dict(runs[0][name])
        out[name]["sentences_per_sec"] = round(statistics.median(r[name]["sentences_per_sec"] for r in runs), 1)
        out[name]["sentences_per_sec_runs"] = [r[name]["sentences_per_sec"] for r in runs]
    out["peak_rss_mb"] = max(r["peak_rss_mb"] for r in runs)
    return out


def ratio(ours: float, theirs: float) -> float | None:
    return round(ours / theirs, 2) if theirs else None


def markdown(report: dict) -> str:
    peer = report.get("peer")
    if peer:
        return markdown_with_peer(report)
    rows = ["| measurement | value |", "| --- | --- |"]
    t = report["training"]
    rows += [
        f"| training target tokens/s (median of {len(t['tokens_per_sec_windows'])} windows) | {t['tokens_per_sec']} |",
        f"| training windows (tokens/s) | {', '.join(map(str, t['tokens_per_sec_windows']))} |",
        f"| batch budget / mean sentences per batch | {t['batch_tokens']} tokens / {t['sentences_per_batch']} |",
        f"| threads / device / precision | {t['threads']} / {t['device']} / {t.get('precision', 'fp32')} |",
        f"| parameters | {t['parameters']:,} |",
        f"| training peak RSS | {t['peak_rss_mb']} MB |",
    ]
    d = report.get("decoding")
    if d:
        for name in ("greedy", "beam5"):
            rows.append(
                f"| decoding {name}: sentences/s ({d['sentences']} sentences) | {d[name]['sentences_per_sec']} "
                f"(BLEU {d[name]['bleu']}) |"
            )
        rows.append(f"| decoding peak RSS | {d['peak_rss_mb']} MB |")
    return "\n".join(rows)


def markdown_with_peer(report: dict) -> str:
    peer, t, pt = report["peer"], report["training"], report["peer"]["training"]
    ratios = report["ratios"]
    name = f"{peer['name']} {peer['version']}"

    def fmt(x: object) -> str:
        return "—" if x is None else f"{x:,}" if isinstance(x, int) else str(x)

    rows = [f"| measurement | ours | {name} | ours/theirs |", "| --- | --- | --- | --- |"]
    rows += [
        f"| training target tokens/s (median of {len(t['tokens_per_sec_windows'])} / "
        f"{len(pt['tokens_per_sec_windows'])} windows) | {t['tokens_per_sec']} | {pt['tokens_per_sec']} | "
        f"{fmt(ratios['training_tokens_per_sec'])} |",
        f"| training tokens/s per run | {', '.join(map(str, t['tokens_per_sec_runs']))} | "
        f"{', '.join(map(str, pt['tokens_per_sec_runs']))} | |",
        f"| batches | {t['batch_tokens']} tokens, mean {t['sentences_per_batch']} sentences | "
        f"{pt['sentences_per_batch']} sentences | |",
        f"| parameters | {fmt(t['parameters'])} | {fmt(pt.get('parameters'))} | |",
        f"| training peak RSS | {t['peak_rss_mb']} MB | {pt['peak_rss_mb']} MB | |",
    ]
    d, pd = report.get("decoding"), peer.get("decoding")

    def decoded(entry: dict) -> str:
        words = entry.get("words_per_sentence")
        return f"{entry['sentences_per_sec']} (BLEU {entry['bleu']}" + (f", {words} words/sentence)" if words else ")")

    for search in ("greedy", "beam5"):
        ours = decoded(d[search]) if d else "— (no --checkpoint)"
        theirs = decoded(pd[search]) if pd and search in pd else "— (no --peer-checkpoint)"
        rows.append(
            f"| decoding {search}: sentences/s | {ours} | {theirs} | {fmt(ratios.get(search + '_sentences_per_sec'))} |"
        )
    rows.append(f"| threads / device | {t['threads']} / {t['device']} | {pt['threads']} | |")
    return "\n".join(rows)


def prepare_peer(args: argparse.Namespace, work: Path) -> list[str]:
    """Install (once) and feed the peer; return the extra worker arguments for its runs."""
    import joeynmt_peer

    from seq2seq.trainer import resolve_device

    python = joeynmt_peer.ensure_venv(Path(args.peer_venv).expanduser(), log=lambda m: print(m, file=sys.stderr))
    config = config_from_args(args)
    inputs = joeynmt_peer.write_inputs(config, work)
    (work / "inputs.json").write_text(json.dumps(inputs))
    cuda = resolve_device(config.train.device).type == "cuda"
    return [
        *("--peer-python", str(python), "--peer-work", str(work), "--peer-batch-size", str(args.peer_batch_size)),
        *("--peer-timeout", str(args.peer_timeout)),
        *(("--peer-checkpoint", args.peer_checkpoint) if args.peer_checkpoint else ()),
        *(("--peer-cuda",) if cuda else ()),
    ]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--data-dir", default=str(REPO.parent / "shared" / "data" / "multi30k"))
    parser.add_argument("--src", default="de")
    parser.add_argument("--tgt", default="en")
    parser.add_argument("--experiment", default="multi30k_gru")
    parser.add_argument("--checkpoint", help="a trained checkpoint for the decoding measurements")
    parser.add_argument("--warmup-steps", type=int, default=5)
    parser.add_argument("--windows", type=int, default=5)
    parser.add_argument("--window-steps", type=int, default=10)
    parser.add_argument("--decode-batch-size", type=int, default=64)
    parser.add_argument("--repeats", type=int, help="runs of each measurement (default: 2 with --peer, else 1)")
    parser.add_argument("--peer", choices=["joeynmt"], help="also time this system, alternating runs with ours")
    parser.add_argument("--peer-checkpoint", help="a trained Joey model directory (or a .ckpt in one), for decoding")
    parser.add_argument("--peer-batch-size", type=int, default=128, help="Joey's sentences per training batch")
    parser.add_argument(
        "--peer-venv", default="~/.cache/seq2seq/joeynmt-venv", help="Joey's own venv (made if missing)"
    )
    parser.add_argument("--peer-timeout", type=float, default=1800, help="seconds before a Joey run is killed")
    parser.add_argument("--out", default="benchmark.json")
    parser.add_argument("--worker", choices=["train", "decode", "peer-train", "peer-decode"], help=argparse.SUPPRESS)
    parser.add_argument("--batch-sentences", type=int, help=argparse.SUPPRESS)
    parser.add_argument("--peer-python", help=argparse.SUPPRESS)
    parser.add_argument("--peer-work", help=argparse.SUPPRESS)
    parser.add_argument("--peer-cuda", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("overrides", nargs="*", help="config overrides, KEY=VALUE")
    args = parser.parse_args()
    if args.worker:
        measure = {
            "train": measure_training,
            "decode": measure_decoding,
            "peer-train": measure_peer_training,
            "peer-decode": measure_peer_decoding,
        }[args.worker]
        print(json.dumps(measure(args)))
        return
    if args.peer_checkpoint and not args.peer:
        parser.error("--peer-checkpoint needs --peer joeynmt")
    repeats = args.repeats or (2 if args.peer else 1)
    argv = [
        *("--data-dir", args.data_dir, "--src", args.src, "--tgt", args.tgt, "--experiment", args.experiment),
        *("--warmup-steps", str(args.warmup_steps), "--windows", str(args.windows)),
        *("--window-steps", str(args.window_steps), "--decode-batch-size", str(args.decode_batch_size)),
        *(("--checkpoint", args.checkpoint) if args.checkpoint else ()),
    ]
    train_argv = list(argv)
    if args.peer and not any(o.lstrip("+").startswith("train.batch_tokens=") for o in args.overrides):
        train_argv += ["--batch-sentences", str(args.peer_batch_size)]
    report = {
        "date": time.strftime("%Y-%m-%d %H:%M"),
        "machine": machine(),
        "command": " ".join(["python", "scripts/benchmark.py", *sys.argv[1:]]),
        "experiment": args.experiment,
        "overrides": args.overrides,
        "repeats": repeats,
    }
    with tempfile.TemporaryDirectory(prefix="seq2seq-peer-") as work:
        peer_argv = [*argv, *prepare_peer(args, Path(work))] if args.peer else []
        ours, theirs = [], []
        for _ in range(repeats):
            ours.append(run_worker("train", [*train_argv, *args.overrides]))
            if args.peer:
                theirs.append(run_worker("peer-train", [*peer_argv, *args.overrides]))
        report["training"] = combine_training(ours)
        if args.peer:
            report["peer"] = {"name": args.peer, "version": "2.3.0", "training": combine_training(theirs)}
        ours, theirs = [], []
        for _ in range(repeats):
            if args.checkpoint:
                ours.append(run_worker("decode", [*argv, *args.overrides]))
            if args.peer and args.peer_checkpoint:
                theirs.append(run_worker("peer-decode", [*peer_argv, *args.overrides]))
    if ours:
        report["decoding"] = combine_decoding(ours)
    if args.peer:
        peer = report["peer"]
        if theirs:
            peer["decoding"] = combine_decoding(theirs)
        else:
            peer["decoding"] = {"skipped": "no --peer-checkpoint: Joey's decoding was not measured"}
            print("note: no --peer-checkpoint, so Joey's decoding was not measured", file=sys.stderr)
        d, pd = report.get("decoding"), peer["decoding"]
        report["ratios"] = {
            "training_tokens_per_sec": ratio(report["training"]["tokens_per_sec"], peer["training"]["tokens_per_sec"]),
            **{
                f"{s}_sentences_per_sec": ratio(d[s]["sentences_per_sec"], pd[s]["sentences_per_sec"])
                if d and s in pd
                else None
                for s in ("greedy", "beam5")
            },
        }
    Path(args.out).write_text(json.dumps(report, indent=2) + "\n")
    print(markdown(report))
    print(f"\n(written to {args.out})")


if __name__ == "__main__":
    main()
