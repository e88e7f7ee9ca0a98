"""Joey NMT 2.3.0 as a peer for benchmarks/benchmark.py: its venv, its inputs, its config, its logs.

Joey runs from its own virtual environment (not a dependency of this project), created on demand and
reused: ``~/.cache/seq2seq/joeynmt-venv`` unless ``--venv`` (benchmark.py: ``--peer-venv``) says
otherwise. It gets the same corpus (plain-text copies under a temporary folder), the same joint
SentencePiece model and vocabulary as ours, and the architecture of our experiment (``model.*``),
with sentence batches (``--batch-type sentence``, ``--batch-size`` sentences) or token batches
(``--batch-type token``, ``--batch-size`` tokens: like ours, Joey counts a batch as its sentences times
its longest side + 1; it closes a batch once the count reaches the budget, so a batch may pass it by one
sentence, and draws the sentences at random: Joey 2.3.0 has no length bucketing).

Training throughput: ``joeynmt train CONFIG --skip-test`` capped by ``training.updates``, with
``logging_freq`` = the window size; Joey logs ``Tokens per Sec`` (non-pad target tokens, EOS
included, per wall-clock second of the window) at each window; the first window(s) are warm-up.
Decoding: ``joeynmt test CONFIG`` on the test split with a trained Joey checkpoint, timed by Joey's
own ``Generation took X[sec]`` (model loading and scoring excluded).

To train a Joey model for the decoding comparison:

    python benchmarks/joeynmt_peer.py write-config OUTDIR [--experiment multi30k_gru] [--epochs 20]
    ~/.cache/seq2seq/joeynmt-venv/bin/python -m joeynmt train OUTDIR/config.yaml
    python benchmarks/benchmark.py --peer joeynmt --peer-checkpoint OUTDIR/model ...

benchmark.py drives this script through its command line, never by importing it: each
measurement is a fresh process (so its peak resident memory is Joey's own) that prints one JSON
object as the last line of its standard output:

    python benchmarks/joeynmt_peer.py prepare WORK [--venv VENV] [CONFIG...]       # venv + inputs in WORK
    python benchmarks/joeynmt_peer.py measure-train WORK [--batch-type sentence|token] [--batch-size 128]
        [--warmup-steps 5]
        [--windows 5] [--window-steps 10] [--timeout 1800] [--venv VENV] [CONFIG...]
    python benchmarks/joeynmt_peer.py measure-decode WORK --checkpoint JOEY_MODEL [--batch-size 64]
        [--timeout 1800] [--venv VENV] [CONFIG...]

CONFIG is our experiment, as for benchmark.py: ``--data-dir``, ``--src``, ``--tgt``,
``--experiment`` and any ``KEY=VALUE`` overrides.
"""

from __future__ import annotations

import argparse
import contextlib
import copy
import json
import math
import os
import re
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import sentencepiece as spm
import yaml

from seq2seq.config import Config, DecodeConfig, ModelConfig
from seq2seq.data.corpus import load_corpus
from seq2seq.data.tokenizer import build_tokenizer
from seq2seq.device import resolve_device

from common import add_experiment_options, config_from_args, peak_rss_mb

JOEY_VERSION = "2.3.0"
DEFAULT_VENV = Path("~/.cache/seq2seq/joeynmt-venv").expanduser()
PIP_PACKAGES = ["torch==2.13.0", f"joeynmt=={JOEY_VERSION}", "importlib_metadata", "sentencepiece==0.2.0"]
NEVER = 10**9  # a validation frequency that never comes
STDERR_FD = 2  # a child's standard output sent to our standard error

_TRAIN_LINE = re.compile(r"Epoch\s+(\d+), Step:\s+(\d+),.*Tokens per Sec:\s+([0-9.]+)")
_PARAMS_LINE = re.compile(r"Total params: (\d+)")
_PREDICTING = re.compile(r"Predicting (\d+) example\(s\)")
_GENERATION = re.compile(r"Generation took ([0-9.]+)\[sec\]")
_EVALUATION = re.compile(r"Evaluation result \(([^)]*)\): (.*), ([0-9.]+)\[sec\]")
_DECODING_SET = re.compile(r"Decoding on (\w+) set")


