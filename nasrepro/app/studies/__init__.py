"""Studies: runs of the harness that answer a question about the harness itself (e.g. whether our
live training agrees with a tabular benchmark), as opposed to searches.

    nasrepro study <name> [options]      (nasrepro study --help lists them)

Each study is a module with `main(argv) -> int`, registered here by name and imported only when run.
"""

from __future__ import annotations

import importlib

from nasrepro.errors import UsageError

#: study name -> its module
STUDIES = {
    "table-agreement": "nasrepro.app.studies.table_agreement",  # live training vs a tabular benchmark
}


def main(argv: list[str]) -> int:
    """`nasrepro study NAME ...`: run the named study with the rest of the arguments."""
    if not argv:
        raise UsageError(f"nasrepro study needs a study name, one of {', '.join(STUDIES)}")
    if argv[0] in ("-h", "--help"):
        print("usage: nasrepro study {" + ",".join(STUDIES) + "} [options]\n\nstudies:")
        for name, module in STUDIES.items():
            doc = (importlib.import_module(module).__doc__ or "").strip().split("\n\n")[0]
            print(f"  {name:<18} {' '.join(doc.split())}")
        return 0
    if argv[0] not in STUDIES:
        raise UsageError(f"no study {argv[0]!r}; choose from {', '.join(STUDIES)}")
    return importlib.import_module(STUDIES[argv[0]]).main(argv[1:])
