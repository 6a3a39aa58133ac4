"""The paper's user study (Fig. 11): a blinded, per-participant randomised offline HTML form.

``export`` picks N natural-occlusion samples (paper: 300) from a run, and for each participant
writes one self-contained HTML page showing each input beside the methods' outputs in a random
order (seeded per participant and item), with the method names hidden. The page saves the answers
as a JSON file in the browser (no server). The key (which letter was which method) stays in
``key.json``. ``tally`` reads answer files and gives the percentage of "best" votes per method with
Wilson 95% intervals.

Forms go out to people and come back days later, so the key they refer to must never change under them:
the study id (a hash of the key) is printed on every form and saved in every answer file; ``export``
refuses to replace an existing key with a different one, and ``tally`` refuses answers of another study,
an answer file given twice (by path or by participant), and any malformed file, each with one line that
names the file, what is wrong and the fix. The predictions a form shows are checked against the digests their
metrics rows recorded (:meth:`bench.runstore.RunStore.read_rows`), so a form never shows a changed image.
"""

from __future__ import annotations

import hashlib
import json
import math
from pathlib import Path
from typing import Any

import numpy as np

from bench.io import atomic_write_bytes, png_data_uri, write_json
from bench.runstore import RunStore

LETTERS = "ABCDEFGHIJKLMNOP"
PAPER_ITEMS = 300  # faces per participant in the paper's study
STUDY_FOLDER = "user_study"
ANSWER_FIELDS = ("study", "participant", "choices")
SAVE_AGAIN = "save the answers again from the participant's form (its Save answers button)"


def study_id(key: dict[str, Any]) -> str:
    """A short hash of what answers mean (split, methods, samples, each participant's letters): forms and
    answer files carry it, so answers can be checked against the key they were given under."""
    content = {k: key.get(k) for k in ("split", "methods", "samples", "participants")}
    blob = json.dumps(content, sort_keys=True, separators=(",", ":")).encode()
    return hashlib.sha256(blob).hexdigest()[:12]


def export(
    run: Path,
    methods: list[str],
    items: int | None = None,
    participants: int = 3,
    seed: int = 0,
    split: str = "test_natural",
) -> Path:
    """Write the key, then one form per participant, into ``<run>/user_study``.

    ``items`` faces per participant; None: the paper's :data:`PAPER_ITEMS`, or all there are if fewer. More than
    there are is refused (never silently fewer), and so is a study of one method (nothing to choose between).

    Re-running with the same arguments writes only what is missing (a killed export is completed, forms
    already out stay valid); other arguments are refused while a different study's key is there.
    """
    run = Path(run)
    store = RunStore(run)
    if not run.is_dir():
        raise FileNotFoundError(f"{run}: no such run folder; pass the folder `bench run` printed")
    _check_export_args(run, methods, items, participants, split)
    for label in methods:  # the images shown are the ones scored: checked against their rows' digests
        store.read_rows(label, verify=True)
    common = set.intersection(*[{p.stem for p in (run / "predictions" / m / split).glob("*.png")} for m in methods])
    if not common:
        raise ValueError(
            f"{run}: no {split} sample has predictions of all of {', '.join(methods)}; "
            "run those methods to completion first, or leave out the one without predictions"
        )
    if items is None:
        items = min(PAPER_ITEMS, len(common))
    if items > len(common):
        raise ValueError(
            f"--items {items}: only {len(common)} {split} samples have predictions of all of {', '.join(methods)}; "
            f"pass --items {len(common)} or fewer"
        )
    samples = sorted(common)
    rng = np.random.default_rng(seed)
    chosen = sorted(rng.choice(samples, size=items, replace=False).tolist())
    missing = [s for s in chosen if not store.input_path(split, "input", s).is_file()]
    if missing:
        raise FileNotFoundError(
            f"{store.input_path(split, 'input', missing[0])}: the input of {len(missing)} chosen sample(s) is "
            "missing; run `bench run` again on this run folder to restore its inputs"
        )
    key: dict[str, Any] = {"split": split, "methods": methods, "samples": chosen, "participants": {}}
    orders: dict[int, list[tuple[str, np.ndarray]]] = {}
    for p in range(participants):
        prng = np.random.default_rng([seed, p])
        order = prng.permutation(len(chosen))
        orders[p] = [(chosen[k], prng.permutation(len(methods))) for k in order]
        key["participants"][str(p)] = [
            {"sample": sid, "letters": {LETTERS[j]: methods[m] for j, m in enumerate(perm)}} for sid, perm in orders[p]
        ]
    key["study"] = study_id(key)
    key["export"] = {"seed": seed, "items": items, "participants": participants}
    folder = run / STUDY_FOLDER
    key_path = folder / "key.json"
    old = _existing_key(key_path)
    if old is not None and study_id(old) != key["study"]:
        raise ValueError(
            f"{folder} already holds study {old.get('study') or study_id(old)} ({_describe(old)}), whose forms may "
            f"be out with participants; exporting another study ({_describe(key)}) would replace the key their "
            f"answers need. Re-run with that study's arguments, or move {folder} away first to start a new study"
        )
    if old != key:
        write_json(key_path, key)  # before the forms: no form ever exists without its key
    for p, pages in orders.items():
        path = folder / f"participant_{p}.html"
        if not path.exists():
            atomic_write_bytes(path, _form(store, key, p, pages))
    return folder