# ----------------------------------------------------------------------------- the virtual environment


def venv_python(venv: Path) -> Path:
    return Path(venv) / "bin" / "python"


def ensure_venv(venv: Path = DEFAULT_VENV, log: Callable[[str], None] = print) -> Path:
    """The venv's python, creating the venv and installing Joey there first when it is missing.

    The installers' own output goes to standard error: standard output carries the JSON answer.
    """
    python = venv_python(venv)
    check = [str(python), "-c", "import importlib.metadata as m; print(m.version('joeynmt'))"]
    if python.is_file():
        probe = subprocess.run(check, capture_output=True, text=True)
        if probe.returncode == 0 and probe.stdout.strip() == JOEY_VERSION:
            return python
    log(f"installing Joey NMT {JOEY_VERSION} into {venv} (a few minutes, once)")
    start = time.perf_counter()
    if not python.is_file():
        subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True, stdout=STDERR_FD)
    subprocess.run([str(python), "-m", "pip", "install", "-q", *PIP_PACKAGES], check=True, stdout=STDERR_FD)
    probe = subprocess.run(check, capture_output=True, text=True)
    if probe.returncode != 0 or probe.stdout.strip() != JOEY_VERSION:
        raise SystemExit(f"Joey NMT {JOEY_VERSION} is not importable in {venv}:\n{probe.stderr[-2000:]}")
    log(f"installed in {time.perf_counter() - start:.0f} s")
    return python


# ----------------------------------------------------------------------------- inputs and config


def write_inputs(config: Config, out_dir: Path) -> dict[str, Any]:
    """Write Joey's inputs for our config: plain-text splits, our SentencePiece model and its vocabulary.

    The corpus is read (and cleaned) by our own loader and the tokenizer is our cached one, so both
    systems see the same sentences and the same subwords. Returns the paths ``joey_config`` needs.
    """
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    splits = load_corpus(config.data)
    tokenizer = build_tokenizer(splits["train"], config.tokenizer)
    state = tokenizer.to_dict()
    if state.get("tgt") is not None:
        raise SystemExit("the Joey peer needs a joint SentencePiece model (tokenizer.joint=true)")
    model_file = out_dir / "spm.model"
    model_file.write_bytes(state["src"])
    vocab_file = out_dir / "vocab.txt"
    vocab_file.write_text("".join(p + "\n" for p in sentencepiece_pieces(state["src"])), encoding="utf-8")
    src, tgt = config.data.src_lang, config.data.tgt_lang
    prefixes = {}
    for name, corpus in splits.items():
        prefix = out_dir / name
        for lang, lines in ((src, corpus.src), (tgt, corpus.tgt)):
            Path(f"{prefix}.{lang}").write_text("".join(line.replace("\n", " ") + "\n" for line in lines), "utf-8")
        prefixes[name] = str(prefix)
    return {"prefixes": prefixes, "model_file": str(model_file), "vocab_file": str(vocab_file)}


def sentencepiece_pieces(model: bytes) -> list[str]:
    """All pieces of a serialized SentencePiece model, in id order (Joey's vocabulary file)."""
    sp = spm.SentencePieceProcessor(model_proto=model)
    return [sp.id_to_piece(i) for i in range(sp.get_piece_size())]


def joey_config(
    config: Config,
    inputs: dict[str, Any],
    model_dir: str | Path,
    *,
    batch_size: int = 128,
    batch_type: str = "sentence",
    updates: int | None = None,
    logging_freq: int = 100,
    epochs: int | None = None,
    validation_freq: int = NEVER,
    use_cuda: bool = False,
) -> dict[str, Any]:
    """A Joey NMT 2.3.0 config (a plain dict, to dump as YAML) mirroring our experiment ``config``.

    Architecture from ``config.model`` (recurrent encoder/decoder, cell, attention, sizes, dropout,
    input feeding), optimisation from ``config.train`` (Adam lr, label smoothing, gradient-norm
    clipping, token-normalised loss), batches of ``batch_size`` sentences or tokens (``batch_type``). The
    learning rate stays constant (``exponential`` with factor 1.0: Joey's ``plateau`` passes ``verbose=``,
    gone in torch 2.13).
    """
    training = joey_training(config, model_dir, batch_size, batch_type, epochs, validation_freq, logging_freq, use_cuda)
    if updates is not None:
        training["updates"] = updates
    return {
        "name": "seq2seq-benchmark-peer",
        "joeynmt_version": JOEY_VERSION,
        "model_dir": str(model_dir),
        "use_cuda": use_cuda,
        "fp16": False,
        "random_seed": config.train.seed,
        "data": joey_data(config, inputs),
        "training": training,
        "testing": joey_testing(config.decode),
        "model": joey_model(config.model),
    }


