"""Precisions, magnitude pruning and the compact encoding of weight matrices.

Error contracts (per stored value ``w``, decoded value ``w'``):

* ``fp32``: ``|w - w'| <= 2**-24 * |w|`` (rounding of a float64 to float32).
* ``fp16``: ``|w - w'| <= 2**-11 * |w|`` for ``|w|`` in fp16's normal range (6.1e-5 .. 65504);
  values beyond 65504 are refused (``CompressionError``), smaller ones lose relative precision.
* ``int8``: symmetric, one scale per row ``s_r = max_j |w_rj| / 127``;
  ``|w_rj - w'_rj| <= s_r / 2``.

Pruned values decode to exactly 0. A matrix is stored dense or as a bit mask of its non-zeros
plus the non-zero values, whichever is smaller; both decode to the same array.
"""

from __future__ import annotations

import zlib
from typing import Any

import numpy as np

from leanml.errors import CompressionError

__all__ = [
    "PRECISIONS",
    "decode_matrix",
    "decode_vector",
    "encode_matrix",
    "encode_vector",
    "floor_float",
    "magnitude_threshold",
    "smallest_uint",
]

PRECISIONS = ("fp32", "fp16", "int8")
_FP16_MAX = 65504.0


def smallest_uint(max_value: int) -> type[np.unsignedinteger[Any]]:
    """The smallest unsigned integer dtype that holds ``max_value``."""
    for dtype in (np.uint8, np.uint16, np.uint32):
        if max_value <= np.iinfo(dtype).max:
            return dtype
    return np.uint64


def floor_float(values: np.ndarray, dtype: type[np.floating[Any]]) -> np.ndarray:
    """Round float64 ``values`` down (towards -inf) to ``dtype``.

    For a float32 ``x``, ``x <= t`` holds exactly when ``x <= floor_float(t, float32)``, which
    keeps tree splits identical after thresholds are stored in float32.
    """
    values = np.asarray(values, dtype=np.float64)
    out = values.astype(dtype)
    too_big = out.astype(np.float64) > values
    if np.any(too_big):
        out[too_big] = np.nextafter(out[too_big], dtype(-np.inf))
    return out


def magnitude_threshold(importance: np.ndarray, sparsity: float) -> float:
    """The magnitude below which ``sparsity`` (0..1) of the non-zero ``importance`` values lie."""
    flat = np.abs(np.asarray(importance, dtype=np.float64)).ravel()
    flat = flat[flat > 0]
    if sparsity <= 0 or flat.size == 0:
        return 0.0
    k = min(int(sparsity * flat.size), flat.size - 1)
    if k <= 0:
        return 0.0
    return float(np.partition(flat, k)[k])


def _check_fp16(values: np.ndarray, what: str) -> None:
    if values.size and float(np.max(np.abs(values))) > _FP16_MAX:
        raise CompressionError(f"{what} has values beyond the fp16 range (|x| > {_FP16_MAX}).")


def encode_vector(values: np.ndarray, precision: str, name: str) -> tuple[dict, dict]:
    """Encode a float vector as fp32 or fp16 (int8 is for matrices; it maps to fp16 here)."""
    values = np.asarray(values, dtype=np.float64)
    if precision == "fp32":
        return {"dtype": "fp32"}, {name: values.astype(np.float32)}
    _check_fp16(values, name)
    return {"dtype": "fp16"}, {name: values.astype(np.float16)}


def decode_vector(spec: dict, arrays: dict, name: str) -> np.ndarray:
    return np.asarray(arrays[name], dtype=np.float32)


