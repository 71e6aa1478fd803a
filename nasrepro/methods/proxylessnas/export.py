"""Derived and released MBConv nets <-> the released ``net.config`` JSON (``ProxylessNASNets.config``).

The authors' model zoo ships every network as a ``net.config`` file that
``ProxylessNASNets.build_from_config`` turns back into a model, and the search script writes the derived
network in the same form (``convert_to_normal_net`` then ``net.config``). Exporting our derived
architectures in that format lets a result of this suite be trained or deployed with the released code,
and importing it lets a released or third-party config be rebuilt here (`spec_from_config`).

The format, from the released ``proxyless_nas/layers.py`` and ``nas_modules.py``:

* ``first_conv``: ``ConvLayer`` 3x3, stride 2 (1 for our 32x32 space), ReLU6, ``weight_bn_act``;
* ``blocks``: ``MobileInvertedResidualBlock`` = ``mobile_inverted_conv`` (``MBInvertedConvLayer`` with
  in/out channels, kernel, stride, expand ratio; or ``ZeroLayer`` with its stride) and ``shortcut``
  (``IdentityLayer`` on stride-1 equal-width blocks, else null; the first block never has one);
* ``feature_mix_layer``: ``ConvLayer`` 1x1, ReLU6; ``classifier``: ``LinearLayer`` with the dropout rate;
* ``bn``: BatchNorm momentum and eps.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from nasrepro.atomic import atomic_write_text
from nasrepro.errors import UsageError
from nasrepro.methods.proxylessnas.blocks import BN_EPS, BN_MOMENTUM, ZERO, candidate_op, has_shortcut
from nasrepro.methods.proxylessnas.spaces import NetSpec, mbconv_space
from nasrepro.methods.proxylessnas.tools import UsageParser, parse

_OPS_ORDER = "weight_bn_act"


def _conv(c_in: int, c_out: int, kernel: int, stride: int) -> dict[str, Any]:
    return {
        "name": "ConvLayer", "kernel_size": kernel, "stride": stride, "dilation": 1, "groups": 1,
        "bias": False, "has_shuffle": False, "in_channels": c_in, "out_channels": c_out, "use_bn": True,
        "act_func": "relu6", "dropout_rate": 0, "ops_order": _OPS_ORDER,
    }  # fmt: skip


def _identity(channels: int) -> dict[str, Any]:
    return {
        "name": "IdentityLayer", "in_channels": channels, "out_channels": channels, "use_bn": False,
        "act_func": None, "dropout_rate": 0, "ops_order": _OPS_ORDER,
    }  # fmt: skip


def _mbconv(c_in: int, c_out: int, kernel: int, stride: int, expand: int) -> dict[str, Any]:
    return {
        "name": "MBInvertedConvLayer", "in_channels": c_in, "out_channels": c_out,
        "kernel_size": kernel, "stride": stride, "expand_ratio": expand,
    }  # fmt: skip


def _block(op: dict[str, Any], shortcut: dict[str, Any] | None) -> dict[str, Any]:
    return {"name": "MobileInvertedResidualBlock", "mobile_inverted_conv": op, "shortcut": shortcut}


def net_config(spec: NetSpec, num_classes: int = 1000) -> dict[str, Any]:
    """The released ``ProxylessNASNets.config`` of the network `spec` describes."""
    blocks = [
        _block(_mbconv(spec.stem_width, spec.first_width, spec.first_kernel, 1, spec.first_expand), None)
    ]
    for slot, code in zip(spec.slots(), spec.arch.ops, strict=True):
        op = candidate_op(code)
        shortcut = _identity(slot.c_in) if has_shortcut(slot.c_in, slot.c_out, slot.stride) else None
        if op.is_zero:
            blocks.append(_block({"name": "ZeroLayer", "stride": slot.stride}, shortcut))
        else:
            blocks.append(_block(_mbconv(slot.c_in, slot.c_out, op.kernel, slot.stride, op.expand), shortcut))  # type: ignore[arg-type]
    return {
        "name": "ProxylessNASNets",
        "bn": {"momentum": BN_MOMENTUM, "eps": BN_EPS},
        "first_conv": _conv(spec.in_channels, spec.stem_width, 3, spec.stem_stride),
        "blocks": blocks,
        "feature_mix_layer": _conv(spec.widths[-1], spec.head_width, 1, 1),
        "classifier": {
            "name": "LinearLayer",
            "in_features": spec.head_width,
            "out_features": num_classes,
            "bias": True,
            "use_bn": False,
            "act_func": None,
            "dropout_rate": spec.dropout,
            "ops_order": _OPS_ORDER,
        },  # fmt: skip
    }


def _get(config: dict[str, Any], key: str, where: str) -> Any:
    if not isinstance(config, dict) or key not in config:
        raise UsageError(f"ProxylessNASNets config: {where} has no {key!r}; is this a released net.config?")
    return config[key]


def _block_geometry(block: dict[str, Any], index: int) -> tuple[int | None, int | None, int, str]:
    """(c_in, c_out, stride, code) of one block; a zero block's widths come from its shortcut."""
    where = f"block {index}"
    op = _get(block, "mobile_inverted_conv", where)
    name = _get(op, "name", where)
    if name == "ZeroLayer":
        shortcut = block.get("shortcut") or {}
        width = shortcut.get("in_channels")
        return width, width, int(_get(op, "stride", where)), ZERO.code
    if name != "MBInvertedConvLayer":
        raise UsageError(
            f"ProxylessNASNets config: {where} is a {name}; only MBInvertedConvLayer/ZeroLayer fit"
        )
    field = {
        key: int(_get(op, key, where)) for key in ("in_channels", "out_channels", "kernel_size", "stride")
    }
    code = f"{field['kernel_size']}E{int(_get(op, 'expand_ratio', where))}"
    return field["in_channels"], field["out_channels"], field["stride"], code