def joey_data(config: Config, inputs: dict[str, Any]) -> dict[str, Any]:
    """The ``data`` section: our plain-text splits, our SentencePiece model and vocabulary on both sides."""
    prefixes = inputs["prefixes"]

    def side(lang: str) -> dict[str, Any]:
        return {
            "lang": lang,
            "level": "bpe",
            "lowercase": False,
            "max_length": config.data.max_length,
            "voc_file": inputs["vocab_file"],
            "tokenizer_type": "sentencepiece",
            "tokenizer_cfg": {"model_file": inputs["model_file"]},
        }

    return {
        "train": prefixes.get("train"),
        "dev": prefixes.get("valid"),
        "test": prefixes.get("test"),
        "dataset_type": "plain",
        "src": side(config.data.src_lang),
        "trg": side(config.data.tgt_lang),
    }


def joey_training(
    config: Config,
    model_dir: str | Path,
    batch_size: int,
    batch_type: str,
    epochs: int | None,
    validation_freq: int,
    logging_freq: int,
    use_cuda: bool,
) -> dict[str, Any]:
    """The ``training`` section: our optimiser settings, a constant learning rate, batches of ``batch_type``."""
    t, d = config.train, config.decode
    training: dict[str, Any] = {
        "random_seed": t.seed,
        "optimizer": "adam",
        "learning_rate": t.lr,
        "learning_rate_min": t.lr * 1e-3,
        "scheduling": "exponential",
        "decrease_factor": 1.0,
        "weight_decay": t.weight_decay,
        "label_smoothing": t.label_smoothing,
        "loss": "crossentropy",
        "normalization": "tokens",
        "batch_size": batch_size,
        "batch_type": batch_type,
        "eval_batch_size": d.batch_size,
        "eval_batch_type": "sentence",
        "epochs": epochs if epochs is not None else 10**6,
        "validation_freq": validation_freq,
        "logging_freq": logging_freq,
        "eval_metrics": ["bleu"],
        "early_stopping_metric": "bleu",
        "model_dir": str(model_dir),
        "overwrite": True,
        "shuffle": True,
        "use_cuda": use_cuda,
        "num_workers": 0,
        "print_valid_sents": [0],
        "keep_best_ckpts": 1,
    }
    if t.clip_grad_norm is not None:
        training["clip_grad_norm"] = t.clip_grad_norm
    elif t.clip_grad_value is not None:
        training["clip_grad_val"] = t.clip_grad_value
    return training


def joey_model(m: ModelConfig) -> dict[str, Any]:
    """The ``model`` section: our recurrent encoder and attentional decoder (refused where Joey has none)."""
    if m.attention not in ("bahdanau", "luong_general", "luong_dot"):
        raise SystemExit(f"Joey's recurrent decoder needs attention; this experiment has attention={m.attention}")
    if m.cell not in ("gru", "lstm"):
        raise SystemExit(f"Joey has GRU and LSTM cells only, not {m.cell}")

    def embeddings() -> dict[str, Any]:
        return {"embedding_dim": m.embedding_size, "scale": False}

    return {
        "initializer": "xavier_uniform",
        "embed_initializer": "normal",
        "embed_init_weight": 0.1,
        "bias_initializer": "zeros",
        "init_rnn_orthogonal": False,
        "tied_embeddings": bool(m.tie_embeddings),
        "encoder": {
            "type": "recurrent",
            "rnn_type": m.cell,
            "embeddings": embeddings(),
            "hidden_size": m.hidden_size,
            "bidirectional": bool(m.bidirectional),
            "dropout": m.dropout,
            "num_layers": m.encoder_layers,
        },
        "decoder": {
            "type": "recurrent",
            "rnn_type": m.cell,
            "embeddings": embeddings(),
            "hidden_size": m.hidden_size,
            "dropout": m.dropout,
            "hidden_dropout": m.dropout,
            "num_layers": m.decoder_layers,
            "input_feeding": bool(m.input_feeding),
            "init_hidden": "bridge",
            "attention": "bahdanau" if m.attention == "bahdanau" else "luong",
        },
    }


