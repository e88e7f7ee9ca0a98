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


# ----------------------------------------------------------------------------- benchmark figures have one home

BENCHMARKS = REPO / "docs" / "benchmarks.md"
HISTORY = REPO / "docs" / "benchmarks-history.md"
FIGURE_PAGES = {"benchmarks.md": BENCHMARKS, "benchmarks-history.md": HISTORY}
# A figure claim: a number with a thousands separator or a decimal point (1,197 / 40.65 / 2.3.0), or a whole
# number followed by ×, x, %, tokens/s or sentences/s (5× / 30% / 921 tokens/s). Dates, step counts below 1,000
# and version-less integers are not claims. A number glued to a letter or a dot before it (bf16, int8, x86) is
# not a number.
FIGURE = re.compile(
    r"(?<![\w.])(?:\d{1,3}(?:,\d{3})+(?:\.\d+)?|\d+(?:\.\d+)+|\d+(?=\s*(?:×|x\b|%|tokens/s|sentences/s)))"
)
# every number of a benchmark page, whole, as the claims above are written
NUMBER = re.compile(r"(?<![\w.])(?:\d{1,3}(?:,\d{3})+(?:\.\d+)?|\d+(?:\.\d+)*)")
# words of the notebook the benchmarks were once kept in, and issue numbers, which outside readers cannot follow
INTERNAL = re.compile(r"\b(?:sessions?|lent)\b|\bissues?\s+#?\d+\b|(?<![\w&(])#\d+\b(?!-)", re.IGNORECASE)
# what a benchmark table's machine cell must name
MACHINE_MODELS = ("EPYC", "Xeon", "Ryzen", "Core i", "Apple M", "H100", "H200", "A100")
DATE = re.compile(r"\b20\d\d-\d\d-\d\d\b")


def _outside_code(text: str) -> list[tuple[int, str]]:
    """(line number, line) of every line outside ``` fences."""
    lines, fenced = [], False
    for number, line in enumerate(text.splitlines(), start=1):
        if line.lstrip().startswith("```"):
            fenced = not fenced
        elif not fenced:
            lines.append((number, line))
    return lines


def _blocks(text: str) -> list[list[tuple[int, str]]]:
    """Paragraphs, list items and table rows outside code fences: each a list of (line number, line). A figure and
    the link that sources it must sit in the same block."""
    blocks: list[list[tuple[int, str]]] = []
    previous = None
    for number, line in _outside_code(text):
        starts = re.match(r"\s*(?:[-*+] |\d+\. |\||#)", line)
        if not line.strip():
            previous = None
            continue
        if previous is None or previous != number - 1 or starts:
            blocks.append([])
        blocks[-1].append((number, line))
        previous = number
    return blocks


def _slug(heading: str) -> str:
    """GitHub's anchor for a heading: markup and punctuation dropped, lower case, spaces to hyphens."""
    text = re.sub(r"\[([^\]]*)\]\([^)]*\)", r"\1", heading)  # a link's text only
    text = re.sub(r"[^\w\- ]", "", text.strip().lower())
    return text.replace(" ", "-")


def _anchors(path) -> set[str]:
    anchors: set[str] = set()
    for _, line in _outside_code(path.read_text(encoding="utf-8")):
        heading = re.match(r"#{1,6}\s+(.*?)\s*#*\s*$", line)
        if heading:
            slug, n = _slug(heading.group(1)), 1
            while slug in anchors:  # GitHub numbers repeated headings
                slug = f"{_slug(heading.group(1))}-{n}"
                n += 1
            anchors.add(slug)
        anchors.update(re.findall(r"<a\s+(?:id|name)=\"([^\"]+)\"", line))
    return anchors


def _figures(text: str) -> list[str]:
    """The figure claims of a piece of prose, link targets left out."""
    return FIGURE.findall(re.sub(r"\]\([^)]*\)", "]", text))


def _pages_citing_benchmarks():
    return [page for page in [README, *DOCS] if page.name not in FIGURE_PAGES]


