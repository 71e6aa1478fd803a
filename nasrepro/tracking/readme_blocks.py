"""Generated result blocks in method READMEs: README numbers come from the leaderboard, never typed.

A method's README marks where generated content goes:

    <!-- leaderboard:NAME:begin -->
    (anything here is replaced on every `nasrepro leaderboard`)
    <!-- leaderboard:NAME:end -->

`NAME` selects what is written (the method is the README's folder, e.g. `agnn`):

* `results`: every leaderboard row of the method (its variants included) on every task;
* `results@TASK`: those rows on one task (e.g. `results@nasbench-graph/cora`), with the random
  search row of the same task beside them for reference;
* `claims`: the method's paper claims with our numbers and verdicts;
* `board@TASK`: every row on one task, whatever the method (the repository README's result tables);
* `study@STEM`: the agreement study's summary from `results/STEM.json` (`agreement_text`).

Text outside the markers is never touched; a README without markers is not rewritten at all; a
begin marker without its end (or a name that is not one of the above) is a `DataError` naming the
file and the block, so a typo cannot silently swallow the rest of a README.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from nasrepro.atomic import atomic_write_text
from nasrepro.errors import DataError

BLOCK = re.compile(
    r"(?P<begin><!-- leaderboard:(?P<name>[^\s]+?):begin -->)\n(?P<body>.*?)(?P<end><!-- leaderboard:(?P=name):end -->)",
    re.DOTALL,
)
BEGIN = re.compile(r"<!-- leaderboard:(?P<name>[^\s]+?):begin -->")

#: renders a block: (method, name, argument) -> markdown
Renderer = Callable[[str, str, str], str]


def rewrite(text: str, method: str, render: Renderer, where: str = "README") -> str:
    """`text` with every block's body replaced by `render(method, name, argument)`."""
    begins = [m.group("name") for m in BEGIN.finditer(text)]
    found = [m.group("name") for m in BLOCK.finditer(text)]
    for name in begins:
        if begins.count(name) != found.count(name):
            raise DataError(f"{where}: leaderboard block {name!r} has no matching end marker")

    def replace(match: re.Match[str]) -> str:
        name, _, argument = match.group("name").partition("@")
        body = render(method, name, argument).strip("\n")
        return f"{match.group('begin')}\n{body}\n{match.group('end')}"

    return BLOCK.sub(replace, text)


def rewrite_readmes(methods_dir: Path, render: Renderer, extra: Sequence[Path] = ()) -> list[Path]:
    """Rewrite the blocks of every `methods_dir/*/README.md` (the method is the folder's name) and of
    the `extra` files (no method: `board@TASK` blocks); returns the files that changed."""
    changed = []
    targets = [(path, path.parent.name) for path in sorted(methods_dir.glob("*/README.md"))]
    for path, method in [*targets, *((path, "") for path in extra if path.is_file())]:
        text = path.read_text()
        if "<!-- leaderboard:" not in text:
            continue
        new = rewrite(text, method, render, where=str(path))
        if new != text:
            atomic_write_text(path, new)
            changed.append(path)
    return changed


def row_table(rows: Sequence[Any], cells: Callable[[Any], list[str]], header: list[str]) -> str:
    """A markdown table of `rows` with the given header and per-row cells."""
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join(cells(row)) + " |" for row in rows]
    return "\n".join(lines)
