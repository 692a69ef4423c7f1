"""Every registry of the library is a `helpers.Registry`, and every one gives the same error for
an unknown name, through the functions users call; renamed names keep working, with a warning.
"""

from __future__ import annotations

import ast
import importlib
import re
import warnings
from pathlib import Path

import numpy as np
import pytest
import torch
from torch import nn

import data_retrieval
import generator
import hashing
from clustering import cluster, method_params, methods
from data_retrieval import dataset_spec, load_dataset
from data_retrieval.datasets import DATASETS
from extractor import fit_reducer, get_model, reduce
from finetuning import (
    LOSSES,
    OPTIMIZERS,
    HeadConfig,
    build_optimizer,
    heads,
    make_loss,
    nt_xent,
    sscd_loss,
)
from finetuning.losses import HEAD_LOSSES, SIMCLR_TEMPERATURE, SSCD_TEMPERATURE
from helpers import Registry

REPO = Path(__file__).resolve().parents[1]
PACKAGES = ("helpers", "data_retrieval", "generator", "SimCLRv2", "extractor", "hashing",
            "fast_search", "clustering", "finetuning")

#: (module, registry, a registered name)
REGISTRIES = [
    ("data_retrieval.datasets", "DATASETS", "bsds500"),
    ("generator.registry", "ATTACKS", "rotation"),
    ("hashing.methods.registry", "ALGORITHMS", "phash"),
    ("extractor.models", "MODELS", "efficientnet_lite0"),
    ("extractor.reduce", "REDUCERS", "pca"),
    ("clustering.methods", "CLUSTER_METHODS", "kmeans"),
    ("finetuning.losses", "LOSSES", "nt_xent"),
    ("finetuning.losses", "HEAD_LOSSES", "triplet"),
    ("finetuning.optim", "OPTIMIZER_BUILDERS", "sgd"),
]


def _registry(module: str, name: str) -> Registry:
    if module.startswith("extractor"):
        importlib.import_module("extractor.zoo")  # the models join on first use
    return getattr(importlib.import_module(module), name)


def _module_level_registries() -> set[tuple[str, str]]:
    """(module, name) of every module-level ``NAME = Registry(...)`` in the library's source."""
    found = set()
    for package in PACKAGES:
        for path in sorted((REPO / package).rglob("*.py")):
            module = ".".join(path.relative_to(REPO).with_suffix("").parts)
            for node in ast.parse(path.read_text(encoding="utf-8")).body:
                value = node.value if isinstance(node, ast.Assign | ast.AnnAssign) else None
                if isinstance(value, ast.Call) and getattr(value.func, "id", "") == "Registry":
                    targets = node.targets if isinstance(node, ast.Assign) else [node.target]
                    found |= {(module, t.id) for t in targets if isinstance(t, ast.Name)}
    return found


def test_every_registry_of_the_library_is_listed_here_and_is_a_registry():
    assert _module_level_registries() == {(m, n) for m, n, _ in REGISTRIES}
    for module, name, known in REGISTRIES:
        registry = _registry(module, name)
        assert isinstance(registry, Registry), f"{module}.{name}"
        assert known in registry and known in registry.names(), f"{module}.{name}"
        assert registry.get(known) is registry.get(known)


#: (the public call with a near-miss name, the registry's kind, the asked name, the closest)
UNKNOWN = {
    "dataset": (lambda: load_dataset("bsds5000"), "dataset", "bsds5000", "bsds500"),
    "attack": (lambda: generator.get_attack("rotaton", 20), "attack family", "rotaton",
               "rotation"),
    "attack spec": (lambda: generator.parse_attack_specs(["rotaton:20"]), "attack family",
                    "rotaton", "rotation"),
    "algorithm": (lambda: hashing.get_algorithm("phsh"), "algorithm", "phsh", "phash"),
    "model": (lambda: get_model("efficientnet_lite9"), "model", "efficientnet_lite9",
              "efficientnet_lite0"),
    "reducer": (lambda: fit_reducer(np.zeros((4, 3)), "pac:2"), "reducer kind", "pac", "pca"),
    "cluster method": (lambda: cluster(np.zeros((4, 2)), "kmean", "l2", n_clusters=2),
                       "clustering method", "kmean", "kmeans"),
    "loss": (lambda: make_loss("ntxent"), "loss", "ntxent", "nt_xent"),
    "head loss": (lambda: HeadConfig(loss="triplets").check(), "head loss", "triplets",
                  "triplet"),
    "optimizer": (lambda: build_optimizer([nn.Linear(2, 2)], "larss"), "optimizer", "larss",
                  "lars"),
}


@pytest.mark.parametrize("what", list(UNKNOWN))
def test_an_unknown_name_gets_the_one_error_with_the_closest(what):
    call, kind, asked, closest = UNKNOWN[what]
    message = rf"^unknown {kind} '{asked}' \(closest: '{closest}'\); known: "
    with pytest.raises(ValueError, match=message) as info:
        call()
    assert re.search(rf"known: .*\b{closest}\b", str(info.value))