@pytest.mark.parametrize("path", _pages_citing_benchmarks(), ids=lambda p: p.relative_to(REPO).as_posix())
def test_figures_beside_a_benchmarks_link_are_in_that_page(path):
    """A paragraph (list item, table row) that links benchmarks.md or benchmarks-history.md may quote a figure only
    as that page writes it: every figure claim (see FIGURE) in the paragraph must be a number of the linked page."""
    known = {name: set(NUMBER.findall(page.read_text(encoding="utf-8"))) for name, page in FIGURE_PAGES.items()}
    wrong = []
    for block in _blocks(path.read_text(encoding="utf-8")):
        targets = {(_local_target(link) or "").rsplit("/", 1)[-1] for _, line in block for link in _links(line)}
        cited = [name for name in FIGURE_PAGES if name in targets]
        if not cited:
            continue
        allowed = set().union(*(known[name] for name in cited))
        for number, line in block:
            wrong += [f"{path.name}:{number}: {figure}" for figure in _figures(line) if figure not in allowed]
    assert not wrong, f"figures not written so in {' or '.join(FIGURE_PAGES)} (link the table, or copy exactly):\n" + (
        "\n".join(wrong)
    )


SPEED = re.compile(r"(?<![\w.])\d[\d,.]*\s*(?:tokens/s|sentences/s|sent/s)")


@pytest.mark.parametrize("path", _pages_citing_benchmarks(), ids=lambda p: p.relative_to(REPO).as_posix())
def test_benchmark_pages_are_cited_by_link_and_speeds_have_a_source(path):
    """benchmarks.md is named by a link (so the figure test above sees it), and a measured speed (N tokens/s,
    sentences/s, sent/s) stands only in a paragraph that links a benchmark page: speeds differ by machine."""
    problems = []
    for block in _blocks(path.read_text(encoding="utf-8")):
        linked = any(
            (_local_target(link) or "").rsplit("/", 1)[-1] in FIGURE_PAGES for _, line in block for link in _links(line)
        )
        for number, line in block:
            prose = re.sub(r"\[[^\]]*\]\([^)]*\)", "", re.sub(r"`[^`]*`", "", line))
            if re.search(r"benchmarks(?:-history)?\.md", prose):
                problems.append(f"{path.name}:{number}: names a benchmark page without linking it")
            if not linked:
                problems += [f"{path.name}:{number}: {hit!r} with no benchmarks link" for hit in SPEED.findall(line)]
    assert not problems, "\n".join(problems)


def test_the_figure_rule_catches_a_rounded_or_stale_figure():
    assert _figures("3.2× its training tokens/s, 921 tokens/s, 30% of 1,197 steps, BLEU 36.05, torch 2.3.0") == [
        "3.2",
        "921",
        "30",
        "1,197",
        "36.05",
        "2.3.0",
    ]
    assert _figures("on 2026-12-02, bf16 and int8, 4 threads, [x](benchmarks.md#2026-12-02-a-1-2)") == []
    assert "3.22" in NUMBER.findall("926 against 288: 3.22×") and "3.2" not in NUMBER.findall("3.22×")


@pytest.mark.parametrize("path", [README, *DOCS], ids=lambda p: p.relative_to(REPO).as_posix())
def test_links_to_a_heading_find_it(path):
    """Every link with an #anchor to a page of these docs (or within the page) names one of its headings."""
    broken = []
    for link in _links(path.read_text(encoding="utf-8")):
        if "#" not in link or re.match(r"^[a-z][a-z0-9+.-]*:", link, re.IGNORECASE):
            continue
        target, anchor = link.split("#", 1)
        page = (path.parent / target) if target else path
        if page.suffix == ".md" and page.exists() and anchor not in _anchors(page):
            broken.append(link)
    assert not broken, f"{path.name}: links to missing headings {broken}"


def test_the_main_benchmark_tables_keep_their_anchors():
    assert {"quality", "training-speed", "decoding-speed", "scale", "serving", "machines"} <= _anchors(BENCHMARKS)


@pytest.mark.parametrize("path", [README, *DOCS], ids=lambda p: p.relative_to(REPO).as_posix())
def test_no_internal_words_or_issue_numbers(path):
    hits = [
        f"{path.name}:{number}: {match.group(0)!r} in {line.strip()}"
        for number, line in enumerate(path.read_text(encoding="utf-8").splitlines(), start=1)
        for match in INTERNAL.finditer(line)
    ]
    assert not hits, "write for outside readers (no 'session', 'lent', issue numbers):\n" + "\n".join(hits)


