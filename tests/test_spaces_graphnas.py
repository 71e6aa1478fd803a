"""The GraphNAS space AGNN adopts: every attention function and aggregation of the layer against hand
computations on a 4-node graph, heads, dropout placement, the space's size, codec, strings, parse
errors, mutation, models that train, and a forward pass on real Cora."""

from __future__ import annotations

import dataclasses
import math
from types import SimpleNamespace

import numpy as np
import pytest
import torch

from nasrepro.errors import UsageError
from nasrepro.harness.recipe import TrainRecipe
from nasrepro.spaces import SPACES
from nasrepro.spaces.graphnas import (
    CLASSES,
    GraphNasArch,
    GraphNasNet,
    GraphNasSpace,
    LayerArch,
)
from nasrepro.spaces.graphnas_layer import ATTENTIONS, GraphNasLayer


@pytest.fixture(autouse=True, scope="module")
def _one_thread():
    """Tiny graphs: intra-op threads only contend (seconds per step on a busy 2-core machine)."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


# --- a 4-node toy graph and tiny fixed weights --------------------------------------------------------

N, IN, OUT, HEADS = 4, 3, 2, 2
UNDIRECTED = [(0, 1), (1, 2), (2, 3), (0, 2)]
X = np.array([[0.5, -0.2, 0.1], [0.3, 0.8, -0.4], [-0.6, 0.2, 0.7], [0.1, -0.5, 0.9]])
W = np.array([[0.3, -0.2, 0.5, 0.1], [-0.4, 0.6, 0.2, -0.3], [0.7, 0.1, -0.5, 0.4]])  # (IN, HEADS * OUT)
ATT = np.array([[[0.4, -0.3, 0.2, 0.6], [-0.5, 0.8, 0.3, -0.1]]])  # (1, HEADS, 2 * OUT)
GENE = np.array([[0.9, -0.7]])  # w_G: Linear(OUT, 1, bias=False)
BIAS = np.array([0.01, -0.02, 0.03, -0.04])


def edge_index() -> torch.Tensor:
    """Both directions of every edge plus a self-loop on node 3 (which the layer must replace)."""
    pairs = [(a, b) for a, b in UNDIRECTED] + [(b, a) for a, b in UNDIRECTED] + [(3, 3)]
    return torch.tensor(pairs, dtype=torch.long).t()


def in_neighbours(i: int) -> list[int]:
    """j with an edge j -> i, plus i itself (GeoLayer's self-loops)."""
    found = {i}
    for a, b in UNDIRECTED:
        if a == i:
            found.add(b)
        if b == i:
            found.add(a)
    return sorted(found)


def projected() -> np.ndarray:
    """h[n, k, c]: x W split into heads, by explicit sums."""
    h = np.zeros((N, HEADS, OUT))
    for n in range(N):
        for k in range(HEADS):
            for c in range(OUT):
                h[n, k, c] = sum(X[n, f] * W[f, k * OUT + c] for f in range(IN))
    return h


def leaky(v: float, slope: float = 0.2) -> float:
    return v if v > 0 else slope * v


def hand_score(attention: str, h: np.ndarray, i: int, j: int, k: int, faithful: bool) -> float:
    """The table of AGNN/GraphNAS attention functions, written out per component."""
    wl, wr = ATT[0, k, :OUT], ATT[0, k, OUT:]
    hi, hj = h[i, k], h[j, k]
    if attention == "gat":
        return leaky(sum(wl[c] * hi[c] for c in range(OUT)) + sum(wr[c] * hj[c] for c in range(OUT)))
    if attention == "sym-gat":
        a = sum(wl[c] * hi[c] + wr[c] * hj[c] for c in range(OUT))
        b = sum(wl[c] * hj[c] + wr[c] * hi[c] for c in range(OUT))
        return leaky(a) + leaky(b)
    if attention == "cos":
        return sum(hi[c] * wl[c] * hj[c] * wr[c] for c in range(OUT))
    if attention == "linear":
        left = hj if faithful else hi
        return math.tanh(sum(left[c] * wl[c] for c in range(OUT)) + sum(hj[c] * wr[c] for c in range(OUT)))
    if attention == "gene-linear":
        return sum(GENE[0, c] * math.tanh(wl[c] * hi[c] + wr[c] * hj[c]) for c in range(OUT))
    raise AssertionError(attention)


def hand_coefficients(attention: str, faithful: bool = True, by_source: bool = False) -> dict:
    """alpha[(j, i, k)] for every edge j -> i (self-loops included) and head k."""
    h = projected()
    edges = [(j, i) for i in range(N) for j in in_neighbours(i)]
    alpha = {}
    for j, i in edges:
        for k in range(HEADS):
            if attention == "const":
                alpha[(j, i, k)] = 1.0
            elif attention == "gcn":
                alpha[(j, i, k)] = 1.0 / math.sqrt(len(in_neighbours(i)) * len(in_neighbours(j)))
            else:
                # softmax over the edges sharing i (or, for GeoLayer's quirk, sharing the source j)
                group = (
                    [(j, t) for t in range(N) if j in in_neighbours(t)]
                    if by_source
                    else [(s, i) for s in in_neighbours(i)]
                )
                denom = sum(math.exp(hand_score(attention, h, t, s, k, faithful)) for s, t in group)
                alpha[(j, i, k)] = math.exp(hand_score(attention, h, i, j, k, faithful)) / denom
    return alpha


def hand_layer(attention: str, faithful: bool = True, by_source: bool = False) -> np.ndarray:
    """Sum aggregation, heads concatenated, plus bias."""
    h = projected()
    alpha = hand_coefficients(attention, faithful, by_source)
    out = np.zeros((N, HEADS * OUT))
    for (j, i, k), a in alpha.items():
        for c in range(OUT):
            out[i, k * OUT + c] += a * h[j, k, c]
    return out + BIAS


def make_layer(attention: str, aggregation: str = "sum", concat: bool = True, **kwargs) -> GraphNasLayer:
    layer = GraphNasLayer(
        IN, OUT, HEADS, concat=concat, attention=attention, aggregation=aggregation, **kwargs
    ).double()
    with torch.no_grad():
        layer.weight.copy_(torch.tensor(W))
        if layer.att is not None:
            layer.att.copy_(torch.tensor(ATT))
        if layer.gene_linear is not None:
            layer.gene_linear.weight.copy_(torch.tensor(GENE))
        if layer.bias is not None:
            layer.bias.copy_(torch.tensor(BIAS if concat else BIAS[:OUT]))
    return layer.eval()


def run(layer: GraphNasLayer) -> np.ndarray:
    return layer(torch.tensor(X), edge_index()).detach().numpy()


# --- attention functions ----------------------------------------------------------------------------


@pytest.mark.parametrize("attention", list(ATTENTIONS))
def test_attention_matches_hand_computation(attention):
    assert np.allclose(run(make_layer(attention)), hand_layer(attention), atol=1e-12)


@pytest.mark.parametrize("attention", list(ATTENTIONS))
def test_coefficients_match_hand_computation(attention):
    """The per-edge coefficients themselves, before dropout; softmax ones sum to 1 over N(i)."""
    alpha = hand_coefficients(attention)
    edges = sorted(alpha)
    source = torch.tensor([j for j, _, _ in edges[::HEADS]])
    target = torch.tensor([i for _, i, _ in edges[::HEADS]])
    h = torch.tensor(projected())
    layer = make_layer(attention)
    norm = torch.tensor([alpha[(j, i, 0)] for j, i, _ in edges[::HEADS]]) if attention == "gcn" else None
    got = layer.coefficients(h[target], h[source], target, source, N, norm).detach().numpy()
    want = np.array([[alpha[(j, i, k)] for k in range(HEADS)] for j, i, _ in edges[::HEADS]])
    assert np.allclose(got, want, atol=1e-12)
    if ATTENTIONS[attention].score is not None:
        for i in range(N):
            for k in range(HEADS):
                assert sum(alpha[(j, i, k)] for j in in_neighbours(i)) == pytest.approx(1.0)


def test_gcn_coefficients_from_degrees():
    from nasrepro.spaces.graphnas_layer import gcn_coefficients

    ei = torch.tensor(
        [[j for i in range(N) for j in in_neighbours(i)], [i for i in range(N) for _ in in_neighbours(i)]]
    )
    got = gcn_coefficients(ei, N).numpy()
    want = [1 / math.sqrt(len(in_neighbours(i)) * len(in_neighbours(j))) for j, i in ei.t().tolist()]
    assert np.allclose(got, want)


def test_linear_faithful_switch():
    faithful, fixed = run(make_layer("linear", faithful=True)), run(make_layer("linear", faithful=False))
    assert np.allclose(faithful, hand_layer("linear", faithful=True), atol=1e-12)
    assert np.allclose(fixed, hand_layer("linear", faithful=False), atol=1e-12)
    assert not np.allclose(faithful, fixed)


def test_other_attentions_ignore_the_faithful_switch():
    for attention in ["gat", "cos", "gene-linear"]:
        assert np.allclose(run(make_layer(attention, faithful=False)), run(make_layer(attention)))


@pytest.mark.parametrize("attention", ["gat", "gene-linear"])
def test_softmax_by_source_reproduces_geolayer_grouping(attention):
    quirk = run(make_layer(attention, softmax_by_source=True))
    assert np.allclose(quirk, hand_layer(attention, by_source=True), atol=1e-12)
    assert not np.allclose(quirk, hand_layer(attention))


def test_existing_self_loops_are_replaced_by_one_per_node():
    layer = make_layer("const")
    without = layer(torch.tensor(X), edge_index()[:, :-1]).detach().numpy()
    assert np.allclose(without, run(layer))


def test_graphnas_names_are_aliases():
    assert make_layer("gat_sym").attention == "sym-gat"
    assert make_layer("generalized_linear").attention == "gene-linear"
    with pytest.raises(UsageError, match="unknown attention"):
        GraphNasLayer(IN, OUT, attention="bilinear")
    with pytest.raises(UsageError, match="unknown aggregation"):
        GraphNasLayer(IN, OUT, aggregation="lstm")


def test_parameters_per_attention():
    const = make_layer("const")
    assert const.att is None and const.gene_linear is None and const.pool is None
    gene = make_layer("gene-linear", "mean")
    assert tuple(gene.att.shape) == (1, HEADS, 2 * OUT)
    assert tuple(gene.gene_linear.weight.shape) == (1, OUT) and gene.gene_linear.bias is None
    assert [tuple(m.weight.shape) for m in gene.pool] == [(128, OUT), (OUT, 128)]


# --- aggregations -----------------------------------------------------------------------------------


def set_pool(layer: GraphNasLayer) -> tuple[np.ndarray, ...]:
    rng = np.random.default_rng(0)
    a1, b1 = rng.normal(size=(128, OUT)) * 0.3, rng.normal(size=128) * 0.1
    a2, b2 = rng.normal(size=(OUT, 128)) * 0.3, rng.normal(size=OUT) * 0.1
    with torch.no_grad():
        for linear, (w, b) in zip(layer.pool, [(a1, b1), (a2, b2)], strict=True):
            linear.weight.copy_(torch.tensor(w))
            linear.bias.copy_(torch.tensor(b))
    return a1, b1, a2, b2


def hand_mlp(v: np.ndarray, a1, b1, a2, b2) -> np.ndarray:
    """Linear(OUT, 128) then Linear(128, OUT), no activation in between (GeoLayer's pool_layer)."""
    hidden = [sum(a1[u, c] * v[c] for c in range(OUT)) + b1[u] for u in range(128)]
    return np.array([sum(a2[c, u] * hidden[u] for u in range(128)) + b2[c] for c in range(OUT)])


@pytest.mark.parametrize("attention", ["const", "gat"])
@pytest.mark.parametrize("aggregation", ["sum", "mean", "max", "mlp"])
def test_aggregation_matches_hand_computation(attention, aggregation):
    layer = make_layer(attention, aggregation)
    weights = set_pool(layer) if layer.pool is not None else None
    h, alpha = projected(), hand_coefficients(attention)
    out = np.zeros((N, HEADS * OUT))
    for i in range(N):
        for k in range(HEADS):
            messages = []
            for j in in_neighbours(i):
                m = alpha[(j, i, k)] * h[j, k]  # coefficient first, then the MLP (GeoLayer order)
                messages.append(hand_mlp(m, *weights) if weights else m)
            for c in range(OUT):
                column = [m[c] for m in messages]
                reduce = {"sum": sum, "mlp": sum, "mean": lambda v: sum(v) / len(v), "max": max}[aggregation]
                out[i, k * OUT + c] = reduce(column)
    assert (layer.pool is not None) == (aggregation != "sum")
    assert np.allclose(run(layer), out + BIAS, atol=1e-10)


# --- heads --------------------------------------------------------------------------------------------


def test_heads_concatenated_in_hidden_layers_and_averaged_in_the_last():
    concat, mean = make_layer("gat", concat=True), make_layer("gat", concat=False)
    out_concat, out_mean = run(concat), run(mean)
    assert out_concat.shape == (N, HEADS * OUT) and out_mean.shape == (N, OUT)
    per_head = (out_concat - BIAS).reshape(N, HEADS, OUT)
    assert np.allclose(out_mean, per_head.mean(axis=1) + BIAS[:OUT])
    assert tuple(mean.bias.shape) == (OUT,)


# --- dropout placement --------------------------------------------------------------------------------


def edge_messages(layer: GraphNasLayer, seed: int) -> np.ndarray:
    """The layer's per-edge messages (E, heads, out) on many copies of every edge, in training mode."""
    torch.manual_seed(seed)
    h = torch.tensor(projected())
    source = torch.tensor([j for i in range(N) for j in in_neighbours(i)] * 50)
    target = torch.tensor([i for i in range(N) for _ in in_neighbours(i)] * 50)
    norm = torch.ones(len(source))
    return layer.train().message(h[target], h[source], target, source, N, norm).detach().numpy()


def test_dropout_placement():
    """GeoLayer drops coefficients (whole edge-head messages) for scored attentions, message entries
    for const, and nothing for gcn."""
    gcn = make_layer("gcn", dropout=0.9).train()
    assert np.allclose(gcn(torch.tensor(X), edge_index()).detach().numpy(), hand_layer("gcn"))
    p = 0.5
    gat = edge_messages(make_layer("gat", dropout=p), seed=0)
    zero = np.isclose(gat, 0.0).all(axis=-1)
    assert 0.3 < zero.mean() < 0.7  # whole (edge, head) vectors dropped ...
    assert (np.isclose(gat, 0.0).any(axis=-1) == zero).all()  # ... never single entries
    const = edge_messages(make_layer("const", dropout=p), seed=0)
    entries = np.isclose(const, 0.0)
    assert 0.3 < entries.mean() < 0.7
    assert (entries.any(axis=-1) & ~entries.all(axis=-1)).any()  # single entries dropped
    h = projected()
    kept = const[~entries]
    source = np.array([j for i in range(N) for j in in_neighbours(i)] * 50)
    undropped = np.broadcast_to(h[source], const.shape)[~entries]
    assert np.allclose(kept, undropped / (1 - p))  # inverted dropout on x_j itself
    for name in ("gat", "const"):
        layer = make_layer(name, dropout=p)  # eval mode: no dropout at all
        assert np.allclose(run(layer), hand_layer(name))


# --- the space --------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def space() -> GraphNasSpace:
    return SPACES.get("graphnas")()


def test_space_size(space):
    assert space.size() == 9_408**2 == 88_510_464
    assert GraphNasSpace(num_layers=1).size() == 9_408
    assert GraphNasSpace(num_layers=3).size() == 9_408**3
    assert space.num_networks() == 9_408 * 1_344
    assert space.describe()["size"] == space.size()


def test_fields(space):
    fields = space.fields()
    assert [f.name for f in fields[:5]] == ["attention0", "aggregation0", "activation0", "heads0", "hidden0"]
    assert [f.group for f in fields] == list(CLASSES) * 2
    assert [len(f.choices) for f in fields[:5]] == [7, 4, 8, 6, 7]
    assert math.prod(len(f.choices) for f in fields) == space.size()
    assert fields[0].choices == ("const", "gcn", "gat", "sym-gat", "cos", "linear", "gene-linear")


def test_canonical_string(space):
    arch = space.parse("gat,sum,relu,8,16|gcn,mean,elu,1,classes")
    assert arch == GraphNasArch(
        (LayerArch("gat", "sum", "relu", 8, 16), LayerArch("gcn", "mean", "elu", 1, None))
    )
    assert str(arch) == "gat,sum,relu,8,16|gcn,mean,elu,1,classes"
    assert space.canonical(arch) == arch
    # GraphNAS names parse to AGNN names
    alias = space.parse("gat_sym,max,tanh,2,4|generalized_linear,mlp,linear,16,classes")
    assert str(alias) == "sym-gat,max,tanh,2,4|gene-linear,mlp,linear,16,classes"


def test_last_hidden_is_tied(space):
    a = space.parse("gat,sum,relu,8,16|gcn,mean,elu,1,64")
    b = space.parse("gat,sum,relu,8,16|gcn,mean,elu,1,4")
    assert a != b and str(a) == "gat,sum,relu,8,16|gcn,mean,elu,1,64"  # kept as written
    assert space.key(a) == space.key(b) == "gat,sum,relu,8,16|gcn,mean,elu,1,classes"
    task = SimpleNamespace(num_features=5, num_classes=3)
    shapes = [[tuple(p.shape) for p in space.to_model(arch, task).parameters()] for arch in (a, b)]
    assert shapes[0] == shapes[1]


def test_string_and_codec_round_trips(space):
    rng = np.random.default_rng(0)
    for _ in range(200):
        arch = space.sample(rng)
        assert space.canonical(arch) == arch
        assert space.parse(str(arch)) == arch
        assert space.decode(space.encode(arch)) == space.parse(str(arch).rsplit(",", 1)[0] + ",4")
        assert space.key(space.decode(space.encode(arch))) == space.key(arch)
        indices = tuple(int(rng.integers(len(f.choices))) for f in space.fields())
        decoded = space.decode(indices)
        assert space.encode(decoded) == indices
        assert space.parse(str(decoded)) == decoded


def test_sample_covers_every_choice(space):
    rng = np.random.default_rng(1)
    seen = [set() for _ in space.fields()]
    for _ in range(400):
        for s, value in zip(seen, space.encode(space.sample(rng)), strict=True):
            s.add(value)
    assert [len(s) for s in seen[:-1]] == [len(f.choices) for f in space.fields()[:-1]]
    assert seen[-1] == {0}  # the tied width always encodes as 0


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("", "malformed"),
        ("gat,sum,relu,8,16", "has 1 layer"),
        ("gat,sum,relu,8,16|gcn,mean,elu,1,classes|gat,sum,relu,8,16", "has 3 layer"),
        ("gat,sum,relu,8|gcn,mean,elu,1,classes", "has 4 value"),
        ("bilinear,sum,relu,8,16|gcn,mean,elu,1,classes", "unknown attention"),
        ("gat,lstm,relu,8,16|gcn,mean,elu,1,classes", "aggregation 'lstm'"),
        ("gat,sum,swish,8,16|gcn,mean,elu,1,classes", "activation 'swish'"),
        ("gat,sum,relu,3,16|gcn,mean,elu,1,classes", "heads '3'"),
        ("gat,sum,relu,8,classes|gcn,mean,elu,1,classes", "hidden 'classes'"),
        ("gat,sum,relu,8,16|gcn,mean,elu,1,7", "or 'classes' for the last layer"),
    ],
)
def test_parse_errors(space, text, message):
    with pytest.raises(UsageError, match=message):
        space.parse(text)


