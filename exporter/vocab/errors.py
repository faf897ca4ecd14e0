"""Error types whose message is the one line a user sees."""


class ChargebackError(Exception):
    """Base: str(e) is a complete, user-facing, one-line explanation."""


class ConfigError(ChargebackError):
    """The config file or a CLI/HTTP parameter is invalid."""


class PrometheusError(ChargebackError):
    """Prometheus is unreachable, erroring, or answered something unusable."""


class DataError(ChargebackError):
    """Prometheus answered, but the data needed for a cost is missing."""


class PricingError(ChargebackError):
    """A node cannot be priced and default rates are disabled."""
