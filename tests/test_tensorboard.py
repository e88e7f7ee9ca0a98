"""A real training run, read back through a real TensorBoard server's HTTP API."""

from __future__ import annotations

import json
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.parse
import urllib.request

import pytest

from .conftest import cli, tiny_overrides
from .tiny_models import write_corpus

pytestmark = pytest.mark.slow  # trains in a subprocess (or under torchrun, or starts a server)

SCALARS = {
    "train/loss",
    "valid/bleu",
    "gates/encoder_l0_forward/update_mean",
    "gates/encoder_l0_backward/reset_saturated",
    "gates/decoder_l0/update_saturated",
    "gradients/norm_at_end",
    "gradients/norm_ratio_far_to_end",
}
IMAGES = {"attention/sentence_0", "gradients/by_distance_from_end"}
HISTOGRAMS = {"gates/encoder_l0_forward/update", "gates/decoder_l0/reset"}


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def get_json(port: int, path: str, **params: str):
    query = f"?{urllib.parse.urlencode(params)}" if params else ""
    with urllib.request.urlopen(f"http://127.0.0.1:{port}{path}{query}", timeout=5) as response:
        return json.loads(response.read())


def test_tensorboard_serves_the_training_and_insight_tags(tmp_path, spm_cache):
    run_dir = tmp_path / "run"
    overrides = [o for o in tiny_overrides(spm_cache, insight=True) if not o.startswith("data.dir=")]
    data = write_corpus(tmp_path / "data", train=300, val=8, test=8)  # a quick test scoring
    proc = cli("train", *overrides, f"data.dir={data}", "train.insight_sentences=2", f"hydra.run.dir={run_dir}")
    assert proc.returncode == 0, proc.stderr[-3000:]

    port = free_port()
    log = (tmp_path / "tensorboard.log").open("w")
    server = subprocess.Popen(
        [sys.executable, "-m", "tensorboard.main", "--logdir", str(run_dir), "--host", "127.0.0.1"]
        + ["--port", str(port), "--load_fast=false", "--reload_interval=1"],
        stdout=log,
        stderr=subprocess.STDOUT,
    )
    try:
        deadline = time.monotonic() + 60
        scalars = images = histograms = {}
        while time.monotonic() < deadline:  # the server starts, then loads the event file in the background
            assert server.poll() is None, (tmp_path / "tensorboard.log").read_text()[-3000:]
            try:
                scalars = get_json(port, "/data/plugin/scalars/tags")
                images = get_json(port, "/data/plugin/images/tags")
                histograms = get_json(port, "/data/plugin/histograms/tags")
            except (urllib.error.URLError, ConnectionError, TimeoutError):
                pass  # not listening yet
            else:
                served = {tag for tags in (*scalars.values(), *images.values()) for tag in tags}
                if not (SCALARS | IMAGES) - served:
                    break
            time.sleep(0.5)
        assert len(scalars) == 1, scalars  # one run: the run directory itself
        run = next(iter(scalars))
        assert not SCALARS - set(scalars[run]), sorted(scalars[run])
        assert not IMAGES - set(images.get(run, {})), images
        assert not HISTOGRAMS - set(histograms.get(run, {})), histograms
        assert "attention/sentence_1" in images[run] and "attention/sentence_2" not in images[run]  # 2 sentences
        bleu = get_json(port, "/data/plugin/scalars/scalars", run=run, tag="valid/bleu")
        assert [step for _, step, _ in bleu] == [2, 3]  # validate_every=2, and once more at the end (step 3)
        ratio = get_json(port, "/data/plugin/scalars/scalars", run=run, tag="gradients/norm_ratio_far_to_end")
        assert len(ratio) == 2 and all(value > 0 for _, _, value in ratio)
    finally:
        server.terminate()
        try:
            server.wait(timeout=10)
        except subprocess.TimeoutExpired:
            server.kill()
            server.wait()
        log.close()