def test_decode_and_encode_errors(space):
    with pytest.raises(UsageError, match="10 indices"):
        space.decode([0] * 9)
    with pytest.raises(UsageError, match="out of range"):
        space.decode([0, 0, 0, 0, 7, 0, 0, 0, 0, 0])
    with pytest.raises(UsageError, match="not a graphnas architecture"):
        space.encode("gat,sum,relu,8,16|gcn,mean,elu,1,classes")
    with pytest.raises(UsageError, match="num_layers"):
        GraphNasSpace(num_layers=0)


def test_mutate_changes_exactly_one_field(space):
    rng = np.random.default_rng(2)
    arch = space.sample(rng)
    positions = set()
    for _ in range(300):
        child = space.mutate(arch, rng)
        before, after = space.encode(arch), space.encode(child)
        changed = [p for p in range(len(before)) if before[p] != after[p]]
        assert len(changed) == 1 and space.key(child) != space.key(arch)
        positions.add(changed[0])
        arch = child
    assert positions == set(range(len(space.fields()) - 1))  # every free field, never the tied one


def test_recipe_overrides_are_graphnas_settings(space):
    recipe = space.recipe_overrides(SimpleNamespace(num_features=5, num_classes=3))
    assert set(recipe) <= {f.name for f in dataclasses.fields(TrainRecipe)}
    assert recipe["optimizer"] == "adam" and recipe["lr"] == 0.005
    assert recipe["weight_decay"] == 5e-4 and recipe["epochs"] == 300
    TrainRecipe(**recipe)  # a complete, valid recipe


