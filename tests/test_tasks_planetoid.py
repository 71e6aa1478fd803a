import shutil

import pytest

from nasrepro.errors import DataError
from nasrepro.harness.training import fit_and_evaluate
from nasrepro.tasks.planetoid import PlanetoidTask, load_planetoid


@pytest.mark.parametrize(
    ("name", "nodes", "features", "classes", "train", "val", "test", "edges"),
    [
        ("cora", 2708, 1433, 7, 140, 500, 1000, 10556),
        ("citeseer", 3327, 3703, 6, 120, 500, 1000, 9104),
    ],
)
def test_public_split_shapes(data_root, name, nodes, features, classes, train, val, test, edges):
    data = load_planetoid(name, data_root)
    assert data.x.shape == (nodes, features)
    assert int(data.y.max()) + 1 == classes
    assert (int(data.train_mask.sum()), int(data.val_mask.sum()), int(data.test_mask.sum())) == (
        train,
        val,
        test,
    )
    assert data.edge_index.shape[1] == edges  # directed count: Cora has 5,278 undirected edges
    assert abs(float(data.x[data.x.sum(1) > 0].sum(1).mean()) - 1.0) < 1e-5  # row-normalised features


def test_pubmed_without_allx_is_one_clear_error(data_root):
    with pytest.raises(DataError) as err:
        load_planetoid("pubmed", data_root)
    message = str(err.value)
    assert "missing raw/ind.pubmed.allx" in message and str(data_root / "PubMed") in message
    assert "nasrepro data download pubmed" in message and "\n" not in message


def test_corrupt_raw_file_is_detected(data_root, tmp_path):
    shutil.copytree(data_root / "Cora", tmp_path / "Cora")
    target = tmp_path / "Cora" / "raw" / "ind.cora.graph"
    target.chmod(0o644)
    blob = bytearray(target.read_bytes())
    blob[100] ^= 0xFF
    target.write_bytes(bytes(blob))
    with pytest.raises(DataError, match=r"corrupt raw/ind.cora.graph \(sha256 mismatch\)"):
        load_planetoid("cora", tmp_path)
    status = PlanetoidTask("cora").check_data(tmp_path)[0]
    assert status.status == "corrupt"


def test_missing_folder_status(tmp_path):
    assert PlanetoidTask("citeseer").check_data(tmp_path)[0].status == "missing"


def test_gcn_paper_recipe_reaches_78_percent_on_cora(data_root):
    """Kipf & Welling's GCN through the shared harness at the cpu preset (their 200-epoch recipe,
    seconds for a 2-layer GCN; smoke only proves the pipeline runs). They report 81.5 (Table 2)."""
    task = PlanetoidTask("cora")
    model = task.reference_arch("gcn").build(task)
    result = fit_and_evaluate(task, model, task.preset("cpu"), seed=0, data_dir=data_root)
    assert result["epochs"] == 200
    assert result["test"] > 78.0 and result["val"] > 75.0


def test_input_dropout_matches_dense_dropout_in_distribution():
    import torch

    from nasrepro.tasks.models.gnn import input_dropout

    torch.manual_seed(0)
    x = (torch.rand(400, 300) < 0.05).float() * torch.rand(400, 300)
    out = input_dropout(x, 0.5, training=True)
    assert torch.equal(out[x == 0], torch.zeros_like(out[x == 0]))  # zeros stay zero
    kept = out[x != 0] != 0
    assert abs(kept.float().mean().item() - 0.5) < 0.05  # each non-zero kept with probability 1 - p
    assert torch.allclose(out[x != 0][kept], 2 * x[x != 0][kept])  # and rescaled by 1 / (1 - p)
    assert torch.equal(input_dropout(x, 0.5, training=False), x)
