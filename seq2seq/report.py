"""Compare the runs of a Hydra multirun: a markdown table and a plot of validation BLEU against time.

python -m seq2seq.report MULTIRUN_DIR [--png PATH] [--sort job|name|val_bleu|test_bleu] [--json]

The plot is written to --png PATH when given; without --png, only when the table is printed (not --json)
for a folder holding more than one job, to MULTIRUN_DIR/valid_bleu_vs_time.png. So `report RUN_FOLDER`
on a single run, and `--json`, write nothing unless --png asks. Each run keeps its colour whatever the
--sort: colours follow the jobs' folder order (matplotlib's tab10, tab20 beyond ten jobs). A reader that closes
standard output early (`--json | head -c 600`) stops the printing quietly; the rest (warnings, plot, exit status)
is as usual.

A job is any folder under MULTIRUN_DIR that holds a `.hydra/` folder (Hydra writes one per job, with the
composed `config.yaml` and the command-line `overrides.yaml`); a finished job also holds `results.json`
(`seq2seq.results.RunResults`). Each run is named by the overrides that differ between the jobs, e.g.
`+experiment=gru` or `model.attention=luong_general`. The library part (`collect_rows`, `sort_rows`,
`format_table`, `run_colours`, `plot_valid_bleu`) needs no command line.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import sys
from pathlib import Path
from typing import Any

import yaml

from seq2seq.files import stdout_may_close
from seq2seq.results import RunResults

PNG_NAME = "valid_bleu_vs_time.png"
SORT_KEYS = ("job", "name", "val_bleu", "test_bleu")
NOT_FINISHED = "no results.json"  # crashed, or still running
SKIP_DIRS = {".hydra", "checkpoints"}


class ReportError(RuntimeError):
    """The folder holds no Hydra job."""


# ------------------------------------------------------------------ collecting
def find_job_dirs(root: Path) -> list[Path]:
    """Every folder under `root` (itself included) holding a `.hydra/` folder, in natural order (2 before 10)."""
    jobs: list[Path] = []
    for dirpath, dirnames, _ in os.walk(root):
        if ".hydra" in dirnames:
            jobs.append(Path(dirpath))
            dirnames[:] = []  # a job folder holds no other job
        else:
            dirnames[:] = [d for d in dirnames if d not in SKIP_DIRS]
    return sorted(jobs, key=lambda p: _natural_key(p.relative_to(root).as_posix()))


def collect_rows(multirun_dir: Path | str) -> list[dict[str, Any]]:
    """One row per job under `multirun_dir`; raises ReportError when there is none.

    A row holds the run's label, its job folder, `finished` (whether `results.json` exists), cell and attention
    (from the job's config), and for a finished job the scores and timings of `results.json` plus its
    validation history (`step`, `minutes`, `bleu` per validation); the other fields are None.
    """
    root = Path(multirun_dir)
    if not root.is_dir():
        raise ReportError(f"{root} is not a directory")
    job_dirs = find_job_dirs(root)
    if not job_dirs:
        raise ReportError(f"no Hydra job (a folder holding .hydra/) under {root}")
    overrides = [_read_yaml(job / ".hydra" / "overrides.yaml") or [] for job in job_dirs]
    labels = run_labels([[str(o) for o in job] for job in overrides])
    rows = []
    for job, label, job_overrides in zip(job_dirs, labels, overrides):
        name = job.relative_to(root).as_posix()
        if name == ".":  # MULTIRUN_DIR is itself a run folder
            name = job.resolve().name
        rows.append(_job_row(job, label or name, name, job_overrides))
    _disambiguate(rows)
    return rows


def run_labels(overrides: list[list[str]]) -> list[str]:
    """For each job, the overrides whose value differs between the jobs, joined by spaces ('' when none do)."""
    parsed = [dict(_split_override(o) for o in job) for job in overrides]
    keys: list[str] = []
    for job in parsed:
        keys += [k for k in job if k not in keys]
    differing = [k for k in keys if len({job.get(k, "<unset>") for job in parsed}) > 1]
    return [" ".join(_join_override(k, job[k]) for k in differing if k in job) for job in parsed]


def _job_row(job: Path, label: str, name: str, overrides: list[Any]) -> dict[str, Any]:
    config = _read_yaml(job / ".hydra" / "config.yaml") or {}
    model = config.get("model") or {}
    row: dict[str, Any] = {
        "run": label,
        "job": name,
        "dir": str(job),
        "overrides": [str(o) for o in overrides],
        "finished": False,
        "cell": model.get("cell"),
        "attention": model.get("attention"),
        "parameters": None,
        "best_val_bleu": None,
        "best_step": None,
        "test_bleu_greedy": None,
        "test_bleu_beam": None,
        "beam_size": None,
        "tokens_per_sec": None,
        "train_minutes": None,
        "total_minutes": None,
        "steps": None,
        "device": None,
        "history": [],
    }
    try:
        results = RunResults.load(job / "results.json")
    except (OSError, ValueError):
        return row  # missing (crashed, or still running), being written, or truncated: not finished
    train = results.train
    row.update(
        finished=True,
        parameters=train.parameters,
        best_val_bleu=results.valid.best_bleu,
        best_step=results.valid.best_step,
        test_bleu_greedy=results.test.greedy.bleu,
        test_bleu_beam=results.test.beam.bleu,
        beam_size=results.test.beam.beam_size,
        tokens_per_sec=train.tokens_per_sec,
        train_minutes=train.minutes,
        total_minutes=train.total_minutes,
        steps=train.steps,
        device=train.device,
        history=_history(results.valid.history),
    )
    return row


def _history(rows: list[dict[str, Any]]) -> list[dict[str, float]]:
    """Validation points; minutes made cumulative (a resumed run's clock restarts from 0)."""
    points, offset, previous = [], 0.0, 0.0
    for r in rows:
        minutes = float(r["minutes"])
        if minutes + offset < previous:
            offset = previous
        previous = minutes + offset
        points.append({"step": r["step"], "minutes": round(previous, 3), "bleu": r["bleu"]})
    return points


def _disambiguate(rows: list[dict[str, Any]]) -> None:
    """Two jobs with the same label (e.g. nested sweeps that repeat a setting) get their folder appended."""
    labels = [r["run"] for r in rows]
    for row in rows:
        if labels.count(row["run"]) > 1:
            row["run"] = f"{row['run']} [{row['job']}]"


# ------------------------------------------------------------------ sorting and formatting
def sort_rows(rows: list[dict[str, Any]], key: str = "job") -> list[dict[str, Any]]:
    """`job`: sweep order; `name`: by label; `val_bleu`/`test_bleu` (beam): best first, unfinished jobs last."""
    if key not in SORT_KEYS:
        raise ValueError(f"sort key {key!r}: expected one of {', '.join(SORT_KEYS)}")
    if key == "job":
        return list(rows)
    if key == "name":
        return sorted(rows, key=lambda r: _natural_key(r["run"]))
    field = "best_val_bleu" if key == "val_bleu" else "test_bleu_beam"
    return sorted(rows, key=lambda r: (r[field] is None, -(r[field] or 0.0)))


TABLE_COLUMNS = (
    "run",
    "cell",
    "attention",
    "parameters",
    "best val BLEU",
    "test BLEU greedy",
    "test BLEU beam",
    "tokens/s",
    "train minutes",
    "best step",
)


def format_table(rows: list[dict[str, Any]]) -> str:
    """A markdown table, one line per row; an unfinished job's row says so beside its name, its numbers "—"."""
    lines = [_table_cells(row) for row in rows]
    widths = [max([len(c)] + [len(line[i]) for line in lines]) for i, c in enumerate(TABLE_COLUMNS)]
    numeric = [False, False, False] + [True] * (len(TABLE_COLUMNS) - 3)

    def fmt(cells: list[str] | tuple[str, ...]) -> str:
        padded = [c.rjust(w) if num else c.ljust(w) for c, w, num in zip(cells, widths, numeric)]
        return "| " + " | ".join(padded) + " |"

    rule = "| " + " | ".join("-" * (w - 1) + ":" if num else "-" * w for w, num in zip(widths, numeric)) + " |"
    return "\n".join([fmt(TABLE_COLUMNS), rule] + [fmt(line) for line in lines])


def _table_cells(row: dict[str, Any]) -> list[str]:
    run = row["run"] if row["finished"] else f"{row['run']} ({NOT_FINISHED})"
    head = [run.replace("|", "\\|"), str(row["cell"] or "?"), str(row["attention"] or "?")]
    if not row["finished"]:
        return head + ["—"] * (len(TABLE_COLUMNS) - 3)
    beam = _number(row["test_bleu_beam"], ".2f")
    if row["beam_size"] is not None and beam != "—":
        beam += f" (beam {row['beam_size']})"
    return head + [
        _number(row["parameters"], ",d"),
        _number(row["best_val_bleu"], ".2f"),
        _number(row["test_bleu_greedy"], ".2f"),
        beam,
        _number(row["tokens_per_sec"], ",.0f"),
        _number(row["train_minutes"], ".2f"),
        _number(row["best_step"], "d"),
    ]


def _number(value: Any, spec: str) -> str:
    return "—" if value is None else format(value, spec)


# ------------------------------------------------------------------ plotting
def run_colours(rows: list[dict[str, Any]]) -> dict[str, str]:
    """A colour (hex) per job folder name, by the jobs' natural folder order: the same whatever the row order.

    tab10 for up to ten jobs, tab20 beyond (repeating past twenty); every job gets one, finished or not,
    so that a run keeps its colour when another one finishes.
    """
    from matplotlib import colormaps
    from matplotlib.colors import to_hex

    jobs = sorted({row["job"] for row in rows}, key=_natural_key)
    palette = [to_hex(c) for c in colormaps["tab10" if len(jobs) <= 10 else "tab20"].colors]
    return {job: palette[i % len(palette)] for i, job in enumerate(jobs)}


def plot_valid_bleu(rows: list[dict[str, Any]], path: Path | str, title: str | None = None) -> Path:
    """Write a PNG of validation BLEU against wall-clock training minutes, one labelled line per finished run.

    The legend follows the row order; each line's colour is its job's (`run_colours`), not its position.
    """
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    path = Path(path)
    fig = Figure(figsize=(8, 5), dpi=100)
    FigureCanvasAgg(fig)
    ax = fig.add_subplot()
    colours = run_colours(rows)
    for row in rows:
        if row["history"]:
            minutes = [p["minutes"] for p in row["history"]]
            bleu = [p["bleu"] for p in row["history"]]
            ax.plot(minutes, bleu, marker="o", markersize=3, label=row["run"], color=colours[row["job"]])
    ax.set_xlabel("wall-clock training minutes")
    ax.set_ylabel("validation BLEU (greedy)")
    ax.set_title(title or "Validation BLEU against time")
    ax.grid(True, alpha=0.3)
    if ax.get_legend_handles_labels()[0]:  # beside the axes, so that long labels never hide a line
        ax.legend(fontsize="small", loc="upper left", bbox_to_anchor=(1.02, 1.0), borderaxespad=0.0)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, format="png", bbox_inches="tight")
    return path


# ------------------------------------------------------------------ helpers
def _read_yaml(path: Path) -> Any:
    try:
        return yaml.safe_load(path.read_text(encoding="utf-8"))
    except (OSError, yaml.YAMLError):
        return None


def _split_override(override: str) -> tuple[str, str | None]:
    key, sep, value = override.partition("=")
    return key, (value if sep else None)


def _join_override(key: str, value: str | None) -> str:
    return key if value is None else f"{key}={value}"


def _natural_key(text: str) -> list[Any]:
    return [(0, int(part), "") if part.isdigit() else (1, 0, part) for part in re.split(r"(\d+)", text) if part]


# ------------------------------------------------------------------ command line
def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="seq2seq.report", description=__doc__.split("\n\n")[0])
    parser.add_argument("multirun_dir", type=Path, help="a Hydra multirun folder (hydra.sweep.dir), or any run folder")
    parser.add_argument(
        "--png",
        type=Path,
        help=f"write the plot here (default: MULTIRUN_DIR/{PNG_NAME}, only for a table of more than one job)",
    )
    parser.add_argument("--sort", choices=SORT_KEYS, default="job", help="row order (default: job, the sweep order)")
    parser.add_argument("--json", action="store_true", help="print the rows as JSON instead of the table")
    args = parser.parse_args(argv)
    try:
        rows = sort_rows(collect_rows(args.multirun_dir), args.sort)
    except ReportError as exc:
        print(f"seq2seq.report: {exc}", file=sys.stderr)
        return 2
    with stdout_may_close():  # `report ... --json | head -c 600` goes on quietly
        print(json.dumps(rows, indent=2) if args.json else format_table(rows))
    for row in rows:
        if not row["finished"]:
            print(f"seq2seq.report: {row['dir']}: {NOT_FINISHED} (crashed or still running)", file=sys.stderr)
    if not any(row["finished"] for row in rows):
        print(f"seq2seq.report: no job under {args.multirun_dir} has finished", file=sys.stderr)
        return 1
    if args.png is not None or (not args.json and len(rows) > 1):
        png = plot_valid_bleu(rows, args.png or args.multirun_dir / PNG_NAME)
        print(f"seq2seq.report: plot written to {png}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
