"""Translation as a service: a JSON API with dynamic batching, and a page that draws the attention.

    python -m seq2seq.serve CHECKPOINT [CHECKPOINT ...] [--host 127.0.0.1] [--port 8000] [--device auto]
                            [--quantize int8] [--shortlist]
                            [--max-batch-sentences N] [--max-wait-ms M] [--max-lines L] ...

CHECKPOINT is a best.pt / last.pt / averaged.pt file written by seq2seq.train, or a run folder (as for
seq2seq.translate); several checkpoints decode as one ensemble (seq2seq.decoding.ensemble). POST /translate takes
{"text": [lines], "beam_size"?, "nbest"?, "alpha"?, "attention"?} and answers one entry per line; GET / is
a page to try it, GET /docs the OpenAPI reference, GET /info the model, GET /health the batching counters.
The app is in `seq2seq.serving.app`, the batching in `seq2seq.serving.batcher`; docs/serving.md has the details.
Needs the `serve` extra (FastAPI and uvicorn). Logs and errors go to standard error.
"""

from __future__ import annotations

import argparse
import contextlib
import errno
import importlib.util
import logging
import os
import socket
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import torch

from seq2seq.checkpoint import CheckpointError
from seq2seq.config import Config, ConfigError
from seq2seq.data.tokenizer import Tokenizer
from seq2seq.decoding.loading import load_for_decoding
from seq2seq.device import resolve_device
from seq2seq.model.quantize import QUANTIZATIONS
from seq2seq.results import RunResults
from seq2seq.run_folders import checkpoint_path

log = logging.getLogger("seq2seq.serve")


def recorded_test_bleu(checkpoint: str | Path) -> dict[str, Any] | None:
    """The test BLEU that training recorded for this checkpoint in its run's results.json, or None.

    A run folder's results.json scores best.pt (`test`) and, with checkpoint averaging, averaged.pt
    (`test.averaged`); other checkpoints (last.pt, step_N.pt) were never scored.
    """
    path = checkpoint_path(checkpoint)
    with contextlib.suppress(OSError, ValueError):
        results = RunResults.load(path.parent.parent / "results.json")
        scores = results.test.averaged if path.name == "averaged.pt" else results.test
        if scores is None or path.name not in ("best.pt", "averaged.pt"):
            return None
        return {
            "greedy": scores.greedy.bleu,
            "beam": scores.beam.bleu,
            "beam_size": scores.beam.beam_size,
            "signature": scores.beam.bleu_signature,
        }
    return None


def model_info(
    parameters: int, tokenizer: Tokenizer, config: Config, checkpoints: Sequence[str | Path], device: torch.device
) -> dict[str, Any]:
    """What GET /info reports: the architecture, languages, vocabularies, parameters and recorded test BLEU."""
    m = config.model
    return {
        "checkpoints": [
            {"path": str(c), "file": str(checkpoint_path(c)), "test_bleu": recorded_test_bleu(c)} for c in checkpoints
        ],
        "model": {
            "cell": m.cell,
            "attention": m.attention,
            "encoder_layers": m.encoder_layers,
            "decoder_layers": m.decoder_layers,
            "hidden_size": m.hidden_size,
            "embedding_size": m.embedding_size,
            "bidirectional": m.bidirectional,
            "parameters": parameters,
            "models": len(checkpoints),
        },
        "languages": {"source": config.data.src_lang, "target": config.data.tgt_lang},
        "target_languages": tokenizer.target_languages,  # a multilingual model's (request field target_lang)
        "vocabulary": {
            "source": tokenizer.src_vocab_size,
            "target": tokenizer.tgt_vocab_size,
            "joint": tokenizer.joint,
        },
        "device": str(device),
    }


