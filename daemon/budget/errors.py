"""The budget's exceptions. Times are epoch seconds on Binance's clock (as Redis estimates it)."""

from __future__ import annotations


class BudgetError(Exception):
    """Base class of every error the budget raises on purpose."""


class Banned(BudgetError):
    """Binance answered 429/418 and the shared deadline has not passed: do not call Binance.

    ``until`` is the deadline in epoch seconds. Raised at once by every ``acquire`` in every
    process sharing the budget, whatever ``wait`` says: a ban is never waited out inside
    ``acquire`` (it can last three days).
    """

    def __init__(self, until: float, market: str = "") -> None:
        self.until = until
        self.market = market
        where = f" ({market})" if market else ""
        super().__init__(f"Binance rate-limit ban{where} until {until:.3f} (epoch seconds)")


class BudgetExhausted(BudgetError):
    """The weight does not fit in the current window and the caller would not (or could no
    longer) wait. ``reset_at`` is when the blocking window ends, epoch seconds. ``local`` is
    True when the per-process fallback refused it (Redis could not be used)."""

    def __init__(
        self,
        reset_at: float,
        weight: int,
        limit: str = "",
        market: str = "",
        *,
        local: bool = False,
    ) -> None:
        self.reset_at = reset_at
        self.weight = weight
        self.limit = limit
        self.market = market
        self.local = local
        what = f" {limit}" if limit else ""
        super().__init__(
            f"weight {weight} does not fit in the{what} window of {market or 'the budget'}; "
            f"the window resets at {reset_at:.3f} (epoch seconds)"
        )


class BudgetUnavailable(BudgetError):
    """Redis could not be reached and the policy is ``fail_closed``. The Redis error is the
    ``__cause__``."""


class BudgetValueError(BudgetError, ValueError):
    """Bad input: a weight <= 0 or larger than the whole limit, an unknown priority, a limit
    of 0, an unusable account name. The message names the value."""
