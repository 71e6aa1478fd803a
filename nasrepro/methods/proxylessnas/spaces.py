"""ProxylessNAS's MBConv chain spaces as data, their architectures, and the network builder.

The ImageNet space (Cai, Zhu & Han, ICLR 2019, Sec. 4; released ``search/imagenet_arch_search.py``)
is a MobileNetV2 backbone: a 3x3 stride-2 stem (32 ch), a fixed 3x3 MBConv1 block to 16 ch, then
six searched stages of widths 24/40/80/96/192/320 with 4/4/4/4/4/1 blocks and strides
2/2/2/1/2/1, then a 1x1 conv to 1280, global pooling, dropout and the classifier. Every searched
block is one *edge* choosing among ``{3,5,7}x{3,6}`` MBConvs; blocks that are stride 1 with equal
widths (all but the first block of a stage) also offer ``zero``, which skips the block. That gives
21 edges, 15 with 7 choices and 6 with 6: ``6**6 * 7**15`` (~2.2e17) raw encodings.

Architecture strings list each stage's block codes, stages separated by ``|``::

    5E3,3E3,Z,Z|7E3,3E3,5E3,5E3|7E6,5E3,5E3,5E3|5E6,5E3,5E3,5E3|7E6,7E6,7E3,7E3|7E6

(``kEe`` = kxk MBConv with expansion e, ``Z`` = zero; this one is the released proxyless_mobile).

Isomorphism (``canonical``): a ``zero`` block returns its input exactly, and the other blocks after
a stage's first are all stride-1 c->c blocks, so only the *order of the non-zero blocks* of a stage
matters, not where its zeros sit. The representative moves a stage's zeros to its end (``3E3,Z,5E3,Z``
-> ``3E3,5E3,Z,Z``). ``size()`` counts raw encodings, as the paper does; ``describe()`` adds the
number of distinct networks.

The CIFAR-scale variant (``proxyless-cifar``) is our own reduction for 32x32 inputs, not a space
from the paper (the paper's CIFAR-10 result uses the tree-cell PyramidNet, see ``released.py``):
width x0.5 through ``make_divisible(., 8)`` (stem 16, block-1 8, stages 16/24/40/48/96/160, head
640), blocks 2/2/2/2/2/1 (11 edges, ``6**6 * 7**5`` encodings), stem stride 1 and the first stage
at stride 1 (strides 1/2/2/1/2/1), so 32x32 inputs end at 4x4 -- the same 8x total downsampling
that CIFAR adaptations of MobileNetV2 use, and about 1/8 of ImageNet's 32x (224 -> 7).
"""

from __future__ import annotations

import functools
import math
from collections import OrderedDict
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from typing import TYPE_CHECKING, Any

import numpy as np
import torch
from torch import nn

from nasrepro.errors import UsageError
from nasrepro.harness.space import Field, Space
from nasrepro.methods.proxylessnas.blocks import (
    MBCONV_OPS,
    OPS_BY_CODE,
    ZERO,
    MBConv,
    MobileInvertedResidualBlock,
    candidate_op,
    conv_bn_act,
    has_shortcut,
)
from nasrepro.spaces import SPACES

if TYPE_CHECKING:
    from nasrepro.harness.task import Task

STAGE_SEP = "|"
BLOCK_SEP = ","
ARCH_FORMAT = (
    "5E3,3E3,Z,Z|7E3,3E3,5E3,5E3|... (one '|'-separated group of ','-separated block codes per stage)"
)
MBCONV_CODES: tuple[str, ...] = tuple(op.code for op in MBCONV_OPS)