def spec_from_config(config: dict[str, Any], input_size: int = 224) -> NetSpec:
    """The `NetSpec` of a released ``net.config`` (stages are the runs of equal output width).

    Raises `UsageError` naming the block when the config is not an MBConv chain this suite can build.
    """
    if _get(config, "name", "the top level") != "ProxylessNASNets":
        raise UsageError(f"ProxylessNASNets config: top-level name is {config['name']!r}")
    first_conv = _get(config, "first_conv", "the top level")
    blocks: Sequence[dict[str, Any]] = _get(config, "blocks", "the top level")
    if len(blocks) < 2:
        raise UsageError(
            "ProxylessNASNets config: needs the fixed first block and at least one searched block"
        )
    stem = int(_get(first_conv, "out_channels", "first_conv"))
    c_in, first_width, _, first_code = _block_geometry(blocks[0], 0)
    if first_code == ZERO.code or c_in != stem:
        raise UsageError("ProxylessNASNets config: block 0 must be an MBConv from the stem's width")
    first_op = blocks[0]["mobile_inverted_conv"]  # an MBInvertedConvLayer: checked just above
    first_kernel, first_expand = int(first_op["kernel_size"]), int(first_op["expand_ratio"])
    widths: list[int] = []
    strides: list[int] = []
    stages: list[list[str]] = []
    prev = first_width
    for index, block in enumerate(blocks[1:], start=1):
        b_in, b_out, stride, code = _block_geometry(block, index)
        b_in = prev if b_in is None else b_in
        b_out = prev if b_out is None else b_out
        if b_in != prev:
            raise UsageError(
                f"ProxylessNASNets config: block {index} takes {b_in} channels, previous gives {prev}"
            )
        if not stages or b_out != widths[-1]:
            widths.append(b_out)
            strides.append(stride)
            stages.append([])
        elif stride != 1:
            raise UsageError(f"ProxylessNASNets config: block {index} has stride {stride} inside a stage")
        stages[-1].append(code)
        prev = b_out
    mix = _get(config, "feature_mix_layer", "the top level")
    classifier = _get(config, "classifier", "the top level")
    return NetSpec(
        stem_width=stem,
        first_width=first_width,  # type: ignore[arg-type]
        widths=tuple(widths),
        strides=tuple(strides),
        stages=tuple(tuple(s) for s in stages),
        head_width=int(_get(mix, "out_channels", "feature_mix_layer")),
        dropout=float(classifier.get("dropout_rate", 0.0)),
        stem_stride=int(_get(first_conv, "stride", "first_conv")),
        input_size=input_size,
        first_kernel=first_kernel,
        first_expand=first_expand,
        in_channels=int(_get(first_conv, "in_channels", "first_conv")),
    )


def write_net_config(spec: NetSpec, path: str | Path, num_classes: int = 1000) -> Path:
    """Write `spec` as a released-format ``net.config`` (atomically)."""
    path = Path(path)
    atomic_write_text(path, json.dumps(net_config(spec, num_classes), indent=4) + "\n")
    return path


def spec_from_record(record_path: str | Path) -> NetSpec:
    """The derived network of a ProxylessNAS search record over an MBConv space."""
    path = Path(record_path)
    if not path.is_file():
        raise UsageError(f"no search record at {path}; give the JSON record a search wrote under --out")
    record = json.loads(path.read_text())
    space = mbconv_space(str((record.get("space") or {}).get("name")))
    return space.config.net_spec(space.validate(record["best_arch"]))


def export_config(
    out: str | Path,
    *,
    record: str | Path | None = None,
    space: str = "proxyless-imagenet",
    arch: str | None = None,
    num_classes: int = 1000,
) -> Path:
    """`nasrepro proxylessnas export-config`: a search record's (or an architecture's) net.config."""
    if (record is None) == (arch is None):
        raise UsageError("export-config needs --record RECORD.json or --arch ARCH (with --space), not both")
    if num_classes < 1:
        raise UsageError(f"--num-classes must be >= 1, got {num_classes}")
    if record is not None:
        spec = spec_from_record(record)
    else:
        resolved = mbconv_space(space)
        spec = resolved.config.net_spec(resolved.validate(arch))  # type: ignore[arg-type]
    return write_net_config(spec, out, num_classes)


def main(argv: Sequence[str]) -> int:
    """``export-config --out FILE (--record RECORD.json | --space SPACE --arch ARCH) [--num-classes N]``."""
    parser = UsageParser(
        prog="nasrepro proxylessnas export-config",
        description="Write an architecture as the released ProxylessNAS net.config JSON.",
        exit_on_error=False,
    )
    parser.add_argument("--out", required=True, help="the net.config file to write")
    parser.add_argument("--record", default=None, help="a ProxylessNAS search record (its best_arch)")
    parser.add_argument("--space", default="proxyless-imagenet", help="the MBConv space of --arch")
    parser.add_argument("--arch", default=None, help="an architecture string, e.g. 5E3,3E3,Z,Z|...")
    parser.add_argument("--num-classes", type=int, default=1000)
    args = parse(parser, argv[1:] if argv and argv[0] == "export-config" else argv)
    path = export_config(
        args.out, record=args.record, space=args.space, arch=args.arch, num_classes=args.num_classes
    )
    print(f"wrote {path}")
    return 0
