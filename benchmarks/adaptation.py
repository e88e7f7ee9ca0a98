"""Adapting models, measured on Multi30k: back-translation, fine-tuning, and one multilingual model against
separate ones. Every run is a `python -m seq2seq.train` command (printed before it starts), so each step is
what a user would type; a step whose run folder already holds results.json is not run again.

    python benchmarks/adaptation.py back-translation --data-dir PATH/TO/multi30k --work-dir PATH/TO/work --steps 1000
    python benchmarks/adaptation.py fine-tuning      --data-dir PATH/TO/multi30k --work-dir PATH/TO/work --steps 600
    python benchmarks/adaptation.py multilingual     --data-dir PATH/TO/multi30k --work-dir PATH/TO/work --steps 1000

back-translation: Multi30k's training set is split into halves A and B; B's English side alone plays the
monolingual text. A reverse en->de model trained on A translates it (beam 5, and by sampling), and de->en
models train on A alone, on A + the beam back-translations, on A + the sampled ones, on A + the sampled ones
tagged <BT> (`data.corpora[].tag`), and on A + the real B (the upper bound), each for the same --steps.
--samples N samples B's English N times (seeds 1 to N) and adds a run on all N; --real-weight W adds runs
with A upsampled W times (`data.weight`) beside one sample, and beside all N; --reverse-steps trains the
reverse model longer (or shorter) than the de->en ones.

fine-tuning: the "A only" de->en model of back-translation, fine-tuned on B (`train.init_from`) for --steps,
against a model trained from scratch on B for the same --steps.

multilingual: one en->{de, fr} model (`data.target_tags`, one joint tokenizer) for 2 x --steps against an
en->de and an en->fr model of --steps each: the same total number of updates.

Budgets are updates (--steps), not minutes, so that a run's result does not depend on what else the machine
did meanwhile; --minutes gives each run a time budget instead. The report is a markdown table of each run's
test2016 BLEU (beam 5 and greedy, of the run's test model) with the command that trained it; --out writes it
as JSON too. The recipe (what to run for your own data) is in docs/adapting.md.
"""

from __future__ import annotations

import argparse
import gzip
import json
import shlex
import subprocess
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from common import CHECKOUT, cpu_model, markdown_table

TEST = "test_2016_flickr"
HELD_OUT = ("val", TEST)


def read(path: Path) -> list[str]:
    """The lines of PATH or PATH.gz."""
    if not path.is_file() and path.with_name(path.name + ".gz").is_file():
        path = path.with_name(path.name + ".gz")
    opener = gzip.open if path.suffix == ".gz" else open
    with opener(path, "rt", encoding="utf-8") as f:  # type: ignore[operator]
        return f.read().splitlines()


