"""Optional compiled kernels, built on first use with the system's C compiler.

Some distances are transcendental functions of every (query, database, dimension) triple, so
a chain of torch element-wise operations is bound by memory traffic and by its
general-purpose ``log``. A small fused C loop (``hashing/jensenshannon.c``) that the compiler
vectorises is an order of magnitude faster on CPU (``scripts/benchmark_hashing.py``). The
keypoint matcher (``hashing/distances/keypoints.c``) fuses xor, popcount and the minimum over each
database image's descriptors, so no (descriptors x descriptors) matrix is ever written. The
pair kernel (``hashing/pairs.c``) recomputes the distances of a neighbour graph's edges from
their two rows in one pass each (``clustering.graph``).

The shared library is compiled once per machine and source version into a cache folder
(``$IMAGE_SIMILARITY_LAB_CACHE`` or ``~/.cache/image_similarity_lab``) and loaded with
:mod:`ctypes` (which releases the GIL, so threads run kernels in parallel). Without a
compiler, or with ``IMAGE_SIMILARITY_LAB_NO_NATIVE=1``, :func:`js_kernel` returns ``None`` and
callers use their NumPy or torch path, which gives the same results, only slower.
"""

from __future__ import annotations

import ctypes
import hashlib
import logging
import os
import platform
import shutil
import subprocess
import tempfile
import threading
from pathlib import Path

import numpy as np

logger = logging.getLogger(__name__)

_SOURCE = Path(__file__).with_name("jensenshannon.c")
_KEYPOINTS = Path(__file__).with_name("keypoints.c")
_PAIRS = Path(__file__).with_name("pairs.c")
_FLAGS = ["-O3", "-march=native", "-fopenmp-simd", "-fPIC", "-shared"]
#: Environment switches: set (to anything but 0) to use the NumPy/torch paths only, or the
#: keypoint kernel's portable loop rather than its AVX-512 form.
NO_NATIVE, NO_SIMD = "IMAGE_SIMILARITY_LAB_NO_NATIVE", "IMAGE_SIMILARITY_LAB_NO_SIMD"
_LOCK = threading.Lock()
_LOADED: dict[str, ctypes.CDLL | None] = {}
_FLOAT_P = ctypes.POINTER(ctypes.c_float)


def switched_off(name: str) -> bool:
    """Whether the environment switch ``name`` (`NO_NATIVE`, `NO_SIMD`) is set."""
    return os.environ.get(name, "") not in ("", "0")


def cache_dir() -> Path:
    """Folder holding compiled kernels."""
    root = os.environ.get("IMAGE_SIMILARITY_LAB_CACHE")
    if root:
        return Path(root)
    base = os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache"
    return Path(base) / "image_similarity_lab"


def _cpu_signature() -> str:
    """What -march=native depends on: the CPU model and its feature flags."""
    text = platform.machine() + platform.processor()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith(("model name", "flags", "Features")):
                text += line
                if line.startswith(("flags", "Features")):
                    break
    except OSError:
        pass
    return text


def _compiler() -> str | None:
    for name in (os.environ.get("CC"), "cc", "gcc", "clang"):
        if name and shutil.which(name):
            return name
    return None


def _build(source: Path) -> Path:
    """Compile ``source`` into the cache (atomically) and return the library's path."""
    compiler = _compiler()
    if compiler is None:
        raise RuntimeError("no C compiler found (set CC, or install gcc or clang)")
    version = subprocess.run([compiler, "--version"], capture_output=True, text=True,
                             check=False).stdout
    key = hashlib.sha256("\0".join([source.read_text(), " ".join(_FLAGS), version,
                                    _cpu_signature()]).encode()).hexdigest()[:16]
    target = cache_dir() / f"{source.stem}-{key}.so"
    if target.exists():
        return target
    target.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=target.parent) as tmp:
        built = Path(tmp) / target.name
        proc = subprocess.run([compiler, *_FLAGS, str(source), "-o", str(built)],
                              capture_output=True, text=True, check=False)
        if proc.returncode != 0:
            raise RuntimeError(f"{compiler} failed on {source.name}: {proc.stderr.strip()}")
        os.replace(built, target)
    logger.info("compiled %s into %s", source.name, target)
    return target


def _kernel(source: Path, setup, what: str) -> ctypes.CDLL | None:
    """The compiled library of ``source`` with ``setup(lib)`` applied, or ``None`` when it
    cannot be built (or ``IMAGE_SIMILARITY_LAB_NO_NATIVE`` is set); built and loaded once."""
    name = source.name
    with _LOCK:
        if name in _LOADED:
            return _LOADED[name]
        lib = None
        if not switched_off(NO_NATIVE):
            try:
                lib = ctypes.CDLL(str(_build(source)))
                setup(lib)
            except (OSError, RuntimeError, subprocess.SubprocessError) as error:
                logger.warning("compiled %s kernel unavailable (%s); using the slower "
                               "NumPy/torch path", what, error)
                lib = None
        _LOADED[name] = lib
        return lib