def joey_testing(d: DecodeConfig) -> dict[str, Any]:
    """The ``testing`` section: greedy, our length penalty and decoding batch size, sacreBLEU's 13a."""
    return {
        "beam_size": 1,
        "beam_alpha": d.alpha,
        "batch_size": d.batch_size,
        "batch_type": "sentence",
        "eval_metrics": ["bleu"],
        "sacrebleu_cfg": {"tokenize": "13a"},
    }


def write_yaml(cfg: dict[str, Any], path: Path) -> Path:
    Path(path).write_text(yaml.safe_dump(cfg, sort_keys=False), encoding="utf-8")
    return Path(path)


# ----------------------------------------------------------------------------- logs


def parse_train_log(text: str) -> list[tuple[int, float]]:
    """(step, tokens per second) for every ``Tokens per Sec`` line of a Joey training log."""
    return [(int(m.group(2)), float(m.group(3))) for m in _TRAIN_LINE.finditer(text)]


def warmup_windows(warmup_steps: int, logging_freq: int) -> int:
    """Logged windows to drop: those overlapping the first ``warmup_steps`` steps, and at least the first."""
    return max(1, math.ceil(warmup_steps / logging_freq))


def training_summary(log_text: str, warmup_steps: int, logging_freq: int) -> dict[str, Any]:
    """Median tokens/s over the logged windows after warm-up (the dropped ones listed too)."""
    rows = parse_train_log(log_text)
    skip = warmup_windows(warmup_steps, logging_freq)
    kept = [tps for step, tps in rows if step > skip * logging_freq]
    if not kept:
        raise ValueError(f"no 'Tokens per Sec' window after the first {skip} in the Joey log ({len(rows)} in all)")
    params = _PARAMS_LINE.search(log_text)
    return {
        "tokens_per_sec": round(statistics.median(kept)),
        "tokens_per_sec_windows": [round(x) for x in kept],
        "warmup_windows_dropped": [round(tps) for step, tps in rows if step <= skip * logging_freq],
        "steps_timed": len(kept) * logging_freq,
        "parameters": int(params.group(1)) if params else None,
    }


def parse_test_log(text: str) -> dict[str, dict[str, Any]]:
    """Per decoded set (dev/test) of a ``joeynmt test`` log: sentences, generation seconds, scores."""
    out: dict[str, dict[str, Any]] = {}
    current = None
    for line in text.splitlines():
        if m := _DECODING_SET.search(line):
            current = out.setdefault(m.group(1), {})
        elif current is None:
            continue
        elif m := _PREDICTING.search(line):
            current["sentences"] = int(m.group(1))
        elif m := _GENERATION.search(line):
            current["generation_seconds"] = float(m.group(1))
        elif m := _EVALUATION.search(line):
            current["search"] = m.group(1)
            for item in m.group(2).split(","):
                key, _, value = item.partition(":")
                with contextlib.suppress(ValueError):
                    current[key.strip()] = float(value)
    return out


# ----------------------------------------------------------------------------- runs


def _run_joey(python: Path, mode: str, config_path: Path, extra: list[str], timeout: float, threads: int | None) -> str:
    """Run ``joeynmt MODE CONFIG``; return its combined output (killed, not failed, past ``timeout``)."""
    env = dict(os.environ)
    if threads:
        env["OMP_NUM_THREADS"] = env["MKL_NUM_THREADS"] = str(threads)
    env.setdefault("PYTHONWARNINGS", "ignore")
    proc = subprocess.Popen(
        [str(python), "-m", "joeynmt", mode, str(config_path), *extra],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        env=env,
        start_new_session=True,
    )
    try:
        output, _ = proc.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGTERM)
        output, _ = proc.communicate()
        output += f"\n[benchmark: killed after {timeout:.0f} s]\n"
    if proc.returncode not in (0, -signal.SIGTERM):
        raise RuntimeError(f"joeynmt {mode} failed (exit {proc.returncode}):\n{output[-3000:]}")
    return output


