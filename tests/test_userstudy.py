"""User study (Fig. 11): export -> fill -> tally on a hand-made run folder, and every way answers can be wrong.

The run folder is written by hand (manifest, inputs/ and predictions/ PNGs), so nothing is trained. Bad input
must give one line naming the file, the cause and the fix; nothing already tallied or exported is lost.
"""

import json
import os
import re
import shutil
from pathlib import Path

import numpy as np
import pytest
from typer.testing import CliRunner

from bench.cli import app
from bench.io import png_data_uri, write_png
from bench.userstudy import export, study_id, tally

METHODS = ["alpha", "beta", "gamma"]
SPLIT = "test_natural"
SAMPLES = ["n000", "n001", "n002", "n003"]


@pytest.fixture
def run(tmp_path) -> Path:
    """A run folder as `bench run` leaves it: 4 natural inputs, each predicted by 3 methods (distinct colours)."""
    root = tmp_path / "runs" / "r1"
    root.mkdir(parents=True)
    (root / "manifest.json").write_text(json.dumps({"run_id": "r1", "status": "complete"}))
    for k, sample in enumerate(SAMPLES):
        write_png(root / "inputs" / SPLIT / "input" / f"{sample}.png", np.full((8, 8, 3), 10 * k, np.uint8))
        for m, label in enumerate(METHODS):
            image = np.full((8, 8, 3), 100 + 10 * k, np.uint8)
            image[..., m] = 250  # alpha red-ish, beta green-ish, gamma blue-ish: every file differs
            write_png(root / "predictions" / label / SPLIT / f"{sample}.png", image)
    return root


def _export(run: Path, **kw) -> Path:
    args = {"methods": METHODS, "items": 3, "participants": 2, "seed": 0, "split": SPLIT} | kw
    return export(run, **args)


def _items(form: Path) -> list[dict]:
    """The items a participant's form shows (the JSON the page script renders)."""
    return json.loads(re.search(r"const items = (\[.*?\]); const root", form.read_text(), re.S).group(1))


def _letter_of(run: Path, item: dict, method: str) -> str:
    """The letter under which the form shows ``method``'s prediction, found by its image (as a person would)."""
    sample = next(s for s in SAMPLES if item["input"] == png_data_uri(run / "inputs" / SPLIT / "input" / f"{s}.png"))
    wanted = png_data_uri(run / "predictions" / method / SPLIT / f"{sample}.png")
    return next(o["letter"] for o in item["options"] if o["img"] == wanted)


def _answer(path: Path, obj) -> Path:
    path.write_text(json.dumps(obj) if not isinstance(obj, str) else obj)
    return path


def _fill(run: Path, folder: Path, participant: int, picks: list[str], study: str) -> dict:
    """What participant's form saves when they pick ``picks[i]`` (a method) on item i."""
    items = _items(folder / f"participant_{participant}.html")
    choices = {str(i): _letter_of(run, items[i], m) for i, m in enumerate(picks)}
    return {"study": study, "participant": participant, "choices": choices}


def test_export_fill_tally_round_trip(run, tmp_path):
    folder = _export(run)
    key = json.loads((folder / "key.json").read_text())
    sid = key["study"]
    assert sid == study_id(key) and len(key["samples"]) == 3 and set(key["participants"]) == {"0", "1"}
    for p in (0, 1):
        page = (folder / f"participant_{p}.html").read_text()
        assert not any(m in page for m in METHODS)  # blinded
        assert f'study: "{sid}"' in page and f"answers_{sid}_participant_{p}.json" in page
        assert page.count("data:image/png") == 3 * (1 + len(METHODS))
        for i, item in enumerate(_items(folder / f"participant_{p}.html")):  # the key says what the page shows
            for letter, method in key["participants"][str(p)][i]["letters"].items():
                assert _letter_of(run, item, method) == letter
    # Participant 0 always picks alpha; participant 1 alpha once, then beta twice.
    a0 = _answer(tmp_path / "a0.json", _fill(run, folder, 0, ["alpha"] * 3, sid))
    a1 = _answer(tmp_path / "a1.json", _fill(run, folder, 1, ["alpha", "beta", "beta"], sid))
    rows = {r["method"]: r for r in tally(run, [a0, a1])}
    # 6 votes: alpha 4 (66.7%), beta 2 (33.3%), gamma 0; Wilson 95% by hand: 4/6 -> [30.00, 90.32],
    # 2/6 -> [9.68, 70.00], 0/6 -> [0, 39.03].
    assert {m: (r["votes"], r["n"]) for m, r in rows.items()} == {"alpha": (4, 6), "beta": (2, 6), "gamma": (0, 6)}
    assert rows["alpha"]["percent"] == pytest.approx(400 / 6) and rows["beta"]["percent"] == pytest.approx(200 / 6)
    assert rows["gamma"]["percent"] == 0.0
    for method, (lo, hi) in {"alpha": (30.00, 90.32), "beta": (9.68, 70.00), "gamma": (0.0, 39.03)}.items():
        assert rows[method]["ci95_low"] == pytest.approx(lo, abs=0.01)
        assert rows[method]["ci95_high"] == pytest.approx(hi, abs=0.01)
    assert json.loads((folder / "results.json").read_text()) == list(rows.values())


