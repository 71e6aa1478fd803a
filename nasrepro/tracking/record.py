"""The run record as one typed value: what a search or an evaluation wrote, and what readers get back.

The JSON layout is defined by `record.schema.json`; this module is its only reader and writer of
fields (the runner builds a `Record`, `records.write_record` writes `Record.to_dict()`, the
leaderboard reads through `Record.from_dict`), and `validate` is the one place records are
checked against the schema. `to_dict` reproduces the committed layout exactly, so every record
under `results/runs` keeps validating and round-trips unchanged.

Two kinds of "no value" exist in a record. A field that is optional in the schema and not
nullable (e.g. `tag`, `duplicates`) is `None` in Python and absent from the JSON. A field added
after schema version 1 that may also be `null` (`search_cost.method_overhead_seconds`,
`search_cost.charged_cost`) is `ABSENT` in a record that predates it, and `None` when the record
says "not measured / unknown".
"""

from __future__ import annotations

import enum
import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, fields
from functools import cache
from pathlib import Path
from typing import Any, Literal

import jsonschema
from jsonschema.exceptions import ValidationError, best_match

from nasrepro.errors import DataError
from nasrepro.tracking import provenance

SCHEMA_PATH = Path(__file__).with_name("record.schema.json")
SCHEMA_VERSION = 1
Kind = Literal["search", "evaluate"]
#: field metadata: `None` means "absent from the JSON" (the schema allows the key to be missing
#: but not to be null)
_OMIT_NONE = "omit_none"


class Absent(enum.Enum):
    """Marks a field an older record does not carry (distinct from an explicit JSON null)."""

    ABSENT = "absent"

    def __repr__(self) -> str:
        return "ABSENT"


ABSENT = Absent.ABSENT


class InvalidRecord(DataError, ValueError):
    """A record breaks the schema; the message names the field (e.g. ``search_cost.queries``)."""


@cache
def schema() -> dict[str, Any]:
    return json.loads(SCHEMA_PATH.read_text())


@cache
def _validator() -> jsonschema.Draft202012Validator:
    # Built once: `jsonschema.validate` re-checks the schema itself on every call (~20 ms each).
    jsonschema.Draft202012Validator.check_schema(schema())
    return jsonschema.Draft202012Validator(schema())


def validate(data: Mapping[str, Any]) -> None:
    """Raise `InvalidRecord` with one line naming the offending field if `data` breaks the schema."""
    error = best_match(_validator().iter_errors(data))
    if error is not None:
        raise InvalidRecord(_describe(error))


#: the only keywords the history items' schema uses; `history_representatives` is exact for these
#: (`description` is an annotation: it constrains nothing)
HISTORY_KEYWORDS = frozenset({"type", "properties", "required", "minimum", "enum", "description"})


def history_representatives(history: list[Any]) -> list[Any]:
    """A few history entries that fail the item schema if and only if some entry does.

    Checking 500 entries with jsonschema took 0.2 s per record, most of a table search's time. The
    item schema constrains key presence, types, one enum and minimums only (`HISTORY_KEYWORDS`, a
    test holds it to that), so one entry per (keys, value types, status) signature plus, for each
    field with a minimum, the entry holding its smallest numeric value, decides every constraint.
    """
    if not all(isinstance(q, Mapping) for q in history):
        return list(history)
    chosen: dict[Any, Any] = {}
    lowest: dict[str, Any] = {}
    bounded = _bounded_history_fields()
    for q in history:
        # key order is part of the signature: more representatives at worst, never fewer
        signature = (tuple(q), tuple(map(type, q.values())), repr(q.get("status")))
        if signature not in chosen:
            chosen[signature] = q
        for key in bounded:
            value = q.get(key)
            if type(value) in (int, float) and (key not in lowest or value < lowest[key][key]):
                lowest[key] = q
    unique = {id(q): q for q in [*chosen.values(), *lowest.values()]}
    return list(unique.values())


@cache
def _bounded_history_fields() -> tuple[str, ...]:
    """The history item fields the schema gives a `minimum`."""
    items = schema()["properties"]["history"]["items"]["properties"]
    return tuple(sorted(k for k, spec in items.items() if "minimum" in spec))


def validate_fast(data: Mapping[str, Any]) -> None:
    """`validate` with the history reduced to `history_representatives`: the same verdict, used
    when the runner writes a record whose history it built from typed queries."""
    history = data.get("history")
    if isinstance(history, list) and len(history) > 3:
        data = {**data, "history": history_representatives(history)}
    validate(data)


def _describe(error: ValidationError) -> str:
    where = "".join(f"[{p}]" if isinstance(p, int) else f".{p}" for p in error.absolute_path).lstrip(".")
    if error.validator == "required":
        missing = next(k for k in error.validator_value if k not in error.instance)
        return f"record field {(where + '.' if where else '') + missing!r} is missing"
    if error.validator == "type":
        return (
            f"record field {where or '(top level)'!r} must be {error.validator_value}, "
            f"got {type(error.instance).__name__}"
        )
    message = error.message if len(error.message) <= 200 else error.message[:197] + "..."
    return f"record field {where or '(top level)'!r}: {message}"


def _optional(default: Any = None) -> Any:
    """A field the JSON may lack; `None` is written as absence, not null."""
    return field(default=default, metadata={_OMIT_NONE: True})


