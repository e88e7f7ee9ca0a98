"""seq2seq.report: the table and the plot of a Hydra multirun, on a real tiny sweep and on hand-written job folders."""

from __future__ import annotations

import json
import struct
from pathlib import Path

import pytest
import yaml

from seq2seq.report import PNG_NAME, collect_rows, format_table, main, run_colours, run_labels, sort_rows
from seq2seq.results import CheckpointScores, RunResults, SearchScores, TrainSummary, ValidSummary

from .conftest import cli, tiny_overrides
from .tiny_models import write_corpus


def png_size(path: Path) -> tuple[int, int]:
    """Width and height from the IHDR chunk; fails unless the file starts like a PNG."""
    data = path.read_bytes()
    assert data[:8] == b"\x89PNG\r\n\x1a\n", f"{path} is not a PNG"
    assert data[12:16] == b"IHDR"
    return struct.unpack(">II", data[16:24])


def table_rows(stdout: str) -> dict[str, list[str]]:
    """The body rows of a markdown table, keyed by the first column."""
    lines = [line for line in stdout.splitlines() if line.startswith("|")][2:]
    cells = [[c.strip() for c in line.strip("|").split(" | ")] for line in lines]
    return {row[0]: row for row in cells}


@pytest.fixture(scope="module")
def multirun(tmp_path_factory, spm_cache) -> Path:
    """`train -m +experiment=rnn,gru` on a slice of the embedded corpus (a 16-sentence test set keeps it quick)."""
    corpus = write_corpus(tmp_path_factory.mktemp("corpus"), train=300, val=8, test=16)
    sweep = tmp_path_factory.mktemp("multirun")
    overrides = [*tiny_overrides(spm_cache), f"data.dir={corpus}", "train.threads=1", f"hydra.sweep.dir={sweep}"]
    result = cli("train", "-m", "+experiment=rnn,gru", *overrides)
    assert result.returncode == 0, result.stderr[-3000:]
    assert (sweep / "multirun.yaml").is_file()
    return sweep


@pytest.mark.slow
def test_report_of_a_real_multirun(multirun):
    result = cli("report", multirun)
    assert result.returncode == 0, result.stderr
    header = result.stdout.splitlines()[0]
    for column in (
        "run",
        "cell",
        "attention",
        "parameters",
        "best val BLEU",
        "test BLEU beam",
        "tokens/s",
        "best step",
    ):
        assert column in header
    rows = table_rows(result.stdout)
    assert set(rows) == {"+experiment=rnn", "+experiment=gru"}
    for job in ("0", "1"):
        overrides = yaml.safe_load((multirun / job / ".hydra" / "overrides.yaml").read_text())
        experiment = next(o for o in overrides if o.startswith("+experiment="))
        results = json.loads((multirun / job / "results.json").read_text())
        row = rows[experiment]
        assert row[1] == experiment.split("=")[1]  # the cell
        assert row[2] == "bahdanau"
        assert int(row[3].replace(",", "")) == results["train"]["parameters"]
        assert row[6].endswith("(beam 2)")
        assert int(row[9]) == results["valid"]["best_step"]
    width, height = png_size(multirun / PNG_NAME)
    assert width > 0 and height > 0

    as_json = cli("report", multirun, "--json", "--sort", "name", "--png", multirun / "other.png")
    assert as_json.returncode == 0, as_json.stderr
    rows = json.loads(as_json.stdout)
    assert [r["run"] for r in rows] == ["+experiment=gru", "+experiment=rnn"]
    assert all(r["finished"] and r["history"] for r in rows)
    assert png_size(multirun / "other.png")[0] > 0


def write_job(job: Path, overrides: list[str], cell: str, results: dict | None = None) -> None:
    (job / ".hydra").mkdir(parents=True)
    (job / ".hydra" / "overrides.yaml").write_text(yaml.safe_dump(overrides))
    (job / ".hydra" / "config.yaml").write_text(yaml.safe_dump({"model": {"cell": cell, "attention": "bahdanau"}}))
    if results is not None:
        (job / "results.json").write_text(json.dumps(results))


