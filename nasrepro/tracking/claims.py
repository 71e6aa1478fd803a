"""Paper claims beside our measurements, with a verdict per claim (issue 16 item 4).

Every entry under `results:` in `nasrepro/methods/<method>/paper.yaml` is a claim: the paper's
number (`value`) for a leaderboard row (`row`, default the method's name) on a task, with the
paper's table id (`table`), whether the number was checked against the paper (`verified`), and
optionally `metric`, `setting`, the paper's reported spread (`spread`, e.g. its standard deviation
over runs) or a stated `tolerance`, and `citation` (else the paper named by the file's first
comment line, "# Numbers reported by <paper>, for the ..."). The verdict compares our row's mean over seeds with the claim:

* **not yet run**: no record of that row on that task;
* **not testable at this scale**: our rows are smoke or cpu-scale (not the paper's setting), so
  the difference says how far a small run is from the paper, not whether the claim holds;
* **reproduced**: our mean is at most `spread` (else `tolerance`, else the default) worse than
  the claim (better is reproduced too: the claim is "at least this good"). The default is
  `DEFAULT_TOLERANCE` points for a percentage (`metric` empty, `accuracy` or naming `%`) and
  `DEFAULT_RELATIVE` of the claim otherwise: one point means nothing on an MSE of 0.0075 or a
  correlation of 0.8, where it passed anything;
* **not reproduced**: worse by more than that.

When rows of several presets exist the most faithful one is judged (paper before cpu before smoke).

A claim that is not a search result (e.g. FaDE's rank correlation) names the study file that
measures it instead of a row: `study` (a JSON file under the results folder, written by the study's
command), `measure` and `n_key` (dotted keys into it); the study's `preset` gives the scale.
"""

from __future__ import annotations

import json
import statistics
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

DEFAULT_TOLERANCE = 1.0  # percentage points, when the paper states no spread
DEFAULT_RELATIVE = 0.05  # of the claim, for metrics that are not percentages
PRESET_ORDER = {"paper": 0, "cpu": 1, "smoke": 2}
TESTABLE_SCALES = ("paper setting", "table look-up")


@dataclass(frozen=True)
class Claim:
    method: str
    row: str
    task: str
    value: float
    table: str
    verified: bool
    metric: str
    setting: str
    tolerance: float
    tolerance_source: str  # "paper spread" | "stated tolerance" | "default"
    citation: str
    #: a study file under the results folder that measures the claim, and the keys of value and n
    study: str = ""
    measure: str = ""
    n_key: str = ""


@dataclass(frozen=True)
class Judged:
    claim: Claim
    verdict: str
    ours: float | None = None
    ours_std: float | None = None
    n: int = 0
    preset: str = ""
    scale: str = ""

    def to_dict(self) -> dict[str, Any]:
        c = self.claim
        return {
            "method": c.method,
            "row": c.row,
            "task": c.task,
            "metric": c.metric,
            "claim": c.value,
            "table": c.table,
            "setting": c.setting,
            "claim_verified": c.verified,
            "tolerance": c.tolerance,
            "tolerance_source": c.tolerance_source,
            "ours_mean": self.ours,
            "ours_std": self.ours_std,
            "n": self.n,
            "preset": self.preset,
            "scale": self.scale,
            "verdict": self.verdict,
        }


def _header_citation(path: Path) -> str:
    """The paper named by the file's first comment ("# Numbers reported by <paper>, for the ...")."""
    text = path.read_text()
    first = text.splitlines()[0] if text else ""
    for prefix in ("# Numbers reported by ", "# Numbers reported for "):
        if first.startswith(prefix):
            return first[len(prefix) :].split(", for the")[0].strip()
    return ""


def default_tolerance(value: float, metric: str) -> tuple[float, str]:
    """(tolerance, its source) for a claim that states neither a spread nor a tolerance."""
    if metric in ("", "accuracy") or "%" in metric:
        return DEFAULT_TOLERANCE, "default"
    return DEFAULT_RELATIVE * abs(value), f"default, {DEFAULT_RELATIVE:.0%} of the claim"


def read_claims(methods_dir: Path) -> list[Claim]:
    """Every claim of every `paper.yaml` under `methods_dir`, in file order."""
    out = []
    for path in sorted(methods_dir.glob("*/paper.yaml")):
        doc = yaml.safe_load(path.read_text()) or {}
        method = doc.get("method", path.parent.name)
        citation = str(
            doc.get("citation") or _header_citation(path) or f"nasrepro/methods/{path.parent.name}/README.md"
        )
        for entry in doc.get("results", []) or []:
            if "spread" in entry:
                tol, source = float(entry["spread"]), "paper spread"
            elif "tolerance" in entry:
                tol, source = float(entry["tolerance"]), "stated tolerance"
            else:
                tol, source = default_tolerance(float(entry["value"]), str(entry.get("metric", "")))
            out.append(
                Claim(
                    method=method,
                    row=str(entry.get("row", method)),
                    task=str(entry["task"]),
                    value=float(entry["value"]),
                    table=str(entry.get("table", "")),
                    verified=bool(entry.get("verified", False)),
                    metric=str(entry.get("metric", "")),
                    setting=str(entry.get("setting", "")),
                    tolerance=tol,
                    tolerance_source=source,
                    citation=citation,
                    study=str(entry.get("study", "")),
                    measure=str(entry.get("measure", "")),
                    n_key=str(entry.get("n_key", "")),
                )
            )
    return out


