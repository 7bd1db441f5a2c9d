"""Exact decimal arithmetic for :mod:`daemon.rules`: input conversion and grid snapping.

Nothing here reads or changes the thread's current decimal context (ccxt, for one, changes
it): every operation that could round goes through the private contexts below explicitly.
``_EXACT`` has far more precision than any price or quantity needs and traps ``Inexact``, so a
result is either exact or an exception (turned into :class:`OrderValueError` by callers).
"""

from __future__ import annotations

from decimal import (
    ROUND_CEILING,
    ROUND_FLOOR,
    ROUND_HALF_UP,
    Clamped,
    Context,
    Decimal,
    DivisionByZero,
    Inexact,
    InvalidOperation,
    Overflow,
    Rounded,
    Subnormal,
    Underflow,
)
from typing import Final

from daemon.rules.errors import OrderValueError
from daemon.rules.model import Grid

__all__ = [
    "EXACT",
    "QUANT",
    "ZERO",
    "Number",
    "ceil_ratio",
    "floor_ratio",
    "parse_exact",
    "plain",
    "quantize_ceiling",
    "quantize_floor",
    "quantize_half_up",
    "snap",
    "to_decimal",
]

Number = Decimal | str | int | float
"""What the public functions accept for a price or quantity (see :func:`to_decimal`)."""

ZERO: Final = Decimal(0)
ONE: Final = Decimal(1)

EXACT: Final = Context(
    prec=120,
    rounding=ROUND_HALF_UP,
    Emin=-999_999,
    Emax=999_999,
    traps=[InvalidOperation, DivisionByZero, Overflow, Inexact],
)
# Quantize rounds on purpose, so it must not trap Inexact; a coefficient longer than prec
# still raises InvalidOperation.
QUANT: Final = Context(
    prec=120, Emin=-999_999, Emax=999_999, traps=[InvalidOperation, DivisionByZero, Overflow]
)
# QUANT's quantize with the rounding of each mode, for the rounding helpers' hot path:
# ``quantize_floor(value, exp)`` is ``value.quantize(exp, ROUND_FLOOR, QUANT)`` (the same
# libmpdec operation with the same context values), and cheaper: the Decimal method parses
# its arguments by keyword. Bound once, because a Context's own attribute lookup is slow.
_QUANT_FLOOR: Final = QUANT.copy()
_QUANT_FLOOR.rounding = ROUND_FLOOR
_QUANT_CEILING: Final = QUANT.copy()
_QUANT_CEILING.rounding = ROUND_CEILING
_QUANT_HALF_UP: Final = QUANT.copy()
_QUANT_HALF_UP.rounding = ROUND_HALF_UP
quantize_floor: Final = _QUANT_FLOOR.quantize
quantize_ceiling: Final = _QUANT_CEILING.quantize
quantize_half_up: Final = _QUANT_HALF_UP.quantize
# Reads a decimal string as Decimal(text) does, or raises: every condition under which the
# context could make the result differ from Decimal(text) (rounding, clamping, an exponent out
# of range) is trapped. The callers fall back to to_decimal when it raises. Cheaper than the
# Decimal constructor, which parses its arguments by keyword and looks up the thread's
# context on every call.
_STRICT: Final = Context(
    prec=120,
    Emin=-999_999,
    Emax=999_999,
    traps=[
        InvalidOperation,
        DivisionByZero,
        Overflow,
        Underflow,
        Subnormal,
        Inexact,
        Rounded,
        Clamped,
    ],
)
parse_exact: Final = _STRICT.create_decimal
"""``Decimal(text)`` for a decimal string ``text``, or a ``DecimalException``: then the
caller converts ``text`` with :func:`to_decimal`, which gives the result or the error."""
# Only for the rare grid-less division (step 0): rounds away from the caller's side instead of
# raising, which is what a minimum (ceil) or a maximum (floor) needs.
_CEIL: Final = Context(prec=40, rounding=ROUND_CEILING, traps=[InvalidOperation, DivisionByZero])
_FLOOR: Final = Context(prec=40, rounding=ROUND_FLOOR, traps=[InvalidOperation, DivisionByZero])


