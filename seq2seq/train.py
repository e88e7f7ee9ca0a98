"""Entry point: `python -m seq2seq.train [+experiment=NAME] [key=value ...]`.

Hydra composes `conf/` over the dataclasses' defaults (`seq2seq.compose`); everything after that is plain
dataclasses and `seq2seq.training.trainer.train`. Logs go where Hydra sends them (the console and `train.log`);
a fatal error also reaches stderr, and the results (test BLEU, how to translate) are printed to stdout.
"""

from __future__ import annotations

import logging
import os
import shlex
import shutil
import sys
from pathlib import Path

import hydra
from hydra.core.hydra_config import HydraConfig
from hydra.types import RunMode
from omegaconf import DictConfig

from seq2seq.checkpoint import CheckpointError
from seq2seq.compose import CONFIG_DIR, check_override_keys, config_from_hydra, register_configs
from seq2seq.config import ConfigError
from seq2seq.data.corpus import CorpusError
from seq2seq.training.run import train
from seq2seq.training.stopping import TrainingDiverged, TrainingInterrupted

log = logging.getLogger("seq2seq.train")
HYDRA_FILES = {".hydra", "train.log"}  # what Hydra writes into a run folder before the run starts

register_configs()


@hydra.main(version_base="1.3", config_path=str(CONFIG_DIR), config_name="config")
def hydra_main(cfg: DictConfig) -> float:
    run_dir = Path(HydraConfig.get().runtime.output_dir)
    try:
        config = config_from_hydra(cfg)
    except ConfigError as exc:
        return _fail(2, f"config error: {exc}", run_dir)
    if int(os.environ.get("RANK", "0")) > 0:  # under torchrun, rank 0 speaks for all
        logging.getLogger().setLevel(logging.WARNING)
    log.info("run directory: %s", run_dir)
    try:
        given = [override.split("=", 1)[0].lstrip("+~") for override in HydraConfig.get().overrides.task]
        results = train(config, run_dir, given)
    except (ConfigError, CheckpointError) as exc:
        return _fail(2, f"config error: {exc}" if isinstance(exc, ConfigError) else str(exc), run_dir)
    except CorpusError as exc:
        return _fail(1, f"data error: {exc}")
    except TrainingInterrupted as exc:
        _error(str(exc))
        sys.exit(128 + exc.signum)  # a signal stops a whole sweep too
    except TrainingDiverged as exc:
        return _fail(1, f"training diverged: {exc}")
    if results is None:  # a rank other than 0 under torchrun: rank 0 tests and reports
        return 0.0
    greedy, beam = results.test_scores.greedy, results.test_scores.beam
    print(
        f"test BLEU: greedy {greedy.bleu:.2f} (chrF {greedy.chrf:.2f}), beam {beam.beam_size} {beam.bleu:.2f} "
        f"(chrF {beam.chrf:.2f}); results in {run_dir / 'results.json'}"
    )
    example = "Der Mann sieht den Hund." if config.data.src_lang == "de" else "A sentence to translate."
    print("translate with:")
    print(f"  echo {shlex.quote(example)} | python -m seq2seq.translate {shlex.quote(results.checkpoint)}")
    return float(results.valid.best_bleu)


def _fail(exit_code: int, message: str, run_dir: Path | None = None) -> float:
    """Report a one-line error and exit; in a sweep (`-m`) let the other jobs run (the job has no results.json).

    With `run_dir` (a single run, not a sweep), a run folder that holds nothing but what Hydra wrote before
    the run is removed, so a mistyped value leaves no empty run behind (`seq2seq.report` would list it).
    """
    _error(message)
    if HydraConfig.initialized() and HydraConfig.get().mode == RunMode.MULTIRUN:
        # the job folder stays, so that `seq2seq.report` lists the failed job of the sweep
        log.error("this sweep job failed (exit status would be %d); the sweep goes on", exit_code)
        return float("nan")
    if run_dir is not None and run_dir.is_dir() and {p.name for p in run_dir.iterdir()} <= HYDRA_FILES:
        shutil.rmtree(run_dir, ignore_errors=True)
    sys.exit(exit_code)


def _error(message: str) -> None:
    """Log `message`, and print it to stderr too unless the log's console (stdout) is the same terminal or file."""
    log.error("%s", message)
    if not _same_file(sys.stdout, sys.stderr):
        print(f"seq2seq.train: {message}", file=sys.stderr, flush=True)


def _same_file(a: object, b: object) -> bool:
    try:
        sa, sb = os.fstat(a.fileno()), os.fstat(b.fileno())  # type: ignore[attr-defined]
    except (AttributeError, OSError, ValueError):
        return False
    return (sa.st_dev, sa.st_ino) == (sb.st_dev, sb.st_ino)


def main() -> None:
    """Refuse a misspelt key in one line before Hydra starts (Hydra's own refusal is long), then run."""
    try:
        check_override_keys([arg for arg in sys.argv[1:] if not arg.startswith("-")])
    except ConfigError as exc:
        print(f"seq2seq.train: config error: {exc}", file=sys.stderr)
        sys.exit(2)
    hydra_main()


if __name__ == "__main__":
    main()
