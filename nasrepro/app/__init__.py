"""Orchestration: the only place where names become objects (DESIGN.md, "Layout").

The command line and the reproduce scripts build a request (`requests.py`); `resolve.py` turns its
names into the task, space, method, preset and folders once; `search.py` and `evaluate.py` run one
seed end to end and write its record. Nothing below this package looks a name up again.
"""