def fake_results(bleu: float, minutes: list[float]) -> dict:
    history = [{"step": 10 * (i + 1), "minutes": m, "bleu": bleu + i} for i, m in enumerate(minutes)]

    def search(beam_size: int, value: float) -> SearchScores:
        return SearchScores(beam_size, value, 50.0, "bleu-signature", "chrf-signature", 100.0)

    return RunResults(
        CheckpointScores(search(1, bleu), search(5, bleu + 1)),
        ValidSummary(bleu + len(minutes) - 1, 10 * len(minutes), history),
        TrainSummary(10 * len(minutes), 1, minutes[-1], minutes[-1] + 1, 1234, 5000.0, "cpu"),
        "checkpoints/best.pt",
    ).to_dict()


def test_a_crashed_job_gets_a_row_from_its_config(tmp_path, capsys):
    write_job(tmp_path / "0", ["+experiment=gru", "train.max_steps=5"], "gru", fake_results(10.0, [0.5, 1.0]))
    write_job(tmp_path / "1", ["+experiment=lstm", "train.max_steps=5"], "lstm")  # crashed: no results.json
    assert main([str(tmp_path), "--sort", "test_bleu"]) == 0
    out, err = capsys.readouterr()
    rows = table_rows(out)
    assert list(rows) == ["+experiment=gru", "+experiment=lstm (no results.json)"]
    assert rows["+experiment=gru"][3] == "1,234" and rows["+experiment=gru"][6] == "11.00 (beam 5)"
    unfinished = rows["+experiment=lstm (no results.json)"]
    assert unfinished[1] == "lstm" and set(unfinished[3:]) == {"—"}  # the parameters column holds no text
    assert str(tmp_path / "1") in err
    assert png_size(tmp_path / PNG_NAME)[0] > 0


def test_no_finished_job_fails_and_no_job_is_an_error(tmp_path, capsys):
    write_job(tmp_path / "sweep" / "0", ["model.attention=luong_general"], "gru")
    assert main([str(tmp_path / "sweep")]) == 1
    assert "no results.json" in capsys.readouterr().out
    (tmp_path / "empty" / "sub").mkdir(parents=True)
    (tmp_path / "empty" / "sub" / "results.json").write_text("{}")
    result = cli("report", tmp_path / "empty")
    assert result.returncode == 2
    assert str(tmp_path / "empty") in result.stderr and "no Hydra job" in result.stderr


def test_labels_are_the_overrides_that_differ():
    labels = run_labels(
        [
            ["+experiment=lstm", "model.attention=bahdanau", "train.teacher_forcing_ratio=1.0"],
            ["+experiment=lstm", "model.attention=luong_general", "train.teacher_forcing_ratio=0.5"],
            ["+experiment=lstm", "model.attention=luong_general"],
        ]
    )
    assert labels == [
        "model.attention=bahdanau train.teacher_forcing_ratio=1.0",
        "model.attention=luong_general train.teacher_forcing_ratio=0.5",
        "model.attention=luong_general",
    ]


def test_jobs_at_any_depth_in_natural_order_and_resumed_clocks(tmp_path):
    for n in (10, 2):
        write_job(tmp_path / "a" / str(n), [f"train.seed={n}"], "rnn", fake_results(float(n), [1.0, 2.0, 0.5]))
    rows = collect_rows(tmp_path)
    assert [r["job"] for r in rows] == ["a/2", "a/10"]
    assert [r["run"] for r in rows] == ["train.seed=2", "train.seed=10"]
    # the third validation came after a resume, whose clock restarted at 0: plotted at 2.5 minutes
    assert [p["minutes"] for p in rows[0]["history"]] == [1.0, 2.0, 2.5]
    assert [r["run"] for r in sort_rows(rows, "val_bleu")] == ["train.seed=10", "train.seed=2"]
    assert format_table(rows).count("\n") == 3


