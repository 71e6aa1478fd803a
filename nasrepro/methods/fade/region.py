"""Finite regions of a space, as FaDE trains them: k candidate units per stage, whole paths as members.

A *unit* is what one stage of an architecture chooses: a cell DAG of the hierarchical space (its L
stages choose independently), or an NB-201 cell (NB-201 repeats one cell in all 3 stages of its
network, so a member of the region is a path that picks the same cell at every stage). A `RegionView`
hides that difference from the outer search: it splits an architecture into per-stage units, joins
units back, draws new units and builds the region network on the space's own skeleton.

The NB-201 region is NB-201's evaluation network (stem, 3 stages of N cells at C, 2C, 4C with residual
reductions, BN-ReLU, pooling, classifier; `nasrepro.spaces.nasbench201`) in which every stage is a
`MixedStage` over k stacks of N cells, one stack per candidate cell (own weights). That is FaDE's
stage-level mixing (``DiffNN``) applied to NB-201's macro skeleton: an interpretation, labelled in
the README, since the authors never ran FaDE on NB-201.
"""

from __future__ import annotations

from collections.abc import Hashable, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np
from torch import nn

from nasrepro.errors import UsageError
from nasrepro.harness.space import Space
from nasrepro.methods.fade.estimator import MixedStage
from nasrepro.spaces.hierarchical import HierArch, HierarchicalSpace, cell_module, make_op_factory
from nasrepro.spaces.nasbench201 import NB201Arch, NB201Space
from nasrepro.spaces.nasbench201_net import NB201Network, arch_cell

if TYPE_CHECKING:
    from nasrepro.harness.task import Task

Unit = Hashable


class RegionView:
    """How the outer search sees one space (see the module docstring)."""

    family: str = ""
    stages: int = 1
    #: whether every stage must choose the same unit (NB-201's repeated cell)
    tied: bool = False

    def __init__(self, space: Space) -> None:
        self.space = space

    def units(self, arch: Any) -> tuple[Unit, ...]:
        raise NotImplementedError

    def join(self, units: Sequence[Unit]) -> Any:
        raise NotImplementedError

    def sample_unit(self, rng: np.random.Generator) -> Unit:
        raise NotImplementedError

    def mutate_unit(self, unit: Unit, rng: np.random.Generator) -> Unit:
        raise NotImplementedError

    def unit_count(self) -> int | None:
        """Distinct units a stage can choose from (None: too many to count)."""
        raise NotImplementedError

    def unit_str(self, unit: Unit) -> str:
        return str(unit)

    def build(
        self,
        candidates: Sequence[Sequence[Unit]],
        task: Task,
        settings: RegionSize,
        sampling: bool,
        random_init: bool,
    ) -> nn.Module:
        raise NotImplementedError


@dataclass(frozen=True)
class RegionSize:
    """Sizes of the region network that the views need (NB-201 only: width C and cells per stage N)."""

    nb201_C: int = 16  # noqa: N815
    nb201_N: int = 5  # noqa: N815


class HierView(RegionView):
    """The hierarchical space: each stage chooses its own cell DAG."""

    family = "hier"

    def __init__(self, space: HierarchicalSpace) -> None:
        super().__init__(space)
        self.stages = space.stages
        self.hier = space

    def units(self, arch: Any) -> tuple[Unit, ...]:
        return self.hier.canonical(arch).cells

    def join(self, units: Sequence[Unit]) -> HierArch:
        return HierArch(tuple(units))  # type: ignore[arg-type]

    def sample_unit(self, rng: np.random.Generator) -> Unit:
        return self.hier.sample_cell(rng)

    def mutate_unit(self, unit: Unit, rng: np.random.Generator) -> Unit:
        return self.hier.mutate_cell(unit, rng)  # type: ignore[arg-type]

    def unit_count(self) -> int | None:
        return self.hier.cell_count()

    def unit_str(self, unit: Unit) -> str:
        return unit.to_json()  # type: ignore[attr-defined]

    def build(
        self,
        candidates: Sequence[Sequence[Unit]],
        task: Task,
        settings: RegionSize,
        sampling: bool,
        random_init: bool,
    ) -> nn.Module:
        op, kernel = self.hier.resolved_op(task), self.hier.kernel

        def stage(i: int, size: int) -> nn.Module:
            cells = [cell_module(c, make_op_factory(op, size, kernel)) for c in candidates[i]]  # type: ignore[arg-type]
            return MixedStage(cells, sampling=sampling, random_init=random_init)

        return self.hier.network(stage, task)


class NB201RegionNetwork(NB201Network):
    """NB-201's skeleton with one `MixedStage` over k stacks of N cells in each of its 3 stages."""

    def __init__(
        self,
        candidates: Sequence[Sequence[NB201Arch]],
        C: int,
        N: int,
        num_classes: int,
        sampling: bool,
        random_init: bool,
    ) -> None:  # noqa: N803
        def mixed_stage(width: int, stage: int) -> list[nn.Module]:
            stacks = [nn.Sequential(*(arch_cell(a)(width) for _ in range(N))) for a in candidates[stage]]
            return [MixedStage(stacks, sampling=sampling, random_init=random_init)]

        super().__init__(num_classes=num_classes, channels=C, stage_layers=mixed_stage)


class NB201View(RegionView):
    """NAS-Bench-201: one cell, repeated in all 3 stages (members are tied paths)."""

    family = "nb201"
    stages = 3
    tied = True

    def __init__(self, space: NB201Space) -> None:
        super().__init__(space)
        self.nb201 = space

    def units(self, arch: Any) -> tuple[Unit, ...]:
        cell = self.nb201.canonical(arch)
        return (cell,) * self.stages

    def join(self, units: Sequence[Unit]) -> NB201Arch:
        if len(set(units)) != 1:
            raise UsageError("a NAS-Bench-201 architecture repeats one cell in every stage")
        return units[0]  # type: ignore[return-value]

    def sample_unit(self, rng: np.random.Generator) -> Unit:
        return self.nb201.sample(rng)

    def mutate_unit(self, unit: Unit, rng: np.random.Generator) -> Unit:
        return self.nb201.canonical(self.nb201.mutate(unit, rng))  # type: ignore[arg-type]

    def unit_count(self) -> int | None:
        return self.nb201.size()

    def build(
        self,
        candidates: Sequence[Sequence[Unit]],
        task: Task,
        settings: RegionSize,
        sampling: bool,
        random_init: bool,
    ) -> nn.Module:
        return NB201RegionNetwork(
            candidates,
            settings.nb201_C,
            settings.nb201_N,
            int(getattr(task, "num_classes", 10)),
            sampling,
            random_init,
        )  # type: ignore[arg-type]


def region_view(space: Space) -> RegionView | None:
    """The view FaDE uses for `space`, or None where FaDE has no region network for it."""
    if isinstance(space, HierarchicalSpace):
        return HierView(space)
    if isinstance(space, NB201Space):
        return NB201View(space)
    return None
