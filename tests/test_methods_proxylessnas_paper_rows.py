"""ProxylessNAS paper rows as data (issue 17 item 1): every row resolves to a search configuration with
the cost kind, target, hold-out and retraining recipe of the released code, and prints its command."""

from __future__ import annotations

import pytest
import torch

from nasrepro.cli import build_parser
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


def resolved(row: paper_rows.PaperRow) -> tuple[ProxylessConfig, dict, str | None]:
    """The row's command parsed by the real CLI, then its method config resolved as the search does."""
    args = build_parser().parse_args(row.command("results")[1:])["search"]
    assert args.method == "proxylessnas" and args.task == row.task and args.preset == "paper"
    assert args.deterministic is row.deterministic
    cfg = ProxylessConfig(**args.method_config)
    task = get_task(row.task)
    setup = space_setup(get_space(ProxylessNAS.default_space_for(row.task)))
    assert setup is not None
    _, _, regularizer = resolve_settings(cfg, SEARCH_PRESETS.size(setup.family, "paper"))
    recipe_extra = {**task.preset("paper").recipe.extra, **hold_out(setup, cfg)}
    return cfg, recipe_extra, regularizer


@pytest.mark.parametrize("row", PAPER_ROWS, ids=lambda r: r.name)
def test_every_row_resolves_to_its_cost_target_and_hold_out(row: paper_rows.PaperRow) -> None:
    cfg, extra, regularizer = resolved(row)
    kind = "none" if regularizer is None and cfg.algorithm == "grad" else cfg.cost
    assert kind == row.cost_kind
    assert cfg.ref == row.ref
    assert extra["valid_size"] == row.hold_out
    if row.task == "imagenet":
        assert row.hold_out == 50_000 and {"imagenet", "cuda"} <= set(row.needs)
        assert row.retrain is not None and row.retrain.epochs == 300
    if row.cost_kind == "latency" and row.ref is not None:  # the mobile rows: released table, 80 ms
        assert row.ref == 80.0 and cfg.latency_table == "$" + paper_rows.MOBILE_LUT_ENV
        assert "mobile_lut" in row.needs


def test_released_retraining_recipe() -> None:
    r = RELEASED_RETRAIN
    assert (r.epochs, r.batch_size, r.lr, r.schedule, r.nesterov) == (300, 256, 0.05, "cosine", True)
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
