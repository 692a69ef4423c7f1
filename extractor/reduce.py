"""Reducers: shorter descriptors fitted on a feature store, applied to any store or model output.

A reducer maps (N, D) float features to (N, d) float features, d < D:

- ``pca:d``: the d leading principal components (the features centred on the fitting data's
  mean); ``pcaw:d`` also whitens (divides by the square root of each component's variance,
  as scikit-learn's ``PCA(whiten=True)``). Fitted from the covariance matrix, accumulated over
  blocks of a memory-mapped store in float64 (never the whole store in memory, unlike
  ``sklearn.decomposition.PCA``), then one symmetric eigendecomposition; equal to
  scikit-learn's PCA up to the sign of each component (a test checks it).
- ``rp:d``: a Gaussian random projection (scikit-learn's ``GaussianRandomProjection`` with the
  seed), which needs no data.
- ``ae:d[:activation]``: an autoencoder trained with torch (CPU or GPU) on the centred
  features scaled to unit average variance: one hidden layer with tied weights
  (``h = act(W x + b)``, ``x' = W^T h + c``), activation ``linear`` (the default, which spans the
  principal subspace), ``sigmoid`` or ``relu``; several widths (``ae:1024-512-256``) make a
  deeper encoder (ReLU between layers, linear code) with a mirrored decoder.
- ``head:d``: a projection trained on pairs or triplets for verification (`finetuning.heads`),
  saved in the same file format.

Every reducer can end with quantisation to bytes (``quantize="uint8"``: uniform 8-bit per
dimension between the fitting data's extremes; ``"sq8"``: Faiss's 8-bit scalar quantiser):
descriptors are then stored as ``d`` bytes and compared on their decoded values, so "256
floats" and "256 bytes" are compared fairly (`Reducer.encode`, `Reducer.decode`).

A fitted reducer is one file (``torch.save`` of tensors and plain data, loaded with
``weights_only=True``) that records the method it was fitted on; applying it to another
method's features is an error. ``get_model(name, reduce=...)`` and
``get_algorithm(name, reduce=...)`` take a file, or a reducer name (``"pca:128"``, or
``"pca:128+uint8"`` for the quantised one) that stands for ``Results/reducers/<method>/pca_128.pt``
(``pca_128_uint8.pt``) as ``scripts/fit_reducer.py`` writes it.

The kinds are a registry (`REDUCERS`, a `helpers.Registry` of `ReducerKind`), as every named
thing of the library: ``REDUCERS.get(kind)`` returns the registered entry (how the kind is
fitted and what its names may hold), `fit_reducer` builds a reducer and `load_reducer` reads
one; an unknown kind gets the one error that names the closest (``unknown reducer kind 'pac'
(closest: 'pca'); known: ...``). A new kind is one function decorated with
``@register_reducer("name")``. The parsed name, `ReducerSpec`, lives in
`extractor.reducer_spec`, below this module and `extractor.reducer_nets` (the torch networks),
so that the dependency goes one way.
"""

from __future__ import annotations

import dataclasses
import hashlib
import logging
import math
import os
import re
import time
import warnings
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from extractor.reducer_spec import ReducerSpec
from helpers import Registry, check_name, results_root, save_torch, unknown_name
from helpers.descriptors import FloatFeatures

log = logging.getLogger(__name__)

#: The ``format`` entry of a reducer file.
REDUCER_FORMAT = "image-similarity-lab/reducer-1"
ACTIVATIONS = ("linear", "sigmoid", "relu")
QUANTIZERS = ("uint8", "sq8")
#: Rows per block when fitting or applying (bounded memory on any store size).
BLOCK_ROWS = 1 << 15
#: A principal component whose variance is at most this share of the first one's has
#: (near-)zero variance: rank-deficient data (fewer distinct rows than dimensions, dependent
#: features); whitening divides it by about zero and turns rounding noise into huge values.
NEAR_ZERO_VARIANCE = 1e-6


#: How a kind fits: ``fit(values, spec, **options) -> (state, info)``; ``options`` are
#: `fit_reducer`'s keywords (seed, epochs, batch_size, lr, weight_decay, device,
#: show_progress), each kind taking those it uses.
FitFunction = Callable[..., tuple[dict[str, np.ndarray], dict[str, Any]]]