def measure_training(
    python: Path,
    config: Config,
    inputs: dict[str, Any],
    work_dir: Path,
    *,
    batch_size: int,
    batch_type: str = "sentence",
    warmup_steps: int,
    windows: int,
    window_steps: int,
    timeout: float,
    use_cuda: bool = False,
) -> dict[str, Any]:
    """Train Joey for warm-up + ``windows`` logging windows and summarise its throughput (run in a fresh process)."""
    skip = warmup_windows(warmup_steps, window_steps)
    updates = (skip + windows) * window_steps
    model_dir = Path(work_dir) / "model"
    cfg = joey_config(
        config,
        {**inputs, "prefixes": {k: inputs["prefixes"][k] for k in ("train", "valid")}},  # Joey needs a dev set
        model_dir,
        batch_size=batch_size,
        batch_type=batch_type,
        updates=updates,
        logging_freq=window_steps,
        use_cuda=use_cuda,
    )
    path = write_yaml(cfg, Path(work_dir) / "train.yaml")
    start = time.perf_counter()
    output = _run_joey(python, "train", path, ["--skip-test"], timeout, config.train.threads)
    seconds = time.perf_counter() - start
    log_file = model_dir / "train.log"
    text = log_file.read_text(encoding="utf-8") if log_file.is_file() else output
    try:
        summary = training_summary(text, warmup_steps, window_steps)
    except ValueError as error:
        raise RuntimeError(f"{error}\n--- joey output ---\n{output[-3000:]}") from error
    return {
        **summary,
        **({"sentences_per_batch": batch_size} if batch_type == "sentence" else {"batch_tokens": batch_size}),
        "batch_type": batch_type,
        "updates": updates,
        "threads": config.train.threads or "torch default",
        "wall_seconds": round(seconds, 1),
        "peak_rss_mb": round(peak_rss_mb(children=True)),
    }


def resolve_checkpoint(path: str | Path) -> tuple[Path, Path]:
    """(checkpoint file, Joey model directory) for a model directory or a ``.ckpt`` inside one."""
    path = Path(path).expanduser().resolve()
    if path.is_dir():
        model_dir = path
        ckpt = path / "best.ckpt"
        if not ckpt.is_file():
            ckpts = sorted(path.glob("*.ckpt"), key=lambda p: p.stat().st_mtime)
            if not ckpts:
                raise SystemExit(f"no .ckpt file in {path}")
            ckpt = ckpts[-1]
    else:
        ckpt, model_dir = path, path.parent
    if not (model_dir / "config.yaml").is_file():
        raise SystemExit(f"{model_dir} has no config.yaml (a Joey model directory has one)")
    return ckpt, model_dir


def decode_config(
    saved: dict[str, Any], ckpt: Path, model_dir: Path, test_prefix: str, work_dir: Path, beam: int, batch_size: int
) -> dict[str, Any]:
    """The saved Joey config, pointed at our test split, its own vocab/SentencePiece copies, and ``beam``."""
    cfg = copy.deepcopy(saved)
    cfg["model_dir"] = str(work_dir)
    cfg.setdefault("training", {})["model_dir"] = str(work_dir)
    data = cfg["data"]
    data.pop("train", None)
    data.pop("dev", None)
    data["test"] = test_prefix
    for key, name in (("src", "src_vocab.txt"), ("trg", "trg_vocab.txt")):
        if (model_dir / name).is_file():
            data[key]["voc_file"] = str(model_dir / name)
        model_file = data[key].get("tokenizer_cfg", {}).get("model_file")
        if model_file and (model_dir / Path(model_file).name).is_file():
            data[key]["tokenizer_cfg"]["model_file"] = str(model_dir / Path(model_file).name)
    testing = cfg.setdefault("testing", {})
    testing.update({"load_model": str(ckpt), "beam_size": beam, "batch_size": batch_size, "batch_type": "sentence"})
    testing.setdefault("eval_metrics", ["bleu"])
    return cfg


