"""NASBOT's CNN side: the torch builder (`nasbot.cnn.GraphCNN`, a port of the authors' TF builder),
the ``nasbot-cnn`` space (the code's initial pool, sampling, hashing, limits, recipe) and the nine
modifiers on CNN graphs (each changes what it should and only that; every mutant builds)."""

from __future__ import annotations

import json
from collections import Counter

import numpy as np
import pytest
import torch
from torch import nn

from nasrepro.errors import UsageError
from nasrepro.methods.nasbot.cnn import GraphCNN, ResidualLayer, image_sizes
from nasrepro.methods.nasbot.cnn_space import CODE_RECIPE, CNNLayerGraphSpace, blocked_cnn, vgg_net
from nasrepro.methods.nasbot.graph import CONV_LABELS, POOL_LABELS, LayerGraph, Limits
from nasrepro.methods.nasbot.mutations import (
    CNN_SWAPS,
    WEDGE_CNN,
    branch,
    dec_en_masse,
    dec_single,
    inc_en_masse,
    inc_single,
    modifiable_layers,
    mutate,
    remove_layer,
    skip,
    swap_layer,
    wedge_layer,
)

SPACE = CNNLayerGraphSpace()
POOL = SPACE.initial_pool()
#: a branch (conv3 and conv5 both read layer 1) merging into layer 3, and a skip 1 -> 5 through a pool
BRANCHED = "cnn|ip|conv3:8/1<0|conv5:4/1<1|conv3:6/1<1,2|max-pool<3|avg-pool<1|fc:16<4,5|softmax<6|op<7"


def _tiny(n: int = 2, side: int = 8) -> torch.Tensor:
    return torch.randn(n, 3, side, side, generator=torch.Generator().manual_seed(0))


def _layers(g: LayerGraph) -> Counter:
    return Counter(zip(g.labels, g.units, g.strides, strict=True))


def _builds(g: LayerGraph) -> None:
    out = GraphCNN(g).eval()(_tiny(2))
    assert out.shape == (2, 10) and torch.isfinite(out).all()


def test_initial_pool_is_the_codes_get_initial_cnn_pool() -> None:
    # 4 VGG nets (1-4 convs per block) then 6 blocked CNNs, as nn_opt_utils.get_initial_cnn_pool
    assert [g.num_layers for g in POOL] == [18, 21, 24, 27, 10, 13, 16, 19, 22, 23]
    assert str(blocked_cnn(3, 1)) == (
        "cnn|ip|conv7:64/1<0|max-pool<1|conv3:64/2<2|conv3:128/2<3|conv3:256/2<4|avg-pool<5"
        "|fc:512<6|softmax<7|op<8"
    )
    assert Counter(vgg_net(2).labels) == Counter(
        {"conv3": 10, "max-pool": 5, "fc": 3, "ip": 1, "softmax": 1, "op": 1}
    )
    assert (
        blocked_cnn(4, 4).units.count(512) == 4 and max(blocked_cnn(4, 4).units, key=lambda u: u or 0) == 1024
    )
    for g in POOL:
        Limits().check(g)  # the demo's limits
        assert SPACE.parse(str(g)) == g


def test_every_pool_cnn_builds_and_classifies_cifar_images() -> None:
    for g in POOL:
        _builds(g)
    model = GraphCNN(POOL[0]).eval()
    assert model(torch.randn(3, 3, 32, 32)).shape == (3, 10)


def test_image_sizes_halve_rounding_up_down_to_one_pixel() -> None:
    g = blocked_cnn(4, 4)  # max-pool + 4 stride-2 blocks + avg-pool: 6 halvings of 32
    model = GraphCNN(g).eval()
    seen: dict[int, tuple[int, ...]] = {}
    for key, module in model.layers.items():
        module.register_forward_hook(lambda m, i, o, k=int(key): seen.__setitem__(k, tuple(o.shape)))
    model(torch.randn(1, 3, 32, 32))
    expected = image_sizes(g, 32)
    for layer, shape in seen.items():
        side = shape[2] if len(shape) == 4 else None
        assert side == expected[layer], (g.labels[layer], shape, expected[layer])
    assert [expected[i] for i in g.topological_order if g.labels[i] in ("max-pool", "avg-pool")] == [16, 1]