def _check_export_args(run: Path, methods: list[str], items: int | None, participants: int, split: str) -> None:
    if not methods:
        raise ValueError("no methods to compare; pass --methods, e.g. --methods oagan,pconv@oagan")
    if len(set(methods)) != len(methods):
        twice = sorted({m for m in methods if methods.count(m) > 1})
        raise ValueError(f"--methods names {', '.join(twice)} twice; name each method once")
    if len(methods) < 2:
        raise ValueError(
            f"--methods {methods[0]}: a study compares at least two methods, one option leaves nothing to choose; "
            f"add another, e.g. --methods {methods[0]},<label>"
        )
    if len(methods) > len(LETTERS):
        raise ValueError(f"{len(methods)} methods: at most {len(LETTERS)} per study; compare fewer")
    if (items is not None and items < 1) or participants < 1:
        raise ValueError(f"--items {items} --participants {participants}: both must be at least 1")
    splits = sorted(p.name for p in (run / "inputs").glob("*") if p.is_dir())
    if split not in splits:
        raise ValueError(f"--split {split}: run {run} has no such split; its splits are {', '.join(splits) or 'none'}")
    for label in methods:
        if not (run / "predictions" / label / split).is_dir():
            raise FileNotFoundError(f"{run}: no predictions of {label!r} on {split}; run it first")


def _existing_key(path: Path) -> dict[str, Any] | None:
    if not path.exists():
        return None
    try:
        key = json.loads(path.read_text())
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise ValueError(
            f"{path}: the answer key is unreadable ({exc}); restore it from a backup, or move {path.parent} "
            "away to start a new study"
        ) from None
    if not (
        isinstance(key, dict) and isinstance(key.get("participants"), dict) and isinstance(key.get("methods"), list)
    ):
        raise ValueError(
            f"{path}: is not a user-study answer key; restore it from a backup, or move {path.parent} away to "
            "start a new study"
        )
    return key


def _describe(key: dict[str, Any]) -> str:
    args = key.get("export") or {}
    parts = [
        f"methods {','.join(key.get('methods') or [])}",
        f"split {key.get('split')}",
        f"{len(key.get('samples') or [])} items",
        f"{len(key.get('participants') or {})} participants",
    ]
    if "seed" in args:
        parts.append(f"seed {args['seed']}")
    return ", ".join(parts)


def _form(store: RunStore, key: dict[str, Any], p: int, pages: list[tuple[str, np.ndarray]]) -> bytes:
    split, methods = key["split"], key["methods"]
    items = [
        {
            "item": i,
            "input": png_data_uri(store.input_path(split, "input", sid)),
            "options": [
                {"letter": LETTERS[j], "img": png_data_uri(store.prediction_path(methods[m], split, sid))}
                for j, m in enumerate(perm)
            ],
        }
        for i, (sid, perm) in enumerate(pages)
    ]
    html = _FORM.replace("__STUDY__", key["study"]).replace("__PARTICIPANT__", str(p))
    return html.replace("__ITEMS__", json.dumps(items)).encode()


def wilson(k: int, n: int, z: float = 1.96) -> tuple[float, float]:
    """Wilson score interval of a proportion k/n."""
    if n == 0:
        return (math.nan, math.nan)
    p = k / n
    denom = 1 + z * z / n
    centre = (p + z * z / (2 * n)) / denom
    half = z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / denom
    return (centre - half, centre + half)


