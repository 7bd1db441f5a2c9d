"""Exceptions of :mod:`daemon.rules`. All three are ``ValueError`` subclasses, so a caller that
only wants "bad input" can catch ``ValueError``."""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from daemon.rules.model import Violation

__all__ = ["NoValidOrder", "OrderValueError", "RulesError"]


class RulesError(ValueError):
    """A symbol's filters cannot be compiled: a value is missing, not a decimal, negative...

    ``symbol``, ``filter_type`` and ``field`` name the culprit; ``value`` is what was found
    (``None`` when the field is missing).
    """

    def __init__(self, symbol: str, filter_type: str, field: str, value: object, why: str) -> None:
        self.symbol = symbol
        self.filter_type = filter_type
        self.field = field
        self.value = value
        super().__init__(f"{symbol!r}: filter {filter_type} field {field!r}: {why} (got {value!r})")


class OrderValueError(ValueError):
    """An order argument is not a usable number (``"abc"``, NaN, infinity, bool...), or is too
    large or too precise to compute with exactly. ``field`` names the argument."""

    def __init__(self, field: str, value: object, why: str) -> None:
        self.field = field
        self.value = value
        super().__init__(f"{field}: {why} (got {value!r})")


class NoValidOrder(ValueError):
    """:func:`daemon.rules.fix_order` found no valid order near the one asked for.

    ``reason`` says why in words (e.g. the minimum notional at this price is above the maximum
    quantity); ``violations`` holds what :func:`daemon.rules.check_order` still reported, when
    the failure was found by the final check.
    """

    def __init__(self, reason: str, violations: tuple[Violation, ...] = ()) -> None:
        self.reason = reason
        self.violations = violations
        super().__init__(reason)