def encode_matrix(
    matrix: np.ndarray, precision: str, name: str, *, per: str = "row"
) -> tuple[dict, dict]:
    """Encode a 2-D float matrix in ``precision``; int8 scales are per row or per column.

    Returns ``(spec, arrays)``; array names are prefixed with ``name``. Zeros are kept exactly.
    The layout is the smallest of: dense; a bit mask of the non-zeros plus their values; the
    delta-coded flat positions of the non-zeros plus their values; or per-row non-zero counts
    plus column indices plus values (raw bytes decide, deflated bytes between the two sparse
    layouts). All decode to the same matrix.
    """
    if precision not in PRECISIONS:
        raise CompressionError(f"Unknown precision {precision!r}; expected one of {PRECISIONS}.")
    m = np.asarray(matrix, dtype=np.float64)
    if m.ndim != 2:
        raise CompressionError(f"{name} must be 2-D, got shape {m.shape}.")
    spec: dict[str, Any] = {"shape": list(m.shape), "precision": precision, "per": per}
    arrays: dict[str, np.ndarray] = {}
    if precision == "int8":
        axis = 1 if per == "row" else 0
        peak = np.max(np.abs(m), axis=axis) if m.size else np.zeros(m.shape[1 - axis])
        scale = peak / 127.0
        scale[~(scale > 0)] = 1.0  # all-zero (or subnormal) rows: any scale decodes to 0
        scale_b = scale[:, None] if per == "row" else scale[None, :]
        q = np.rint(m / scale_b).astype(np.int8)
        arrays[name + ".scale"] = scale.astype(np.float32)
        stored: np.ndarray = q
    elif precision == "fp16":
        _check_fp16(m, name)
        stored = m.astype(np.float16)
    else:
        stored = m.astype(np.float32)
    flat = stored.ravel()
    positions = np.flatnonzero(flat)
    nnz = int(positions.size)
    dense_bytes = stored.nbytes
    mask_bytes = (m.size + 7) // 8 + nnz * stored.itemsize
    gaps = np.diff(positions, prepend=0) if nnz else positions
    pos_bytes = nnz * (np.dtype(smallest_uint(int(gaps.max()) if nnz else 0)).itemsize)
    pos_bytes += nnz * stored.itemsize
    n_rows, n_cols = m.shape
    counts = np.count_nonzero(stored, axis=1) if m.size else np.zeros(n_rows, dtype=np.int64)
    rows_bytes = n_rows * np.dtype(smallest_uint(int(counts.max()) if n_rows else 0)).itemsize
    rows_bytes += nnz * (np.dtype(smallest_uint(max(n_cols - 1, 0))).itemsize + stored.itemsize)
    sparse_ok = max(rows_bytes, pos_bytes) <= min(mask_bytes, dense_bytes)
    if sparse_ok or rows_bytes <= min(pos_bytes, mask_bytes, dense_bytes):
        counts_spec, counts_planes = pack_uints(counts)
        columns_spec, columns_planes = pack_uints(positions % max(n_cols, 1))
        pos_spec, pos_planes = pack_uints(positions, delta=True)
        if sparse_ok:  # both sparse layouts fit: keep the one that deflates smaller
            rows_bytes = len(zlib.compress(counts_planes.tobytes() + columns_planes.tobytes(), 1))
            pos_bytes = len(zlib.compress(pos_planes.tobytes(), 1))
    if rows_bytes < min(pos_bytes, mask_bytes, dense_bytes):
        spec["layout"] = "rows"  # per-row counts + column indices (CSR without indptr)
        spec["counts"], arrays[name + ".counts"] = counts_spec, counts_planes
        spec["columns"], arrays[name + ".columns"] = columns_spec, columns_planes
        arrays[name + ".values"] = flat[positions]
    elif pos_bytes <= min(mask_bytes, dense_bytes):
        spec["layout"] = "positions"
        spec["positions"], arrays[name + ".positions"] = pack_uints(positions, delta=True)
        arrays[name + ".values"] = flat[positions]
    elif mask_bytes < dense_bytes:
        spec["layout"] = "mask"
        arrays[name + ".mask"] = np.packbits(flat != 0)
        arrays[name + ".values"] = flat[positions]
    else:
        spec["layout"] = "dense"
        arrays[name + ".values"] = stored
    return spec, arrays