def tally(run: Path, answer_files: list[Path]) -> list[dict[str, Any]]:
    """Percentage of items on which each method was chosen as best, over all participants.

    Every file is checked before anything is counted: one bad, foreign or repeated file stops the tally with
    one line naming it, and the previous results.json stays as it was.
    """
    run = Path(run)
    key_path = run / STUDY_FOLDER / "key.json"
    key = _existing_key(key_path)
    if key is None:
        raise FileNotFoundError(
            f"{key_path}: not found, so {run} has no exported user study; run `bench study export {run} "
            "--methods ...` first, or pass the run folder the forms were exported from"
        )
    sid = key.get("study") or study_id(key)
    if not answer_files:
        raise ValueError("no answer files given; pass the JSON files saved from the forms")
    votes = {m: 0 for m in key["methods"]}
    total = 0
    seen_files: dict[tuple[int, int], Path] = {}
    by_participant: dict[str, tuple[Path, dict[str, str]]] = {}
    checked = []
    for path in map(Path, answer_files):
        identity = _file_identity(path)
        if identity in seen_files:
            first = seen_files[identity]
            same = f"{path} is given twice" if str(first) == str(path) else f"{first} and {path} are the same file"
            raise ValueError(f"{same}: its answers would count twice; pass each answer file once")
        seen_files[identity] = path
        participant, choices = _read_answers(path, key, sid, key_path)
        if participant in by_participant:
            first, earlier = by_participant[participant]
            if earlier == choices:
                raise ValueError(
                    f"{first} and {path} hold the same answers of participant {participant} (a copy?): they would "
                    "count twice; pass one of them"
                )
            raise ValueError(
                f"{first} and {path} both answer for participant {participant}, differently; ask which they meant "
                "and pass only that file"
            )
        by_participant[participant] = (path, choices)
        checked.append((participant, choices))
    for participant, choices in checked:
        pkey = key["participants"][participant]
        for item, letter in choices.items():
            votes[pkey[int(item)]["letters"][letter]] += 1
            total += 1
    rows = []
    for m, k in votes.items():
        lo, hi = wilson(k, total)
        rows.append(
            {
                "method": m,
                "votes": k,
                "n": total,
                "percent": 100 * k / total if total else math.nan,
                "ci95_low": 100 * lo,
                "ci95_high": 100 * hi,
            }
        )
    write_json(run / STUDY_FOLDER / "results.json", rows)
    return rows


def _file_identity(path: Path) -> tuple[int, int]:
    """(device, inode): the same file under two names (a symlink, a hard link, ``./a`` and ``a``) is one."""
    try:
        st = path.stat()
    except FileNotFoundError:
        raise FileNotFoundError(f"{path}: answer file not found; check the path") from None
    except OSError as exc:
        raise ValueError(f"{path}: cannot be read ({exc.strerror or exc}); check its permissions") from None
    return (st.st_dev, st.st_ino)


