"""The exact-arithmetic shortcuts of ``daemon.rules.decimals`` against the plain ``decimal``
operations they stand for: they must give the same value with the same representation, or
(for ``parse_exact``) raise, so that the caller falls back to the constructor."""

from __future__ import annotations

from decimal import ROUND_CEILING, ROUND_FLOOR, ROUND_HALF_UP, Decimal, DecimalException

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from daemon.rules.decimals import (
    QUANT,
    parse_exact,
    quantize_ceiling,
    quantize_floor,
    quantize_half_up,
)

EDGES = (
    "1.50", "-0", "0E-8", "-0.000", "1_000.5", " 2.5 ", "\u0661\u0662.\u0665", "1e3", "1E-7",
    "NaN", "-nan", "sNaN", "NaN123", "inf", "-Infinity", "1" * 130, "1" + "0" * 130,
    "0." + "0" * 200 + "1", "1E-1000000", "0E-2000000", "1E+999999", "1E+1000000",
    "9" * 120, "abc", "", ".", ".5", "5.", "+3", "--1", "1.2.3", "0x10",
)  # fmt: skip

TEXT = st.one_of(
    st.sampled_from(EDGES),
    st.decimals(allow_nan=True, allow_infinity=True).map(str),
    st.decimals(allow_nan=False, allow_infinity=False).map(lambda d: format(d, "f")),
    st.from_regex(r"\A[ +-]?[0-9_]{0,30}(\.[0-9]{0,30})?([eE][+-]?[0-9]{1,8})?\s?\Z"),
    st.text(alphabet="0123456789.-+eE_ nNaIif", max_size=20),
)


def _parsed(text: str) -> tuple[str, str] | None:
    try:
        value = Decimal(text)
    except DecimalException:
        return None
    return (repr(value), str(value))


def _agrees(text: str) -> None:
    try:
        value = parse_exact(text)
    except DecimalException:
        return  # the caller falls back to to_decimal, which uses the constructor
    assert (repr(value), str(value)) == _parsed(text)


@settings(max_examples=3000, deadline=None)
@given(TEXT)
def test_parse_exact_is_the_constructor_or_raises(text: str) -> None:
    _agrees(text)


@pytest.mark.parametrize("text", EDGES)
def test_parse_exact_edges(text: str) -> None:
    _agrees(text)


@settings(max_examples=2000, deadline=None)
@given(
    st.decimals(allow_nan=False, allow_infinity=False, places=None),
    st.integers(-12, 4),
)
def test_quantize_contexts_match_the_method(value: Decimal, exponent: int) -> None:
    quantum = Decimal(1).scaleb(exponent)
    for rounding, quantize in (
        (ROUND_FLOOR, quantize_floor),
        (ROUND_CEILING, quantize_ceiling),
        (ROUND_HALF_UP, quantize_half_up),
    ):
        try:
            expected: object = repr(value.quantize(quantum, rounding, QUANT))
        except DecimalException as exc:
            expected = type(exc)
        try:
            got: object = repr(quantize(value, quantum))
        except DecimalException as exc:
            got = type(exc)
        assert got == expected
