"""The Redis data contract: everything symbold stores and how it is encoded.

Every module that writes or reads a stored value goes through here: the key layout
(:mod:`~daemon.contract.keys`), the per-symbol record and its typed filters
(:mod:`~daemon.contract.record`, :mod:`~daemon.contract.filters`), the snapshot's meta hash
(:mod:`~daemon.contract.meta`) and the ``rateLimits`` it carries
(:mod:`~daemon.contract.ratelimits`). Pure: no I/O, no logging, no global state besides
reusable msgspec encoders and decoders.
"""

from typing import TYPE_CHECKING

from daemon.contract.keys import KEY_NAMES, METRIC_FIELDS, MarketKeys, keys_for, market_keys
from daemon.contract.meta import FORMAT, MetaError, MetaFields, SnapshotMeta
from daemon.contract.ratelimits import (
    RateLimit,
    decode_rate_limits,
    encode_rate_limits,
    request_weight_limit,
)
from daemon.lazy import lazy_exports

if TYPE_CHECKING:
    from daemon.contract.filters import (
        FILTER_TYPES,
        Filter,
        Filters,
        KnownFilter,
        decode_filters,
    )
    from daemon.contract.record import (
        MAX_SYMBOL_LENGTH,
        SymbolRecord,
        decode_listing,
        decode_record,
        encode_record,
        record_to_dict,
    )

# The record and its typed filters (a few dozen msgspec Structs) load on first use: key names
# and the meta hash, all that `symbold status` needs, come without them.
__getattr__ = lazy_exports(
    __name__,
    {
        **{
            name: f"daemon.contract.filters:{name}"
            for name in ("FILTER_TYPES", "Filter", "Filters", "KnownFilter", "decode_filters")
        },
        **{
            name: f"daemon.contract.record:{name}"
            for name in (
                "MAX_SYMBOL_LENGTH",
                "SymbolRecord",
                "decode_listing",
                "decode_record",
                "encode_record",
                "record_to_dict",
            )
        },
    },
)

__all__ = [
    "FILTER_TYPES",
    "FORMAT",
    "KEY_NAMES",
    "MAX_SYMBOL_LENGTH",
    "METRIC_FIELDS",
    "Filter",
    "Filters",
    "KnownFilter",
    "MarketKeys",
    "MetaError",
    "MetaFields",
    "RateLimit",
    "SnapshotMeta",
    "SymbolRecord",
    "decode_filters",
    "decode_listing",
    "decode_rate_limits",
    "decode_record",
    "encode_rate_limits",
    "encode_record",
    "keys_for",
    "market_keys",
    "record_to_dict",
    "request_weight_limit",
]