def make_divisible(value: float, divisor: int = 8) -> int:
    """MobileNetV2's channel rounding (used by the released code for width multipliers): the
    nearest multiple of `divisor`, never more than 10% below `value`."""
    rounded = max(divisor, int(value + divisor / 2) // divisor * divisor)
    return rounded + divisor if rounded < 0.9 * value else rounded


# --- architectures ----------------------------------------------------------------------------


@dataclass(frozen=True)
class ProxylessArch:
    """One choice per searched block: op codes (``5E3``, ``Z``, ...) stage by stage."""

    stages: tuple[tuple[str, ...], ...]

    def __post_init__(self) -> None:
        stages = tuple(tuple(stage) for stage in self.stages)
        for k, stage in enumerate(stages, start=1):
            for j, code in enumerate(stage, start=1):
                if code not in OPS_BY_CODE:
                    raise UsageError(
                        f"unknown op code {code!r} at stage {k} block {j}; choose from {', '.join(OPS_BY_CODE)}"
                    )
        object.__setattr__(self, "stages", stages)

    @property
    def ops(self) -> tuple[str, ...]:
        """All block codes in network order (one per searched edge)."""
        return tuple(code for stage in self.stages for code in stage)

    def __str__(self) -> str:
        return STAGE_SEP.join(BLOCK_SEP.join(stage) for stage in self.stages)

    @classmethod
    def parse(cls, text: str) -> ProxylessArch:
        """The stages of `text` (shape is checked by the space, codes here)."""
        if not isinstance(text, str) or not text.strip():
            raise UsageError(f"a ProxylessNAS architecture is a string like {ARCH_FORMAT}, got {text!r}")
        stages = []
        for k, group in enumerate(text.strip().split(STAGE_SEP), start=1):
            codes = tuple(token.strip() for token in group.split(BLOCK_SEP))
            if any(not code for code in codes):
                raise UsageError(
                    f"in ProxylessNAS architecture {text!r}: stage {k} ({group!r}) has an empty block; "
                    f"expected {ARCH_FORMAT}"
                )
            stages.append(codes)
        try:
            return cls(tuple(stages))
        except UsageError as err:
            raise UsageError(f"in ProxylessNAS architecture {text!r}: {err}") from None


def as_arch(arch: ProxylessArch | str) -> ProxylessArch:
    if isinstance(arch, ProxylessArch):
        return arch
    if isinstance(arch, str):
        return ProxylessArch.parse(arch)
    raise UsageError(f"expected a ProxylessNAS architecture or its string, got {type(arch).__name__}")


# --- geometry shared by spaces and nets -------------------------------------------------------


@dataclass(frozen=True)
class BlockSlot:
    """One block of the searched chain: its position, widths and stride.

    `choices` are the op codes a search may put here: the six MBConvs, plus ``Z`` exactly where
    the block has an identity shortcut (stride 1, equal widths), where zero means "skip the block".
    """

    stage: int  # 0-based
    block: int  # 0-based within the stage
    c_in: int
    c_out: int
    stride: int
    mbconv_codes: tuple[str, ...] = MBCONV_CODES

    @property
    def allows_zero(self) -> bool:
        return has_shortcut(self.c_in, self.c_out, self.stride)

    @property
    def choices(self) -> tuple[str, ...]:
        return (*self.mbconv_codes, ZERO.code) if self.allows_zero else self.mbconv_codes

    @property
    def name(self) -> str:
        return f"stage{self.stage + 1}_block{self.block + 1}"


def chain_slots(
    first_width: int, widths: Sequence[int], depths: Sequence[int], strides: Sequence[int]
) -> tuple[BlockSlot, ...]:
    """The blocks after the fixed first block: a stage's first block changes width and stride,
    the others are stride-1 c->c (MobileNetV2's stage rule)."""
    if not len(widths) == len(depths) == len(strides):
        raise UsageError(
            f"widths, depths and strides need one entry per stage; got {len(widths)}, {len(depths)}, "
            f"{len(strides)}"
        )
    slots = []
    c_in = first_width
    for stage, (width, depth, stride) in enumerate(zip(widths, depths, strides, strict=True)):
        if depth < 1 or width < 1 or stride not in (1, 2):
            raise UsageError(f"stage {stage + 1} needs depth >= 1, width >= 1, stride 1|2")
        for block in range(depth):
            slots.append(BlockSlot(stage, block, c_in, width, stride if block == 0 else 1))
            c_in = width
    return tuple(slots)


@dataclass(frozen=True)
class NetSpec:
    """Everything `build_net` needs: a full MBConv-chain network, searched or released.

    `stages` holds each stage's block codes (``5E3``, ``Z``, ...; released names are accepted
    too). The first block is the fixed ``first_kernel`` x ``first_kernel`` MBConv with expansion
    ``first_expand`` from the stem to ``first_width``; it never has a shortcut (released code).
    """

    stem_width: int
    first_width: int
    widths: tuple[int, ...]
    strides: tuple[int, ...]
    stages: tuple[tuple[str, ...], ...]
    head_width: int
    dropout: float = 0.0
    stem_stride: int = 2
    input_size: int = 224
    first_kernel: int = 3
    first_expand: int = 1
    in_channels: int = 3

    def __post_init__(self) -> None:
        stages = tuple(tuple(candidate_op(op).code for op in stage) for stage in self.stages)
        object.__setattr__(self, "stages", stages)
        object.__setattr__(self, "widths", tuple(self.widths))
        object.__setattr__(self, "strides", tuple(self.strides))
        if not 0.0 <= self.dropout < 1.0:
            raise UsageError(f"dropout must be in [0, 1), got {self.dropout}")
        for slot, code in zip(self.slots(), self.arch.ops, strict=True):
            if code == ZERO.code and not slot.allows_zero:
                raise UsageError(
                    f"zero at stage {slot.stage + 1} block {slot.block + 1} is not allowed: the block is "
                    f"{slot.c_in}->{slot.c_out} with stride {slot.stride}, and zero only skips stride-1 "
                    f"equal-width blocks"
                )

    @property
    def depths(self) -> tuple[int, ...]:
        return tuple(len(stage) for stage in self.stages)

    @property
    def arch(self) -> ProxylessArch:
        return ProxylessArch(self.stages)

    def slots(self) -> tuple[BlockSlot, ...]:
        return chain_slots(self.first_width, self.widths, self.depths, self.strides)


class ProxylessNet(nn.Module):
    """A standalone MBConv chain (the released ``ProxylessNASNets``): stem, blocks, 1x1 feature
    mix, global average pooling, dropout, linear classifier."""

    def __init__(self, spec: NetSpec, num_classes: int) -> None:
        super().__init__()
        self.spec = spec
        self.first_conv = conv_bn_act(spec.in_channels, spec.stem_width, 3, spec.stem_stride)
        first = MBConv(spec.stem_width, spec.first_width, spec.first_kernel, 1, spec.first_expand)
        blocks = [MobileInvertedResidualBlock(first, spec.stem_width, spec.first_width, 1, shortcut=False)]
        for slot, code in zip(spec.slots(), spec.arch.ops, strict=True):
            op = candidate_op(code).build(slot.c_in, slot.c_out, slot.stride)
            blocks.append(MobileInvertedResidualBlock(op, slot.c_in, slot.c_out, slot.stride))
        self.blocks = nn.Sequential(*blocks)
        last = spec.widths[-1]
        self.feature_mix_layer = conv_bn_act(last, spec.head_width, 1)
        self.global_avg_pool = nn.AdaptiveAvgPool2d(1)
        self.classifier = nn.Sequential(
            OrderedDict(
                [("dropout", nn.Dropout(spec.dropout)), ("linear", nn.Linear(spec.head_width, num_classes))]
            )
        )
        init_he_fout(self)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.feature_mix_layer(self.blocks(self.first_conv(x)))
        return self.classifier(torch.flatten(self.global_avg_pool(x), 1))


def init_he_fout(model: nn.Module) -> None:
    """The released ``init_model('he_fout')``: conv weights ~ N(0, 2 / (k*k*c_out)), BN (1, 0),
    linear weights ~ U(+-1/sqrt(fan_in)) with zero bias."""
    for module in model.modules():
        if isinstance(module, nn.Conv2d):
            nn.init.kaiming_normal_(module.weight, mode="fan_out", nonlinearity="relu")
            if module.bias is not None:
                nn.init.zeros_(module.bias)
        elif isinstance(module, nn.BatchNorm2d):
            nn.init.ones_(module.weight)
            nn.init.zeros_(module.bias)
        elif isinstance(module, nn.Linear):
            bound = 1.0 / math.sqrt(module.weight.size(1))
            nn.init.uniform_(module.weight, -bound, bound)
            if module.bias is not None:
                nn.init.zeros_(module.bias)


def build_net(spec: NetSpec, num_classes: int = 1000) -> ProxylessNet:
    """The network described by `spec` (searched or released), freshly initialised."""
    return ProxylessNet(spec, num_classes)


# --- the spaces -------------------------------------------------------------------------------


@dataclass(frozen=True)
class MBConvSpaceConfig:
    """A ProxylessNAS MBConv-chain search space: the backbone geometry and the candidate set."""

    name: str
    input_size: int
    stem_width: int
    first_width: int
    widths: tuple[int, ...]
    depths: tuple[int, ...]
    strides: tuple[int, ...]
    head_width: int
    stem_stride: int = 2
    dropout: float = 0.0
    #: MBConv candidates on every edge (zero is added by the stride/width rule)
    mbconv_codes: tuple[str, ...] = MBCONV_CODES
    note: str = field(default="", compare=False)

    def __post_init__(self) -> None:
        for code in self.mbconv_codes:
            if candidate_op(code).is_zero:
                raise UsageError("list only MBConv candidates; zero is added where the block allows it")
        chain_slots(self.first_width, self.widths, self.depths, self.strides)  # validates the shape

    def slots(self) -> tuple[BlockSlot, ...]:
        return tuple(
            BlockSlot(s.stage, s.block, s.c_in, s.c_out, s.stride, self.mbconv_codes)
            for s in chain_slots(self.first_width, self.widths, self.depths, self.strides)
        )

    def net_spec(self, arch: ProxylessArch) -> NetSpec:
        return NetSpec(
            stem_width=self.stem_width,
            first_width=self.first_width,
            widths=self.widths,
            strides=self.strides,
            stages=arch.stages,
            head_width=self.head_width,
            dropout=self.dropout,
            stem_stride=self.stem_stride,
            input_size=self.input_size,
        )


#: the released ImageNet search space (imagenet_arch_search.py defaults; fact sheet Sec. 2.1)
IMAGENET_SPACE = MBConvSpaceConfig(
    name="proxyless-imagenet",
    input_size=224,
    stem_width=32,
    first_width=16,
    widths=(24, 40, 80, 96, 192, 320),
    depths=(4, 4, 4, 4, 4, 1),
    strides=(2, 2, 2, 1, 2, 1),
    head_width=1280,
    stem_stride=2,
    dropout=0.0,
    note="Cai et al. 2019, Sec. 4 / released search code: MobileNetV2 backbone, 21 searched edges",
)

CIFAR_WIDTH_MULT = 0.5
#: our CPU-scale reduction for 32x32 inputs (see the module docstring); not from the paper
CIFAR_SPACE = MBConvSpaceConfig(
    name="proxyless-cifar",
    input_size=32,
    stem_width=make_divisible(32 * CIFAR_WIDTH_MULT),
    first_width=make_divisible(16 * CIFAR_WIDTH_MULT),
    widths=tuple(make_divisible(w * CIFAR_WIDTH_MULT) for w in IMAGENET_SPACE.widths),
    depths=(2, 2, 2, 2, 2, 1),
    strides=(1, 2, 2, 1, 2, 1),
    head_width=make_divisible(1280 * CIFAR_WIDTH_MULT),
    stem_stride=1,
    dropout=0.0,
    note="nasrepro reduction for CIFAR-10 smoke/CPU runs: width x0.5, blocks 2,2,2,2,2,1, 8x downsampling",
)


class ProxylessSpace(Space):
    """The architectures of one `MBConvSpaceConfig`: one op code per searched block (edge)."""

    def __init__(self, config: MBConvSpaceConfig = IMAGENET_SPACE) -> None:
        self.config = config
        self.name = config.name
        self.slots = config.slots()

    # --- strings and validation ---

    def parse(self, text: str) -> ProxylessArch:
        return self.validate(ProxylessArch.parse(text), text)

    def validate(self, arch: ProxylessArch | str, text: str | None = None) -> ProxylessArch:
        """`arch` if it belongs to this space, else a `UsageError` naming the first problem."""
        arch = as_arch(arch)
        where = f"in {self.name} architecture {text if text is not None else str(arch)!r}"
        depths = self.config.depths
        if len(arch.stages) != len(depths):
            raise UsageError(
                f"{where}: expected {len(depths)} '|'-separated stages (blocks {depths}), got "
                f"{len(arch.stages)}; format {ARCH_FORMAT}"
            )
        for k, (stage, depth) in enumerate(zip(arch.stages, depths, strict=True), start=1):
            if len(stage) != depth:
                raise UsageError(
                    f"{where}: stage {k} has {depth} blocks, got {len(stage)} ({','.join(stage)})"
                )
        for slot, code in zip(self.slots, arch.ops, strict=True):
            if code not in slot.choices:
                why = (
                    " (zero only skips stride-1 equal-width blocks, i.e. not a stage's first block)"
                    if code == ZERO.code
                    else ""
                )
                raise UsageError(
                    f"{where}: {code!r} is not allowed at stage {slot.stage + 1} block {slot.block + 1}"
                    f"{why}; choose from {', '.join(slot.choices)}"
                )
        return arch

    def canonical(self, arch: ProxylessArch | str) -> ProxylessArch:
        """Each stage's zero blocks moved to its end (see the module docstring)."""
        arch = self.validate(arch)
        stages = []
        for stage in arch.stages:
            kept = [code for code in stage if code != ZERO.code]
            stages.append((*kept, *([ZERO.code] * (len(stage) - len(kept)))))
        return ProxylessArch(tuple(stages))

    # --- sampling and mutation ---

    def sample(self, rng: np.random.Generator) -> ProxylessArch:
        """Each edge uniform over its choices (uniform over raw encodings), then canonicalised."""
        return self.canonical(self.decode([int(rng.integers(len(slot.choices))) for slot in self.slots]))

    def mutate(self, arch: ProxylessArch | str, rng: np.random.Generator) -> ProxylessArch:
        """One edge (uniform) set to a different one of its choices (uniform); not canonicalised,
        so the edit distance is exactly one."""
        codes = list(self.encode(arch))
        edge = int(rng.integers(len(self.slots)))
        others = [i for i in range(len(self.slots[edge].choices)) if i != codes[edge]]
        codes[edge] = others[int(rng.integers(len(others)))]
        return self.decode(codes)

    def size(self) -> int:
        """Raw encodings: the product of the edges' choice counts (6**6 * 7**15 for ImageNet)."""
        return math.prod(len(slot.choices) for slot in self.slots)

    def num_distinct(self) -> int:
        """Distinct networks (canonical classes): per stage, the first block's 6 choices times the
        sequences of non-zero blocks that follow (zeros only pad the end)."""
        total = 1
        n = len(self.config.mbconv_codes)
        for depth in self.config.depths:
            total *= n * sum(n**i for i in range(depth))
        return total

    # --- the categorical view ---

    def fields(self) -> tuple[Field, ...]:
        return tuple(Field(slot.name, slot.choices, f"stage{slot.stage + 1}") for slot in self.slots)

    def encode(self, arch: ProxylessArch | str) -> tuple[int, ...]:
        arch = self.validate(arch)
        return tuple(slot.choices.index(code) for slot, code in zip(self.slots, arch.ops, strict=True))

    def decode(self, indices: Sequence[int]) -> ProxylessArch:
        indices = list(indices)
        if len(indices) != len(self.slots):
            raise UsageError(f"{self.name} has {len(self.slots)} fields, got {len(indices)} indices")
        codes = []
        for slot, index in zip(self.slots, indices, strict=True):
            if not 0 <= int(index) < len(slot.choices):
                raise UsageError(
                    f"{self.name}: index {index} out of range for {slot.name} ({len(slot.choices)} choices)"
                )
            codes.append(slot.choices[int(index)])
        stages, start = [], 0
        for depth in self.config.depths:
            stages.append(tuple(codes[start : start + depth]))
            start += depth
        return ProxylessArch(tuple(stages))

    # --- models ---

    def to_model(self, arch: ProxylessArch | str, task: Task) -> nn.Module:
        """The standalone network of `arch` at this space's widths, `task.num_classes` outputs
        (10 if the task has none); inputs are `config.input_size` square images."""
        num_classes = int(getattr(task, "num_classes", 10))
        return build_net(self.config.net_spec(self.validate(arch)), num_classes)

    def describe(self) -> dict[str, Any]:
        out = super().describe()
        config = asdict(self.config)
        config.pop("note")
        out.update(config=config, edges=len(self.slots), distinct=self.num_distinct(), format=ARCH_FORMAT)
        return out


for _config in (IMAGENET_SPACE, CIFAR_SPACE):
    if _config.name not in SPACES:
        SPACES.add(_config.name, functools.partial(ProxylessSpace, _config))


def mbconv_space(space: ProxylessSpace | str) -> ProxylessSpace:
    """A `ProxylessSpace` instance, or the one registered under that name."""
    if isinstance(space, ProxylessSpace):
        return space
    if isinstance(space, str):
        built = SPACES.get(space)()
        if not isinstance(built, ProxylessSpace):
            raise UsageError(
                f"space {space!r} is not a ProxylessNAS MBConv space; use proxyless-imagenet or proxyless-cifar"
            )
        return built
    raise UsageError(f"expected a ProxylessSpace or its name, got {type(space).__name__}")
