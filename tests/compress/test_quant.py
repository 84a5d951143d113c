"""Precisions, pruning thresholds and integer packing: the error contracts of ``_quant``."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

from leanml.compress._quant import (
    decode_idf,
    decode_matrix,
    encode_idf,
    encode_matrix,
    magnitude_threshold,
    pack_uints,
    unpack_uints,
)
from leanml.errors import CompressionError

finite = st.floats(-1e4, 1e4, allow_nan=False, width=64)
matrices = hnp.arrays(
    np.float64, hnp.array_shapes(min_dims=2, max_dims=2, max_side=12), elements=finite
)


@given(matrices, st.sampled_from(["row", "column"]))
def test_int8_error_is_half_a_step(m: np.ndarray, per: str) -> None:
    spec, arrays = encode_matrix(m, "int8", "W", per=per)
    out = decode_matrix(spec, arrays, "W")
    axis = 1 if per == "row" else 0
    step = np.max(np.abs(m), axis=axis, keepdims=True) / 127 if m.size else 0
    assert np.all(np.abs(out - m) <= step / 2 * (1 + 1e-5) + 1e-30)
    assert np.all(out[m == 0] == 0)


@given(matrices)
def test_fp16_and_fp32_relative_error(m: np.ndarray) -> None:
    for precision, rel in (("fp32", 2**-24), ("fp16", 2**-11)):
        spec, arrays = encode_matrix(m, precision, "W")
        out = decode_matrix(spec, arrays, "W").astype(np.float64)
        normal = np.abs(m) >= (6.2e-5 if precision == "fp16" else 1.2e-38)
        assert np.all(np.abs(out - m)[normal] <= rel * np.abs(m)[normal] * 1.0001)


@pytest.mark.parametrize(
    ("shape", "density", "layout"),
    [
        ((50, 400), 0.0, "positions"),
        ((50, 400), 0.01, "positions"),
        ((5000, 200), -1.0, "rows"),  # one non-zero per row: counts + columns win
        ((50, 400), 0.3, "mask"),
        ((50, 400), 1.0, "dense"),
    ],
)
def test_layouts_decode_the_same(shape: tuple[int, int], density: float, layout: str) -> None:
    rng = np.random.default_rng(0)
    if density < 0:
        m = np.zeros(shape)
        m[np.arange(shape[0]), rng.integers(0, shape[1], shape[0])] = rng.normal(size=shape[0])
    else:
        m = rng.normal(size=shape) * (rng.random(shape) < density)
    for precision in ("fp32", "int8"):
        spec, arrays = encode_matrix(m, precision, "W", per="column")
        atol = 0 if precision == "fp32" else np.abs(m).max() / 254 + 1e-9
        np.testing.assert_allclose(decode_matrix(spec, arrays, "W"), m, atol=atol, rtol=1e-6)
    assert spec["layout"] == layout


def test_fp16_overflow_is_refused() -> None:
    with pytest.raises(CompressionError, match="fp16"):
        encode_matrix(np.array([[1e6]]), "fp16", "W")


@given(st.lists(st.integers(0, 2**40), max_size=50), st.booleans())
def test_pack_uints_roundtrip(values: list[int], delta: bool) -> None:
    arr = np.array(sorted(values) if delta else values, dtype=np.int64)
    spec, planes = pack_uints(arr, delta=delta)
    assert planes.dtype == np.uint8
    np.testing.assert_array_equal(unpack_uints(spec, planes), arr)


@given(st.integers(10, 100_000), st.booleans())
def test_idf_stored_exactly_as_document_frequencies(n: int, smooth: bool) -> None:
    rng = np.random.default_rng(n)
    df = rng.integers(1, n + 1, size=200)
    idf = np.log((n + smooth) / (df + smooth)) + 1
    spec, arrays = encode_idf(idf, "fp16")
    assert spec["kind"] == "df"
    np.testing.assert_allclose(decode_idf(spec, arrays), idf, rtol=0, atol=1e-12)


def test_idf_of_another_form_falls_back_to_floats() -> None:
    idf = np.array([1.5, 2.25, np.pi])
    spec, arrays = encode_idf(idf, "fp32")
    assert spec["kind"] == "float"
    np.testing.assert_allclose(decode_idf(spec, arrays), idf, rtol=2**-24)


def test_magnitude_threshold() -> None:
    values = np.arange(1, 101, dtype=float)
    assert magnitude_threshold(values, 0.0) == 0.0
    cut = magnitude_threshold(values, 0.9)
    assert np.mean(values < cut) == pytest.approx(0.9)