def build_parser() -> argparse.ArgumentParser:
    from seq2seq.serving.app import Limits  # needs FastAPI (the serve extra)

    limits = Limits()
    parser = argparse.ArgumentParser(prog="seq2seq.serve", description=__doc__.split("\n\n")[0])
    parser.add_argument("checkpoints", nargs="+", metavar="CHECKPOINT", help="a checkpoint file or a run folder")
    parser.add_argument("--host", default="127.0.0.1", help="address to listen on (default: 127.0.0.1, this machine)")
    parser.add_argument("--port", type=int, default=8000, help="default: 8000")
    parser.add_argument("--device", default="auto", help="auto | cpu | cuda | mps (default: auto)")
    parser.add_argument(
        "--backend",
        choices=["pytorch", "onnx"],
        default="pytorch",
        help="onnx: CHECKPOINT is an export folder (python -m seq2seq.export), decoded with onnxruntime "
        "(greedy and beam search; docs/deployment.md)",
    )
    parser.add_argument("--quantize", choices=QUANTIZATIONS, default="none", help="int8: 8-bit decoder weights (CPU)")
    parser.add_argument("--shortlist", action="store_true", help="search over the checkpoint's lexical shortlist only")
    parser.add_argument("--threads", type=int, help="PyTorch CPU threads per decoder (default: cores / decoders)")
    batching = parser.add_argument_group("batching")
    batching.add_argument(
        "--batching",
        choices=["continuous", "dynamic"],
        default="continuous",
        help="continuous (default): requests join the running batch between decoder steps and leave it the step "
        "they end; dynamic: requests that arrive within --max-wait-ms share one decode (docs/serving.md)",
    )
    batching.add_argument(
        "--max-batch-sentences", type=int, default=32, help="sentences per decoding batch (default: 32)"
    )
    batching.add_argument(
        "--max-wait-ms",
        type=float,
        help="how long queued lines wait for company: before they join a running batch as a group (continuous; "
        "default 20) or before a batch is decoded (dynamic, and with continuous batching the requests that cannot "
        "join a running batch: sampling, attention, a shortlist, prefixes, required phrases; default 5)",
    )
    batching.add_argument("--decoders", type=int, help="decoding threads, one batch each (default: 2 on a CPU)")
    group = parser.add_argument_group("request limits")
    for name, value in vars(limits).items():
        kind = type(value)
        group.add_argument(f"--{name.replace('_', '-')}", type=kind, default=value, help=f"default: {value}")
    parser.add_argument("--log-level", default="info", choices=["debug", "info", "warning", "error"])
    return parser


def check_arguments(args: argparse.Namespace) -> str | None:
    """What is wrong with the numbers on the command line, or None."""
    for name in ("threads", "decoders"):
        if getattr(args, name) is not None and getattr(args, name) < 1:
            return f"--{name} must be positive, not {getattr(args, name)}"
    counts = ("max_batch_sentences", "max_body_bytes", "max_lines", "max_line_chars", "max_beam_size")
    for name in ("port", *counts):
        if getattr(args, name) < (0 if name == "port" else 1):
            return f"--{name.replace('_', '-')} must be positive, not {getattr(args, name)}"
    if args.max_queued_sentences < args.max_lines:
        return f"--max-queued-sentences ({args.max_queued_sentences}) must be at least --max-lines ({args.max_lines})"
    if not (args.max_wait_ms is None or args.max_wait_ms >= 0) or not args.max_alpha >= 0:
        return "--max-wait-ms and --max-alpha must be >= 0"
    return None


def port_problem(host: str, port: int) -> str | None:
    """Why the server could not listen on `host`:`port` (in use, or not an address of this machine), or None.
    Checked before the model loads, so the message comes first and alone, not after "serving on ..."."""
    try:
        infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
    except socket.gaierror as exc:
        return f"--host {host}: not an address ({exc.strerror})"
    family, kind, proto, _, address = infos[0]
    with socket.socket(family, kind, proto) as probe:
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)  # as uvicorn does
        try:
            probe.bind(address)
        except OSError as exc:
            if exc.errno == errno.EADDRINUSE:
                return f"port {port} on {host} is in use (another server?); pick another with --port"
            return f"cannot listen on {host}:{port}: {exc.strerror}"
    return None