def test_folder_paths_are_a_family_of_dataset_names(tmp_path):
    assert f"folder:{tmp_path}" in DATASETS and "folder:<path>" in DATASETS.names()
    assert dataset_spec(f"folder:{tmp_path}").path() == tmp_path
    with pytest.raises(FileNotFoundError, match="no readable image"):
        load_dataset(f"folder:{tmp_path}")


def _scratch_copy(monkeypatch, module, name: str) -> None:
    """Replace ``module.<name>`` by a copy for the test, so what it registers goes away."""
    original = getattr(module, name)
    registry: Registry = Registry(original.kind)
    for key, entry in original.items():
        registry.add(key, entry)
    monkeypatch.setattr(module, name, registry)


def test_a_cluster_method_is_one_decorated_function(monkeypatch):
    _scratch_copy(monkeypatch, methods, "CLUSTER_METHODS")

    @methods.register_cluster_method("halves")
    def halves(points, parts: int = 2, *, device, max_memory, show_progress, notes):
        labels = np.arange(len(points)) * parts // len(points)
        return [{"parts": parts}], [labels.astype(np.int64)], None

    assert method_params("halves") == {"parts": 2}
    result = cluster(np.zeros((6, 2), np.float32), "halves", "l2", parts=3)
    assert result.labels[0].tolist() == [0, 0, 1, 1, 2, 2] and result.params == {"parts": 3}
    with pytest.raises(ValueError, match="'halves' is already registered"):
        methods.register_cluster_method("halves")(halves)


def test_a_registered_cluster_method_runs_from_the_script(monkeypatch, tmp_path):
    """cluster.py offers every registered method, and one without flags of its own takes
    --param K=V (checked against the method's parameters)."""
    from tests.conftest import run_main

    def halves(points, parts: int = 2, *, device, max_memory, show_progress, notes):
        labels = np.arange(len(points)) * parts // len(points)
        return [{"parts": parts}], [labels.astype(np.int64)], None

    # registered in the live registry for this test only: the script (loaded once per test
    # session) holds that registry, as a plug-in's registration would reach it
    monkeypatch.setitem(methods.CLUSTER_METHODS._entries, "halves",
                        methods.ClusterMethod(halves, {"parts": 2}))

    argv = ["--features", "sample:dhash", "--method", "halves", "--no-attributes"]
    code, err = run_main("cluster", [*argv, "--param", "parts=3", "--output",
                                     str(tmp_path / "run")])
    assert code == 0, err
    assert "halves" in (tmp_path / "run" / "clusters.json").read_text()
    code, err = run_main("cluster", [*argv, "--param", "part=3", "--output",
                                     str(tmp_path / "bad")])
    assert code == 2 and "halves has no parameter(s) ['part']" in err
    code, err = run_main("cluster", ["--features", "sample:dhash", "--param", "k=3",
                                     "--output", str(tmp_path / "bad2")])
    assert code == 2 and "--param is for methods without flags" in err


def test_a_reducer_kind_is_one_decorated_function(monkeypatch):
    _scratch_copy(monkeypatch, reduce, "REDUCERS")

    @reduce.register_reducer("first")
    def first(values, spec, **options):  # the first d coordinates
        return {"components": np.eye(values.shape[1], dtype=np.float32)[:spec.dim]}, {}

    x = np.arange(12, dtype=np.float32).reshape(4, 3)
    reducer = reduce.fit_reducer(x, "first:2")
    np.testing.assert_array_equal(reducer.transform(x), x[:, :2])
    with pytest.raises(ValueError, match="only ae and head take several widths"):
        reduce.parse_reducer("first:2-1")
    with pytest.raises(ValueError, match="head reducers are trained on pairs or triplets"):
        reduce.fit_reducer(x, "head:2")


def test_make_loss_uses_its_registry():
    a, b = torch.randn(6, 4, generator=torch.Generator().manual_seed(0)).chunk(2)
    assert LOSSES.names() == ["nt_xent", "sscd"]
    torch.testing.assert_close(make_loss("nt_xent")(a, b), nt_xent(a, b, SIMCLR_TEMPERATURE))
    torch.testing.assert_close(make_loss("nt_xent", 0.3)(a, b), nt_xent(a, b, 0.3))
    torch.testing.assert_close(make_loss("sscd", entropy_weight=2.0)(a, b),
                               sscd_loss(a, b, SSCD_TEMPERATURE, 2.0))


