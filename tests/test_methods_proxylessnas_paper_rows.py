"""ProxylessNAS paper rows as data (issue 17 item 1): every row resolves to a search configuration with
the cost kind, target, hold-out and retraining recipe of the released code, and prints its command."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from nasrepro.cli import build_parser
from nasrepro.harness.oneshot import search_preset
from nasrepro.harness.recipe import TrainRecipe
from nasrepro.methods.proxylessnas import paper_rows
from nasrepro.methods.proxylessnas.paper_rows import PAPER_ROWS, RELEASED_RETRAIN, main, rows_by_name
from nasrepro.methods.proxylessnas.presets import SEARCH_PRESETS
from nasrepro.methods.proxylessnas.released import RELEASED_IMAGENET
from nasrepro.methods.proxylessnas.search import (
    ProxylessConfig,
    ProxylessNAS,
    hold_out,
    resolve_settings,
    space_setup,
)
from nasrepro.spaces import get_space
from nasrepro.tasks import get_task


def resolved(row: paper_rows.PaperRow) -> tuple[ProxylessConfig, TrainRecipe, str | None]:
    """The row's command parsed by the real CLI, then its method config resolved as the search does;
    with the recipe of the search's data loaders (its hold-out)."""
    args = build_parser().parse_args(row.command("results")[1:])["search"]
    assert args.method == "proxylessnas" and args.task == row.task and args.preset == "paper"
    assert args.deterministic is row.deterministic
    cfg = ProxylessConfig(**args.method_config)
    task = get_task(row.task)
    setup = space_setup(get_space(ProxylessNAS.default_space_for(row.task)))
    assert setup is not None
    _, _, regularizer = resolve_settings(cfg, SEARCH_PRESETS.size(setup.family, "paper"))
    size = SEARCH_PRESETS.size(setup.family, "paper")
    search_recipe = search_preset(setup.data_task(task), "paper", size, hold_out(setup, cfg)).recipe
    return cfg, search_recipe, regularizer


@pytest.mark.parametrize("row", PAPER_ROWS, ids=lambda r: r.name)
def test_every_row_resolves_to_its_cost_target_and_hold_out(row: paper_rows.PaperRow) -> None:
    cfg, search_recipe, regularizer = resolved(row)
    kind = "none" if regularizer is None and cfg.algorithm == "grad" else cfg.cost
    assert kind == row.cost_kind
    assert cfg.ref == row.ref
    # the hold-out: of the search's architecture steps, then of the retraining's validation
    assert search_recipe.valid_size == row.hold_out
    assert trained(row).valid_size == row.hold_out
    assert row.configuration()["trained_recipe"]["valid_size"] == row.hold_out  # what --dry-run prints
    if row.task == "imagenet":
        assert row.hold_out == 50_000 and {"imagenet", "cuda"} <= set(row.needs)
        assert row.retrain is not None and row.retrain.epochs == 300
    if row.cost_kind == "latency" and row.ref is not None:  # the mobile rows: released table, 80 ms
        assert row.ref == 80.0 and cfg.latency_table == "$" + paper_rows.MOBILE_LUT_ENV
        assert "mobile_lut" in row.needs


def test_released_retraining_recipe() -> None:
    r = RELEASED_RETRAIN
    assert (r.epochs, r.batch_size, r.lr, r.schedule, r.nesterov) == (300, 256, 0.05, "cosine-step", True)
    assert r.valid_size == 50_000
    assert (r.weight_decay, r.no_decay_keys, r.label_smoothing) == (4e-5, "bn", 0.1)
    assert r.dropout == RELEASED_IMAGENET["proxyless_mobile"].dropout == 0.1
    gpu = rows_by_name()["imagenet-proxyless-gpu"]
    assert gpu.retrain is not None and gpu.retrain.dropout == RELEASED_IMAGENET["proxyless_gpu"].dropout
    assert gpu.method_config["latency_device"] == "cuda" and gpu.method_config["latency_batch_size"] == 8
    assert gpu.deterministic is False
    assert {r.name for r in PAPER_ROWS} >= {
        "cifar10-proxyless-g", "imagenet-proxyless-g-mobile", "imagenet-proxyless-g-nolat",
        "imagenet-proxyless-r-mobile", "imagenet-proxyless-gpu",
    }  # fmt: skip
    assert rows_by_name()["imagenet-proxyless-r-mobile"].method_config["algorithm"] == "rl"