def write(path: Path, lines: Sequence[str]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("".join(line + "\n" for line in lines), encoding="utf-8")


def halves(data: Path, work: Path, langs: Sequence[str] = ("de", "en")) -> tuple[Path, Path]:
    """work/A and work/B: the first and second half of the training pairs, each with the validation and test
    sets; and work/mono/B.en, B's English side alone."""
    a, b = work / "A", work / "B"
    if not (b / "train.en").is_file():
        for lang in langs:
            lines = read(data / f"train.{lang}")
            middle = len(lines) // 2
            write(a / f"train.{lang}", lines[:middle])
            write(b / f"train.{lang}", lines[middle:])
            for split in HELD_OUT:
                for folder in (a, b):
                    write(folder / f"{split}.{lang}", read(data / f"{split}.{lang}"))
        write(work / "mono" / "B.en", read(b / "train.en"))
    return a, b


class Runner:
    """Runs the training and translation commands of a study, each printed first; skips finished runs."""

    def __init__(self, args: argparse.Namespace) -> None:
        self.args, self.work = args, Path(args.work_dir).resolve()
        self.rows: list[dict[str, Any]] = []

    def budget(self, steps: int) -> list[str]:
        if self.args.minutes:
            return [f"train.max_minutes={self.args.minutes * steps / self.args.steps:g}"]
        return ["train.max_minutes=null", f"train.max_steps={steps}"]

    def train(self, name: str, what: str, overrides: Sequence[str], steps: int) -> dict[str, Any]:
        run = self.work / "runs" / name
        command = [
            sys.executable,
            "-m",
            "seq2seq.train",
            f"+experiment={self.args.experiment}",
            *overrides,
            *self.budget(steps),
            f"hydra.run.dir={run}",
            *self.args.override,
        ]
        shown = shlex.join(["python", *command[1:]])
        if not (run / "results.json").is_file():
            print(f"$ {shown}", file=sys.stderr, flush=True)
            subprocess.run(command, check=True, cwd=CHECKOUT)
        results = json.loads((run / "results.json").read_text())
        row = summary(name, what, results, shown)
        self.rows.append(row)
        print(f"{name}: test2016 beam BLEU {row['beam_bleu']:.2f} after {row['steps']} steps", file=sys.stderr)
        return row

    def translate(self, run: str, source: Path, target: Path, options: Sequence[str]) -> None:
        if target.is_file():
            return
        command = [sys.executable, "-m", "seq2seq.translate", str(self.work / "runs" / run), *options]
        print(f"$ {shlex.join(['python', *command[1:]])} < {source} > {target}", file=sys.stderr, flush=True)
        target.parent.mkdir(parents=True, exist_ok=True)
        partial = target.with_suffix(".partial")
        with source.open("rb") as src, partial.open("wb") as out:
            subprocess.run(command, stdin=src, stdout=out, check=True, cwd=CHECKOUT)
        partial.rename(target)

    def data(self, folder: Path, src: str = "de", tgt: str = "en") -> list[str]:
        return [f"data.dir={folder}", f"data.src_lang={src}", f"data.tgt_lang={tgt}", f"data.test_prefix={TEST}"]


def summary(name: str, what: str, results: dict[str, Any], command: str) -> dict[str, Any]:
    """One row of the report: the test model's scores (averaged.pt when it won on validation, else best.pt)."""
    test = results["test"]
    scores = test["averaged"] if results["checkpoint"].endswith("averaged.pt") and "averaged" in test else test
    corpora = results["train"].get("corpora") or []
    return {
        "run": name,
        "what": what,
        "beam_bleu": scores["beam"]["bleu"],
        "greedy_bleu": scores["greedy"]["bleu"],
        "pairs": {p: v["bleu"] for p, v in (scores["beam"].get("pairs") or {}).items()},
        "steps": results["train"]["steps"],
        "minutes": results["train"]["minutes"],
        "corpora": [f"{c['name']}: {c['pairs']}" for c in corpora],
        "command": command,
    }


def back_translation(runner: Runner) -> None:
    a, b = halves(Path(runner.args.data_dir), runner.work)
    work, steps, samples, weight = runner.work, runner.args.steps, runner.args.samples, runner.args.real_weight
    reverse_steps = runner.args.reverse_steps or steps
    runner.train("reverse_A", "en->de on A (translates B's English)", runner.data(a, "en", "de"), reverse_steps)
    mono = work / "mono" / "B.en"
    sampled = [work / ("bt_sampling" if seed == 1 else f"bt_sampling_seed{seed}") for seed in range(1, samples + 1)]
    synthetic = {work / "bt_beam": ["--beam-size", "5"]}
    for seed, folder in enumerate(sampled, start=1):
        synthetic[folder] = ["--sampling", "--seed", str(seed), *runner.args.sampling.split()]
    for folder, options in synthetic.items():
        runner.translate("reverse_A", mono, folder / "train.de", options)
        if not (folder / "train.en").is_file():
            write(folder / "train.en", read(mono))
    runner.train("A", "A only", runner.data(a), steps)
    runner.train("A+BT_beam", "A + B back-translated by beam 5", [*runner.data(a), corpus(work / "bt_beam")], steps)
    runner.train("A+BT_sampling", "A + B back-translated by sampling", [*runner.data(a), corpus(sampled[0])], steps)
    runner.train(
        "A+BT_sampling_tagged",
        "A + B back-translated by sampling, tagged <BT>",
        [*runner.data(a), corpus(sampled[0], tag="<BT>")],
        steps,
    )
    if samples > 1:
        runner.train(
            f"A+BT_sampling_x{samples}",
            f"A + B back-translated by sampling {samples} times (seeds 1 to {samples})",
            [*runner.data(a), corpus(*sampled)],
            steps,
        )
    if weight != 1:
        real = [*runner.data(a), f"data.weight={weight:g}"]
        runner.train(
            f"A_x{weight:g}+BT_sampling",
            f"A upsampled {weight:g} times + B back-translated by sampling",
            [*real, corpus(sampled[0])],
            steps,
        )
        if samples > 1:
            runner.train(
                f"A_x{weight:g}+BT_sampling_x{samples}",
                f"A upsampled {weight:g} times + B back-translated by sampling {samples} times",
                [*real, corpus(*sampled)],
                steps,
            )
    runner.train("A+B", "A + the real B (upper bound)", [*runner.data(a), corpus(b)], steps)


def fine_tuning(runner: Runner) -> None:
    a, b = halves(Path(runner.args.data_dir), runner.work)
    steps = runner.args.steps
    parent = runner.train("A", "A only (the model fine-tuned below)", runner.data(a), runner.args.parent_steps or steps)
    del parent
    runner.train(
        "A_finetuned_on_B",
        "A's model fine-tuned on B",
        [*runner.data(b), f"train.init_from={runner.work / 'runs' / 'A'}"],
        steps,
    )
    runner.train("B_scratch", "B from scratch", runner.data(b), steps)


def multilingual(runner: Runner) -> None:
    data, steps = Path(runner.args.data_dir), runner.args.steps
    folder = runner.work / "en-de-fr"
    for lang in ("en", "de", "fr"):
        for split in ("train", *HELD_OUT):
            if not (folder / f"{split}.{lang}").is_file():
                write(folder / f"{split}.{lang}", read(data / f"{split}.{lang}"))
    runner.train("en-de", "en->de alone", runner.data(folder, "en", "de"), steps)
    runner.train("en-fr", "en->fr alone", runner.data(folder, "en", "fr"), steps)
    tags = ["data.target_tags=true", "data.corpora=[{tgt_lang: fr}]", "tokenizer.joint=true"]
    runner.train("en-de+fr", "one en->{de, fr} model", [*runner.data(folder, "en", "de"), *tags], 2 * steps)


def corpus(*folders: Path, tag: str | None = None) -> str:
    """The `data.corpora` override of more training corpora, one a folder (train.de / train.en)."""
    entries = ("{" + f"dir: {folder}" + (f', tag: "{tag}"' if tag else "") + "}" for folder in folders)
    return "data.corpora=[" + ", ".join(entries) + "]"


STUDIES = {"back-translation": back_translation, "fine-tuning": fine_tuning, "multilingual": multilingual}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("study", choices=sorted(STUDIES))
    parser.add_argument("--data-dir", required=True, help="Multi30k: train/val/test_2016_flickr.{de,en,fr}[.gz]")
    parser.add_argument("--work-dir", required=True, help="where the halves, back-translations and runs go")
    parser.add_argument("--experiment", default="multi30k_gru_cpu")
    parser.add_argument("--steps", type=int, default=1000, help="updates per model (default 1000)")
    parser.add_argument("--parent-steps", type=int, help="fine-tuning: updates of the A model (default --steps)")
    parser.add_argument(
        "--reverse-steps", type=int, help="back-translation: updates of the reverse model (default --steps)"
    )
    parser.add_argument("--minutes", type=float, help="a time budget per --steps instead of the update count")
    parser.add_argument(
        "--sampling",
        default="",
        help="back-translation: more options of the sampled back-translations, e.g. '--top-k 10' (default: none, "
        "unrestricted sampling as in Edunov et al. 2018)",
    )
    parser.add_argument(
        "--samples",
        type=int,
        default=1,
        help="back-translation: sampled back-translations of each monolingual sentence, one a seed; above 1, one "
        "more run trains on all of them (default 1)",
    )
    parser.add_argument(
        "--real-weight",
        type=float,
        default=1.0,
        help="back-translation: other than 1, more runs with the real pairs upsampled this many times "
        "(data.weight) beside the sampled back-translations (default 1)",
    )
    parser.add_argument("--out", help="also write the rows as JSON here")
    parser.add_argument("override", nargs="*", help="more overrides for every training run (KEY=VALUE)")
    args = parser.parse_intermixed_args(argv)
    runner = Runner(args)
    STUDIES[args.study](runner)
    print(f"\n{args.study} on {cpu_model()}\n")
    header = ["run", "data", "steps", "test2016 BLEU beam 5", "greedy", "per pair (beam)", "training pairs"]
    print(
        markdown_table(
            header,
            (
                [
                    r["run"],
                    r["what"],
                    r["steps"],
                    f"{r['beam_bleu']:.2f}",
                    f"{r['greedy_bleu']:.2f}",
                    ", ".join(f"{p} {v:.2f}" for p, v in r["pairs"].items()) or "–",
                    "; ".join(r["corpora"]) or "–",
                ]
                for r in runner.rows
            ),
        )
    )
    if args.out:
        Path(args.out).write_text(json.dumps({"cpu": cpu_model(), "rows": runner.rows}, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
