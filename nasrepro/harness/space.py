"""The search-space contract (DESIGN.md, "Space").

A space is a set of hashable, serialisable architecture encodings. Every method talks to a space
only through this interface, so a method written for one space runs on every other.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Hashable, Iterator, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, ClassVar

import numpy as np

if TYPE_CHECKING:
    from torch import nn

    from nasrepro.harness.task import Task

Arch = Hashable


@dataclass(frozen=True)
class Field:
    """One categorical decision of an architecture, as controllers see it (ENAS, GraphNAS, AGNN).

    `group` is the field's *action class* (AGNN, Zhou et al. 2019, Sec. 4: e.g. "attention" or
    "hidden"); methods that modify one class at a time change only fields of one group.
    """

    name: str
    choices: tuple[str, ...]
    group: str


class Space(ABC):
    """A search space of architectures.

    `str(arch)` is the canonical string form and `parse(str(arch)) == arch`. `canonical(arch)`
    maps isomorphic encodings to one representative, so equal networks hash equal and budgets
    count them once.
    """

    name: str = ""
    #: views beyond those inferred from the methods a space implements (see `views`)
    extra_views: ClassVar[frozenset[str]] = frozenset()

    def views(self) -> frozenset[str]:
        """What methods can ask of this space: `basic` (sample, mutate, parse, key) always,
        `categorical` where it implements `fields/encode/decode` (controllers, predictors), `model`
        where it builds trainable networks, plus the space's `extra_views`."""
        found = {"basic"}
        if type(self).fields is not Space.fields:
            found.add("categorical")
        if type(self).to_model is not Space.to_model:
            found.add("model")
        return frozenset(found | self.extra_views)

    @abstractmethod
    def sample(self, rng: np.random.Generator) -> Arch:
        """A uniformly random (canonical) architecture."""

    @abstractmethod
    def mutate(self, arch: Arch, rng: np.random.Generator) -> Arch:
        """One random mutation of `arch`: a different architecture at edit distance one."""

    @abstractmethod
    def parse(self, text: str) -> Arch:
        """The architecture whose canonical string is `text`; `UsageError` if malformed."""

    def canonical(self, arch: Arch) -> Arch:
        """The representative of `arch`'s isomorphism class (identity where the space has none)."""
        return arch

    def key(self, arch: Arch) -> str:
        """The string that identifies `arch` up to isomorphism: the evaluator's cache key."""
        return str(self.canonical(arch))

    def to_model(self, arch: Arch, task: Task) -> nn.Module:
        """The trainable network of `arch`, shaped for `task`'s inputs and outputs."""
        raise NotImplementedError(f"space {self.name!r} does not build models")

    def recipe_overrides(self, task: Task) -> dict[str, Any]:
        """Training settings this space's networks were designed with (TrainRecipe field names)."""
        return {}

    def enumerate(self) -> Iterator[Arch]:
        """Every architecture once (finite spaces only)."""
        raise NotImplementedError(f"space {self.name!r} cannot be enumerated")

    def size(self) -> int | None:
        """Number of distinct architectures, or None where unknown or astronomically large."""
        return None

    # --- the categorical view, for controllers and predictors (optional) -------------------------

    def fields(self) -> tuple[Field, ...]:
        """The decisions that make up an architecture, in a fixed order (see `encode`)."""
        raise NotImplementedError(f"space {self.name!r} has no categorical encoding")

    def encode(self, arch: Arch) -> tuple[int, ...]:
        """`arch` as one choice index per field of `fields()`."""
        raise NotImplementedError(f"space {self.name!r} has no categorical encoding")

    def decode(self, indices: Sequence[int]) -> Arch:
        """The architecture with these choice indices; `UsageError` if they are out of range or
        name an invalid architecture (controllers resample then)."""
        raise NotImplementedError(f"space {self.name!r} has no categorical encoding")

    def describe(self) -> dict[str, Any]:
        """A JSON-able description stored in run records."""
        return {"name": self.name, "size": self.size()}