# --- models -----------------------------------------------------------------------------------------


def test_to_model_shapes_and_errors(space):
    task = SimpleNamespace(num_features=5, num_classes=3)
    model = space.to_model(space.parse("gat,sum,relu,4,16|cos,max,linear,2,classes"), task)
    assert isinstance(model, GraphNasNet)
    first, last = model.layers
    assert (first.in_channels, first.out_channels, first.heads, first.concat) == (5, 16, 4, True)
    assert (last.in_channels, last.out_channels, last.heads, last.concat) == (64, 3, 2, False)
    assert first.dropout == last.dropout == model.dropout == 0.6
    assert model.norms is None
    assert (
        len(GraphNasSpace(batch_norm=True).to_model(space.sample(np.random.default_rng(0)), task).norms) == 2
    )
    with pytest.raises(UsageError, match="num_features"):
        space.to_model(space.sample(np.random.default_rng(0)), SimpleNamespace(name="cifar10"))


def test_model_trains_on_a_toy_graph(space):
    torch.manual_seed(0)
    x = torch.randn(8, 5)
    y = torch.tensor([0, 1, 2, 0, 1, 2, 0, 1])
    ring = [(i, (i + 1) % 8) for i in range(8)]
    ei = torch.tensor(ring + [(b, a) for a, b in ring]).t()
    for text in [
        "gat,sum,relu,2,8|gcn,mean,linear,1,classes",
        "gene-linear,mlp,elu,2,8|linear,max,linear,2,classes",
    ]:
        model = space.to_model(space.parse(text), SimpleNamespace(num_features=5, num_classes=3))
        optimiser = torch.optim.Adam(model.parameters(), lr=0.01)

        def eval_loss(model=model) -> float:
            model.eval()
            with torch.no_grad():
                return torch.nn.functional.cross_entropy(model(x, ei), y).item()

        before = eval_loss()
        for step in range(40):
            model.train()
            loss = torch.nn.functional.cross_entropy(model(x, ei), y)
            optimiser.zero_grad()
            loss.backward()
            if step == 0:  # every parameter (att, w_G, the aggregation MLP) takes part
                assert all(p.grad is not None and p.grad.abs().sum() > 0 for p in model.parameters())
            optimiser.step()
            assert math.isfinite(loss.item())
        assert eval_loss() < before


def test_two_layer_model_forward_on_real_cora(space, data_root):
    from nasrepro.tasks.planetoid import PlanetoidTask

    task = PlanetoidTask("cora")
    data = task.data(data_root)
    torch.manual_seed(0)
    for text in [
        "gat,sum,relu,8,8|gcn,mean,elu,1,classes",
        "sym-gat,max,tanh,2,16|gene-linear,mlp,linear,2,classes",
    ]:
        model = space.to_model(space.parse(text), task).eval()
        with torch.no_grad():
            out = model(data.x, data.edge_index)
        assert out.shape == (2708, 7)
        assert torch.isfinite(out).all()