def test_cli_export_and_tally(run, tmp_path):
    cli = CliRunner()
    result = cli.invoke(app, ["study", "export", str(run), "-m", "alpha,beta,gamma", "--items", "3", "--seed", "4"])
    assert result.exit_code == 0, result.output
    sid = json.loads((run / "user_study" / "key.json").read_text())["study"]
    files = [_answer(tmp_path / f"a{p}.json", _fill(run, run / "user_study", p, ["gamma"] * 3, sid)) for p in (0, 1)]
    result = cli.invoke(app, ["study", "tally", str(run), *map(str, files)])
    assert result.exit_code == 0, result.output
    assert "gamma: 100.0% [" in result.output and "alpha: 0.0%" in result.output
    result = cli.invoke(app, ["study", "tally", str(run), str(files[0]), str(files[0])])
    assert result.exit_code == 2
    once = "its answers would count twice; pass each answer file once"
    assert result.stderr.strip() == f"error: {files[0]} is given twice: {once}"  # one line, exit 2


# -- malformed answer files ---------------------------------------------------------------------------------------

GOOD = {"participant": 0, "choices": {"0": "A", "1": "B"}}  # "study" is filled in by the test
BAD_ANSWERS = [
    pytest.param(
        "participant 0 liked A best", "is not valid JSON \\(Expecting value at line 1 column 1\\)", id="not-json"
    ),
    pytest.param("", "is empty, not an answer file", id="empty-file"),
    pytest.param("  \n\n", "is empty, not an answer file", id="whitespace-only"),
    pytest.param(
        '{"study": "__SID__", "participant": 0, "choi', "is truncated \\(its JSON ends early\\)", id="truncated"
    ),
    pytest.param('{"study": "__SID__", "participant": 0, ', "is truncated", id="truncated-after-comma"),
    pytest.param(b"\xff\xfe\x00garbage", "is not text", id="binary-garbage"),
    pytest.param(
        [0, {"0": "A"}], "holds a JSON list, not an answer object with study, participant, choices", id="list"
    ),
    pytest.param('"A"', "holds a JSON str, not an answer object", id="json-string"),
    pytest.param({"study": "__SID__", "participant": 0}, "lacks the field\\(s\\) choices", id="missing-choices"),
    pytest.param({"choices": {}}, "lacks the field\\(s\\) study, participant", id="missing-two-fields"),
    pytest.param(GOOD, 'has no "study" field.* add "study": "__SID__"', id="missing-study-id"),
    pytest.param(
        {**GOOD, "study": "0123456789ab"}, "answers study '0123456789ab', not this run's study '__SID__'", id="foreign"
    ),
    pytest.param(
        {**GOOD, "study": "__SID__", "participant": 7},
        "participant 7 is not in this study \\(it has participants 0-1",
        id="participant-not-in-key",
    ),
    pytest.param(
        {**GOOD, "study": "__SID__", "participant": [0]},
        "participant \\[0\\] is not a participant number",
        id="participant-list",
    ),
    pytest.param(
        {**GOOD, "study": "__SID__", "participant": True},
        "participant True is not a participant number",
        id="participant-bool",
    ),
    pytest.param(
        {**GOOD, "study": "__SID__", "choices": ["A", "B"]},
        '"choices" is a JSON list, not an object',
        id="choices-list",
    ),
    pytest.param(
        {**GOOD, "study": "__SID__", "choices": {"99": "A"}},
        "item '99' is not on participant 0's form \\(items 0-2\\)",
        id="unknown-item",
    ),
    pytest.param(
        {**GOOD, "study": "__SID__", "choices": {"first": "A"}},
        "item 'first' is not on participant 0's form",
        id="item-not-a-number",
    ),
    pytest.param(
        {**GOOD, "study": "__SID__", "choices": {"1": "Z"}},
        "item 1: choice 'Z' is not one of the form's options A, B, C",
        id="unknown-letter",
    ),
    pytest.param(
        {**GOOD, "study": "__SID__", "choices": {"1": "beta"}},
        "choice 'beta' is not one of the form's options A, B, C \\(answers give the letter shown on the form, not a "
        "method name\\)",
        id="method-name-instead-of-letter",
    ),
    pytest.param(
        {**GOOD, "study": "__SID__", "choices": {"0": None}}, "item 0: choice None is not one of", id="null-choice"
    ),
]