def _setup_js(lib: ctypes.CDLL) -> None:
    lib.js_block.argtypes = [_FLOAT_P, _FLOAT_P, ctypes.c_long, _FLOAT_P, ctypes.c_long,
                             ctypes.c_long, _FLOAT_P, ctypes.c_long]
    lib.js_block.restype = None
    lib.js_log1p_array.argtypes = [_FLOAT_P, ctypes.c_long, _FLOAT_P]
    lib.js_log1p_array.restype = None


def js_kernel() -> ctypes.CDLL | None:
    """The compiled Jensen-Shannon kernel, or ``None`` when it cannot be built."""
    return _kernel(_SOURCE, _setup_js, "Jensen-Shannon")


def _setup_keypoints(lib: ctypes.CDLL) -> None:
    pointer, long = ctypes.c_void_p, ctypes.c_long
    lib.local_hamming_min.argtypes = [pointer, pointer, long, long, pointer, pointer, long,
                                      long, pointer, long]
    lib.local_hamming_min.restype = None
    lib.local_hamming_simd.argtypes = []
    lib.local_hamming_simd.restype = ctypes.c_int
    if lib.local_hamming_simd():
        lib.local_hamming_min_t.argtypes = lib.local_hamming_min.argtypes
        lib.local_hamming_min_t.restype = None


def keypoint_kernel() -> ctypes.CDLL | None:
    """The compiled kernel that matches binary keypoint descriptors
    (``hashing/distances/keypoints.c``), or ``None`` when it cannot be built."""
    return _kernel(_KEYPOINTS, _setup_keypoints, "keypoint matching")


#: What ``out`` of `local_hamming_min` starts at: a result still there means "no descriptor".
KEYPOINT_NONE = np.iinfo(np.int32).max