@dataclass(frozen=True)
class ReducerKind:
    """A registered reducer kind.

    Attributes
    ----------
    fit : callable or None
        ``fit(values, spec, **options) -> (state, info)`` (see `FitFunction`); ``None`` for a
        kind that `fit_reducer` does not fit (``head``: trained elsewhere, see ``fitted_by``).
    network : bool
        Applied by a torch network (`extractor.reducer_nets.ReducerNet`) rather than by a
        matrix (``components``, ``mean``, ``scale`` in the state).
    several_widths : bool
        Its names may hold several widths (``ae:1024-512-256``).
    activation : bool
        Its one-width names may end with an activation (``ae:256:relu``).
    fitted_by : str
        Where a kind without ``fit`` is made (named by `fit_reducer`'s error).
    """

    fit: FitFunction | None
    network: bool = False
    several_widths: bool = False
    activation: bool = False
    fitted_by: str = ""


#: Every reducer kind by name.
REDUCERS: Registry[ReducerKind] = Registry("reducer kind")


def register_reducer(name: str, *, network: bool = False, several_widths: bool = False,
                     activation: bool = False) -> Callable[[FitFunction], FitFunction]:
    """Decorator: register ``fit(values, spec, **options) -> (state, info)`` as the reducer
    kind ``name`` (see `ReducerKind` for the flags)."""

    def decorate(fit: FitFunction) -> FitFunction:
        REDUCERS.add(name, ReducerKind(fit, network, several_widths, activation))
        return fit

    return decorate


def parse_reducer(spec: str) -> ReducerSpec:
    """``"pca:128"``, ``"pcaw:64"``, ``"rp:256"``, ``"ae:256"``, ``"ae:256:sigmoid"``,
    ``"ae:1024-512-256"`` -> `ReducerSpec`.

    Raises
    ------
    ValueError
        Unknown kind or activation, a width that is not a positive integer, or an activation
        on a kind that has none.
    """
    parts = str(spec).strip().split(":")
    if len(parts) not in (2, 3) or not parts[1]:
        raise ValueError(f"reducer {spec!r} is not kind:dim[:activation] (e.g. pca:128, "
                         "ae:1024-512-256, ae:256:relu)")
    kind = parts[0]
    entry = REDUCERS.get(kind)
    if not re.fullmatch(r"\d+(-\d+)*", parts[1]):
        raise ValueError(f"reducer {spec!r}: widths must be positive integers separated by '-'")
    dims = tuple(int(x) for x in parts[1].split("-"))
    if any(d < 1 for d in dims):
        raise ValueError(f"reducer {spec!r}: widths must be >= 1")
    if len(dims) > 1 and not entry.several_widths:
        several = REDUCERS.list(filter=lambda _, k: k.several_widths)
        raise ValueError(f"reducer {spec!r}: only {' and '.join(several)} take several "
                         "widths")
    activation = parts[2] if len(parts) == 3 else "linear"
    if activation not in ACTIVATIONS:
        raise ValueError(unknown_name("autoencoder activation", activation, ACTIVATIONS))
    if activation != "linear" and (not entry.activation or len(dims) > 1):
        raise ValueError(f"reducer {spec!r}: an activation applies to the one-layer ae only "
                         "(deeper encoders use ReLU between layers and a linear code)")
    return ReducerSpec(kind, dims, activation)