@pytest.mark.parametrize("content, cause", BAD_ANSWERS)
def test_bad_answer_file_is_one_line_naming_it(run, tmp_path, content, cause):
    folder = _export(run)
    sid = json.loads((folder / "key.json").read_text())["study"]
    good = _answer(tmp_path / "good.json", _fill(run, folder, 1, ["beta"] * 3, sid))
    tally(run, [good])
    before = (folder / "results.json").read_bytes()
    bad = tmp_path / "answers" / "bad.json"
    bad.parent.mkdir()
    if isinstance(content, bytes):
        bad.write_bytes(content)
    else:
        text = content if isinstance(content, str) else json.dumps(content)
        bad.write_text(text.replace("__SID__", sid))
    with pytest.raises(ValueError) as err:
        tally(run, [good, bad])
    message = str(err.value)
    assert "\n" not in message and message.startswith(f"{bad}: "), message
    assert re.search(cause.replace("__SID__", sid), message), f"{cause!r} not in {message!r}"
    assert (folder / "results.json").read_bytes() == before  # the last good tally is kept


def test_missing_answer_file_and_missing_export(run, tmp_path):
    with pytest.raises(FileNotFoundError, match=r"key\.json: not found, so .* has no exported user study"):
        tally(run, [tmp_path / "a.json"])
    _export(run)
    with pytest.raises(FileNotFoundError, match=re.escape(f"{tmp_path / 'nope.json'}: answer file not found")):
        tally(run, [tmp_path / "nope.json"])
    with pytest.raises(ValueError, match="no answer files given"):
        tally(run, [])


# -- answers given twice ------------------------------------------------------------------------------------------


def _same_path(a: Path, tmp: Path) -> Path:
    return a


def _other_spelling(a: Path, tmp: Path) -> Path:
    return a.parent / ".." / a.parent.name / a.name


def _symlink(a: Path, tmp: Path) -> Path:
    (tmp / "link.json").symlink_to(a)
    return tmp / "link.json"


def _hard_link(a: Path, tmp: Path) -> Path:
    os.link(a, tmp / "hard.json")
    return tmp / "hard.json"


def _copy(a: Path, tmp: Path) -> Path:
    return Path(shutil.copy(a, tmp / "copy.json"))


def _pretty_copy(a: Path, tmp: Path) -> Path:
    answers = json.loads(a.read_text())
    answers["participant"] = str(answers["participant"])  # "0" and 0 are the same participant
    return _answer(tmp / "pretty.json", json.dumps(answers, indent=4))


def _resaved_differently(a: Path, tmp: Path) -> Path:
    answers = json.loads(a.read_text())
    answers["choices"] = {"0": answers["choices"]["0"]}
    return _answer(tmp / "second_save.json", answers)


@pytest.mark.parametrize(
    "second, cause",
    [
        pytest.param(_same_path, "{a} is given twice", id="same-path"),
        pytest.param(_other_spelling, "{a} and {b} are the same file", id="same-file-other-spelling"),
        pytest.param(_symlink, "{a} and {b} are the same file", id="symlink"),
        pytest.param(_hard_link, "{a} and {b} are the same file", id="hard-link"),
        pytest.param(_copy, "{a} and {b} hold the same answers of participant 0 (a copy?)", id="copied-file"),
        pytest.param(_pretty_copy, "{a} and {b} hold the same answers of participant 0", id="reformatted-copy"),
        pytest.param(_resaved_differently, "{a} and {b} both answer for participant 0, differently", id="two-saves"),
    ],
)
def test_answers_given_twice_are_refused_naming_both_files(run, tmp_path, second, cause):
    folder = _export(run)
    sid = json.loads((folder / "key.json").read_text())["study"]
    (tmp_path / "in").mkdir()
    a = _answer(tmp_path / "in" / "a.json", _fill(run, folder, 0, ["alpha", "gamma", "beta"], sid))
    other = _answer(tmp_path / "in" / "b.json", _fill(run, folder, 1, ["beta"] * 3, sid))
    b = second(a, tmp_path)
    with pytest.raises(ValueError) as err:
        tally(run, [a, other, b])
    message = str(err.value)
    assert "\n" not in message and message.startswith(cause.format(a=a, b=b)), message
    assert "count twice" in message or "pass only that file" in message