def _read_answers(path: Path, key: dict[str, Any], sid: str, key_path: Path) -> tuple[str, dict[str, str]]:
    """(participant, {item: letter}) of one answer file, every field checked against the key."""
    try:
        raw = path.read_bytes()
    except OSError as exc:
        raise ValueError(f"{path}: cannot be read ({exc.strerror or exc}); check the file") from None
    if not raw.strip():
        raise ValueError(f"{path}: is empty, not an answer file; {SAVE_AGAIN}")
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError:
        raise ValueError(f"{path}: is not text, so not an answer file saved from a form; {SAVE_AGAIN}") from None
    try:
        answers = json.loads(text)
    except json.JSONDecodeError as exc:
        if exc.pos >= len(text.rstrip()) or exc.msg.startswith("Unterminated string"):  # runs to the end
            raise ValueError(f"{path}: is truncated (its JSON ends early); {SAVE_AGAIN}") from None
        raise ValueError(
            f"{path}: is not valid JSON ({exc.msg} at line {exc.lineno} column {exc.colno}); {SAVE_AGAIN}"
        ) from None
    if not isinstance(answers, dict):
        raise ValueError(
            f"{path}: holds a JSON {type(answers).__name__}, not an answer object with "
            f"{', '.join(ANSWER_FIELDS)}; {SAVE_AGAIN}"
        )
    missing = [field for field in ANSWER_FIELDS if field not in answers]
    if missing == ["study"]:
        raise ValueError(
            f'{path}: has no "study" field, so it cannot be matched to this study ({sid}, {key_path}); pass '
            f'answers saved from this export\'s forms (or, if it surely answers them, add "study": "{sid}")'
        )
    if missing:
        raise ValueError(
            f"{path}: lacks the field(s) {', '.join(missing)} of an answer file ({', '.join(ANSWER_FIELDS)}); "
            f"{SAVE_AGAIN}"
        )
    if answers["study"] != sid:
        raise ValueError(
            f"{path}: answers study {answers['study']!r}, not this run's study {sid!r} ({key_path}); its letters "
            "mean other methods here. Tally it against the run folder that exported its forms"
        )
    participant = answers["participant"]
    if isinstance(participant, bool) or not isinstance(participant, (int, str)):
        raise ValueError(f"{path}: participant {participant!r} is not a participant number; {SAVE_AGAIN}")
    participant = str(participant)
    known = key["participants"]
    if participant not in known:
        raise ValueError(
            f"{path}: participant {participant} is not in this study (it has participants "
            f"{_span(sorted(known, key=_as_number))}, {key_path}); check which form the file came from"
        )
    choices = answers["choices"]
    if not isinstance(choices, dict):
        raise ValueError(
            f'{path}: "choices" is a JSON {type(choices).__name__}, not an object of item number -> letter; '
            f"{SAVE_AGAIN}"
        )
    pkey = known[participant]
    for item, letter in choices.items():
        if not (item.isascii() and item.isdigit()) or int(item) >= len(pkey):
            raise ValueError(
                f"{path}: item {item!r} is not on participant {participant}'s form (items 0-{len(pkey) - 1}); "
                f"{SAVE_AGAIN}"
            )
        letters = pkey[int(item)]["letters"]
        if not isinstance(letter, str) or letter not in letters:
            hint = " (answers give the letter shown on the form, not a method name)" if letter in key["methods"] else ""
            raise ValueError(
                f"{path}: item {item}: choice {letter!r} is not one of the form's options "
                f"{', '.join(sorted(letters))}{hint}; {SAVE_AGAIN}"
            )
    return participant, {str(int(item)): letter for item, letter in choices.items()}


def _as_number(name: str) -> tuple[int, str]:
    return (int(name), name) if name.isdigit() else (1 << 62, name)


def _span(names: list[str]) -> str:
    if names and all(n.isdigit() for n in names) and [int(n) for n in names] == list(range(len(names))):
        return f"0-{len(names) - 1}" if len(names) > 1 else "0"
    return ", ".join(names)


_FORM = """<!doctype html><html lang="en"><head><meta charset="utf-8"><title>Face de-occlusion user study</title>
<style>body{font:15px system-ui,sans-serif;max-width:1100px;margin:1em auto}img{width:160px;height:160px;
image-rendering:pixelated}.opts{display:flex;gap:12px;flex-wrap:wrap}label{text-align:center}
.item{border-bottom:1px solid #ccc;padding:1em 0}</style></head><body>
<h1>Which result looks best?</h1><p>Participant __PARTICIPANT__ of study __STUDY__. For each face, pick the
de-occluded result that looks most natural and most like the person. The order of results is random. Click
<b>Save answers</b> at the end and send the downloaded file back.</p><div id="items"></div>
<button id="save">Save answers</button>
<script>
const items = __ITEMS__; const root = document.getElementById("items");
for (const it of items) {
  const div = document.createElement("div"); div.className = "item";
  div.innerHTML = `<p>Item ${it.item + 1} of ${items.length}. Input:</p><img src="${it.input}"><div class="opts">` +
    it.options.map(o => `<label><img src="${o.img}"><br><input type="radio" name="q${it.item}" value="${o.letter}">
    ${o.letter}</label>`).join("") + "</div>";
  root.appendChild(div);
}
document.getElementById("save").onclick = () => {
  const choices = {};
  for (const it of items) { const c = document.querySelector(`input[name=q${it.item}]:checked`);
    if (c) choices[it.item] = c.value; }
  const answers = {study: "__STUDY__", participant: __PARTICIPANT__, choices};
  const blob = new Blob([JSON.stringify(answers)], {type: "application/json"});
  const a = document.createElement("a"); a.href = URL.createObjectURL(blob);
  a.download = "answers___STUDY___participant___PARTICIPANT__.json"; a.click();
};
</script></body></html>
"""
