"""Entry point: `python -m seq2seq.train [+experiment=NAME] [key=value ...]`.

Hydra composes `conf/`; everything after that is plain dataclasses and `seq2seq.trainer.train`.
"""

from __future__ import annotations

import logging
import os
import shlex
import sys
from pathlib import Path

import hydra
from hydra.core.hydra_config import HydraConfig
from hydra.types import RunMode
from omegaconf import DictConfig, OmegaConf

from seq2seq.checkpoint import CheckpointError
from seq2seq.config import Config, ConfigError
from seq2seq.corpus import CorpusError
from seq2seq.trainer import TrainingDiverged, TrainingInterrupted, train

log = logging.getLogger("seq2seq.train")


# The configs live in conf/ at the top of the checkout; an absolute path works from any working directory,
# for `python -m seq2seq.train` and the `seq2seq-train` console script alike.
CONFIG_DIR = str(Path(__file__).resolve().parents[1] / "conf")


@hydra.main(version_base="1.3", config_path=CONFIG_DIR, config_name="config")
def hydra_main(cfg: DictConfig) -> float:
    try:
        config = Config.from_dict(OmegaConf.to_object(cfg))  # type: ignore[arg-type]
    except ConfigError as exc:
        return _fail(2, f"config error: {exc}")
    if int(os.environ.get("RANK", "0")) > 0:  # under torchrun, rank 0 speaks for all
        logging.getLogger().setLevel(logging.WARNING)
    run_dir = Path(HydraConfig.get().runtime.output_dir)
    log.info("run directory: %s", run_dir)
    try:
        results = train(config, run_dir)
    except (ConfigError, CheckpointError) as exc:
        return _fail(2, f"config error: {exc}" if isinstance(exc, ConfigError) else str(exc))
    except CorpusError as exc:
        return _fail(1, f"data error: {exc}")
    except TrainingInterrupted as exc:
        log.error("%s", exc)
        sys.exit(128 + exc.signum)  # a signal stops a whole sweep too
    except TrainingDiverged as exc:
        return _fail(1, f"training diverged: {exc}")
    if not results:  # a rank other than 0 under torchrun: rank 0 tests and reports
        return 0.0
    checkpoint = results["checkpoint"]
    # the test model: best.pt, or averaged.pt when train.average_checkpoints made a better one
    test = results["test"]["averaged"] if checkpoint.endswith("averaged.pt") else results["test"]
    print(
        f"test BLEU: greedy {test['greedy']['bleu']:.2f}, beam {test['beam']['bleu']:.2f} "
        f"(chrF {test['beam']['chrf']:.2f}); results in {run_dir / 'results.json'}"
    )
    print("translate with:")
    print(f"  python -m seq2seq.translate {shlex.quote(checkpoint)} < input.{config.data.src_lang}")
    return float(results["valid"]["best_bleu"])


def _fail(exit_code: int, message: str) -> float:
    """Log a one-line error and exit; in a sweep (`-m`) let the other jobs run (the job has no results.json)."""
    log.error("%s", message)
    if HydraConfig.initialized() and HydraConfig.get().mode == RunMode.MULTIRUN:
        log.error("this sweep job failed (exit status would be %d); the sweep goes on", exit_code)
        return float("nan")
    sys.exit(exit_code)


def main() -> None:
    hydra_main()


if __name__ == "__main__":
    main()