def trained(row: paper_rows.PaperRow, preset: str = "paper"):
    """The recipe the runner trains the row's derived network with (its command through the real CLI
    and the real resolution)."""
    from nasrepro.app.resolve import resolve_search

    args = build_parser().parse_args(row.command("results")[1:])["search"]
    return resolve_search("proxylessnas", row.task, None, preset, 1, args.method_config, None).preset.recipe


RETRAIN_FIELDS = (
    "epochs", "batch_size", "optimizer", "lr", "schedule", "momentum", "nesterov", "weight_decay",
    "no_decay_keys", "label_smoothing", "dropout", "color_jitter", "valid_size",
)  # fmt: skip


@pytest.mark.parametrize("row", [r for r in PAPER_ROWS if r.task == "imagenet"], ids=lambda r: r.name)
def test_imagenet_rows_train_with_the_released_retraining_recipe(row: paper_rows.PaperRow) -> None:
    recipe = trained(row)
    assert row.retrain is not None
    assert {f: getattr(recipe, f) for f in RETRAIN_FIELDS} == {
        f: getattr(row.retrain, f) for f in RETRAIN_FIELDS
    }
    expected = {f: getattr(RELEASED_RETRAIN, f) for f in RETRAIN_FIELDS}
    if row.name == "imagenet-proxyless-gpu":
        expected["dropout"] = RELEASED_IMAGENET["proxyless_gpu"].dropout
    assert {f: getattr(recipe, f) for f in RETRAIN_FIELDS} == expected
    assert recipe.color_jitter == (0.4, 0.4, 0.4, 0.1) and recipe.milestones == ()
    assert row.configuration()["trained_recipe"] == recipe.to_dict()  # what --dry-run prints
    # BN momentum / eps are the network's own, as the released recipe sets them
    space = get_space("proxyless-imagenet")
    net = space.to_model(space.sample(np.random.default_rng(0)), get_task("imagenet"))
    norms = [m for m in net.modules() if isinstance(m, torch.nn.BatchNorm2d)]
    assert {(m.momentum, m.eps) for m in norms} == {(RELEASED_RETRAIN.bn_momentum, RELEASED_RETRAIN.bn_eps)}
    # the released recipe applies at paper only; an explicit retrain_dropout at every preset
    cpu = get_task("imagenet").preset("cpu").recipe
    assert trained(row, "cpu") == cpu.replace(dropout=row.method_config.get("retrain_dropout", cpu.dropout))


def test_the_cifar_row_adds_cutout_to_the_task_recipe() -> None:
    row = rows_by_name()["cifar10-proxyless-g"]
    assert trained(row) == get_task("cifar10").preset("paper").recipe.replace(cutout=16)
    assert row.configuration()["trained_recipe"]["cutout"] == 16
    assert trained(row).valid_size == row.hold_out == 5_000 and trained(row).schedule == "multistep"


def test_dry_run_prints_every_row(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["--dry-run", "--out", "OUT"]) == 0
    out = capsys.readouterr().out
    for row in PAPER_ROWS:
        assert f"# {row.name}: " in out and f"--tag {row.tag}" in out
    assert out.count("nasrepro search") == len(PAPER_ROWS) and out.count("# configuration: ") == len(
        PAPER_ROWS
    )


def test_rows_this_machine_cannot_run_say_why(
    monkeypatch: pytest.MonkeyPatch, tmp_path, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("NASREPRO_DATA", str(tmp_path))  # no ImageNet here
    monkeypatch.delenv(paper_rows.MOBILE_LUT_ENV, raising=False)
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    ran: list[list[str]] = []
    monkeypatch.setattr(paper_rows.subprocess, "run", lambda cmd, check: ran.append(cmd))
    assert main(["--rows", "imagenet-proxyless-g-mobile,imagenet-proxyless-gpu"]) == 1
    err = capsys.readouterr().err
    assert not ran
    assert "ImageNet with its train/ split" in err and "a CUDA GPU" in err and "mobile_trim.yaml" in err
