"""Checks of a gateware component's constructor arguments, with messages that quote the bad
value (as ``amaranth.lib`` checks its own)."""

__all__ = ["check_int_range"]


def check_int_range(name: str, value, low: int, high: int) -> None:
    """Raise :class:`ValueError` unless ``value`` is an integer from ``low`` to ``high``.

    The message names the argument and quotes the value: ``"ifg must be an integer from 12
    to 255, not 8"``.
    """
    if not isinstance(value, int) or not low <= value <= high:
        raise ValueError(f"{name} must be an integer from {low} to {high}, not {value!r}")