@dataclass
class Reducer:
    """A fitted reducer (see the module docstring). Build one with `fit_reducer`, read one with
    `load_reducer`.

    Attributes
    ----------
    spec : ReducerSpec
    input_dim, output_dim : int
    state : dict of str to numpy.ndarray
        ``mean`` and ``components`` (d, D) for the linear kinds (``scale`` for whitening); the
        network's weights for ``ae`` and ``head``.
    method : str or None
        The method whose features it was fitted on (``sscd_distilled``); None accepts any.
    info : dict
        What it was fitted on, explained variance, training losses, quantiser.
    quantizer : dict or None
        ``{"kind": "uint8", "low": (d,), "high": (d,)}`` or a Faiss ``sq8`` quantiser's
        trained state.
    """

    spec: ReducerSpec
    input_dim: int
    output_dim: int
    state: dict[str, np.ndarray]
    method: str | None = None
    info: dict[str, Any] = field(default_factory=dict)
    quantizer: dict[str, Any] | None = None
    _net: Any = field(default=None, repr=False, compare=False)

    @property
    def name(self) -> str:
        """``pca:128``, with ``+uint8`` when quantised."""
        q = f"+{self.quantizer['kind']}" if self.quantizer else ""
        return self.spec.name + q

    @property
    def bytes_per_descriptor(self) -> int:
        """Storage of one reduced descriptor: ``d`` bytes when quantised, else ``4 d``."""
        return self.output_dim * (1 if self.quantizer else 4)

    # -- applying -------------------------------------------------------------------------------
    def _check(self, x: np.ndarray, method: str | None) -> np.ndarray:
        x = np.asarray(x)
        if x.ndim != 2 or x.shape[1] != self.input_dim:
            raise ValueError(f"reducer {self.name} takes (N, {self.input_dim}) features, got "
                             f"shape {x.shape}")
        if method is not None and self.method is not None and method != self.method:
            raise ValueError(f"reducer {self.name} was fitted on {self.method} features, not "
                             f"{method}: fit one on {method} (scripts/fit_reducer.py)")
        return x

    def reduce(self, x: np.ndarray, method: str | None = None) -> np.ndarray:
        """The reduced features (N, d) float32, before quantisation."""
        x = self._check(x, method)
        out = np.empty((len(x), self.output_dim), np.float32)
        for start in range(0, len(x), BLOCK_ROWS):
            block = np.asarray(x[start:start + BLOCK_ROWS], dtype=np.float32)
            out[start:start + len(block)] = self._reduce_block(block)
        return out

    def _reduce_block(self, block: np.ndarray) -> np.ndarray:
        if not REDUCERS.get(self.spec.kind).network:
            centred = block - self.state["mean"] if "mean" in self.state else block
            out = centred @ self.state["components"].T
            if "scale" in self.state:
                out /= self.state["scale"]
            return out.astype(np.float32, copy=False)
        import torch  # reason: torch only for the network kinds; linear reducers need NumPy

        net = self.network()
        with torch.inference_mode():
            return net.encode(torch.from_numpy(block)).numpy().astype(np.float32, copy=False)

    def network(self):
        """The torch module of an ``ae`` or ``head`` reducer (built on first use, CPU)."""
        if self._net is None:
            from extractor.reducer_nets import build_network  # reason: imports torch

            self._net = build_network(self.spec, self.input_dim, self.state)
        return self._net

    def encode(self, reduced: np.ndarray) -> np.ndarray:
        """Quantised codes (N, d) uint8 of reduced features (see `quantize`)."""
        if not self.quantizer:
            raise ValueError(f"reducer {self.name} has no quantiser")
        q = self.quantizer
        if q["kind"] == "uint8":
            span = np.maximum(q["high"] - q["low"], 1e-12)
            codes = np.rint((reduced - q["low"]) / span * 255.0)
            return np.clip(codes, 0, 255).astype(np.uint8)
        sq = _faiss_sq(q)
        return sq.compute_codes(np.ascontiguousarray(reduced, dtype=np.float32))

    def decode(self, codes: np.ndarray) -> np.ndarray:
        """The float values (N, d) that quantised codes stand for."""
        q = self.quantizer
        if q is None:
            raise ValueError(f"reducer {self.name} has no quantiser")
        if q["kind"] == "uint8":
            span = np.maximum(q["high"] - q["low"], 1e-12)
            return (q["low"] + codes.astype(np.float32) / 255.0 * span).astype(np.float32)
        return _faiss_sq(q).decode(np.ascontiguousarray(codes, dtype=np.uint8))

    def transform(self, x: np.ndarray, method: str | None = None) -> np.ndarray:
        """Reduced features (N, d) float32, as they are compared: quantised then decoded when
        the reducer has a quantiser. ``method`` (the features' method) is checked against the
        one the reducer was fitted on."""
        out = self.reduce(x, method)
        return self.decode(self.encode(out)) if self.quantizer else out

    __call__ = transform

    # -- saving ---------------------------------------------------------------------------------
    def save(self, path: str | os.PathLike) -> Path:
        """Write the reducer to ``path`` atomically (``.pt``); returns the path."""
        import torch  # reason: reading stores and parsing names import no torch

        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        content = {
            "format": REDUCER_FORMAT, "spec": self.spec.name, "input_dim": self.input_dim,
            "output_dim": self.output_dim, "method": self.method, "info": _plain(self.info),
            "state": {k: torch.from_numpy(np.ascontiguousarray(v)) for k, v in
                      self.state.items()},
            "quantizer": None if self.quantizer is None else {
                k: (torch.from_numpy(np.ascontiguousarray(v)) if isinstance(v, np.ndarray)
                    else v) for k, v in self.quantizer.items()},
        }
        return save_torch(content, path)


