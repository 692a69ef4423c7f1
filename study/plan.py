"""The study's steps as data: which script runs, with which flags, on which data, per scale.

A `Step` names one existing script of ``scripts/`` and its flags (never the output flags: the
runner adds them), the datasets whose identity keys its cache, the steps whose results it
reads, and the lines the report prints beside it (a fallback, an expected difference).
`build_plan` resolves a scale against the datasets found under the data root:

- ``full``: the study's own protocols (BSDS500 250/250/100 x 58 attacks for every method
  family, the database-size study, memes when ``kaggle_memes`` is present, Flickr500K
  distractors when present, else labelled distractor views) for a GPU box;
- ``quick``: the same protocols on subsets that finish in about half an hour on 2 CPU cores;
- ``tiny``: a handful of images and attacks on ``sample`` (the test suite's end-to-end run).

A dataset that is missing falls back to ``sample`` and the step says so.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from data_retrieval import dataset_spec

#: The scales `build_plan` knows, smallest first.
SCALES = ("tiny", "quick", "full")

#: Placeholders in a step's flags, filled by the runner: the paper folder's feature stores,
#: and the result folder of another step (``{step:NAME}``).
FEATURES = "{features}"


def step_folder(name: str) -> str:
    """The placeholder of step ``name``'s result folder in another step's flags."""
    return f"{{step:{name}}}"


@dataclass(frozen=True)
class Step:
    """One experiment of the study: an existing script and its flags.

    Attributes
    ----------
    name : str
        Plain name; the result folder is ``<paper>/steps/<name>``.
    title : str
        One line for the report's heading.
    script : str
        The script under ``scripts/`` (without ``.py``) whose ``main(argv)`` runs it.
    argv : tuple of str
        Its flags, without the output flags; may hold `FEATURES` and `step_folder` marks.
    writes : str
        ``"folder"`` (the script takes ``--output``) or ``"stores"`` (feature stores under
        ``--features-dir``).
    datasets : tuple of str
        Named datasets (or ``folder:<path>``) it reads: their identity keys the cache.
    after : tuple of str
        Steps whose results it reads: their keys join its own.
    part : str
        ``"study"`` (arXiv 2206.00282) or ``"follow-up"`` (this repository's later work).
    notes : tuple of str
        Lines the report prints: fallbacks, expected differences from the study.
    figures : tuple of str
        Figures (relative to the step's folder, without extension) the report shows.
    table : str or None
        The CSV of its folder the report shows, if any.
    columns : tuple of str
        The columns of that table shown (all when empty).
    """

    name: str
    title: str
    script: str
    argv: tuple[str, ...]
    writes: str = "folder"
    datasets: tuple[str, ...] = ()
    after: tuple[str, ...] = ()
    part: str = "study"
    notes: tuple[str, ...] = ()
    figures: tuple[str, ...] = ()
    table: str | None = None
    columns: tuple[str, ...] = ()


@dataclass(frozen=True)
class Sizes:
    """The numbers a scale changes (the protocols stay the study's)."""

    main: str                   # dataset of the BSDS500 protocol
    protocol: tuple[int, int, int]  # experimental, control, attacked of each group
    keypoint_protocol: tuple[int, int, int]
    attacks: tuple[str, ...]    # --attacks (empty: the study's 58)
    hashes: tuple[str, ...]
    keypoints: tuple[str, ...]
    neural: tuple[str, ...]
    memes: str                  # dataset of the memes step
    memes_protocol: tuple[int, int, int]
    distractor_photos: str
    distractor_counts: tuple[int, ...]
    search_methods: tuple[str, ...]
    copies_dataset: str
    finetune: tuple[str, ...]
    evaluation_protocol: tuple[int, int, int]
    pair_count: int
    reducers: tuple[str, ...]
    notes: dict[str, tuple[str, ...]] = field(default_factory=dict)


def available(name: str, root: Path) -> bool:
    """Whether dataset ``name`` (a registered name or ``folder:<path>``) is present."""
    if name == "sample":
        return True
    if name.startswith("folder:"):
        return Path(name.partition(":")[2]).is_dir()
    folder = root / dataset_spec(name).folder
    return folder.is_dir() and any(folder.iterdir())


STUDY_HASHES = ("ahash", "phash", "dhash", "whash", "crop_resistant")
STUDY_KEYPOINTS = ("orb", "sift", "daisy", "latch")
#: Neural methods whose weights install offline; the study's SimCLR v2 ResNets need
#: ``scripts/download_simclr.py`` first (full scale only).
OFFLINE_NEURAL = ("efficientnet_lite0:distance=jensenshannon", "sscd_distilled")
SIMCLR = "simclr_v2_r50_2x_sk1"
#: The study's own configuration of it (its neuralhash.py: the EMA checkpoint, raw features
#: compared in Jensen-Shannon distance), for the comparison with its numbers.
SIMCLR_STUDY = f"{SIMCLR}:ema=True,distance='jensenshannon'"
SIMCLR_NOTE = (f"{SIMCLR} reads converted weights: run `python scripts/download_simclr.py "
               "--version v2 --model r50_2x_sk1 --category pretrained` once, and again with "
               "`--ema` for the study's EMA weights (internet, `pip install -e .[tensorflow]`) "
               "before this scale.")


def _sizes(scale: str, root: Path) -> Sizes:
    """The numbers of ``scale``, with the datasets found under ``root``."""
    bsds = available("bsds500", root)
    main = "bsds500" if bsds else "sample"
    notes: dict[str, tuple[str, ...]] = {}
    if not bsds:
        notes["main"] = ("BSDS500 is missing under the data root: this step ran on the 11 "
                         "`sample` photos instead (numbers not comparable with the study's).",)
    photos = "imagenet_samples" if available("imagenet_samples", root) else "sample"
    memes = "meme_templates" if available("meme_templates", root) else "sample"
    if scale == "tiny":
        return Sizes("sample", (6, 5, 1), (6, 5, 1), ("jpg_compression:50", "scaling:0.8",
                                                       "rotation:10"),
                     ("ahash", "dhash"), ("orb",), ("sscd_distilled",), "sample", (6, 5, 1),
                     "sample", (40,), ("dhash",), "sample", (), (6, 5, 1), 0, (),
                     {"main": ("tiny scale: the test suite's protocol on `sample`.",)})
    if scale == "quick":
        quick_main = (100, 100, 10) if bsds else (6, 5, 5)
        return Sizes(main, quick_main, (100, 100, 5) if bsds else (6, 5, 2), (),
                     STUDY_HASHES, STUDY_KEYPOINTS, OFFLINE_NEURAL, memes,
                     (50, 50, 4) if memes != "sample" else (6, 5, 2), photos, (1000, 4000),
                     ("dhash", "sscd_distilled"),
                     f"folder:{root / 'BSDS500' / 'val'}" if bsds else "sample",
                     ("--epochs", "1", "--max-steps", "12", "--batch-size", "16") if bsds
                     else ("--epochs", "1", "--max-steps", "4", "--batch-size", "4"),
                     (50, 50, 4) if bsds else (6, 5, 2), 100 if bsds else 0,
                     ("pca:64", "pca:32"), notes)
    flickr = available("flickr500k", root)
    main, missing = "bsds500", [d for d in ("bsds500", "imagenet_samples") if not
                                available(d, root)]
    if missing:  # the study's protocols need its data: no fallback at this scale
        notes["main"] = (f"{' and '.join(missing)} missing under the data root: get "
                         "BSDS500 with `python scripts/download_datasets.py bsds500` and "
                         "see docs/datasets.md before running the full scale.",)
    photos = "flickr500k" if flickr else "imagenet_samples"
    memes = "meme_templates"
    return Sizes(main, (250, 250, 100), (250, 250, 100), (), STUDY_HASHES, STUDY_KEYPOINTS,
                 (*OFFLINE_NEURAL, SIMCLR_STUDY), memes, (0, 0, 0),
                 photos, (10_000, 100_000, 500_000), ("dhash", "sscd_distilled", SIMCLR), main,
                 # the 180 training photos of BSDS500 (200 less the validation tenth) and
                 # its 200 test photos bound these two: 2 batches an epoch, 100 + 100
                 ("--model", SIMCLR, "--epochs", "10", "--batch-size", "64"),
                 (100, 100, 50), 0, ("pca:256", "pca:128", "pca:64", "pca:32", "ae:256"),
                 notes)


def _protocol(sizes: tuple[int, int, int]) -> tuple[str, ...]:
    e, c, a = sizes
    return ("--n-experimental", str(e), "--n-control", str(c), "--n-attacked", str(a))


def _attacks(s: Sizes) -> tuple[str, ...]:
    return ("--attacks", *s.attacks) if s.attacks else ()


_DIGEST_FIGURES = ("figures/roc", "figures/auc_heatmap", "figures/times")
_DIGEST_COLUMNS = ("algorithm", "auc", "micro_ap", "recall_at_fpr_0.005",
                   "db_seconds_per_image", "match_seconds_per_image")


def _benchmark(name: str, title: str, dataset: str, sizes: tuple[int, int, int],
               algorithms: tuple[str, ...], s: Sizes, notes: tuple[str, ...] = ()) -> Step:
    """A run of ``evaluate_copy_detection.py``: the study's benchmark protocol."""
    return Step(name, title, "evaluate_copy_detection",
                ("--dataset", dataset, *_protocol(sizes), *_attacks(s),
                 "--algorithms", *algorithms),
                datasets=(dataset,), notes=(*s.notes.get("main", ()), *notes),
                figures=_DIGEST_FIGURES, table="summary.csv", columns=_DIGEST_COLUMNS)


def _method_families(scale: str, s: Sizes) -> list[Step]:
    """The study's three method families on the BSDS500 protocol."""
    neural_note = (SIMCLR_NOTE,) if any(SIMCLR in n for n in s.neural) else (
        f"The study's best neural descriptor, SimCLR v2 ({SIMCLR}), needs weights downloaded "
        "with scripts/download_simclr.py (no network here): EfficientNet-Lite0 and SSCD "
        "(distilled), whose weights install offline, stand in for it.",)
    subset = () if scale != "quick" else (
        "A subset of the study's protocol (the same split seed and the 58 attacks, fewer "
        "images): expect differences of up to a few hundredths of AUC from the full "
        "protocol, more for the weakest methods; docs/performance.md has the full "
        "protocol's numbers from earlier runs of the same script.",)
    return [
        _benchmark("hashes", "Perceptual hashes under the 58 attacks", s.main, s.protocol,
                   s.hashes, s, subset),
        _benchmark("keypoints", "Keypoint methods under the 58 attacks", s.main,
                   s.keypoint_protocol, s.keypoints, s, subset),
        _benchmark("neural", "Neural descriptors under the 58 attacks", s.main, s.protocol,
                   s.neural, s, (*subset, *neural_note)),
    ]


def _memes(scale: str, s: Sizes, root: Path) -> Step:
    """The memes experiment: Kaggle memes against their templates when present, else the
    templates under the 58 attacks (text overlays among them), else `sample`."""
    algorithms = ("dhash", "phash", "sscd_distilled")
    if scale == "full" and available("kaggle_memes", root):
        templates = root / dataset_spec("kaggle_memes").folder / "templates"
        count = sum(1 for p in templates.iterdir() if p.is_file())
        return Step("memes", "Memes against their templates (Kaggle memes)",
                    "evaluate_copy_detection",
                    ("--dataset", "kaggle_memes", "--n-experimental", str(count),
                     "--n-control", "0", "--n-attacked", "0", "--queries",
                     str(root / dataset_spec("kaggle_memes").folder / "memes.csv"),
                     "--algorithms", *algorithms),
                    datasets=("kaggle_memes",), figures=_DIGEST_FIGURES,
                    table="summary.csv", columns=_DIGEST_COLUMNS)
    note = ("The Kaggle memes (`kaggle_memes`) are missing: "
            + ("the meme templates (`meme_templates`)" if s.memes == "meme_templates" else
               "the meme templates are missing too, so the `sample` photos")
            + " under the study's attacks stand in; memes made by people are not in this "
            "table.",)
    sizes = s.memes_protocol if s.memes_protocol != (0, 0, 0) else (100, 50, 20)
    return _benchmark("memes", "Memes: meme templates under the attacks", s.memes, sizes,
                      algorithms, s, note)


def _search(scale: str, s: Sizes) -> list[Step]:
    """Stores of the protocol, distractor views, and one search per database size."""
    prefix = "sample" if s.main == "sample" else "bsds500"
    steps: list[Step] = []
    flickr = s.distractor_photos == "flickr500k"
    view_note = () if flickr else (
        f"Distractors are seeded views of `{s.distractor_photos}` photos "
        "(make_distractors.py), labelled as such: the study used 500k Flickr photos.",)
    for method in s.search_methods:
        steps.append(Step(
            f"stores_{method}", f"The protocol's database and queries as {method} stores",
            "search_stores", ("--dataset", s.main, *_protocol(s.protocol), *_attacks(s),
                              "--method", method),
            writes="stores", datasets=(s.main,)))
        for count in s.distractor_counts:
            steps.append(Step(
                f"views_{method}_{count}", f"{count} distractors described by {method}",
                "make_distractors", ("--photos", s.distractor_photos, "--count", str(count),
                                     "--seed", "1", "--method", method,
                                     "--store-name", f"views{count}"),
                writes="stores", datasets=(s.distractor_photos,)))
        binary = method in STUDY_HASHES
        for count in (0, *s.distractor_counts):
            largest = count == max(s.distractor_counts)
            indexes = (("BFlat",) if binary else ("Flat",)) + (
                (("BIVF{nlist}",) if binary else ("IVF{nlist},Flat", "HNSW32"))
                if largest and scale == "full" else
                (("BIVF32",) if binary else ("IVF32,Flat",)) if largest else ())
            extra = ("--distractors", f"views{count}/{method}") if count else ()
            steps.append(Step(
                f"search_{method}_{count}",
                f"Search with {count} distractors ({method}): exact"
                + (", and Faiss inverted files (follow-up)" if largest else ""),
                "search_experiment",
                ("--database", f"{prefix}_database/{method}", *extra,
                 "--queries", f"{prefix}_queries/{method}", "--features-dir", FEATURES,
                 "--index", *indexes, "--k", "1", "10",
                 *(("--param", "nprobe=1,4,16") if largest else ()),
                 "--threads", "1", "--repeats", "1", "--warmup", "0"),
                datasets=(s.main, *((s.distractor_photos,) if count else ())),
                after=(f"stores_{method}", *((f"views_{method}_{count}",) if count else ())),
                notes=view_note if count else (),
                figures=("figures/recall_at_1_vs_qps",) if largest else (),
                table="search.csv",
                columns=("index", "params", "recall@1", "recall@10", "micro_ap_nearest",
                         "queries_per_s")))
    return steps


def _clustering(s: Sizes) -> list[Step]:
    """Originals and all their attacked copies, grouped by two methods."""
    method = s.search_methods[-1]
    store = f"copies_copies/{method}"
    common = ("--features", store, "--features-dir", FEATURES, "--galleries", "4")
    columns = ("name", "n_clusters", "v_measure", "pair_f1", "pair_precision", "ari")
    return [
        Step("copies", "Originals with all their attacked copies (ground truth of the "
             "clustering)", "search_stores",
             ("--dataset", s.copies_dataset, "--copies", "--prefix", "copies", *_attacks(s),
              "--method", method), writes="stores", datasets=(s.copies_dataset,),
             part="follow-up"),
        Step("cluster_duplicates", "Near-duplicate groups (components under a threshold)",
             "cluster", (*common, "--method", "duplicates", "--threshold", "0.1", "0.15",
                         "0.2", "0.25"),
             datasets=(s.copies_dataset,), after=("copies",), part="follow-up",
             figures=("figures/measures_vs_threshold", "figures/cluster_sizes"),
             table="clusters.json", columns=columns),
        Step("cluster_dbscan", "DBSCAN on a Faiss radius graph", "cluster",
             (*common, "--method", "dbscan", "--eps", "0.1", "0.15", "0.2",
              "--min-samples", "5"),
             datasets=(s.copies_dataset,), after=("copies",), part="follow-up",
             figures=("figures/measures_vs_eps",), table="clusters.json", columns=columns),
    ]


def _finetuning(scale: str, s: Sizes) -> list[Step]:
    """Contrastive fine-tuning, then the protocol on its checkpoints and the baseline."""
    data = ("--data", s.main, *(("--subset", "train") if s.main == "bsds500" else ()))
    model = () if "--model" in s.finetune else ("--model", "efficientnet_lite0")
    note = () if scale == "full" else (
        "A few optimiser steps of EfficientNet-Lite0 on CPU show the pipeline, not the gain "
        f"of the study's follow-up ({SIMCLR} fine-tuned on a GPU for 10 epochs).",)
    evaluation = ("--dataset", s.main,
                  *(("--subset", "test") if s.main == "bsds500" else ()),
                  *_protocol(s.evaluation_protocol))
    return [
        Step("finetune", "Contrastive (SimCLR) fine-tuning", "finetune",
             (*model, *s.finetune, *data, "--workers", "0"), datasets=(s.main,),
             part="follow-up", notes=note, table="log.csv",
             columns=("split", "epoch", "step", "loss", "lr", "images_per_s")),
        Step("finetune_eval", "The fine-tuned checkpoints on the protocol", "evaluate_finetuning",
             ("--run", step_folder("finetune"), *evaluation), datasets=(s.main,),
             after=("finetune",), part="follow-up",
             figures=("figures/measures_by_epoch", "figures/group_violins"),
             table="evaluation.csv",
             columns=("label", "auc", "micro_ap", "hard_auc", "rotation_auc",
                      "text_length_auc", "separation_ratio_median")),
    ]


def _compact(s: Sizes) -> list[Step]:
    """Separation of copies from unrelated pairs (with reducers), and pair verification."""
    subset = ("--subset", "test") if s.main == "bsds500" else ()
    count = ("--count", str(s.pair_count)) if s.pair_count else ()
    reducers = ("--reducers", *s.reducers) if s.reducers else ("--reducers",)
    methods = ("dhash", "phash", *(m for m in ("sscd_distilled",) if m in s.neural))
    return [
        Step("separation", "Separation of copies from unrelated pairs, compact descriptors",
             "separation_report",
             ("--dataset", s.main, *subset, *count, *_attacks(s), "--methods", *methods,
              *reducers),
             datasets=(s.main,), part="follow-up",
             figures=("figures/shares_above_t1", f"figures/separation_{methods[-1]}"),
             table="thresholds.json",
             columns=("method", "mu", "sigma", "t1", "t2", "fpr_t1", "copies above t1")),
        Step("verification", "Pair verification: a threshold chosen on validation pairs",
             "verify_pairs",
             ("--dataset", s.main, *subset, *count, *_attacks(s), "--methods", "phash",
              *(m for m in ("sscd_distilled",) if m in s.neural)),
             datasets=(s.main,), part="follow-up", figures=("figures/f1_curve",),
             table="scores.csv"),
    ]


def build_plan(scale: str, root: Path) -> list[Step]:
    """Every step of ``scale`` in the report's order, resolved against the data in ``root``.

    Parameters
    ----------
    scale : {"tiny", "quick", "full"}
    root : Path
        The data root (``--datasets-dir``, else ``$DATASETS_DIR``, else ``Datasets/``).

    Returns
    -------
    list of Step
    """
    if scale not in SCALES:
        raise ValueError(f"unknown scale {scale!r}; known: {', '.join(SCALES)}")
    s = _sizes(scale, root)
    steps = [*_method_families(scale, s), _memes(scale, s, root), *_search(scale, s)]
    steps += _clustering(s)
    if scale != "tiny":  # a training run is more than the tests' minute
        steps += _finetuning(scale, s)
    steps += _compact(s)
    names = [step.name for step in steps]
    assert len(set(names)) == len(names), names
    return steps