def test_several_parents_are_concatenated_along_channels() -> None:
    g = LayerGraph.parse(BRANCHED)
    model = GraphCNN(g).eval()
    merge = next(i for i in g.topological_order if len(g.parents[i]) == 2 and g.labels[i] == "conv3")
    conv = model.layers[str(merge)][0]
    assert isinstance(conv, nn.Conv2d) and conv.in_channels == 8 + 4  # concatenated, not summed
    fc = next(i for i in g.topological_order if g.labels[i] == "fc")
    assert model.layers[str(fc)].linear.in_features == 6 + 8  # pooled merge + pooled skip, then GAP
    outputs: dict[int, torch.Tensor] = {}
    inputs: dict[int, torch.Tensor] = {}

    def keep(k: int):
        def hook(module: nn.Module, args: tuple[torch.Tensor, ...], out: torch.Tensor) -> None:
            inputs[k], outputs[k] = args[0], out

        return hook

    for key, module in model.layers.items():
        module.register_forward_hook(keep(int(key)))
    model(_tiny(2, 16))
    parents = g.parents[merge]
    assert torch.equal(inputs[merge], torch.cat([outputs[p] for p in parents], dim=1))
    # one training step reaches every parameter: no layer of the branch or the skip is dead
    model.train()
    nn.functional.cross_entropy(model(_tiny(4, 16)), torch.tensor([0, 1, 2, 3])).backward()
    assert all(p.grad is not None and p.grad.abs().sum() > 0 for p in model.parameters())


def test_residual_layer_follows_plan_a_shortcuts() -> None:
    x = torch.randn(2, 8, 6, 6)
    widen = ResidualLayer(8, 16, 3, stride=2).eval()
    assert widen(x).shape == (2, 16, 3, 3)
    narrow = ResidualLayer(16, 8, 5, stride=1).eval()
    assert narrow(torch.randn(2, 16, 6, 6)).shape == (2, 16, 6, 6)  # the code pads the branch up
    # with the branch silenced (last BN scale and shift 0) only the shortcut is left: avg-pooled by
    # the stride, zero channels padded on both sides (4 before, 4 after), then ReLU
    with torch.no_grad():
        widen.bn.weight.zero_()
        widen.bn.bias.zero_()
    pooled = nn.functional.avg_pool2d(x, 2, 2)
    expected = torch.relu(nn.functional.pad(pooled, (0, 0, 0, 0, 4, 4)))
    assert torch.allclose(widen(x), expected)
    odd = ResidualLayer(3, 8, 3, stride=1).eval()  # an odd width difference still adds up
    assert odd(torch.randn(1, 3, 4, 4)).shape == (1, 8, 4, 4)
    g = LayerGraph.parse("cnn|ip|conv3:8/1<0|res3:16/2<1|res5:8/1<2|res7:8/2<3|softmax<4|op<5")
    model = GraphCNN(g)
    assert [model.widths[i] for i in (2, 3, 4)] == [16, 16, 16]
    assert sum(isinstance(m, ResidualLayer) for m in model.modules()) == 3
    _builds(g)


def test_several_softmax_heads_predict_their_mean_probability() -> None:
    g = LayerGraph.parse("cnn|ip|conv3:8/1<0|max-pool<1|fc:16<2|softmax<3|softmax<3|op<4,5")
    model = GraphCNN(g).eval()
    heads: list[torch.Tensor] = []
    for i in model.heads:
        model.layers[str(i)].register_forward_hook(lambda m, inp, out: heads.append(out))
    out = model(_tiny(3))
    mean = torch.stack([torch.softmax(h, -1) for h in heads]).mean(0)
    assert len(heads) == 2 and torch.allclose(out.exp(), mean, atol=1e-6)
    fc, head = model.layers["3"], model.layers["4"]
    assert fc.relu and not head.relu  # fc layers ReLU, softmax layers emit logits


