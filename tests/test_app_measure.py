"""`nasrepro measure` (nasrepro.app.measure), called through a parser built here as cli.py builds its own."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from jsonargparse import ArgumentParser

from nasrepro.app.measure import add_measure_parser, cmd_measure, parse_shape
from nasrepro.errors import UsageError
from nasrepro.harness.memory import measure_memory
from nasrepro.tasks.models.resnet import resnet20


def _measure(*argv: str) -> int:
    parser = ArgumentParser(exit_on_error=False)
    add_measure_parser(parser.add_subcommands(dest="command"))
    return cmd_measure(parser.parse_args(["measure", *argv])["measure"])


def test_reference_arch_prints_and_writes_the_numbers(tmp_path, capsys):
    out = tmp_path / "sub" / "resnet20.json"
    assert _measure("--task", "cifar10", "--arch", "resnet20", "--json", str(out)) == 0
    printed = capsys.readouterr().out
    assert "parameters                        269,722" in printed
    for row in ("FLOPs", "weights", "inference", "training step", "total", "MemNAS MB = 4 bytes"):
        assert row in printed
    record = json.loads(out.read_text())
    expected = measure_memory(resnet20(10), (torch.randn(1, 3, 32, 32),)).to_dict()
    assert {k: record[k] for k in expected} == expected  # the printed network is the reference one
    assert (record["task"], record["arch"], record["input"]) == ("cifar10", "resnet20", [1, 3, 32, 32])
    assert [p.name for p in out.parent.iterdir()] == ["resnet20.json"]  # no temporary file left


def test_space_arch_is_built_by_the_tasks_space(tmp_path):
    from nasrepro.spaces import get_space
    from nasrepro.tasks import get_task

    space, task = get_space("nasbench201"), get_task("nasbench201/cifar10")
    arch = space.sample(np.random.default_rng(3))
    out = tmp_path / "nb201.json"
    assert _measure("--task", "nasbench201/cifar10", "--arch", str(arch), "--json", str(out)) == 0
    model = space.to_model(arch, task)
    record = json.loads(out.read_text())
    assert record["params"] == sum(p.numel() for p in model.parameters())
    assert record["peak_inference_bytes"] == measure_memory(model, task.example_input(1)).peak_inference_bytes


def test_torchvision_model(tmp_path, capsys):
    out = tmp_path / "mbv2.json"
    assert _measure("--model", "torchvision:mobilenet_v2", "--input", "1x3x64x64", "--json", str(out)) == 0
    record = json.loads(out.read_text())
    assert record["params"] == 3_504_872  # torchvision's MobileNet_V2_Weights num_params
    assert record["model"] == "torchvision:mobilenet_v2" and record["input"] == [1, 3, 64, 64]
    assert record["total_bytes"] == record["weight_bytes"] + record["peak_inference_bytes"]
    assert "3,504,872" in capsys.readouterr().out


def test_parse_shape():
    assert parse_shape("1x3x224x224") == (1, 3, 224, 224)
    assert parse_shape("8") == (8,)


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (
            ["--model", "torchvision:mobilenet_v9", "--input", "1x3x32x32"],
            "unknown torchvision model 'mobilenet_v9'",
        ),
        (["--model", "torchvision:resnet18", "--input", "1x3xfoo"], "--input takes a shape"),
        (["--model", "torchvision:resnet18", "--input", "0x3x32x32"], "--input takes a shape"),
        (["--model", "torchvision:resnet18", "--input", "1x3x32x32x"], "--input takes a shape"),
        (["--model", "torchvision:resnet18", "--input", "1x5x32x32"], "does not fit torchvision:resnet18"),
        (["--model", "torchvision:resnet18", "--input", "2x7"], "does not fit torchvision:resnet18"),
        # inference works, but a training step's BatchNorm cannot normalise one value per channel
        (["--model", "torchvision:mobilenet_v2", "--input", "1x3x32x32"], "does not fit .* in training"),
        (["--model", "torchvision:resnet18"], "--model needs --input"),
        (["--model", "resnet18", "--input", "1x3x32x32"], "--model takes torchvision:NAME"),
        (["--model", "torchvision:resnet18", "--task", "cifar10", "--input", "1x3x32x32"], "not both"),
        (["--task", "cifar10"], "give --task T --arch A"),
        (["--task", "cifar10", "--arch", "resnet20", "--input", "1x3x32x32"], "--input goes with --model"),
        (["--task", "cifar10", "--arch", "resnet21"], "not a reference architecture of cifar10"),
        (["--task", "no-such-task", "--arch", "resnet20"], "unknown task"),
    ],
)
def test_bad_input_is_one_line_exit_2_and_writes_nothing(tmp_path, argv, message):
    out = tmp_path / "m.json"
    with pytest.raises(UsageError, match=message) as caught:
        _measure(*argv, "--json", str(out))
    assert caught.value.exit_code == 2
    assert "\n" not in str(caught.value)
    assert list(tmp_path.iterdir()) == []


def test_json_to_a_folder_is_refused(tmp_path):
    with pytest.raises(UsageError, match="is a folder"):
        _measure("--task", "cifar10", "--arch", "resnet20", "--json", str(tmp_path))