def measure_decoding(
    python: Path,
    checkpoint: str,
    test_prefix: str,
    work_dir: Path,
    *,
    batch_size: int,
    timeout: float,
    threads: int | None,
) -> dict[str, Any]:
    """Greedy and beam-5 sentences/s of a trained Joey model on our test split (Joey's generation time)."""
    ckpt, model_dir = resolve_checkpoint(checkpoint)
    saved = yaml.safe_load((model_dir / "config.yaml").read_text(encoding="utf-8"))
    results: dict[str, Any] = {"checkpoint": str(ckpt)}
    for name, beam in (("greedy", 1), ("beam5", 5)):
        run_dir = Path(work_dir) / name
        run_dir.mkdir(parents=True, exist_ok=True)
        path = write_yaml(
            decode_config(saved, ckpt, model_dir, test_prefix, run_dir, beam, batch_size), run_dir / "test.yaml"
        )
        output = _run_joey(python, "test", path, ["--output-path", str(run_dir / "hyps")], timeout, threads)
        log_file = run_dir / "test.log"
        parsed = parse_test_log(log_file.read_text(encoding="utf-8") if log_file.is_file() else output).get("test")
        if not parsed or "generation_seconds" not in parsed or "sentences" not in parsed:
            raise RuntimeError(f"no test-set generation time in the Joey log:\n{output[-3000:]}")
        results["sentences"] = parsed["sentences"]
        results[name] = {
            "sentences_per_sec": round(parsed["sentences"] / parsed["generation_seconds"], 1),
            "seconds": round(parsed["generation_seconds"], 1),
            "words_per_sentence": mean_words(run_dir / "hyps.test"),
            "bleu": parsed.get("bleu"),
        }
    results["peak_rss_mb"] = round(peak_rss_mb(children=True))
    return results


def mean_words(path: Path) -> float | None:
    """Mean whitespace-separated words per line of Joey's detokenized output file (None if it wrote none)."""
    if not path.is_file():
        return None
    lines = path.read_text(encoding="utf-8").splitlines()
    return round(statistics.mean(len(line.split()) for line in lines), 2) if lines else None


# ----------------------------------------------------------------------------- command line


def write_config_command(args: argparse.Namespace) -> None:
    """``write-config OUTDIR``: Joey inputs + a full training config, to train a peer checkpoint."""
    config = config_from_args(args)
    out = Path(args.work).resolve()
    inputs = write_inputs(config, out / "data")
    cfg = joey_config(
        config,
        inputs,
        out / "model",
        batch_size=args.batch_size,
        batch_type=args.batch_type,
        epochs=args.epochs,
        updates=args.updates,
        validation_freq=args.validation_freq,
        logging_freq=math.gcd(100, args.validation_freq),  # Joey wants validation_freq % logging_freq == 0
    )
    path = write_yaml(cfg, out / "config.yaml")
    print(f"{venv_python(Path(args.venv).expanduser())} -m joeynmt train {path}")


def prepare_command(args: argparse.Namespace) -> dict[str, Any]:
    """``prepare WORK``: install Joey (once) and write its inputs to WORK (``inputs.json`` lists them)."""
    python = ensure_venv(Path(args.venv).expanduser(), log=lambda message: print(message, file=sys.stderr))
    work = Path(args.work)
    inputs = write_inputs(config_from_args(args), work)
    (work / "inputs.json").write_text(json.dumps(inputs))
    return {"python": str(python), "version": JOEY_VERSION, "inputs": inputs}


def read_inputs(work: str | Path) -> dict[str, Any]:
    path = Path(work) / "inputs.json"
    if not path.is_file():
        raise SystemExit(f"{path} is missing: run `joeynmt_peer.py prepare {work}` first")
    return json.loads(path.read_text())


