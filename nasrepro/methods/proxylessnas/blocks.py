"""The building blocks of ProxylessNAS's ImageNet space (Cai, Zhu & Han, ICLR 2019, Sec. 4 / App.).

* `MBConv` -- the mobile inverted bottleneck of MobileNetV2 that every candidate op is: 1x1 expand
  (omitted when the expansion ratio is 1) + BN + ReLU6, kxk depthwise conv (stride s, "same"
  padding) + BN + ReLU6, 1x1 linear projection + BN. The hidden width is ``round(in * e)`` with
  **no** rounding to a multiple of 8, as in the released ``MBInvertedConvLayer`` (NNI's hub space
  rounds with ``make_divisible(in * e, 8)``, which changes parameter counts).
* `ZeroLayer` -- the ``zero`` candidate: the edge computes nothing.
* `MobileInvertedResidualBlock` -- the released block rule: an identity shortcut exactly when the
  stride is 1 and the widths match, and a block whose op is `ZeroLayer` returns its input unchanged
  (so choosing ``zero`` on a block with a shortcut *skips the block*, which is how the space
  searches depth).
* `CANDIDATE_OPS` -- the candidate set by name (``3x3_MBConv3`` ... ``7x7_MBConv6``, ``zero``),
  generated from one (kernel x expansion) table.

BatchNorm uses momentum 0.1 and eps 1e-3, the released code's setting (fact sheet Sec. 2.1).
"""

from __future__ import annotations

import itertools
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass

import torch
from torch import nn

from nasrepro.errors import UsageError

BN_MOMENTUM = 0.1
BN_EPS = 1e-3

#: the searched kernel sizes and expansion ratios (Sec. 4: k in {3, 5, 7}, e in {3, 6})
KERNELS: tuple[int, ...] = (3, 5, 7)
EXPANSIONS: tuple[int, ...] = (3, 6)


def batch_norm(channels: int) -> nn.BatchNorm2d:
    """BatchNorm with the released momentum/eps."""
    return nn.BatchNorm2d(channels, momentum=BN_MOMENTUM, eps=BN_EPS)


