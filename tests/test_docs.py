"""The docs stay true: generated reference current, README short and linked, no machine paths, links resolve."""

from __future__ import annotations

import re

import pytest

from .conftest import REPO, load_script

README = REPO / "README.md"
DOCS = sorted((REPO / "docs").glob("*.md"))
EXPERIMENTS = sorted(p.stem for p in (REPO / "conf" / "experiment").glob("*.yaml"))
MACHINE_PATHS = re.compile(r"\.\./shared|/work/|/tmp/")
# [text](target) and <img src="target">; the target up to a space, a closing parenthesis or a quote
LINK = re.compile(r"\[[^\]]*\]\(\s*<?([^)\s>]+)>?(?:\s+\"[^\"]*\")?\s*\)|<img[^>]*\ssrc=\"([^\"]+)\"")


def _links(text: str) -> list[str]:
    return [a or b for a, b in LINK.findall(text)]


def _local_target(link: str) -> str | None:
    """The file part of a relative link; None for web links, mail and in-page anchors."""
    if re.match(r"^[a-z][a-z0-9+.-]*:", link, re.IGNORECASE) or link.startswith("#"):
        return None
    return link.split("#", 1)[0].split("?", 1)[0] or None


def test_configuration_reference_is_current():
    problem = load_script("config_reference").check()
    assert problem is None, problem


def test_config_reference_describes_every_field_of_every_section():
    reference = load_script("config_reference")
    sections = {s.name: s for s in reference.sections()}
    assert list(sections) == ["data", "tokenizer", "model", "train", "decode"]
    assert {r.key for r in sections["train"].rows} >= {"train.lr", "train.precision", "train.resume"}
    rows = {r.key: r for s in sections.values() for r in s.rows}
    assert rows["train.lr"].default == "0.004"
    assert rows["train.max_steps"].default == "null"
    assert rows["model.bidirectional"].default == "true"
    assert "fp32" in rows["train.precision"].description
    assert sections["data"].intro.startswith("Where the parallel corpus comes from")


def test_check_reports_a_stale_file_in_one_line(tmp_path):
    reference = load_script("config_reference")
    stale = tmp_path / "configuration.md"
    stale.write_text(reference.render().replace("0.004", "0.005"), encoding="utf-8")
    message = reference.check(stale)
    assert message and "\n" not in message and "config_reference.py" in message
    assert reference.main(["--check", "--output", str(stale)]) == 1
    fresh = tmp_path / "fresh.md"
    assert reference.main(["--output", str(fresh)]) == 0
    assert reference.main(["--check", "--output", str(fresh)]) == 0


def test_readme_is_short_and_links_every_docs_page():
    text = README.read_text(encoding="utf-8")
    assert len(text.splitlines()) <= 200
    linked = {_local_target(link) for link in _links(text)}
    missing = [f"docs/{page.name}" for page in DOCS if f"docs/{page.name}" not in linked]
    assert not missing, f"README.md does not link {missing}"


@pytest.mark.parametrize("path", [README, *DOCS], ids=lambda p: p.relative_to(REPO).as_posix())
def test_no_paths_of_our_machines(path):
    hits = [
        f"{path.name}:{number}: {line.strip()}"
        for number, line in enumerate(path.read_text(encoding="utf-8").splitlines(), start=1)
        if MACHINE_PATHS.search(line)
    ]
    assert not hits, "write PATH/TO/... instead of:\n" + "\n".join(hits)


def test_every_experiment_is_in_the_readme_experiments_table():
    text = README.read_text(encoding="utf-8")
    section = re.search(r"^## Experiments\n(.*?)(?=^## )", text, re.DOTALL | re.MULTILINE)
    assert section, "README.md has no '## Experiments' section"
    named = set(re.findall(r"^\|\s*`([^`]+)`\s*\|", section.group(1), re.MULTILINE))
    assert EXPERIMENTS, "conf/experiment/ is empty"
    missing = [name for name in EXPERIMENTS if name not in named]
    assert not missing, f"conf/experiment/ files missing from the README's experiments table: {missing}"


@pytest.mark.parametrize("path", [README, *DOCS], ids=lambda p: p.relative_to(REPO).as_posix())
def test_relative_links_point_at_existing_files(path):
    broken = []
    for link in _links(path.read_text(encoding="utf-8")):
        target = _local_target(link)
        if target and not (path.parent / target).exists():
            broken.append(link)
    assert not broken, f"{path.name}: links to missing files {broken}"
