"""The paper's user study (Fig. 11): a blinded, per-participant randomised offline HTML form.

``export`` picks N natural-occlusion samples (paper: 300) from a run, and for each participant
writes one self-contained HTML page showing each input beside the methods' outputs in a random
order (seeded per participant and item), with the method names hidden. The page saves the answers
as a JSON file in the browser (no server). The key (which letter was which method) stays in
``key.json``. ``tally`` reads answer files and gives the percentage of "best" votes per method with
Wilson 95% intervals.
"""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

import numpy as np

from bench.runstore import RunStore, png_data_uri, write_json
from bench.training import atomic_write_bytes

LETTERS = "ABCDEFGHIJKLMNOP"


def export(
    run: Path, methods: list[str], items: int = 300, participants: int = 3, seed: int = 0, split: str = "test_natural"
) -> Path:
    store = RunStore(run)
    for label in methods:
        if not (run / "predictions" / label / split).is_dir():
            raise FileNotFoundError(f"{run}: no predictions of {label!r} on {split}; run it first")
    if len(methods) > len(LETTERS):
        raise ValueError(f"at most {len(LETTERS)} methods per study")
    common = set.intersection(*[{p.stem for p in (run / "predictions" / m / split).glob("*.png")} for m in methods])
    samples = sorted(common)
    rng = np.random.default_rng(seed)
    chosen = sorted(rng.choice(samples, size=min(items, len(samples)), replace=False).tolist())
    folder = run / "user_study"
    key: dict[str, Any] = {"split": split, "methods": methods, "samples": chosen, "participants": {}}
    for p in range(participants):
        prng = np.random.default_rng([seed, p])
        order = prng.permutation(len(chosen))
        pages, pkey = [], []
        for k in order:
            sid = chosen[k]
            perm = prng.permutation(len(methods))
            options = [
                {"letter": LETTERS[j], "img": png_data_uri(store.prediction_path(methods[m], split, sid))}
                for j, m in enumerate(perm)
            ]
            pages.append(
                {"item": len(pages), "input": png_data_uri(store.input_path(split, "input", sid)), "options": options}
            )
            pkey.append({"sample": sid, "letters": {LETTERS[j]: methods[m] for j, m in enumerate(perm)}})
        key["participants"][str(p)] = pkey
        html = _FORM.replace("__PARTICIPANT__", str(p)).replace("__ITEMS__", json.dumps(pages))
        atomic_write_bytes(folder / f"participant_{p}.html", html.encode())
    write_json(folder / "key.json", key)
    return folder


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
    """Percentage of items on which each method was chosen as best, over all participants."""
    key = json.loads((run / "user_study" / "key.json").read_text())
    votes = {m: 0 for m in key["methods"]}
    total = 0
    for path in answer_files:
        try:
            answers = json.loads(Path(path).read_text())
            pkey = key["participants"][str(answers["participant"])]
        except (OSError, json.JSONDecodeError, KeyError) as exc:
            raise ValueError(f"{path}: not an answer file of this study ({exc})") from exc
        for item, letter in answers["choices"].items():
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
    write_json(run / "user_study" / "results.json", rows)
    return rows


_FORM = """<!doctype html><html lang="en"><head><meta charset="utf-8"><title>Face de-occlusion user study</title>
<style>body{font:15px system-ui,sans-serif;max-width:1100px;margin:1em auto}img{width:160px;height:160px;
image-rendering:pixelated}.opts{display:flex;gap:12px;flex-wrap:wrap}label{text-align:center}
.item{border-bottom:1px solid #ccc;padding:1em 0}</style></head><body>
<h1>Which result looks best?</h1><p>Participant __PARTICIPANT__. For each face, pick the de-occluded result that
looks most natural and most like the person. The order of results is random. Click <b>Save answers</b> at the end
and send the downloaded file back.</p><div id="items"></div><button id="save">Save answers</button>
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
  const blob = new Blob([JSON.stringify({participant: __PARTICIPANT__, choices})], {type: "application/json"});
  const a = document.createElement("a"); a.href = URL.createObjectURL(blob);
  a.download = "answers_participant___PARTICIPANT__.json"; a.click();
};
</script></body></html>
"""