def conv_bn_act(
    c_in: int, c_out: int, kernel: int, stride: int = 1, groups: int = 1, act: bool = True
) -> nn.Sequential:
    """conv (no bias, same padding) -> BN -> ReLU6 (if `act`): every convolution of an MBConv net."""
    layers: list[tuple[str, nn.Module]] = [
        ("conv", nn.Conv2d(c_in, c_out, kernel, stride, kernel // 2, groups=groups, bias=False)),
        ("bn", batch_norm(c_out)),
    ]
    if act:
        layers.append(("act", nn.ReLU6(inplace=True)))
    return nn.Sequential(OrderedDict(layers))


class MBConv(nn.Module):
    """Mobile inverted bottleneck (MobileNetV2, Sandler et al. 2018), ProxylessNAS's only op family."""

    def __init__(self, c_in: int, c_out: int, kernel: int, stride: int, expand: int) -> None:
        super().__init__()
        if kernel % 2 != 1 or stride not in (1, 2) or expand < 1:
            raise UsageError(
                f"MBConv needs an odd kernel, stride 1 or 2 and expansion >= 1; got k={kernel}, "
                f"s={stride}, e={expand}"
            )
        self.c_in, self.c_out, self.kernel, self.stride, self.expand = c_in, c_out, kernel, stride, expand
        hidden = round(c_in * expand)  # no make_divisible: the released MBInvertedConvLayer
        self.hidden = hidden
        self.inverted_bottleneck = conv_bn_act(c_in, hidden, 1) if expand != 1 else None
        self.depth_conv = conv_bn_act(hidden, hidden, kernel, stride, groups=hidden)
        self.point_linear = conv_bn_act(hidden, c_out, 1, act=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.inverted_bottleneck is not None:
            x = self.inverted_bottleneck(x)
        return self.point_linear(self.depth_conv(x))

    def extra_repr(self) -> str:
        return f"{self.c_in}->{self.c_out}, k={self.kernel}, s={self.stride}, e={self.expand}"


class ZeroLayer(nn.Module):
    """The ``zero`` candidate: its output is all zeros (spatially strided like the edge).

    Inside a `MobileInvertedResidualBlock` it is never called: the block returns its input instead
    (``x + 0``), which is what the released ``MobileInvertedResidualBlock.forward`` does.
    """

    def __init__(self, stride: int = 1) -> None:
        super().__init__()
        self.stride = stride

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x[:, :, :: self.stride, :: self.stride].mul(0.0)


def is_zero(op: nn.Module) -> bool:
    return isinstance(op, ZeroLayer)


class MobileInvertedResidualBlock(nn.Module):
    """One block of the chain: ``op(x) + x`` with a shortcut, ``op(x)`` without, ``x`` for zero.

    The shortcut exists exactly when ``stride == 1`` and ``c_in == c_out`` (MobileNetV2's rule, kept
    by the released code); ``zero`` is only legal on such blocks, where it removes the block.
    """

    def __init__(
        self, op: nn.Module, c_in: int, c_out: int, stride: int, shortcut: bool | None = None
    ) -> None:
        super().__init__()
        # `shortcut=False` forces none (the released net's fixed first block never has one)
        self.has_shortcut = has_shortcut(c_in, c_out, stride) if shortcut is None else shortcut
        if self.has_shortcut and not has_shortcut(c_in, c_out, stride):
            raise UsageError(f"an identity shortcut needs stride 1 and equal widths, got {c_in}->{c_out}")
        if is_zero(op) and not self.has_shortcut:
            raise UsageError(
                f"the zero op needs a stride-1 block with equal widths (it skips the block); this "
                f"block is {c_in}->{c_out} with stride {stride}"
            )
        self.op = op

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if is_zero(self.op):
            return x
        out = self.op(x)
        return out + x if self.has_shortcut else out


def has_shortcut(c_in: int, c_out: int, stride: int) -> bool:
    return stride == 1 and c_in == c_out


# --- the candidate set ------------------------------------------------------------------------


@dataclass(frozen=True)
class OpSpec:
    """One candidate op: its released name (``5x5_MBConv3``), short code (``5E3``) and build rule.

    ``kernel`` and ``expand`` are None for ``zero``.
    """

    name: str
    code: str
    kernel: int | None
    expand: int | None

    @property
    def is_zero(self) -> bool:
        return self.kernel is None

    def build(self, c_in: int, c_out: int, stride: int) -> nn.Module:
        if self.kernel is None or self.expand is None:
            return ZeroLayer(stride)
        return MBConv(c_in, c_out, self.kernel, stride, self.expand)


def _mbconv_spec(kernel: int, expand: int) -> OpSpec:
    return OpSpec(f"{kernel}x{kernel}_MBConv{expand}", f"{kernel}E{expand}", kernel, expand)


#: the six MBConv candidates, in the released candidate order (k-major, then e)
MBCONV_OPS: tuple[OpSpec, ...] = tuple(_mbconv_spec(k, e) for k, e in itertools.product(KERNELS, EXPANSIONS))
ZERO = OpSpec("zero", "Z", None, None)
#: released name -> candidate (the MixedEdge candidate list of the search space)
CANDIDATE_OPS: dict[str, OpSpec] = {op.name: op for op in (*MBCONV_OPS, ZERO)}
#: short code (as in architecture strings) -> candidate
OPS_BY_CODE: dict[str, OpSpec] = {op.code: op for op in CANDIDATE_OPS.values()}


def candidate_op(name_or_code: str) -> OpSpec:
    """The candidate called `name_or_code` (released name like ``5x5_MBConv3`` or code like ``5E3``)."""
    op = CANDIDATE_OPS.get(name_or_code) or OPS_BY_CODE.get(name_or_code)
    if op is None:
        raise UsageError(
            f"unknown ProxylessNAS op {name_or_code!r}; choose a name from "
            f"{', '.join(CANDIDATE_OPS)} or a code from {', '.join(OPS_BY_CODE)}"
        )
    return op


def build_candidate(name_or_code: str) -> Callable[[int, int, int], nn.Module]:
    """A factory ``(c_in, c_out, stride) -> module`` for one candidate (what a mixed edge holds)."""
    return candidate_op(name_or_code).build