def test_the_internal_words_rule():
    for bad in ("this session's machine", "a later Session", "not lent", "issue #3", "Issue 12", "see #12"):
        assert INTERNAL.search(bad), bad
    for good in ("excellent", "silent", "lentil", "[x](#2026-12-01-a)", "x.md#2026-12-01", "color #1f77b4"):
        assert not INTERNAL.search(good), good


def _tables(text: str) -> list[tuple[int, list[str], list[tuple[int, list[str]]], str]]:
    """(line, header cells, [(line, cells)], the text after the table up to the next table or heading)."""
    lines = text.splitlines()
    tables, i = [], 0
    while i < len(lines):
        if lines[i].startswith("|") and i + 1 < len(lines) and re.match(r"^\|[\s:|-]+\|$", lines[i + 1]):
            start, header = i + 1, _cells(lines[i])
            rows, i = [], i + 2
            while i < len(lines) and lines[i].startswith("|"):
                rows.append((i + 1, _cells(lines[i])))
                i += 1
            after = []
            while i < len(lines) and not lines[i].startswith(("|", "#")):
                after.append(lines[i])
                i += 1
            tables.append((start, header, rows, "\n".join(after)))
        else:
            i += 1
    return tables


def _cells(row: str) -> list[str]:
    return [cell.strip() for cell in re.split(r"(?<!\\)\|", row.strip().strip("|"))]


def test_every_benchmark_row_names_its_machine_date_and_command():
    """Each table of benchmarks.md has machine, date and command columns (the machines table: machine and date);
    every row names a CPU or GPU model, a date, and the numbers of its commands in the list under the table."""
    tables = _tables(BENCHMARKS.read_text(encoding="utf-8"))
    assert len(tables) >= 6, "benchmarks.md: expected the machines, quality, speed, scale and serving tables"
    problems = []
    for start, header, rows, after in tables:
        columns = [cell.lower() for cell in header]
        for needed in ("machine", "date"):
            if needed not in columns:
                problems.append(f"benchmarks.md:{start}: no '{needed}' column")
        machines_table = "command" not in columns and "vector units" in columns
        if "command" not in columns and not machines_table:
            problems.append(f"benchmarks.md:{start}: no 'command' column")
        listed = set(re.findall(r"^(\d+)\. ", after, re.MULTILINE))
        if problems or not rows:
            continue
        machine, date = columns.index("machine"), columns.index("date")
        for number, cells in rows:
            if len(cells) != len(header):
                problems.append(f"benchmarks.md:{number}: {len(cells)} cells under {len(header)} headers")
                continue
            if not any(model in cells[machine] for model in MACHINE_MODELS):
                problems.append(f"benchmarks.md:{number}: machine {cells[machine]!r} names no CPU or GPU model")
            if not DATE.search(cells[date]):
                problems.append(f"benchmarks.md:{number}: date {cells[date]!r} is not YYYY-MM-DD")
            if not machines_table:
                commands = re.findall(r"\d+", cells[columns.index("command")])
                if not commands or not set(commands) <= listed:
                    problems.append(f"benchmarks.md:{number}: command {commands} not in the numbered list below")
    assert not problems, "\n".join(problems)


def test_every_history_entry_is_dated_and_names_its_machine():
    """benchmarks-history.md: each ### entry starts with its date, and its section (or the ## day above it)
    names the machine."""
    text = HISTORY.read_text(encoding="utf-8")
    problems = []
    for day in re.split(r"^## ", text, flags=re.MULTILINE)[1:]:
        intro, *entries = re.split(r"^### ", day, flags=re.MULTILINE)
        for entry in entries:
            title = entry.splitlines()[0]
            if not DATE.match(title):
                problems.append(f"entry {title!r} does not start with its date")
            if not any(model in intro + entry for model in MACHINE_MODELS):
                problems.append(f"entry {title!r} names no CPU or GPU model")
    assert not problems, "\n".join(problems)