@pytest.mark.slow
def test_a_failing_job_does_not_end_the_sweep(tmp_path, spm_cache):
    # both values are out of range: each job fails at config validation, before any training
    sweep = tmp_path / "sweep"
    result = cli(
        "train",
        "-m",
        "+experiment=gru",
        "train.teacher_forcing_ratio=1.5,2.0",
        *tiny_overrides(spm_cache),
        f"hydra.sweep.dir={sweep}",
    )
    assert result.returncode == 0, result.stderr[-3000:]
    # the second job ran too; each job's error is in the log (stdout) and, since stdout is not stderr, on stderr
    assert result.stdout.count("train.teacher_forcing_ratio must be in [0.0, 1.0]") == 2
    assert result.stderr.count("seq2seq.train: config error: train.teacher_forcing_ratio must be in") == 2
    report = cli("report", sweep)
    assert report.returncode == 1  # no job finished
    rows = table_rows(report.stdout)
    assert len(rows) == 2 and all("no results.json" in " ".join(row) for row in rows.values())


def test_the_plot_is_written_for_a_multirun_table_or_when_asked(tmp_path, capsys):
    sweep = tmp_path / "sweep"
    for n in (0, 1):
        write_job(sweep / str(n), [f"train.seed={n}"], "gru", fake_results(float(n), [0.5, 1.0]))
    assert main([str(sweep), "--json"]) == 0
    assert not (sweep / PNG_NAME).exists()  # --json is for scripts: no file written behind their back
    assert main([str(sweep), "--json", "--sort", "val_bleu"]) == 0
    assert not (sweep / PNG_NAME).exists()
    assert main([str(sweep)]) == 0
    assert png_size(sweep / PNG_NAME)[0] > 0

    run = tmp_path / "run"  # a single run: the folder is itself the job
    write_job(run, ["train.seed=3"], "gru", fake_results(3.0, [0.5, 1.0]))
    capsys.readouterr()
    assert main([str(run)]) == 0
    out, err = capsys.readouterr()
    assert list(table_rows(out)) == ["run"] and "Traceback" not in err
    assert not list(run.glob("*.png"))
    assert main([str(run), "--json", "--png", str(tmp_path / "plots" / "run.png")]) == 0
    assert png_size(tmp_path / "plots" / "run.png")[0] > 0
    assert not list(run.glob("*.png"))


def test_a_run_keeps_its_colour_whatever_the_sort(tmp_path):
    for n, bleu in ((0, 5.0), (1, 20.0), (2, 10.0), (10, 1.0)):
        write_job(tmp_path / str(n), [f"model.hidden_size={100 - n}"], "gru", fake_results(bleu, [0.5, 1.0]))
    write_job(tmp_path / "3", ["model.hidden_size=97"], "gru")  # crashed: it gets a colour too
    rows = collect_rows(tmp_path)
    by_name, by_bleu = sort_rows(rows, "name"), sort_rows(rows, "val_bleu")
    assert [r["job"] for r in by_name] != [r["job"] for r in by_bleu]
    colours = run_colours(by_name)
    assert colours == run_colours(by_bleu) == run_colours(rows)
    assert set(colours) == {"0", "1", "2", "3", "10"} and len(set(colours.values())) == 5
    assert colours["0"] == "#1f77b4"  # tab10's first colour for the first job
    assert list(colours) == ["0", "1", "2", "3", "10"]  # by folder order, 2 before 10


def test_null_tokens_per_sec_shows_a_dash(tmp_path, capsys):
    results = fake_results(10.0, [0.5])
    results["train"]["tokens_per_sec"] = None  # a run shorter than one log window
    write_job(tmp_path / "0", ["train.max_steps=2"], "gru", results)
    write_job(tmp_path / "1", ["train.max_steps=3"], "gru", fake_results(11.0, [0.5]))
    assert main([str(tmp_path)]) == 0
    out, err = capsys.readouterr()
    rows = table_rows(out)
    assert rows["train.max_steps=2"][7] == "—" and rows["train.max_steps=3"][7] == "5,000"
    assert "Traceback" not in err
    assert main([str(tmp_path), "--json"]) == 0
    assert json.loads(capsys.readouterr().out)[0]["tokens_per_sec"] is None