def decode_matrix(spec: dict, arrays: dict, name: str) -> np.ndarray:
    """Decode what :func:`encode_matrix` wrote into a float32 matrix (C order)."""
    shape = tuple(int(s) for s in spec["shape"])
    values = np.asarray(arrays[name + ".values"])
    int8 = spec["precision"] == "int8"
    scale = np.asarray(arrays[name + ".scale"], dtype=np.float32) if int8 else None
    per_row = spec.get("per", "row") == "row"
    if spec["layout"] == "dense":
        out = values.astype(np.float32).reshape(shape)
        if scale is not None:
            out *= scale[:, None] if per_row else scale[None, :]
        return out
    if spec["layout"] == "mask":
        size = int(np.prod(shape))
        mask = np.unpackbits(np.asarray(arrays[name + ".mask"]), count=size).astype(bool)
        positions = np.flatnonzero(mask)
    elif spec["layout"] == "rows":
        counts = unpack_uints(spec["counts"], arrays[name + ".counts"])
        rows = np.repeat(np.arange(shape[0], dtype=np.int64), counts)
        positions = rows * shape[1] + unpack_uints(spec["columns"], arrays[name + ".columns"])
    else:
        positions = unpack_uints(spec["positions"], arrays[name + ".positions"])
    vals = values.astype(np.float32)
    if scale is not None:
        vals *= scale[positions // shape[1]] if per_row else scale[positions % shape[1]]
    out = np.zeros(shape, dtype=np.float32)
    out.ravel()[positions] = vals
    return out


def pack_uints(values: np.ndarray, *, delta: bool = False) -> tuple[dict[str, Any], np.ndarray]:
    """Non-negative integers as byte planes of the smallest unsigned type (deflates well).

    With ``delta`` the array must be non-decreasing and its differences are stored. Exact.
    """
    arr = np.asarray(values, dtype=np.int64)
    if delta and arr.size:
        arr = np.diff(arr, prepend=0)
    if arr.size and int(arr.min()) < 0:
        raise CompressionError("pack_uints needs non-negative (or non-decreasing) integers.")
    dtype = smallest_uint(int(arr.max()) if arr.size else 0)
    planes = arr.astype(dtype).astype(np.dtype(dtype).newbyteorder("<")).view(np.uint8)
    planes = planes.reshape(-1, np.dtype(dtype).itemsize).T.copy().ravel()
    return {"dtype": np.dtype(dtype).name, "n": int(arr.size), "delta": delta}, planes


def unpack_uints(spec: dict[str, Any], planes: np.ndarray) -> np.ndarray:
    """Inverse of :func:`pack_uints`, as int64."""
    dtype = np.dtype(spec["dtype"]).newbyteorder("<")
    n = int(spec["n"])
    planes = np.asarray(planes, dtype=np.uint8)
    if dtype.itemsize == 1:
        out = planes.astype(np.int64)
    else:
        out = np.zeros(n, dtype=np.int64)
        for i in range(dtype.itemsize):  # little-endian byte planes
            out |= planes[i * n : (i + 1) * n].astype(np.int64) << (8 * i)
    return np.cumsum(out) if spec["delta"] else out


def encode_idf(idf: np.ndarray, precision: str) -> tuple[dict[str, Any], dict[str, np.ndarray]]:
    """Store idf exactly as integer document frequencies when it has scikit-learn's form.

    scikit-learn computes ``idf = ln(c / k) + 1`` with integers ``c`` (n or n+1) and ``k``
    (df or df+1). When such integers reproduce ``idf`` to 1e-9 they are stored (a few bits per
    term, exact); otherwise idf is stored in ``precision`` (fp32 or fp16).
    """
    idf = np.asarray(idf, dtype=np.float64)
    if idf.size and np.all(np.isfinite(idf)):
        ratio = np.exp(1.0 - idf)
        top = float(ratio.min())
        # c = k_min / top for the smallest k; try every k_min up to 100,000 at once
        cs = np.arange(1, 100_001, dtype=np.float64) / top
        candidates = cs[np.abs(cs - np.rint(cs)) <= 1e-9 * cs]
        probe = np.unique(ratio)[:: max(1, ratio.size // 16)]  # a few ratios filter fast
        if candidates.size:
            scaled = np.rint(candidates)[:, None] * probe[None, :]
            fits = np.all(np.abs(scaled - np.rint(scaled)) <= 1e-6, axis=1)
            candidates = candidates[fits]
        for c in np.rint(candidates[:5]).tolist():
            k = np.rint(c * ratio)
            if k.min() < 1 or np.max(np.abs(np.log(c / k) + 1.0 - idf)) > 1e-9:
                continue
            spec, planes = pack_uints(k.astype(np.int64))
            return {"kind": "df", "c": c, "k": spec}, {"idf.k": planes}
    spec, arrays = encode_vector(idf, "fp16" if precision == "int8" else precision, "idf")
    return {"kind": "float", **spec}, arrays


def decode_idf(spec: dict[str, Any], arrays: dict[str, np.ndarray]) -> np.ndarray:
    """idf as float64 (exact when stored as document frequencies)."""
    if spec["kind"] == "df":
        k = unpack_uints(spec["k"], arrays["idf.k"]).astype(np.float64)
        return np.log(float(spec["c"]) / k) + 1.0
    return np.asarray(arrays["idf"], dtype=np.float64)