def to_decimal(value: object, field: str) -> Decimal:
    """``value`` as an exact, finite ``Decimal``.

    Accepts ``Decimal``, ``str`` (Decimal syntax) and ``int``. A ``float`` is converted from
    its shortest repr, ``Decimal(repr(x))``: ``0.1`` becomes ``Decimal("0.1")``, not the
    binary value ``0.1000000000000000055...``; that is the number the caller wrote, which is
    the only sensible reading of a float price. ``bool``, NaN and infinities are refused with
    :class:`OrderValueError` naming ``field``.
    """
    kind = type(value)
    # Exact type tests first: this runs on every call of every public function.
    if kind is Decimal:
        result: Decimal = value  # type: ignore[assignment]
    elif kind is str:
        try:
            result = Decimal(value)  # type: ignore[arg-type]
        except InvalidOperation:
            raise OrderValueError(field, value, "not a decimal number") from None
    elif kind is int:
        result = Decimal(value)  # type: ignore[arg-type]
    elif kind is float:
        result = Decimal(repr(value))
    elif isinstance(value, bool):
        raise OrderValueError(field, value, "a bool is not a number")
    elif isinstance(value, float):  # subclasses: convert to the base type, then as above
        return to_decimal(float(value), field)
    elif isinstance(value, str):
        return to_decimal(str.__str__(value), field)
    elif isinstance(value, Decimal | int):
        return to_decimal(Decimal(value), field)
    else:
        raise OrderValueError(field, value, "expected Decimal, str, int or float")
    if not result.is_finite():
        raise OrderValueError(field, value, "not a finite number")
    return result


def plain(value: Decimal) -> str:
    """``format(value, "f")`` (plain notation, never an exponent), faster: ``str`` gives the
    same text unless it uses an exponent."""
    text = str(value)
    return text if "E" not in text else format(value, "f")


def snap(grid: Grid, value: Decimal, rounding: str) -> Decimal:
    """``value`` moved onto ``grid``'s step grid with ``rounding`` (a ``decimal`` ROUND_*
    constant: ROUND_FLOOR, ROUND_CEILING or ROUND_HALF_UP). Bounds are not applied. With a
    disabled step the value is returned unchanged."""
    quantum = grid.quantum
    if quantum is None:
        return value
    if grid.fast:
        return value.quantize(quantum, rounding, QUANT)
    step = grid.step
    anchor = grid.anchor
    k, rest = EXACT.divmod(EXACT.subtract(value, anchor), step)  # k truncated toward zero
    # k can have more digits than the thread's context allows (1e20 / 1e-8): only EXACT adds.
    if rest:
        if rounding == ROUND_FLOOR:
            if rest < 0:
                k = EXACT.subtract(k, ONE)
        elif rounding == ROUND_CEILING:
            if rest > 0:
                k = EXACT.add(k, ONE)
        else:  # nearest; a tie goes up (away from zero for the positive values we take)
            if rest < 0:
                k = EXACT.subtract(k, ONE)
                rest = EXACT.add(rest, step)
            if EXACT.add(rest, rest) >= step:
                k = EXACT.add(k, ONE)
    return EXACT.add(anchor, EXACT.multiply(k, step)).quantize(quantum, context=EXACT)


def ceil_ratio(grid: Grid | None, num: Decimal, den: Decimal) -> Decimal:
    """The smallest point of ``grid`` that is ``>= num / den`` (``den > 0``), computed exactly
    (no rounded division). Without a grid step, ``num / den`` rounded up."""
    if grid is None or grid.quantum is None:
        return _CEIL.divide(num, den)
    step, anchor = grid.step, grid.anchor
    # smallest k with anchor + k*step >= num/den  <=>  k >= (num - anchor*den) / (step*den)
    top = EXACT.subtract(num, EXACT.multiply(anchor, den))
    k, rest = EXACT.divmod(top, EXACT.multiply(step, den))
    if rest > 0:
        k = EXACT.add(k, ONE)
    return EXACT.add(anchor, EXACT.multiply(k, step)).quantize(grid.quantum, context=EXACT)


def floor_ratio(grid: Grid | None, num: Decimal, den: Decimal) -> Decimal:
    """The largest point of ``grid`` that is ``<= num / den`` (``den > 0``), exactly."""
    if grid is None or grid.quantum is None:
        return _FLOOR.divide(num, den)
    step, anchor = grid.step, grid.anchor
    top = EXACT.subtract(num, EXACT.multiply(anchor, den))
    k, rest = EXACT.divmod(top, EXACT.multiply(step, den))
    if rest < 0:
        k = EXACT.subtract(k, ONE)
    return EXACT.add(anchor, EXACT.multiply(k, step)).quantize(grid.quantum, context=EXACT)