def measure_train_command(args: argparse.Namespace) -> dict[str, Any]:
    """``measure-train WORK``: Joey's training throughput on the inputs ``prepare`` wrote to WORK."""
    config = config_from_args(args)
    inputs = read_inputs(args.work)
    with tempfile.TemporaryDirectory(dir=args.work) as scratch:  # each run its own model folder
        return measure_training(
            venv_python(Path(args.venv).expanduser()),
            config,
            inputs,
            Path(scratch),
            batch_size=args.batch_size,
            batch_type=args.batch_type,
            warmup_steps=args.warmup_steps,
            windows=args.windows,
            window_steps=args.window_steps,
            timeout=args.timeout,
            use_cuda=resolve_device(config.train.device).type == "cuda",
        )


def measure_decode_command(args: argparse.Namespace) -> dict[str, Any]:
    """``measure-decode WORK``: a trained Joey model's decoding speed on the test split ``prepare`` wrote."""
    config = config_from_args(args)
    inputs = read_inputs(args.work)
    with tempfile.TemporaryDirectory(dir=args.work) as scratch:
        return measure_decoding(
            venv_python(Path(args.venv).expanduser()),
            args.checkpoint,
            inputs["prefixes"]["test"],
            Path(scratch),
            batch_size=args.batch_size,
            timeout=args.timeout,
            threads=config.train.threads,
        )


COMMANDS: dict[str, Callable[[argparse.Namespace], Any]] = {
    "write-config": write_config_command,
    "prepare": prepare_command,
    "measure-train": measure_train_command,
    "measure-decode": measure_decode_command,
}


def build_parser() -> argparse.ArgumentParser:
    """One subcommand per entry of COMMANDS, each with our experiment's options (``--data-dir`` ... KEY=VALUE)."""
    experiment = argparse.ArgumentParser(add_help=False)
    add_experiment_options(experiment, "multi30k_gru")
    experiment.add_argument("--venv", default=str(DEFAULT_VENV), help="Joey's own venv (prepare makes it if missing)")
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    commands = parser.add_subparsers(dest="command", required=True)

    def command(name: str, work: str) -> argparse.ArgumentParser:
        sub = commands.add_parser(name, parents=[experiment], help=COMMANDS[name].__doc__.split(":", 1)[1].strip())
        sub.add_argument("work", metavar=work)
        sub.add_argument("overrides", nargs="*", help="config overrides, KEY=VALUE")
        return sub

    write = command("write-config", "OUTDIR")
    write.add_argument("--batch-size", type=int, default=128, help="sentences (or tokens) per training batch")
    write.add_argument("--epochs", type=int, default=20)
    write.add_argument("--updates", type=int, help="stop after this many steps (default: --epochs decides)")
    write.add_argument("--validation-freq", type=int, default=1000)
    command("prepare", "WORK")
    train = command("measure-train", "WORK")
    train.add_argument("--batch-size", type=int, default=128, help="sentences (or tokens) per training batch")
    train.add_argument("--warmup-steps", type=int, default=5)
    train.add_argument("--windows", type=int, default=5)
    train.add_argument("--window-steps", type=int, default=10)
    decode = command("measure-decode", "WORK")
    decode.add_argument("--checkpoint", required=True, help="a trained Joey model directory (or a .ckpt in one)")
    decode.add_argument("--batch-size", type=int, default=64, help="sentences per decoding batch")
    for sub in (write, train):
        sub.add_argument(
            "--batch-type",
            choices=["sentence", "token"],
            default="sentence",
            help="what --batch-size counts: sentences, or tokens (sentences x (the longest side + 1))",
        )
    for sub in (train, decode):
        sub.add_argument("--timeout", type=float, default=1800, help="seconds before a Joey run is killed")
    return parser


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    """The arguments; KEY=VALUE overrides may come before, between or after the options."""
    parser = build_parser()
    args, extra = parser.parse_known_args(argv)
    unknown = [item for item in extra if item.startswith("-")]
    if unknown:
        parser.error(f"unrecognized arguments: {' '.join(unknown)}")
    args.overrides = [*args.overrides, *extra]
    return args


def main(argv: list[str] | None = None) -> None:
    args = parse_args(argv)
    answer = COMMANDS[args.command](args)
    if answer is not None:  # the measurements: one JSON line, the last of standard output
        print(json.dumps(answer))


if __name__ == "__main__":
    main()