def decoding_threads(args: argparse.Namespace, device: torch.device) -> int:
    """The number of decoders (`--decoders`), after setting PyTorch's CPU threads (`--threads`) to share the cores.

    On a CPU the default is 2 decoders of cores / 2 threads each (at least 1): small batches cannot keep
    several cores busy inside one matrix product, two batches side by side can (docs/benchmarks.md, serving
    under load). On a GPU one decoder feeds it.
    """
    decoders = args.decoders or (2 if device.type == "cpu" and (os.cpu_count() or 1) > 1 else 1)
    if args.threads or device.type == "cpu":
        torch.set_num_threads(args.threads or max(1, (os.cpu_count() or 1) // decoders))
    return decoders


def serve_export(args: argparse.Namespace, api: Any, uvicorn: Any) -> int:
    """`--backend onnx`: serve an export folder with onnxruntime (`seq2seq.serving.onnx_backend`)."""
    from seq2seq.config import DecodeConfig
    from seq2seq.portable.translator import ExportError
    from seq2seq.serving.onnx_backend import OnnxTranslator

    if args.quantize != "none" or args.shortlist or len(args.checkpoints) != 1:
        problem = "--backend onnx serves one export folder, without --quantize or --shortlist"
        print(f"seq2seq.serve: {problem}", file=sys.stderr)
        return 2
    decoders = args.decoders or (2 if (os.cpu_count() or 1) > 1 else 1)
    threads = args.threads or max(1, (os.cpu_count() or 1) // decoders)
    providers = ["CUDAExecutionProvider", "CPUExecutionProvider"] if args.device == "cuda" else None
    try:
        translator = OnnxTranslator(args.checkpoints[0], threads, providers)
    except (ExportError, OSError) as exc:
        print(f"seq2seq.serve: {exc}", file=sys.stderr)
        return 2
    limits = api.Limits(**{name: getattr(args, name) for name in vars(api.Limits())})
    d, sampling = translator.decode, DecodeConfig()
    search = (min(d.beam_size, limits.max_beam_size), 1, min(d.alpha, limits.max_alpha), False, False)
    defaults = api.DecodeSettings(*search, sampling.top_k, sampling.top_p, sampling.epsilon, sampling.temperature)
    info = translator.info() | {"quantize": "none", "shortlist": False}
    app = api.create_app(
        translator, info, limits, defaults, args.max_batch_sentences, args.max_wait_ms, decoders, args.batching
    )
    log.info("serving the export %s with onnxruntime on http://%s:%d", args.checkpoints[0], args.host, args.port)
    uvicorn.run(app, host=args.host, port=args.port, log_level=args.log_level)
    return 0


def main(argv: list[str] | None = None) -> int:
    missing = [name for name in ("fastapi", "uvicorn") if importlib.util.find_spec(name) is None]
    if missing:
        print(f"seq2seq.serve needs {' and '.join(missing)}: pip install 'seq2seq[serve]'", file=sys.stderr)
        return 2
    import uvicorn

    from seq2seq.serving import app as api

    args = build_parser().parse_args(argv)
    logging.basicConfig(level=args.log_level.upper(), stream=sys.stderr, format="%(asctime)s %(name)s: %(message)s")
    if problem := check_arguments(args) or port_problem(args.host, args.port):
        print(f"seq2seq.serve: {problem}", file=sys.stderr)
        return 2
    if args.backend == "onnx":
        return serve_export(args, api, uvicorn)
    try:
        decoders = decoding_threads(args, resolve_device(args.device, "--device"))
        model, tokenizer, config, shortlist, device, parameters = load_for_decoding(
            args.checkpoints, args.device, args.quantize, args.shortlist
        )
        info = model_info(parameters, tokenizer, config, args.checkpoints, device)
        info |= {"quantize": args.quantize, "shortlist": args.shortlist}
    except (CheckpointError, ConfigError, RuntimeError) as exc:
        print(f"seq2seq.serve: {exc}", file=sys.stderr)
        return 2
    limits = api.Limits(**{name: getattr(args, name) for name in vars(api.Limits())})
    d = config.decode  # the checkpoint's settings, within the limits; sampling only when a request asks for it
    search = (min(d.beam_size, limits.max_beam_size), 1, min(d.alpha, limits.max_alpha), False, False)
    defaults = api.DecodeSettings(*search, d.top_k, d.top_p, d.epsilon, d.temperature, d.seed)
    translator = api.Translator(model, tokenizer, config.decode, shortlist)
    app = api.create_app(
        translator, info, limits, defaults, args.max_batch_sentences, args.max_wait_ms, decoders, args.batching
    )
    log.info("serving %s on http://%s:%d (page: /, API docs: /docs)", ", ".join(args.checkpoints), args.host, args.port)
    uvicorn.run(app, host=args.host, port=args.port, log_level=args.log_level)
    return 0


if __name__ == "__main__":
    sys.exit(main())
