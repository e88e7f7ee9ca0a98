"""Tests for data/synth_de_en/make_corpus.py and the corpus beside it, which it generated."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import pytest

from .conftest import REPO, load_script
from .tiny_models import CORPUS

SCRIPT = CORPUS / "make_corpus.py"
SIZES = {"train": 20000, "val": 500, "test": 500}
FILES = [f"{split}.{lang}" for split in SIZES for lang in ("de", "en")]


mc = load_script("make_corpus")


def _read_lines(name: str) -> list[str]:
    return (CORPUS / name).read_text(encoding="utf-8").split("\n")[:-1]


@pytest.fixture(scope="module")
def corpus() -> dict[str, list[tuple[str, str]]]:
    return {split: list(zip(_read_lines(f"{split}.de"), _read_lines(f"{split}.en"))) for split in SIZES}


def _noun(de: str):
    return next(n for n in mc.NOUNS if n.de == de)


def _adj(de: str):
    return next(a for a in mc.ADJECTIVES if a.de == de)


# ---------------------------------------------------------------------------------------------
# Reproducibility and shape of the committed files
# ---------------------------------------------------------------------------------------------


def test_generator_reproduces_committed_files(tmp_path: Path) -> None:
    subprocess.run([sys.executable, str(SCRIPT), "--out", str(tmp_path)], check=True, capture_output=True, cwd=REPO)
    for name in FILES:
        assert (tmp_path / name).read_bytes() == (CORPUS / name).read_bytes(), name


def test_line_counts_and_format() -> None:
    for split, size in SIZES.items():
        de_bytes = (CORPUS / f"{split}.de").read_bytes()
        en_bytes = (CORPUS / f"{split}.en").read_bytes()
        assert de_bytes.endswith(b"\n") and en_bytes.endswith(b"\n")
        de, en = _read_lines(f"{split}.de"), _read_lines(f"{split}.en")
        assert len(de) == len(en) == size
        for line in de + en:
            assert line[0].isupper() and line.endswith(".") and "  " not in line, line
            assert mc.MIN_WORDS <= len(line.split()) <= mc.MAX_WORDS, line


def test_each_source_occurs_once(corpus: dict[str, list[tuple[str, str]]]) -> None:
    sources = [de for pairs in corpus.values() for de, _ in pairs]
    assert len(set(sources)) == len(sources)


def test_generate_is_deterministic_and_sized() -> None:
    first = mc.generate(7, 60, 5, 5)
    assert first == mc.generate(7, 60, 5, 5)
    assert [len(first[s]) for s in ("train", "val", "test")] == [60, 5, 5]
    assert first != mc.generate(8, 60, 5, 5)


# ---------------------------------------------------------------------------------------------
# Noun phrase morphology
# ---------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("noun", "plural", "case", "det", "adj", "german", "english"),
    [
        ("Mann", False, "nom", "def", "alt", "der alte Mann", "the old man"),
        ("Mann", False, "acc", "def", "alt", "den alten Mann", "the old man"),
        ("Mann", False, "nom", "indef", "alt", "ein alter Mann", "an old man"),
        ("Mann", False, "acc", "indef", "alt", "einen alten Mann", "an old man"),
        ("Hund", False, "dat", "def", "klein", "dem kleinen Hund", "the small dog"),
        ("Katze", False, "dat", "indef", "klein", "einer kleinen Katze", "a small cat"),
        ("Haus", False, "acc", "indef", "alt", "ein altes Haus", "an old house"),
        ("Buch", False, "nom", "indef", "teuer", "ein teures Buch", "an expensive book"),
        ("Hund", True, "nom", "def", None, "die Hunde", "the dogs"),
        ("Hund", True, "dat", "def", None, "den Hunden", "the dogs"),
        ("Auto", True, "dat", "def", None, "den Autos", "the cars"),
        ("Mann", True, "nom", "indef", "alt", "alte Männer", "old men"),
        ("Mann", True, "dat", "indef", "alt", "alten Männern", "old men"),
        ("Hund", True, "acc", "kein", None, "keine Hunde", "any dogs"),
        ("Hund", False, "acc", "kein", None, "keinen Hund", "a dog"),
        ("Junge", False, "nom", "def", None, "der Junge", "the boy"),
        ("Junge", False, "acc", "this", None, "diesen Jungen", "this boy"),
        ("Bär", False, "dat", "my", "braun", "meinem braunen Bären", "my brown bear"),
        ("Frau", True, "acc", "this", None, "diese Frauen", "these women"),
    ],
)
def test_noun_phrases(noun, plural, case, det, adj, german, english) -> None:
    adjective = _adj(adj) if adj else None
    assert mc.german_np(_noun(noun), plural, case, det, adjective) == german
    assert mc.english_np(_noun(noun), plural, det, adjective) == english


# ---------------------------------------------------------------------------------------------
# Agreement and word-order spot checks on the committed corpus
# ---------------------------------------------------------------------------------------------

FINITE_3SG = {v.de_3sg for v in mc.VERBS} | {"ist", "will", "kann", "muss"}
FINITE_PLURAL = {v.de_inf for v in mc.VERBS} | {"sind", "wollen", "können", "müssen"}
FINITE_ANY = (
    FINITE_3SG
    | FINITE_PLURAL
    | {v.de_1sg for v in mc.VERBS}
    | {v.particle + form for v in mc.VERBS for form in (v.de_1sg, v.de_3sg, v.de_inf)}
    | {"bin"}
)
SUBORDINATORS = {"weil", "obwohl", "wenn", "während", "dass"}


def test_subject_verb_and_gender_agreement(corpus: dict[str, list[tuple[str, str]]]) -> None:
    """Sentences "Der/Die/Das [adj] Noun VERB ..." / "The [adj] noun(s) ...": article, noun form, verb number."""
    english_sg = {n.en: n for n in mc.NOUNS if n.en != n.en_pl}
    english_pl = {n.en_pl: n for n in mc.NOUNS if n.en != n.en_pl}
    articles = {"m": "Der", "f": "Die", "n": "Das"}
    checked = 0
    for de, en in corpus["train"]:
        de_words, en_words = de.rstrip(".").replace(",", "").split(), en.rstrip(".").split()
        if de_words[0] not in ("Der", "Die", "Das") or en_words[0] != "The":
            continue
        offset = 1 if en_words[1] in english_sg or en_words[1] in english_pl else 2
        word = en_words[offset]
        plural = word in english_pl
        noun = english_pl.get(word) or english_sg.get(word)
        if noun is None:  # e.g. sheep / fish, whose English number is ambiguous
            continue
        assert de_words[0] == ("Die" if plural else articles[noun.gender]), (de, en)
        assert de_words[offset] == (noun.de_pl if plural else noun.de), (de, en)
        finite = de_words[offset + 1]
        assert finite in (FINITE_PLURAL if plural else FINITE_3SG), (de, en)
        assert finite not in (FINITE_3SG if plural else FINITE_PLURAL), (de, en)
        checked += 1
    assert checked > 1000


def test_verb_final_subordinate_clauses_and_verb_second(corpus: dict[str, list[tuple[str, str]]]) -> None:
    fronted_adverbs = {a.de.capitalize() for a in mc.ADVERBS if a.frontable}
    n_sub = 0
    for de, _ in corpus["train"]:
        parts = [part.split() for part in de.rstrip(".").split(", ")]
        for i, words in enumerate(parts):
            if words[0].lower() in SUBORDINATORS:
                assert words[-1] in FINITE_ANY, de  # verb-final
                n_sub += 1
                if i == 0:  # a fronted subordinate clause is followed by the finite verb (verb-second)
                    assert parts[1][0] in FINITE_ANY, de
        if parts[0][0] in fronted_adverbs:
            assert parts[0][1] in FINITE_ANY, de
    assert n_sub > 3000


def test_negation_and_conjunctions_are_translated(corpus: dict[str, list[tuple[str, str]]]) -> None:
    pairs = [p for split in corpus.values() for p in split]
    conjunctions = [*mc.CONJUNCTIONS, ("dass", "that")]
    for de, en in pairs:
        de_words = re.findall(r"\w+", de.lower())
        en_words = re.findall(r"\w+", en.lower())
        de_negations = sum(w == "nicht" or w.startswith("kein") for w in de_words)
        en_negations = sum(w in ("not", "cannot") for w in en_words)
        assert de_negations == en_negations, (de, en)
        for conj_de, conj_en in conjunctions:
            assert de_words.count(conj_de) == en_words.count(conj_en), (de, en)
