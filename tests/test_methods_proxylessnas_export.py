"""Released ``net.config`` export and import (`proxylessnas.export`): the format of the authors' zoo."""

from __future__ import annotations

import copy
import json
from pathlib import Path

import pytest

from nasrepro.cli import main
from nasrepro.errors import UsageError
from nasrepro.harness.metrics import count_params
from nasrepro.methods.proxylessnas.export import net_config, spec_from_config
from nasrepro.methods.proxylessnas.released import RELEASED_IMAGENET
from nasrepro.methods.proxylessnas.spaces import CIFAR_SPACE, ProxylessArch, build_net

#: a two-stage net written by hand in the released format (not by our exporter): stem 8, first
#: block 8->4 (3x3, e1), stage 1 = 6 channels stride 2 [5x5 e3, zero], stage 2 = 10 channels [7x7 e6]
HAND_WRITTEN = {
    "name": "ProxylessNASNets",
    "bn": {"momentum": 0.1, "eps": 0.001},
    "first_conv": {"name": "ConvLayer", "kernel_size": 3, "stride": 2, "in_channels": 3, "out_channels": 8},
    "blocks": [
        {"name": "MobileInvertedResidualBlock", "shortcut": None, "mobile_inverted_conv": {
            "name": "MBInvertedConvLayer", "in_channels": 8, "out_channels": 4, "kernel_size": 3, "stride": 1,
            "expand_ratio": 1}},
        {"name": "MobileInvertedResidualBlock", "shortcut": None, "mobile_inverted_conv": {
            "name": "MBInvertedConvLayer", "in_channels": 4, "out_channels": 6, "kernel_size": 5, "stride": 2,
            "expand_ratio": 3}},
        {"name": "MobileInvertedResidualBlock", "mobile_inverted_conv": {"name": "ZeroLayer", "stride": 1},
         "shortcut": {"name": "IdentityLayer", "in_channels": 6, "out_channels": 6}},
        {"name": "MobileInvertedResidualBlock", "shortcut": None, "mobile_inverted_conv": {
            "name": "MBInvertedConvLayer", "in_channels": 6, "out_channels": 10, "kernel_size": 7, "stride": 1,
            "expand_ratio": 6}},
    ],
    "feature_mix_layer": {"name": "ConvLayer", "kernel_size": 1, "stride": 1, "in_channels": 10, "out_channels": 32},
    "classifier": {"name": "LinearLayer", "in_features": 32, "out_features": 5, "dropout_rate": 0.2},
}  # fmt: skip


@pytest.mark.parametrize("name", sorted(RELEASED_IMAGENET))
def test_released_nets_round_trip(name: str) -> None:
    spec = RELEASED_IMAGENET[name]
    config = json.loads(json.dumps(net_config(spec)))  # through JSON, as a file would be
    back = spec_from_config(config)
    assert back == spec
    assert count_params(build_net(back)) == count_params(build_net(spec))


def test_mobile_config_has_the_released_structure() -> None:
    config = net_config(RELEASED_IMAGENET["proxyless_mobile"])
    blocks = config["blocks"]
    assert len(blocks) == 22  # the fixed first block + 21 searched
    first = blocks[0]
    assert first["shortcut"] is None
    assert first["mobile_inverted_conv"] == {
        "name": "MBInvertedConvLayer", "in_channels": 32, "out_channels": 16, "kernel_size": 3, "stride": 1,
        "expand_ratio": 1,
    }  # fmt: skip
    # stage 1 of the mobile net is 5E3,3E3,Z,Z: blocks 3 and 4 are skipped behind identity shortcuts
    assert blocks[1]["shortcut"] is None and blocks[1]["mobile_inverted_conv"]["stride"] == 2
    for block in blocks[3:5]:
        assert block["mobile_inverted_conv"] == {"name": "ZeroLayer", "stride": 1}
        assert block["shortcut"]["name"] == "IdentityLayer" and block["shortcut"]["in_channels"] == 32
    assert (
        config["feature_mix_layer"]["in_channels"] == 320
        and config["feature_mix_layer"]["out_channels"] == 1280
    )
    assert config["classifier"]["dropout_rate"] == 0.1 and config["classifier"]["out_features"] == 1000
    assert config["bn"] == {"momentum": 0.1, "eps": 0.001}


def test_hand_written_config_is_read_block_by_block() -> None:
    spec = spec_from_config(copy.deepcopy(HAND_WRITTEN), input_size=32)
    assert (spec.stem_width, spec.first_width, spec.head_width) == (8, 4, 32)
    assert spec.widths == (6, 10) and spec.strides == (2, 1)
    assert spec.stages == (("5E3", "Z"), ("7E6",))
    assert spec.dropout == 0.2 and spec.stem_stride == 2
    net = build_net(spec, num_classes=5)
    assert net.classifier.linear.out_features == 5


@pytest.mark.parametrize(
    "edit, needle",
    [
        (lambda c: c.update(name="MobileNetV2"), "top-level name"),
        (lambda c: c.pop("blocks"), "no 'blocks'"),
        (
            lambda c: c["blocks"][1]["mobile_inverted_conv"].update(name="PoolingLayer"),
            "block 1 is a PoolingLayer",
        ),
        (lambda c: c["blocks"][3]["mobile_inverted_conv"].update(in_channels=7), "block 3 takes 7 channels"),
        (
            lambda c: c["blocks"][1]["mobile_inverted_conv"].pop("expand_ratio"),
            "block 1 has no 'expand_ratio'",
        ),
    ],
)
def test_bad_configs_name_the_block(edit, needle: str) -> None:
    config = copy.deepcopy(HAND_WRITTEN)
    edit(config)
    with pytest.raises(UsageError, match=needle):
        spec_from_config(config)


def test_cli_exports_a_search_records_best_architecture(tmp_path: Path, capsys) -> None:
    arch = "3E3,5E3|3E3,7E3|7E6,Z|3E3,Z|3E6,3E6|3E6"
    record = tmp_path / "record.json"
    record.write_text(json.dumps({"space": {"name": CIFAR_SPACE.name}, "best_arch": arch}))
    out = tmp_path / "net.config"
    assert (
        main(
            [
                "proxylessnas",
                "export-config",
                "--record",
                str(record),
                "--out",
                str(out),
                "--num-classes",
                "10",
            ]
        )
        == 0
    )
    spec = spec_from_config(json.loads(out.read_text()), input_size=32)
    assert spec == CIFAR_SPACE.net_spec(ProxylessArch.parse(arch))
    assert "wrote" in capsys.readouterr().out