def _dotted(data: Any, key: str) -> Any:
    for part in key.split("."):
        data = data[part]
    return data


def judge_study(claim: Claim, results_dir: Path) -> Judged:
    """The verdict of a claim measured by a study file (higher is better, as for correlations)."""
    path = results_dir / claim.study
    if not path.is_file():
        return Judged(claim, "not yet run")
    data = json.loads(path.read_text())
    preset = str(data.get("preset", ""))
    base = dict(ours=float(_dotted(data, claim.measure)), n=int(_dotted(data, claim.n_key)), preset=preset)
    if preset != "paper":
        return Judged(claim, "not testable at this scale", scale=f"{preset}-scale", **base)
    verdict = "reproduced" if claim.value - base["ours"] <= claim.tolerance else "not reproduced"
    return Judged(claim, verdict, scale="paper setting", **base)


def judge(claim: Claim, rows: Sequence[Any], results_dir: Path | None = None) -> Judged:
    """The verdict of one claim against the leaderboard rows of its task (`Row` objects), or
    against its study file under `results_dir`."""
    if claim.study:
        return judge_study(claim, results_dir) if results_dir is not None else Judged(claim, "not yet run")
    candidates = [r for r in rows if r.task == claim.task and r.method == claim.row and r.tests]
    if not candidates:
        return Judged(claim, "not yet run")
    row = min(candidates, key=lambda r: (PRESET_ORDER.get(r.preset, 9), -(r.budget or 0), r.reward != "val"))
    tests = row.tests
    mean = statistics.mean(tests)
    std = statistics.stdev(tests) if len(tests) > 1 else None
    scale = row.records[0].scale
    base = dict(ours=mean, ours_std=std, n=len(tests), preset=row.preset, scale=scale)
    if row.preset == "smoke" or not any(s in scale for s in TESTABLE_SCALES):
        return Judged(claim, "not testable at this scale", **base)
    sign = 1.0 if row.direction == "max" else -1.0
    shortfall = sign * (claim.value - mean)
    verdict = "reproduced" if shortfall <= claim.tolerance else "not reproduced"
    return Judged(claim, verdict, **base)


def judge_all(claims: Sequence[Claim], rows: Sequence[Any], results_dir: Path | None = None) -> list[Judged]:
    return [judge(c, rows, results_dir) for c in claims]


def render(judged: Sequence[Judged]) -> str:
    if not judged:
        return ""
    lines = [
        "\n## Paper claims\n",
        "Every number in a method's `paper.yaml` beside ours (mean ± std over n seeds of the row "
        "named by the claim; the most faithful preset present). Verdict: *reproduced* when ours is "
        f"at most the paper's spread (else a stated tolerance, else {DEFAULT_TOLERANCE:g} point for "
        f"percentages and {DEFAULT_RELATIVE:.0%} of the claim for other metrics) worse than the claim, *not reproduced* otherwise, *not testable at this scale* for cpu-scale or "
        "smoke rows, *not yet run* without records. Claims marked unverified were not checked "
        "against the paper's PDF.",
        "",
        "How to cite: the method's paper for the claim (last column), the suite (nasrepro, this "
        "leaderboard's commit) for our number.",
        "",
        "| method | task | row | claim | ours | n | preset | Δ | verdict | paper |",
        "|---|---|---|---|---|---|---|---|---|---|",
    ]
    for j in judged:
        c = j.claim
        mark = "" if c.verified else " (unverified)"
        setting = f"; {c.setting}" if c.setting else ""
        metric = f" {c.metric}" if c.metric else ""
        claim = f"{c.value:g}{metric}{mark} [{c.table}{setting}] ± {c.tolerance:.3g} ({c.tolerance_source})"
        if j.ours is None:
            ours, delta = "—", "—"
        else:
            small = abs(j.ours) < 1.0  # regression MSE: significant digits, as the task tables
            ours = f"{j.ours:.3g}" if small else f"{j.ours:.2f}"
            if j.ours_std is not None:
                ours += f" ± {j.ours_std:.2g}" if small else f" ± {j.ours_std:.2f}"
            delta = f"{j.ours - c.value:+.3g}" if small else f"{j.ours - c.value:+.2f}"
        lines.append(
            f"| {c.method} | {c.task} | {c.row} | {claim} | {ours} | {j.n or '—'} | {j.preset or '—'} "
            f"| {delta} | {j.verdict} | {c.citation} |"
        )
    return "\n".join(lines) + "\n"
