"""Which checkpoint file a path names: a file itself, or a run folder's test model (`checkpoint_path`); and, for
a folder that is no run folder, the checkpoints found below it, so that an error can name real files.
Decoding (`seq2seq.decoding.loading`) and fine-tuning (`train.init_from`) both take a file or a run folder.
"""

from __future__ import annotations

import contextlib
import logging
import os
from pathlib import Path

from seq2seq.checkpoint import CheckpointError
from seq2seq.results import RunResults

log = logging.getLogger(__name__)


def checkpoint_path(path: str | Path) -> Path:
    """The checkpoint file `path` names: itself, or for a run folder its test model (results.json's
    `checkpoint`: `best.pt`, or `averaged.pt` when averaging won), else its `checkpoints/best.pt` (logged).

    A folder that is no run folder (`outputs`, a data folder) is a `CheckpointError` that lists the checkpoints
    found below it (`checkpoints_below`), newest run first, or says that none is there and where training writes
    them: it never suggests a file that does not exist.
    """
    path = Path(path)
    if not path.is_dir():
        return path  # a file, or missing: load_checkpoint says which
    chosen = run_checkpoint(path)
    if chosen is not None:
        log.info("%s is a folder: using %s", path, chosen)
        return chosen
    found, more = checkpoints_below(path)
    if not found:
        raise CheckpointError(
            f"{path} is a folder, not a checkpoint file, and no checkpoint was found below it; pass a run's "
            f"best.pt: python -m seq2seq.train writes them to {TRAIN_WRITES}"
        )
    others = f" (and {more} more)" if more else ""
    raise CheckpointError(
        f"{path} is a folder, not a checkpoint file; checkpoints below it, newest first: "
        f"{', '.join(map(str, found))}{others}"
    )


TRAIN_WRITES = "outputs/DATE/TIME/checkpoints/"  # where `python -m seq2seq.train` leaves a run's checkpoints
SEARCH_DEPTH = 6  # folder levels `checkpoints_below` looks into (multirun/DATE/TIME/JOB/checkpoints is 4)
SEARCH_FOLDERS = 20_000  # and at most this many folders (`translate ~` must not walk a whole home folder)


def run_checkpoint(run: Path) -> Path | None:
    """The checkpoint a run folder stands for: results.json's `checkpoint` (a finished run's test model; the file
    of that name in the folder's own `checkpoints/` first, should the run have been moved), else
    `checkpoints/best.pt`, else `best.pt` (the folder is a `checkpoints/` folder); None when none exists."""
    candidates = [run / "checkpoints" / "best.pt", run / "best.pt"]
    with contextlib.suppress(OSError, ValueError):  # a finished run names its test model (maybe averaged.pt)
        recorded = Path(RunResults.load(run / "results.json").checkpoint)  # absolute: where the run was trained
        candidates[:0] = [run / "checkpoints" / recorded.name, recorded]  # the run folder's own copy first
    return next((candidate for candidate in candidates if candidate.is_file()), None)


def checkpoints_below(folder: Path, limit: int = 3) -> tuple[list[Path], int]:
    """Up to `limit` checkpoint files below `folder` (`**/checkpoints/*.pt`, hidden folders and symbolic links
    left out, at most `SEARCH_DEPTH` levels down), one per run, the run whose checkpoints changed last first,
    and how many more runs hold some. A run offers what it stands for (`run_checkpoint`: results.json's, else
    `best.pt`) when that is in its `checkpoints/`, else its newest `.pt` file (e.g. `last.pt` before the first
    validation)."""
    runs: list[tuple[float, Path]] = []
    for visited, (root, dirs, files) in enumerate(os.walk(folder)):
        where = Path(root)
        depth = len(where.relative_to(folder).parts)
        dirs[:] = sorted(d for d in dirs if not d.startswith(".")) if depth < SEARCH_DEPTH else []
        if where.name == "checkpoints":
            times = []
            for name in files:
                if name.endswith(".pt"):
                    with contextlib.suppress(OSError):
                        times.append(((where / name).stat().st_mtime, where / name))
            if times:
                newest, pick = max(times), run_checkpoint(where.parent)
                runs.append((newest[0], pick if pick is not None and pick.parent == where else newest[1]))
        if visited >= SEARCH_FOLDERS:
            break
    runs.sort(key=lambda run: run[0], reverse=True)
    return [path for _, path in runs[:limit]], max(0, len(runs) - limit)
