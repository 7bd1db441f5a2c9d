"""symbold: keeps Binance trading-symbol metadata warm in Redis.

The import name is ``daemon`` (the design card's); it is unrelated to the ``python-daemon``
package, which uses the same import name and must never be installed beside it.
"""

__version__ = "0.1.0"