def test_build_optimizer_builds_each_registered_kind():
    expected = {"adam": torch.optim.Adam, "adamw": torch.optim.AdamW, "sgd": torch.optim.SGD}
    assert set(OPTIMIZERS) == {"lars", *expected}
    for name, kind in expected.items():
        optimizer = build_optimizer([nn.Linear(2, 2)], name, lr=0.5)
        assert type(optimizer) is kind and optimizer.defaults["lr"] == 0.5
        assert all("always_adapt" not in group for group in optimizer.param_groups)


# --- renamed names keep working for one release, with a DeprecationWarning --------------------

def _warns_and_returns(call, new_name: str):
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        value = call()
    assert any(issubclass(w.category, DeprecationWarning) and new_name in str(w.message)
               for w in caught), [str(w.message) for w in caught]
    return value


def test_renamed_registry_functions_warn_and_give_the_same_entry():
    spec = data_retrieval.dataset_spec("bsds500")
    assert _warns_and_returns(lambda: data_retrieval.get_dataset("bsds500"),
                              "dataset_spec") is spec
    assert _warns_and_returns(lambda: data_retrieval.dataset_info("bsds500"),
                              "dataset_spec") is spec
    assert _warns_and_returns(lambda: generator.get_family("rotation"),
                              "attack_spec") is generator.attack_spec("rotation")
    assert _warns_and_returns(lambda: heads.LOSSES, "HEAD_LOSSES") == tuple(HEAD_LOSSES.names())


def test_fit_reducer_takes_show_progress_and_still_the_old_progress():
    x = np.random.default_rng(0).normal(size=(40, 5))
    new = fit_reducer(x, "ae:2", epochs=2, show_progress=False)
    old = _warns_and_returns(lambda: fit_reducer(x, "ae:2", epochs=2, progress=False),
                             "show_progress")
    np.testing.assert_array_equal(new.transform(x), old.transform(x))


def test_configs_check_loss_and_optimizer_names_before_any_work(monkeypatch):
    """A misspelt loss or optimiser fails when the configuration is checked (not after the
    model is built), with the registries' one error; an optimiser registered later is
    accepted by the heads' configuration too."""
    from finetuning import FinetuneConfig, optim
    from finetuning.heads import HeadConfig

    with pytest.raises(ValueError, match=r"unknown loss 'ntxent' \(closest: 'nt_xent'\)"):
        FinetuneConfig(loss="ntxent").check()
    with pytest.raises(ValueError, match=r"unknown optimizer 'lrs' \(closest: 'lars'\)"):
        FinetuneConfig(optimizer="lrs").check()
    # registered for this test only (the modules hold the registry itself, not a copy)
    monkeypatch.setitem(optim.OPTIMIZER_BUILDERS._entries, "toysgd",
                        optim.OPTIMIZER_BUILDERS.get("sgd"))
    HeadConfig(optimizer="toysgd").check()


def test_misspelt_attack_ids_and_dataset_specs_name_the_closest():
    """The one unknown-name rule holds where a name arrives as a whole id or spec too."""
    from data_retrieval import load_images
    from generator import get_attack

    with pytest.raises(ValueError, match=r"'jpg_compresion_50' \(closest: 'jpg_compression_50'\)"):
        get_attack("jpg_compresion_50")
    with pytest.raises(ValueError, match=r"'bsd500' \(closest: 'bsds500'\)"):
        load_images("bsd500")


def test_a_dataset_without_a_lister_is_the_images_of_its_folder(monkeypatch, tmp_path):
    from PIL import Image

    from data_retrieval import datasets
    from data_retrieval.datasets import DatasetInfo, register_dataset

    _scratch_copy(monkeypatch, datasets, "DATASETS")
    (tmp_path / "toys").mkdir()
    for name in ("a", "b"):
        Image.new("RGB", (8, 8), name == "a" and "red" or "blue").save(tmp_path / "toys" /
                                                                        f"{name}.png")
    register_dataset(DatasetInfo("toys", "toys", "two squares", "make them"))
    dataset = load_dataset("toys", data_root_dir=tmp_path)
    assert sorted(r.image_id for r in dataset.records) == ["a", "b"]


def test_an_algorithm_returning_a_plain_array_is_told_what_to_return(monkeypatch):
    from PIL import Image

    from hashing.methods.registry import ALGORITHMS, AlgorithmEntry

    monkeypatch.setitem(ALGORITHMS._entries, "rawbits",
                        AlgorithmEntry(lambda batch: np.zeros((len(batch), 8), np.uint8)))
    with pytest.raises(TypeError, match="returned a ndarray; an algorithm returns BinaryCodes"):
        hashing.get_algorithm("rawbits").describe([Image.new("RGB", (8, 8))])


def test_clear_caches_frees_the_resize_matrices_too():
    from hashing.methods.resize import lanczos_matrix

    lanczos_matrix(64, 8)
    assert lanczos_matrix.cache_info().currsize > 0
    hashing.clear_caches()
    assert lanczos_matrix.cache_info().currsize == 0