def _as_dict(obj: Any) -> dict[str, Any]:
    """The dataclass `obj` as JSON fields: `ABSENT` always omitted, `None` omitted where marked."""
    out = {}
    for f in fields(obj):
        value = getattr(obj, f.name)
        if value is ABSENT or (value is None and f.metadata.get(_OMIT_NONE)):
            continue
        out[f.name] = value
    return out


def _from_fields(cls: type, data: Mapping[str, Any], **converted: Any) -> dict[str, Any]:
    """Constructor arguments of `cls` from `data`: keys it lacks stay at their defaults."""
    names = {f.name for f in fields(cls)}
    return {k: v for k, v in data.items() if k in names} | converted


@dataclass(frozen=True, slots=True, kw_only=True)
class SearchCost:
    """What the run cost: wall-clock on this machine, device-hours, unique queries, and how the
    evaluations were costed (`cost_model`)."""

    wall_seconds: float
    device: str
    device_hours: float
    queries: int
    n_devices: int | None = _optional()
    #: the evaluator's summed per-query cost (table: recorded or look-up time; train: our training)
    evaluation_seconds: float | None = _optional()
    cost_model: str | None = _optional()
    #: the method's own compute outside evaluations (issue 16 item 3); None = not measured
    method_overhead_seconds: float | None | Absent = ABSENT
    #: machine-independent cost charged for the queries (issue 16 item 3); None = unknown
    charged_cost: float | None | Absent = ABSENT

    def to_dict(self) -> dict[str, Any]:
        return _as_dict(self)

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> SearchCost:
        return cls(**_from_fields(cls, data))


@dataclass(frozen=True, slots=True, kw_only=True)
class Metrics:
    """The incumbent's final numbers: validation and test score, plus whatever the task and the
    hardware measurement add (params, FLOPs, latency, peak memory, train seconds, ...), kept under
    their own names in `extra` because tasks differ in what they report."""

    val: float | None
    test: float | None
    extra: Mapping[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        clash = {"val", "test"} & set(self.extra)
        if clash:
            raise InvalidRecord(
                f"record field 'metrics.{min(clash)}' is given twice (as a field and in extra)"
            )

    def to_dict(self) -> dict[str, Any]:
        return {"val": self.val, "test": self.test, **self.extra}

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> Metrics:
        extra = {k: v for k, v in data.items() if k not in ("val", "test")}
        return cls(val=data["val"], test=data["test"], extra=extra)


def _json_safe(value: Any) -> Any:
    """`value` as plain JSON values (tuples become lists, other objects their `str`)."""
    return json.loads(json.dumps(value, default=str))


@dataclass(frozen=True, slots=True, kw_only=True)
class Record:
    """One run of `nasrepro search` (kind "search") or `nasrepro evaluate` (kind "evaluate").

    History entries stay the mappings the evaluator's `Query.to_dict()` produced: their layout is
    owned by the harness and checked by the schema, and tracking imports nothing of the harness.
    Provenance (`versions`, `git_commit`, `created`) defaults to this process's.
    """

    kind: Kind
    method: str
    task: str
    space: Mapping[str, Any]
    seed: int
    preset: str
    scale: str
    budget: int | None
    reward: str
    direction: str
    metric: str
    best_arch: str
    metrics: Metrics
    search_cost: SearchCost
    history: Sequence[Mapping[str, Any]]
    config: Mapping[str, Any]
    machine: Mapping[str, Any]
    tag: str | None = _optional()
    #: search records: repeated queries answered from the cache
    duplicates: int | None = _optional()
    #: search records: what the method reports besides the history (trajectories, populations, alphas)
    method_extra: Mapping[str, Any] | None = _optional()
    versions: Mapping[str, str] = field(default_factory=provenance.versions)
    git_commit: str = field(default_factory=provenance.git_commit)
    created: str = field(default_factory=provenance.now)
    schema_version: int = SCHEMA_VERSION

    def __post_init__(self) -> None:
        # A tuple history and a list history of the same queries are the same record.
        if not isinstance(self.history, list):
            object.__setattr__(self, "history", list(self.history))
        if self.method_extra is not None:  # a record holds JSON values only (numpy scalars, tuples...)
            object.__setattr__(self, "method_extra", _json_safe(self.method_extra))
        # the config too (a recipe's tuple fields), so a record equals the record read back from disk
        object.__setattr__(self, "config", _json_safe(self.config))

    def to_dict(self) -> dict[str, Any]:
        """The record's JSON layout (shallow copies: mutating the result leaves the record as it was)."""
        out = _as_dict(self)
        out["metrics"] = self.metrics.to_dict()
        out["search_cost"] = self.search_cost.to_dict()
        out["history"] = [dict(q) for q in self.history]
        for name in ("space", "config", "machine", "versions", "method_extra"):
            if name in out:
                out[name] = dict(out[name])
        return out

    @classmethod
    def from_dict(cls, data: Mapping[str, Any], *, check: bool = True) -> Record:
        """Read a record's JSON form; `check=False` skips the schema for data validated already."""
        if check:
            validate(data)
        try:
            return cls(
                **_from_fields(
                    cls,
                    data,
                    metrics=Metrics.from_dict(data["metrics"]),
                    search_cost=SearchCost.from_dict(data["search_cost"]),
                )
            )
        except (KeyError, TypeError) as err:  # only reachable with check=False
            raise InvalidRecord(f"record is not a valid record ({err}); validate it first") from None

    def validate(self) -> None:
        """Check this record against the schema (`InvalidRecord` names the field)."""
        validate(self.to_dict())
