"""The GPU check: everything that runs on CUDA, exercised and timed in one command of a few minutes.

    python benchmarks/gpu_check.py --data-dir PATH/TO/multi30k [--wheels PATH/TO/wheels] [--steps 300]
        [--out gpu_check.json]
    python benchmarks/gpu_check.py --dry-run        # the same steps on the CPU, tiny: what the test suite runs

On one NVIDIA GPU it
1. trains `multi30k_gru` for --steps updates in fp32, then in bf16 (`train.precision=bf16`): target tokens/s;
2. trains --steps / 3 updates under `torchrun --nproc_per_node 1` (NCCL);
3. translates the test set greedily (`seq2seq.translate`) and scores it with beam 5 (`seq2seq.evaluate`)
   on cuda: sentences/s and BLEU;
4. serves the model on cuda (`seq2seq.serve`) and posts the test set to it in batches: sentences/s;
5. exports it (`seq2seq.export`) and translates with the PyTorch-free translator (`seq2seq.portable`), on
   onnxruntime's CUDA provider when it has one, else its CPU one: sentences/s;
and prints one table of the figures (and writes them to --out as JSON), with the GPU, driver and versions.
Each step has its own time limit; a failed step is reported (its command and the end of its output) and the
others still run; the exit status is 1 when any failed.

It needs PyTorch (with CUDA), sentencepiece and, for step 5, onnxruntime: machines with a GPU tend to have
those. The rest (hydra-core, omegaconf, antlr4-python3-runtime, PyYAML, sacrebleu and its dependencies,
tensorboard, tqdm, matplotlib, fastapi, uvicorn, onnx, onnxscript, and this package itself) is checked
first; what is missing is installed from --wheels (pip, no index: nothing is downloaded), or named with the
command that fetches it on a machine with network:

    pip download -d wheels --only-binary=:all: --python-version 3.11 --platform manylinux_2_28_x86_64 \\
        hydra-core sacrebleu tensorboard tqdm matplotlib fastapi "uvicorn[standard]" onnx onnxscript

(with the target's Python version; `datasets` is not needed: the check reads local files). --dry-run runs
every step on the CPU with the embedded corpus, a tiny model and a few updates (torchrun on gloo): seconds.
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import os
import platform
import re
import shlex
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path
from typing import Any

from common import CHECKOUT, markdown_table, read_lines

NEEDED = {  # import name -> what to install
    "hydra": "hydra-core",
    "omegaconf": "omegaconf",
    "yaml": "PyYAML",
    "sacrebleu": "sacrebleu",
    "tensorboard": "tensorboard",
    "tqdm": "tqdm",
    "matplotlib": "matplotlib",
    "fastapi": "fastapi",
    "uvicorn": "uvicorn[standard]",
    "onnx": "onnx",
    "onnxscript": "onnxscript",
}
TINY = [  # the dry run's model and data: seconds on a CPU
    "model.embedding_size=16",
    "model.hidden_size=16",
    "tokenizer.vocab_size=200",
    "train.batch_tokens=300",
    "data.max_train_pairs=300",
    "train.validate_every=3",
    "train.insight=false",
]


def missing_modules() -> list[str]:
    return [name for name in NEEDED if importlib.util.find_spec(name) is None]


def install(wheels: Path, modules: list[str]) -> None:
    packages = [NEEDED[m] for m in modules]
    command = [sys.executable, "-m", "pip", "install", "--no-index", "--find-links", str(wheels), *packages]
    print(f"$ {shlex.join(command)}", flush=True)
    subprocess.run(command, check=True)


def environment(dry: bool) -> dict[str, Any]:
    import torch

    info: dict[str, Any] = {"python": platform.python_version(), "torch": torch.__version__}
    if torch.cuda.is_available():
        info["gpu"] = torch.cuda.get_device_name(0)
        info["bf16"] = torch.cuda.is_bf16_supported()
        info["cuda"] = torch.version.cuda
    elif not dry:
        raise SystemExit(
            "gpu_check: PyTorch sees no CUDA device (torch.cuda.is_available() is False); --dry-run checks the CPU"
        )
    try:
        import onnxruntime

        info["onnxruntime"] = f"{onnxruntime.__version__} ({', '.join(onnxruntime.get_available_providers())})"
    except ImportError:
        info["onnxruntime"] = None
    return info


class Check:
    """Runs the steps: each a command with a time limit, its figures parsed from what it writes."""

    def __init__(self, args: argparse.Namespace, work: Path) -> None:
        self.args, self.work = args, work
        self.device = "cpu" if args.dry_run else "cuda"
        self.rows: list[dict[str, Any]] = []
        self.env = {**os.environ, "PYTHONPATH": str(CHECKOUT) + os.pathsep + os.environ.get("PYTHONPATH", "")}
        if args.dry_run:
            self.data = ["data.dir=data/synth_de_en", *TINY]
            self.experiment = "gru"
            self.test = CHECKOUT / "data" / "synth_de_en" / "test"
        else:
            self.data = [f"data.dir={args.data_dir}"]
            self.experiment = "multi30k_gru"
            self.test = Path(args.data_dir) / "test_2016_flickr"

    def run(self, step: str, command: list[str], limit: float, **kwargs: Any) -> subprocess.CompletedProcess | None:
        print(f"\n== {step}\n$ {shlex.join(command)}", flush=True)
        start = time.monotonic()
        try:
            done = subprocess.run(
                command, cwd=CHECKOUT, env=self.env, capture_output=True, text=True, timeout=limit, **kwargs
            )
        except subprocess.TimeoutExpired:
            self.rows.append({"step": step, "ok": False, "figure": f"over its {limit:.0f} s limit", "command": command})
            return None
        seconds = time.monotonic() - start
        if done.returncode != 0:
            tail = (done.stderr or done.stdout)[-1500:]
            self.rows.append({"step": step, "ok": False, "figure": f"exit {done.returncode}", "command": command})
            print(tail, file=sys.stderr)
            return None
        print(f"   done in {seconds:.1f} s", flush=True)
        return done

    def record(self, step: str, figure: str, command: list[str], **extra: Any) -> None:
        self.rows.append({"step": step, "ok": True, "figure": figure, "command": command, **extra})

    def train(self, name: str, steps: int, overrides: list[str], torchrun: bool = False) -> Path | None:
        run = self.work / re.sub(r"[^a-z0-9]+", "_", name.lower()).strip("_")  # Hydra reads commas as a sweep
        launcher = [sys.executable, "-m", "seq2seq.train"]
        if torchrun:
            launcher = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node=1", "-m"]
            launcher += ["seq2seq.train"]
        command = [*launcher, f"+experiment={self.experiment}", *self.data, f"train.device={self.device}"]
        command += ["train.max_minutes=null", "train.max_epochs=null", f"train.max_steps={steps}", *overrides]
        command += [f"hydra.run.dir={run}"]
        if self.run(name, command, limit=self.args.step_limit) is None:
            return None
        results = json.loads((run / "results.json").read_text())
        train = results["train"]
        tokens = train.get("tokens_per_sec")
        figure = f"{tokens:,.0f} target tokens/s" if tokens else "(no throughput window closed)"
        self.record(
            name, f"{figure}; {train['steps']} steps; test BLEU (beam) {results['test']['beam']['bleu']}", command
        )
        return run

    def decode(self, run: Path) -> None:
        src, ref = self.test.with_suffix(self.test.suffix + ".de"), self.test.with_suffix(self.test.suffix + ".en")
        src, ref = _existing(src), _existing(ref)
        lines = [line for line in read_lines(src) if line.strip()]
        command = [sys.executable, "-m", "seq2seq.translate", str(run), "--beam-size", "1", "--device", self.device]
        start = time.monotonic()
        if self.run("translate (greedy)", command, self.args.step_limit, input="\n".join(lines) + "\n") is not None:
            rate = len(lines) / (time.monotonic() - start)
            self.record("translate (greedy)", f"{rate:,.1f} sentences/s (process included)", command)
        command = [sys.executable, "-m", "seq2seq.evaluate", str(run), "--src", str(src), "--ref", str(ref)]
        command += ["--beam-size", "5", "--device", self.device, "--json"]
        done = self.run("evaluate (beam 5)", command, self.args.step_limit)
        if done is not None:
            scores = json.loads(done.stdout.strip().splitlines()[-1])
            figure = f"{scores['sentences_per_sec']:,.1f} sentences/s; BLEU {scores['bleu']}"
            self.record("evaluate (beam 5)", figure, command)

    def serve(self, run: Path) -> None:
        lines = [
            line for line in read_lines(_existing(self.test.with_suffix(self.test.suffix + ".de"))) if line.strip()
        ]
        with socket.socket() as probe:
            probe.bind(("127.0.0.1", 0))
            port = probe.getsockname()[1]
        command = [sys.executable, "-m", "seq2seq.serve", str(run), "--port", str(port), "--device", self.device]
        print(f"\n== serve\n$ {shlex.join(command)}", flush=True)
        log = (self.work / "serve.log").open("w")
        server = subprocess.Popen(command, cwd=CHECKOUT, env=self.env, stdout=log, stderr=subprocess.STDOUT)
        try:
            url = f"http://127.0.0.1:{port}"
            deadline = time.monotonic() + self.args.step_limit
            while True:
                try:
                    urllib.request.urlopen(url + "/health", timeout=2).close()
                    break
                except OSError:
                    if server.poll() is not None or time.monotonic() > deadline:
                        self.rows.append({"step": "serve", "ok": False, "figure": "did not start", "command": command})
                        return
                    time.sleep(0.5)
            start = time.monotonic()
            for first in range(0, len(lines), 64):
                body = json.dumps({"text": lines[first : first + 64], "beam_size": 1}).encode()
                request = urllib.request.Request(url + "/translate", body, {"Content-Type": "application/json"})
                with urllib.request.urlopen(request, timeout=self.args.step_limit) as response:
                    json.loads(response.read())
            rate = len(lines) / (time.monotonic() - start)
            self.record("serve (greedy, 64 a request)", f"{rate:,.1f} sentences/s", command)
        finally:
            server.terminate()
            server.wait(timeout=30)
            log.close()

    def portable(self, run: Path) -> None:
        out = self.work / "export"
        command = [sys.executable, "-m", "seq2seq.export", str(run), "--format", "onnx", "--out", str(out)]
        if self.run("export (ONNX)", command, self.args.step_limit) is None:
            return
        size = sum(p.stat().st_size for p in out.rglob("*") if p.is_file()) / 1e6
        self.record("export (ONNX)", f"{size:.1f} MB", command)
        lines = [
            line for line in read_lines(_existing(self.test.with_suffix(self.test.suffix + ".de"))) if line.strip()
        ]
        code = (
            "import sys, time, onnxruntime as ort; from seq2seq.portable.translator import ExportedTranslator; "
            "gpu = 'CUDAExecutionProvider' in ort.get_available_providers(); "
            "t = ExportedTranslator(sys.argv[1], providers=['CUDAExecutionProvider', 'CPUExecutionProvider'] if gpu "
            "else None); lines = sys.stdin.read().splitlines(); s = time.monotonic(); "
            "t.translate(lines, beam_size=1); print(len(lines) / (time.monotonic() - s), 'cuda' if gpu else 'cpu')"
        )
        command = [sys.executable, "-c", code, str(out)]
        done = self.run("portable translator (greedy)", command, self.args.step_limit, input="\n".join(lines) + "\n")
        if done is not None:
            rate, where = done.stdout.split()[-2:]
            self.record(
                "portable translator (greedy)", f"{float(rate):,.1f} sentences/s on onnxruntime's {where}", command
            )


def _existing(path: Path) -> Path:
    """PATH, or PATH.gz when only that exists."""
    return path if path.is_file() else path.with_name(path.name + ".gz")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--data-dir", help="Multi30k: train/val/test_2016_flickr.{de,en}[.gz] (not with --dry-run)")
    parser.add_argument("--wheels", type=Path, help="a folder of wheels to install what is missing from (no index)")
    parser.add_argument("--steps", type=int, default=300, help="updates per training run (default 300)")
    parser.add_argument("--step-limit", type=float, default=240, help="seconds each step may take (default 240)")
    parser.add_argument("--work-dir", type=Path, help="where runs and the export go (default: a temporary folder)")
    parser.add_argument("--dry-run", action="store_true", help="every step on the CPU, tiny (what the tests run)")
    parser.add_argument("--out", type=Path, help="also write the figures here as JSON")
    args = parser.parse_args(argv)
    if not args.dry_run and not args.data_dir:
        parser.error("--data-dir is needed (or --dry-run)")
    if missing := missing_modules():
        if args.wheels is None:
            print(
                f"gpu_check: missing {', '.join(NEEDED[m] for m in missing)}; bring their wheels (see --help) and "
                "pass --wheels DIR",
                file=sys.stderr,
            )
            return 2
        install(args.wheels, missing)
    info = environment(args.dry_run)
    steps = 3 if args.dry_run else args.steps
    with tempfile.TemporaryDirectory(prefix="gpu-check-") as tmp:
        check = Check(args, args.work_dir or Path(tmp))
        fp32 = check.train("train fp32", steps, [])
        if args.dry_run:  # bf16 autocast is for the GPU (or a CPU with native bf16): the dry run trains fp32 again
            check.train("train fp32 again (bf16 on a GPU)", steps, [])
        else:
            check.train("train bf16", steps, ["train.precision=bf16"])
        check.train("torchrun, 1 process", max(1, steps // 3), [], torchrun=True)
        if fp32 is not None:
            check.decode(fp32)
            check.serve(fp32)
            if info.get("onnxruntime"):
                check.portable(fp32)
    print("\ngpu check: " + ", ".join(f"{k} {v}" for k, v in info.items()) + "\n")
    rows = [[r["step"], "ok" if r["ok"] else "FAILED", r["figure"]] for r in check.rows]
    print(markdown_table(["step", "result", "figure"], rows))
    if args.out:
        args.out.write_text(json.dumps({"environment": info, "steps": check.rows}, indent=2) + "\n")
    return 0 if all(r["ok"] for r in check.rows) else 1


if __name__ == "__main__":
    sys.exit(main())