def test_an_invalid_graph_is_one_clear_line_naming_the_layer() -> None:
    bad = "cnn|ip|conv3:8/1<0|max-pool<1|conv3:8/1<0,2|softmax<3|op<4"  # 1/1 and 1/2 images meet
    with pytest.raises(UsageError) as info:
        SPACE.to_model(bad, object())
    message = str(info.value)
    assert "\n" not in message and "layer 3 (conv3): merges inputs of different image sizes" in message
    with pytest.raises(UsageError, match=r"layer 3 \(max-pool\): comes after a flattening"):
        SPACE.parse("cnn|ip|conv3:8/1<0|fc:8<1|max-pool<2|softmax<3|op<4")
    with pytest.raises(UsageError, match="nasbot-cnn.*holds cnn layer graphs"):
        SPACE.parse("mlp-reg|ip|relu:8<0|linear<1|op<2")
    with pytest.raises(UsageError, match="builds cnn layer graphs"):
        GraphCNN(LayerGraph.parse("mlp-reg|ip|relu:8<0|linear<1|op<2"))
    with pytest.raises(UsageError, match="declares no input_shape"):
        SPACE.to_model(str(POOL[4]), object())


# --- the nine modifiers on CNNs ------------------------------------------------------------------
BASES = (vgg_net(1), blocked_cnn(3, 2), blocked_cnn(4, 4))


@pytest.mark.parametrize("increase", [True, False])
def test_single_and_en_masse_change_only_units(increase: bool) -> None:
    rng = np.random.default_rng(0)
    for g in BASES:
        order = modifiable_layers(g)
        single, en_masse = (inc_single, inc_en_masse) if increase else (dec_single, dec_en_masse)
        for op, many in ((single, False), (en_masse, True)):
            child = op(g, rng)
            assert child.labels == g.labels and child.strides == g.strides and child.edges == g.edges
            changed = [k for k, i in enumerate(order) if child.units[i] != g.units[i]]
            assert changed and (many or len(changed) == 1)
            assert changed == list(range(changed[0], changed[-1] + 1))  # contiguous in topological order
            for k in changed:
                ratio = child.units[order[k]] / g.units[order[k]]
                assert (ratio > 1) == increase and abs(ratio - (1.125 if increase else 0.875)) < 0.02
            _builds(child)


def test_swap_relabels_one_layer_with_the_codes_candidates() -> None:
    rng = np.random.default_rng(1)
    kinds = set()
    for _ in range(40):
        g = BASES[int(rng.integers(len(BASES)))]
        child = swap_layer(g, rng)
        diff = [i for i in range(g.num_layers) if child.labels[i] != g.labels[i]]
        assert len(diff) == 1 and child.edges == g.edges
        (i,) = diff
        old, new = g.labels[i], child.labels[i]
        assert new in CNN_SWAPS[old][0]
        others = [j for j in range(g.num_layers) if j != i]
        assert all(child.units[j] == g.units[j] and child.strides[j] == g.strides[j] for j in others)
        if new in POOL_LABELS:
            assert child.units[i] is None and child.strides[i] is None
        elif old in POOL_LABELS:  # a conv replacing a pool keeps the downsampling
            assert child.strides[i] == 2 and child.units[i] >= 8
        else:
            assert child.units[i] == g.units[i]
        kinds.add((old in POOL_LABELS, new in POOL_LABELS))
        _builds(child)
    assert (False, False) in kinds and (False, True) in kinds


def test_wedge_inserts_one_layer_on_an_edge() -> None:
    rng = np.random.default_rng(2)
    for g in BASES:
        for _ in range(8):
            child = wedge_layer(g, rng)
            added = _layers(child) - _layers(g)
            assert sum(added.values()) == 1 and not (_layers(g) - _layers(child))
            assert child.num_layers == g.num_layers + 1 and len(child.edges) == len(g.edges) + 1
            ((label, _, _),) = added
            assert label in (*WEDGE_CNN, *POOL_LABELS, "fc")
            _builds(child)


def test_remove_deletes_one_layer_keeping_the_rest() -> None:
    rng = np.random.default_rng(3)
    done = 0
    for g in BASES:
        for _ in range(8):
            child = remove_layer(g, rng)
            if child is None:  # the draw left an invalid graph (e.g. image sizes no longer meet): redrawn
                continue
            done += 1
            assert child.num_layers == g.num_layers - 1
            removed = Counter(zip(g.labels, g.units, strict=True)) - Counter(
                zip(child.labels, child.units, strict=True)
            )
            assert sum(removed.values()) == 1  # strides may move to a neighbour, nothing else changes
            _builds(child)
    assert done >= 12


def test_branch_adds_copies_of_path_layers_in_parallel() -> None:
    rng = np.random.default_rng(4)
    for g in BASES:
        for _ in range(6):
            child = branch(g, rng)
            added = _layers(child) - _layers(g)
            assert sum(added.values()) >= 1 and not (_layers(g) - _layers(child))
            assert all(copy in _layers(g) for copy in added)
            assert child.num_layers - g.num_layers == len(child.edges) - len(g.edges) - 1
            _builds(child)