# -- re-exporting ---------------------------------------------------------------------------------------------------


def _snapshot(folder: Path) -> dict[str, tuple[bytes, int]]:
    return {p.name: (p.read_bytes(), p.stat().st_mtime_ns) for p in sorted(folder.iterdir())}


def test_export_again_with_the_same_arguments_changes_nothing(run):
    folder = _export(run)
    before = _snapshot(folder)
    assert _export(run) == folder
    assert _snapshot(folder) == before


def test_export_again_completes_a_killed_export(run):
    folder = _export(run)
    form = (folder / "participant_1.html").read_bytes()
    (folder / "participant_1.html").unlink()  # killed after the key and the first form
    _export(run)
    assert (folder / "participant_1.html").read_bytes() == form


@pytest.mark.parametrize(
    "change",
    [
        pytest.param({"seed": 1}, id="new-seed"),
        pytest.param({"items": 4}, id="more-items"),
        pytest.param({"participants": 3}, id="more-participants"),
        pytest.param({"methods": ["gamma", "alpha"]}, id="other-methods"),
    ],
)
def test_export_refuses_to_replace_a_key_forms_may_refer_to(run, change):
    folder = _export(run)
    before = _snapshot(folder)
    sid = json.loads((folder / "key.json").read_text())["study"]
    with pytest.raises(ValueError) as err:
        _export(run, **change)
    message = str(err.value)
    assert "\n" not in message and message.startswith(f"{folder} already holds study {sid} (methods alpha,beta,gamma")
    assert "seed 0)" in message and f"move {folder} away first to start a new study" in message
    assert _snapshot(folder) == before


def test_a_new_study_after_moving_the_old_one_refuses_the_old_answers(run, tmp_path):
    folder = _export(run)
    old_sid = json.loads((folder / "key.json").read_text())["study"]
    old = _answer(tmp_path / "old.json", _fill(run, folder, 0, ["alpha"] * 3, old_sid))
    folder.rename(run / "user_study_first")
    _export(run, seed=1)
    new_sid = json.loads((folder / "key.json").read_text())["study"]
    assert new_sid != old_sid
    with pytest.raises(ValueError, match=f"answers study '{old_sid}', not this run's study '{new_sid}'"):
        tally(run, [old])


def test_a_key_without_study_id_from_an_older_export_is_kept_and_given_one(run):
    folder = _export(run)
    key = json.loads((folder / "key.json").read_text())
    legacy = {k: v for k, v in key.items() if k not in ("study", "export")}
    (folder / "key.json").write_text(json.dumps(legacy))
    _export(run)
    assert json.loads((folder / "key.json").read_text()) == key


@pytest.mark.parametrize(
    "kw, setup, error, cause",
    [
        pytest.param(
            {"methods": ["alpha", "delta"]}, None, FileNotFoundError, "no predictions of 'delta'", id="unknown-method"
        ),
        pytest.param({"methods": ["alpha", "alpha"]}, None, ValueError, "names alpha twice", id="method-twice"),
        pytest.param({"methods": []}, None, ValueError, "no methods to compare", id="no-methods"),
        pytest.param({"items": 0}, None, ValueError, "--items 0 .* must be at least 1", id="zero-items"),
        pytest.param(
            {},
            lambda r: [p.unlink() for p in (r / "predictions" / "beta" / SPLIT).iterdir()],
            ValueError,
            "no test_natural sample has predictions of all of alpha, beta, gamma",
            id="no-common-samples",
        ),
        pytest.param(
            {"items": 4},
            lambda r: (r / "inputs" / SPLIT / "input" / "n002.png").unlink(),
            FileNotFoundError,
            "n002.png: the input of 1 chosen sample",
            id="missing-input",
        ),
        pytest.param(
            {},
            lambda r: ((r / "user_study").mkdir(), (r / "user_study" / "key.json").write_text('{"split": ')),
            ValueError,
            "key.json: the answer key is unreadable",
            id="corrupt-key",
        ),
    ],
)
def test_export_errors_are_one_line(run, kw, setup, error, cause):
    if setup:
        setup(run)
    with pytest.raises(error, match=cause) as err:
        _export(run, **kw)
    assert "\n" not in str(err.value)


def test_items_default_to_the_papers_300_or_all_there_are_and_more_is_refused(run):
    key = json.loads((export(run, METHODS, participants=1) / "key.json").read_text())
    assert key["samples"] == SAMPLES  # 4 faces, fewer than the paper's 300: all of them
    with pytest.raises(ValueError, match="--items 5: only 4 test_natural samples have predictions of all of"):
        export(run, METHODS, items=5, participants=1)