def _plain(value: Any) -> Any:
    """JSON-like data only (what ``weights_only`` loading accepts)."""
    if isinstance(value, dict):
        return {str(k): _plain(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_plain(v) for v in value]
    if isinstance(value, np.generic):
        return value.item()
    if isinstance(value, np.ndarray):
        return value.tolist()
    if isinstance(value, Path):
        return str(value)
    return value


def _faiss_sq(q: dict[str, Any]):
    import faiss  # reason: heavy, and only the sq8 quantiser needs it

    sq = faiss.ScalarQuantizer(int(q["dim"]), faiss.ScalarQuantizer.QT_8bit)
    faiss.copy_array_to_vector(np.ascontiguousarray(q["trained"], dtype=np.float32),
                               sq.trained)
    sq.is_trained = True
    return sq


def load_reducer(path: str | os.PathLike) -> Reducer:
    """Read a reducer file written by `Reducer.save`.

    Raises
    ------
    FileNotFoundError
        No such file.
    ValueError
        The file is not a reducer of this library.
    """
    import torch  # reason: reading stores and parsing names import no torch

    path = Path(path).expanduser()
    if not path.is_file():
        raise FileNotFoundError(f"reducer file {path} not found")
    try:
        content = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:
        raise ValueError(f"{path} is not a reducer file ({type(exc).__name__}: "
                         f"{str(exc).splitlines()[0][:120] if str(exc) else ''})") from exc
    if not isinstance(content, dict) or content.get("format") != REDUCER_FORMAT:
        raise ValueError(f"{path} is not a reducer file (no format {REDUCER_FORMAT!r})")
    missing = [k for k in ("spec", "input_dim", "output_dim", "state") if k not in content]
    if missing:
        raise ValueError(f"{path} is an incomplete reducer file (no {', '.join(missing)})")
    quantizer = content.get("quantizer")
    if quantizer is not None:
        quantizer = {k: (v.numpy() if isinstance(v, torch.Tensor) else v)
                     for k, v in quantizer.items()}
    return Reducer(parse_reducer(content["spec"]), int(content["input_dim"]),
                   int(content["output_dim"]),
                   {k: v.numpy() for k, v in content["state"].items()},
                   content.get("method"), dict(content.get("info") or {}), quantizer)


def reducers_dir() -> Path:
    """``Results/reducers``: where `resolve_reducer` looks for named reducers."""
    return results_root() / "reducers"


def resolve_reducer(spec: str | os.PathLike, method: str,
                    root: str | os.PathLike | None = None) -> Path:
    """The file a ``reduce=`` value stands for: an existing file as it is, or a reducer name
    (``"pca:128"``) as ``<root>/<method>/pca_128.pt`` (root: `reducers_dir`).

    Raises
    ------
    FileNotFoundError
        Neither: the message gives the command that fits the named reducer.
    ValueError
        A name that does not parse (see `parse_reducer`).
    """
    path = Path(spec).expanduser()
    if path.is_file():
        return path
    text = str(spec)
    if text.endswith(".pt") or os.sep in text:
        raise FileNotFoundError(f"reducer file {text} not found")
    name, plus, quantize = text.partition("+")
    if plus and quantize not in QUANTIZERS:
        raise ValueError(f"reducer {text!r}: the quantiser after '+' must be one of "
                         f"{', '.join(QUANTIZERS)}")
    parsed = parse_reducer(name)
    check_name(method, "method name")
    folder = Path(root) if root is not None else reducers_dir()
    file_name = parsed.file_name if not plus else f"{parsed.file_name[:-3]}_{quantize}.pt"
    target = folder / method / file_name
    if not target.is_file():
        how = ("train one with python scripts/train_verifier.py --model " + method
               if parsed.kind == "head" else
               f"fit one with python scripts/fit_reducer.py --store <dataset>/{method} "
               f"--reducer {parsed.name}" + (f" --quantize {quantize}" if plus else ""))
        raise FileNotFoundError(f"no reducer {text} fitted for {method} ({target} is "
                                f"missing): {how}")
    return target


# --- fitting ----------------------------------------------------------------------------------

def _blocks(x: np.ndarray) -> Iterable[np.ndarray]:
    rows = BLOCK_ROWS
    for start in range(0, len(x), rows):
        yield np.asarray(x[start:start + rows], dtype=np.float64)


def covariance(x: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Mean (D,) and covariance (D, D) with ``n - 1`` in the denominator, float64, over blocks
    of ``x`` (a memory-mapped store is read once per pass, never copied whole).

    Raises
    ------
    ValueError
        Fewer than two rows, or non-finite values (the first bad row is named).
    """
    n, dim = x.shape
    if n < 2:
        raise ValueError(f"fitting needs at least 2 rows, got {n}")
    total = np.zeros(dim)
    for start, block in zip(range(0, n, BLOCK_ROWS), _blocks(x), strict=True):
        if not np.isfinite(block).all():
            row = start + int(np.flatnonzero(~np.isfinite(block).all(1))[0])
            raise ValueError(f"row {row} of the fitting features is not finite")
        total += block.sum(0)
    mean = total / n
    cov = np.zeros((dim, dim))
    for block in _blocks(x):
        centred = block - mean
        cov += centred.T @ centred
    return mean, cov / (n - 1)


def explained_variance(x: np.ndarray) -> np.ndarray:
    """Variance of every principal component of ``x`` (D,), largest first (what
    ``sklearn.decomposition.PCA().explained_variance_`` gives when n > D)."""
    _, cov = covariance(x)
    return np.clip(np.linalg.eigvalsh(cov)[::-1], 0, None)


def _fit_pca(x: np.ndarray, dim: int, whiten: bool) -> tuple[dict[str, np.ndarray], dict]:
    if dim > len(x) - 1:
        raise ValueError(f"reducer {'pcaw' if whiten else 'pca'}:{dim}: {dim} components need "
                         f"at least {dim + 1} rows, got {len(x)}")
    mean, cov = covariance(x)
    values, vectors = np.linalg.eigh(cov)
    values, vectors = values[::-1], vectors[:, ::-1]
    values = np.clip(values, 0, None)
    components = vectors[:, :dim].T
    # scikit-learn's sign convention (svd_flip on the components): the largest entry of each
    # component in absolute value is positive, so that a refit gives the same descriptors.
    signs = np.sign(components[np.arange(dim), np.abs(components).argmax(1)])
    components = components * np.where(signs == 0, 1, signs)[:, None]
    state = {"mean": mean.astype(np.float32), "components": components.astype(np.float32)}
    total = values.sum()
    ratio = values / total if total > 0 else np.zeros_like(values)
    info = {"explained_variance": values[:dim].tolist(),
            "explained_variance_ratio": ratio[:dim].tolist(),
            "cumulative_explained_variance": float(ratio[:dim].sum()),
            "spectrum_ratio": ratio.tolist()}
    if whiten:
        state["scale"] = np.sqrt(np.maximum(values[:dim], 1e-12)).astype(np.float32)
        flat = int(np.sum(values[:dim] <= values[0] * NEAR_ZERO_VARIANCE))
        info["near_zero_variance_components"] = flat
        if flat:
            rank = dim - flat
            log.warning("pcaw:%d: %d of the %d components have (near-)zero variance (at most "
                        "%g of the first's: the fitting data are rank-deficient); whitening "
                        "divides them by about zero, so their outputs are magnified noise. "
                        "Use %s, or pca:%d, or fit on more varied rows", dim, flat, dim,
                        NEAR_ZERO_VARIANCE, f"pcaw:{rank}" if rank else "pca", dim)
    return state, info


def _fit_rp(dim: int, input_dim: int, seed: int) -> tuple[dict[str, np.ndarray], dict]:
    from sklearn.random_projection import GaussianRandomProjection  # reason: heavy import

    if not 0 <= seed < 2**32:
        raise ValueError(f"rp:{dim}: the seed must be in [0, 2**32) (scikit-learn's random "
                         f"projection), got {seed}")
    rp = GaussianRandomProjection(n_components=dim, random_state=seed)
    rp.fit(np.zeros((1, input_dim), np.float32))
    return {"components": np.asarray(rp.components_, np.float32)}, {"seed": seed}


# --- the kinds --------------------------------------------------------------------------------

@register_reducer("pca")
def _pca(values: np.ndarray, spec: ReducerSpec, **_options: Any
         ) -> tuple[dict[str, np.ndarray], dict]:
    """``pca:d``: the d leading principal components (from the streamed covariance)."""
    return _fit_pca(values, spec.dim, whiten=False)


@register_reducer("pcaw")
def _pcaw(values: np.ndarray, spec: ReducerSpec, **_options: Any
          ) -> tuple[dict[str, np.ndarray], dict]:
    """``pcaw:d``: PCA whose outputs are divided by the square root of their variance."""
    return _fit_pca(values, spec.dim, whiten=True)


@register_reducer("rp")
def _rp(values: np.ndarray, spec: ReducerSpec, *, seed: int = 0, **_options: Any
        ) -> tuple[dict[str, np.ndarray], dict]:
    """``rp:d``: a seeded Gaussian random projection (the rows are only checked)."""
    check_finite(values)  # PCA and autoencoders check while they read the rows
    return _fit_rp(spec.dim, values.shape[1], seed)


@register_reducer("ae", network=True, several_widths=True, activation=True)
def _ae(values: np.ndarray, spec: ReducerSpec, **options: Any
        ) -> tuple[dict[str, np.ndarray], dict]:
    """``ae:d[:activation]``, ``ae:w1-...-d``: an autoencoder trained with torch
    (`extractor.reducer_nets.train_autoencoder`, which takes the training options)."""
    from extractor.reducer_nets import train_autoencoder  # reason: imports torch

    return train_autoencoder(values, spec, **options)


#: ``head:d``: a projection trained on pairs or triplets (`finetuning.heads`), saved in the
#: reducer format; `fit_reducer` does not fit it.
REDUCERS.add("head", ReducerKind(None, network=True, several_widths=True,
                                 fitted_by="trained on pairs or triplets: "
                                           "scripts/train_verifier.py"))



def fit_reducer(
    features: Any,
    spec: str | ReducerSpec,
    *,
    method: str | None = None,
    seed: int = 0,
    epochs: int = 30,
    batch_size: int = 256,
    lr: float = 1e-3,
    weight_decay: float = 0.0,
    device: str = "auto",
    quantize: str | None = None,
    show_progress: bool | None = None,
    progress: bool | None = None,
) -> Reducer:
    """Fit a reducer on features.

    Parameters
    ----------
    features : array (N, D), FloatFeatures or extractor.FeatureStore
        The fitting data (a store stays memory-mapped). Its method (a store's model, the
        features' ``method``) is recorded unless ``method`` is given.
    spec : str or ReducerSpec
        ``pca:d``, ``pcaw:d``, ``rp:d``, ``ae:d[:activation]``, ``ae:w1-...-d`` (see
        `parse_reducer`). ``d`` must not exceed the input dimension (nor, for PCA, N - 1).
    method : str, optional
    seed : int
        Random projection matrix; autoencoder initialisation and batch order.
    epochs, batch_size, lr, weight_decay : autoencoder training (Adam, MSE loss).
    device : str
        Where the autoencoder trains (``auto``: CUDA when present).
    quantize : {"uint8", "sq8"}, optional
        Fit a byte quantiser on the reduced fitting data too.
    show_progress : bool or None
        A bar per autoencoder epoch; ``None`` shows it when stderr is a terminal.
    progress : bool, optional
        The deprecated name of ``show_progress`` (``True`` meant "when a terminal").

    Returns
    -------
    Reducer

    Raises
    ------
    ValueError
        A bad spec, too few rows, an output width above the input's, non-finite features.
    """
    if progress is not None:
        if show_progress is not None:
            raise ValueError("give show_progress= only (progress= is its deprecated name)")
        warnings.warn("fit_reducer(progress=) is deprecated: use show_progress=",
                      DeprecationWarning, stacklevel=2)
        show_progress = None if progress else False
    spec = parse_reducer(spec) if isinstance(spec, str) else spec
    kind = REDUCERS.get(spec.kind)
    values, fitted_on = _fitting_data(features)
    method = method if method is not None else fitted_on.get("method")
    n, input_dim = values.shape
    if kind.fit is None:
        raise ValueError(f"{spec.kind} reducers are {kind.fitted_by}")
    if spec.dim > input_dim:
        raise ValueError(f"reducer {spec.name}: {spec.dim} outputs from {input_dim}-d features")
    if quantize is not None and quantize not in QUANTIZERS:
        raise ValueError(f"quantize must be one of {', '.join(QUANTIZERS)}, got {quantize!r}")
    tic = time.perf_counter()
    state, info = kind.fit(values, spec, seed=seed, epochs=epochs, batch_size=batch_size, lr=lr,
                           weight_decay=weight_decay, device=device,
                           show_progress=show_progress)
    info = {**info, "fitted_on": fitted_on, "seconds": round(time.perf_counter() - tic, 3)}
    reducer = Reducer(spec, input_dim, spec.dim, state, method, info)
    if quantize is not None:
        reducer = with_quantizer(reducer, values, quantize)
    log.info("fitted %s on %d x %d features of %s in %.1f s", reducer.name, n, input_dim,
             method or "unnamed features", info["seconds"])
    return reducer


def _fitting_data(features: Any) -> tuple[np.ndarray, dict[str, Any]]:
    if isinstance(features, FloatFeatures):
        return features.values, {"method": features.method, "count": len(features)}
    if hasattr(features, "features") and hasattr(features, "meta"):  # a FeatureStore
        meta = features.meta
        ids = "\n".join(features.ids).encode()
        return features.features, {
            "method": meta.get("model"), "dataset": meta.get("dataset"),
            "count": int(meta.get("count", len(features.features))),
            "ids_sha256": hashlib.sha256(ids).hexdigest()[:16]}
    values = np.asarray(features) if not isinstance(features, np.memmap) else features
    if values.ndim != 2:
        raise ValueError(f"features must be (N, D), got shape {values.shape}")
    return values, {"count": int(len(values))}


def check_finite(x: np.ndarray) -> None:
    """Raise ValueError naming the first row of ``x`` that holds NaN or infinity (read in
    blocks)."""
    for start in range(0, len(x), BLOCK_ROWS):
        block = np.asarray(x[start:start + BLOCK_ROWS])
        bad = ~np.isfinite(block).all(1)
        if bad.any():
            raise ValueError(f"row {start + int(np.flatnonzero(bad)[0])} of the fitting "
                             "features is not finite")


def with_quantizer(reducer: Reducer, values: Any, kind: str) -> Reducer:
    """A copy of ``reducer`` that also quantises to bytes (``uint8`` or ``sq8``), the quantiser
    fitted on ``values`` (features or a store, reduced first); the reduction is not refitted.

    Raises
    ------
    ValueError
        Unknown kind, or reduced values that are not finite.
    """
    if kind not in QUANTIZERS:
        raise ValueError(f"quantize must be one of {', '.join(QUANTIZERS)}, got {kind!r}")
    values, _ = _fitting_data(values)
    out = dataclasses.replace(reducer, quantizer=_fit_quantizer(reducer, values, kind),
                              info=dict(reducer.info))
    out._net = reducer._net
    return out


def _fit_quantizer(reducer: Reducer, values: np.ndarray, kind: str) -> dict[str, Any]:
    reduced = reducer.reduce(values)
    if not np.isfinite(reduced).all():
        raise ValueError(f"reducer {reducer.name} gives non-finite values on its fitting data")
    if kind == "uint8":
        return {"kind": "uint8", "low": reduced.min(0).astype(np.float32),
                "high": reduced.max(0).astype(np.float32)}
    import faiss  # reason: heavy, and only the sq8 quantiser needs it

    sq = faiss.ScalarQuantizer(reduced.shape[1], faiss.ScalarQuantizer.QT_8bit)
    sq.train(np.ascontiguousarray(reduced))
    return {"kind": "sq8", "dim": int(reduced.shape[1]),
            "trained": faiss.vector_to_array(sq.trained).astype(np.float32)}


def cumulative_variance_dims(ratio: np.ndarray, levels: Iterable[float] = (0.5, 0.8, 0.9, 0.95,
                                                                           0.99)) -> dict:
    """How many components reach each level of cumulative explained variance."""
    cumulative = np.cumsum(ratio)
    return {f"{level:g}": int(min(len(ratio), np.searchsorted(cumulative, level) + 1))
            for level in levels if not math.isnan(level)}