def test_skip_adds_one_connection_bridged_by_avg_pools() -> None:
    rng = np.random.default_rng(5)
    pools = set()
    for g in BASES:
        for _ in range(8):
            child = skip(g, rng)
            added = _layers(child) - _layers(g)
            assert not (_layers(g) - _layers(child)) and set(added) <= {("avg-pool", None, None)}
            n = sum(added.values())
            assert len(child.edges) == len(g.edges) + n + 1
            pools.add(n)
            _builds(child)
    assert 0 in pools and max(pools) >= 1  # same-size skips and pooled ones both occur


def test_mutants_stay_valid_within_limits_and_build() -> None:
    rng = np.random.default_rng(6)
    limits = Limits()
    labels: Counter = Counter()
    for g in POOL:
        child = mutate(g, rng, limits)
        limits.check(child)
        assert child != g and LayerGraph.parse(str(child)) == child
        labels.update(child.labels)
        _builds(child)
    assert set(labels) >= {"conv3", "conv7", "max-pool", "avg-pool", "fc", "softmax"}


# --- the registered space -----------------------------------------------------------------------
def test_space_sampling_hashing_json_and_registration() -> None:
    from nasrepro.methods.baselines.evolution import RegularizedEvolution
    from nasrepro.methods.nasbot.search import NASBOT
    from nasrepro.methods.nasbot.views import view_for
    from nasrepro.spaces import get_space
    from nasrepro.tasks import get_task

    space = get_space("nasbot-cnn")
    assert isinstance(space, CNNLayerGraphSpace) and view_for(space).kind == "cnn"
    rng = np.random.default_rng(7)
    arch = space.sample(rng)
    assert (
        json.loads(json.dumps(str(arch))) == str(arch)
        and space.parse(json.loads(json.dumps(str(arch)))) == arch
    )
    twin = arch.renumbered(list(reversed(range(arch.num_layers))))  # an isomorphic copy
    assert twin == arch and hash(twin) == hash(arch) and space.key(twin) == space.key(arch)
    assert space.mutate(arch, rng) != arch and "model" in space.views()
    task = get_task("cifar10")
    assert NASBOT.default_space_for("cifar10") == "nasbot-cnn"
    assert NASBOT.incompatibility(task, space) is None
    assert RegularizedEvolution.incompatibility(task, space) is None
    assert GraphCNN(arch).eval()(task.example_input(2)[0]).shape == (2, 10)
    assert space.to_model(arch, task).eval()(task.example_input(1)[0]).shape == (1, 10)


@pytest.mark.parametrize("preset", ["smoke", "cpu", "paper"])
def test_every_method_trains_with_the_codes_recipe(preset: str) -> None:
    from nasrepro.harness.method import training_preset
    from nasrepro.methods.baselines.random_search import RandomSearch
    from nasrepro.methods.nasbot.search import NASBOT
    from nasrepro.tasks import get_task

    task = get_task("cifar10")
    recipes = [training_preset(task, SPACE, m(), preset).recipe for m in (NASBOT, RandomSearch)]
    assert recipes[0] == recipes[1]
    recipe = recipes[0]
    assert (recipe.lr, recipe.momentum, recipe.weight_decay, recipe.select) == (0.005, 0.9, 2e-4, "best-val")
    assert recipe.schedule == "multistep" and recipe.milestones == CODE_RECIPE["milestones"]
    assert recipe.batch_size == 32 and recipe.epochs == task.preset(preset).recipe.epochs


def test_conv_layers_are_bias_free_and_batch_normed() -> None:
    model = GraphCNN(blocked_cnn(3, 1))
    convs = [m for m in model.modules() if isinstance(m, nn.Conv2d)]
    assert len(convs) == 4 and all(c.bias is None for c in convs)
    assert [c.kernel_size[0] for c in convs] == [7, 3, 3, 3] and [c.stride[0] for c in convs] == [1, 2, 2, 2]
    assert sum(isinstance(m, nn.BatchNorm2d) for m in model.modules()) == 4
    assert all(g.labels.count(label) == 0 for g in POOL for label in CONV_LABELS if label.startswith("res"))
