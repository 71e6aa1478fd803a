"""`nasrepro proxylessnas <tool> ...`: the method's command-line tools, by name.

* ``build-lut`` / ``check-lut`` -- latency look-up tables measured on this device (`latency_lut`, `lut_check`);
* ``export-config`` -- a derived or given architecture as the released ``net.config`` (`export`).
"""

from __future__ import annotations

import argparse
import importlib
import sys
from collections.abc import Sequence

from nasrepro.errors import UsageError

#: tool name -> (module, the module's entry point, which gets the tool name first)
TOOLS: dict[str, str] = {
    "build-lut": "nasrepro.methods.proxylessnas.lut_check",
    "check-lut": "nasrepro.methods.proxylessnas.lut_check",
    "export-config": "nasrepro.methods.proxylessnas.export",
}


class UsageParser(argparse.ArgumentParser):
    """argparse that raises `UsageError` (exit 2 with one line under `nasrepro`) instead of exiting."""

    def error(self, message: str) -> None:  # type: ignore[override]
        raise UsageError(f"{self.prog}: {message}")


def parse(parser: argparse.ArgumentParser, argv: Sequence[str]) -> argparse.Namespace:
    try:
        return parser.parse_args(list(argv))
    except argparse.ArgumentError as err:
        raise UsageError(str(err)) from None


def main(argv: Sequence[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if argv and argv[0] in ("-h", "--help"):
        print("usage: nasrepro proxylessnas {" + ",".join(TOOLS) + "} [options]\n\ntools:")
        for name, module in TOOLS.items():
            print(f"  {name:14} {module} (nasrepro proxylessnas {name} --help)")
        return 0
    if not argv or argv[0] not in TOOLS:
        given = repr(argv[0]) if argv else "nothing"
        raise UsageError(f"nasrepro proxylessnas needs a tool, one of {', '.join(TOOLS)}; got {given}")
    return importlib.import_module(TOOLS[argv[0]]).main(argv)


if __name__ == "__main__":
    from nasrepro.errors import run_main

    run_main(main)