def local_hamming_min(lib: ctypes.CDLL, q: np.ndarray, qskip: np.ndarray, group: int,
                      d: np.ndarray, counts: np.ndarray, out: np.ndarray) -> None:
    """Min-reduce into ``out`` (rows // group, N) int32 the fewest differing bits between
    each query row of ``q`` ((rows, 4) uint64; rows with ``qskip`` set are skipped) and each
    database image's descriptors (``d`` (N, K, 4) uint64 words, ``counts`` (N,) int64); see
    ``hashing/distances/keypoints.c``. ``out`` must start at `KEYPOINT_NONE`."""
    for array in (q, qskip, d, counts):
        assert array.flags.c_contiguous
    assert q.dtype == d.dtype == np.uint64 and counts.dtype == np.int64
    assert qskip.dtype == np.uint8 and qskip.shape == (len(q),)
    assert q.shape[1] == 4 and d.shape[2] == 4 and len(q) % group == 0
    assert out.dtype == np.int32 and out.strides[1] == 4
    assert out.shape == (len(q) // group, len(d))
    lib.local_hamming_min(q.ctypes.data, qskip.ctypes.data, q.shape[0], group, d.ctypes.data,
                          counts.ctypes.data, d.shape[0], d.shape[1], out.ctypes.data,
                          out.strides[0] // 4)


def keypoint_simd(lib: ctypes.CDLL) -> bool:
    """Whether the keypoint kernel ``lib`` has its AVX-512 VPOPCNTDQ form
    (`local_hamming_min_t`) and may use it: compiled for such a CPU, and
    ``IMAGE_SIMILARITY_LAB_NO_SIMD`` unset (tests set it to exercise the portable loop)."""
    if switched_off(NO_SIMD):
        return False
    return bool(lib.local_hamming_simd())


def transpose_blocks(d: np.ndarray) -> np.ndarray:
    """``d`` (N, K, 4) uint64 descriptor words as `local_hamming_min_t` reads them:
    (N, ceil(K / 8), 4, 8), blocks of 8 descriptors stored word by word, zero-padded."""
    n, k, _ = d.shape
    blocks = -(-k // 8)
    padded = np.zeros((n, blocks * 8, 4), dtype=np.uint64)
    padded[:, :k] = d
    return np.ascontiguousarray(padded.reshape(n, blocks, 8, 4).transpose(0, 1, 3, 2))


def local_hamming_min_t(lib: ctypes.CDLL, q: np.ndarray, qskip: np.ndarray, group: int,
                        dt: np.ndarray, counts: np.ndarray, out: np.ndarray) -> None:
    """`local_hamming_min` on a database laid out by `transpose_blocks` (AVX-512 only:
    check `keypoint_simd` first)."""
    for array in (q, qskip, dt, counts):
        assert array.flags.c_contiguous
    assert q.dtype == dt.dtype == np.uint64 and counts.dtype == np.int64
    assert qskip.dtype == np.uint8 and qskip.shape == (len(q),)
    assert q.shape[1] == 4 and dt.shape[2:] == (4, 8) and len(q) % group == 0
    assert out.dtype == np.int32 and out.strides[1] == 4
    assert out.shape == (len(q) // group, len(dt)) and len(counts) == len(dt)
    assert int(counts.max(initial=0)) <= 8 * dt.shape[1]
    lib.local_hamming_min_t(q.ctypes.data, qskip.ctypes.data, q.shape[0], group,
                            dt.ctypes.data, counts.ctypes.data, dt.shape[0], dt.shape[1],
                            out.ctypes.data, out.strides[0] // 4)


def _setup_pairs(lib: ctypes.CDLL) -> None:
    pointer, long = ctypes.c_void_p, ctypes.c_long
    lib.pair_distances.argtypes = [pointer, long, pointer, pointer, long, ctypes.c_int,
                                   pointer, pointer]
    lib.pair_distances.restype = None


def pair_kernel() -> ctypes.CDLL | None:
    """The compiled kernel that recomputes the distances of listed row pairs
    (``hashing/pairs.c``), or ``None`` when it cannot be built."""
    return _kernel(_PAIRS, _setup_pairs, "pair distance")


#: Metric codes of `pair_distances`.
PAIR_METRICS = {"l2": 0, "l1": 1, "cosine": 2}


def pair_distances(lib: ctypes.CDLL, x: np.ndarray, rows: np.ndarray, cols: np.ndarray,
                   metric: str, scale: np.ndarray | None, out: np.ndarray) -> None:
    """Fill ``out`` (m,) float32 with the float64 distances between rows ``rows[e]`` and
    ``cols[e]`` (int64) of ``x`` (N, dim) float32 in ``metric`` (`PAIR_METRICS`); cosine
    needs ``scale`` (N,) float64, the rows' inverse norms. See ``hashing/pairs.c``."""
    # checked with raise, not assert: the kernel reads raw memory
    if not all(a.flags.c_contiguous for a in (x, rows, cols, out)) or x.ndim != 2 \
            or x.dtype != np.float32 or out.dtype != np.float32 \
            or rows.dtype != np.int64 or cols.dtype != np.int64 \
            or not len(rows) == len(cols) == len(out):
        raise TypeError("pair_distances takes C-contiguous float32 rows and out, int64 row "
                        "and column arrays of out's length")
    if len(rows) and not (min(rows.min(), cols.min()) >= 0
                          and max(rows.max(), cols.max()) < len(x)):
        raise IndexError(f"pair rows outside the {len(x)} rows")  # the kernel would crash
    code = PAIR_METRICS[metric]
    if code == 2 and (scale is None or scale.dtype != np.float64 or scale.shape != (len(x),)
                      or not scale.flags.c_contiguous):
        raise TypeError("cosine pair distances need the rows' inverse norms (N,) float64")
    lib.pair_distances(x.ctypes.data, x.shape[1], rows.ctypes.data, cols.ctypes.data,
                       len(rows), code, None if scale is None else scale.ctypes.data,
                       out.ctypes.data)


def reset() -> None:
    """Forget loaded kernels (tests use it to exercise the fallback)."""
    with _LOCK:
        _LOADED.clear()


def _ptr(array: np.ndarray) -> ctypes._Pointer:
    return array.ctypes.data_as(_FLOAT_P)


def js_log1p(lib: ctypes.CDLL, y: np.ndarray) -> np.ndarray:
    """The kernel's float32 ``log1p`` (for tests of its accuracy)."""
    y = np.ascontiguousarray(y, dtype=np.float32)
    out = np.empty_like(y)
    lib.js_log1p_array(_ptr(y), y.size, _ptr(out))
    return out


def js_block(lib: ctypes.CDLL, p: np.ndarray, c: np.ndarray, r: np.ndarray,
             out: np.ndarray) -> None:
    """Fill ``out`` (a C-contiguous row block, float32) with the kernel's sums for p x r."""
    for array in (p, c, r):
        assert array.dtype == np.float32 and array.flags.c_contiguous
    assert out.dtype == np.float32 and out.strides[1] == 4
    lib.js_block(_ptr(p), _ptr(c), p.shape[0], _ptr(r), r.shape[0], p.shape[1], _ptr(out),
                 out.strides[0] // 4)
