"""The one parser of list settings: ``a,b,c`` name lists and ``name=value,...`` overrides.

``DETECTORS``, ``DETECTOR_RISKS`` and ``RISK_WEIGHTS`` are written as text in the environment (and in the
chart's ``consumer.env``); the settings model parses each once, when it is loaded, into typed values
(``ConsumerSettings.detector_names``, ``.risks``, ``.weights``), and nothing re-parses them afterwards.
The names themselves live with their owners (``detectors/names.py``, ``risk.py``): this module imports
nothing from the package, so the settings model, the detectors and the risk model can all use it without
an import circle.
"""

from __future__ import annotations

from collections.abc import Collection, Sequence


def parse_names(
    text: str,
    known: Sequence[str],
    *,
    kind: str,
    everything: str = "all",
    nothing: str = "none",
) -> tuple[str, ...]:
    """Comma-separated names (``everything``, ``nothing`` or a subset of ``known``), in ``known``'s order.

    An empty text means ``nothing``. Raises ValueError naming what is unknown."""
    names = [part.strip() for part in text.split(",") if part.strip()]
    if names in ([everything], []):
        return tuple(known) if names else ()
    if names == [nothing]:
        return ()
    unknown = [name for name in names if name not in known]
    if unknown:
        raise ValueError(f"unknown {kind}(s) {', '.join(unknown)}; known: {', '.join(known)}")
    return tuple(name for name in known if name in names)


def parse_values(
    text: str,
    known: Collection[str],
    *,
    value: str,
    low: int = 0,
    high: int = 100,
) -> dict[str, int]:
    """``name=value,...`` with each name one of ``known`` and each value an integer ``low``-``high``.

    Only the names given are returned (the caller lays them over its defaults). Raises ValueError naming
    the bad entry."""
    out: dict[str, int] = {}
    for item in (part.strip() for part in text.split(",")):
        if not item:
            continue
        name, sep, raw = item.partition("=")
        name = name.strip()
        if not sep or name not in known:
            raise ValueError(f"{item!r}: expected name={value} with name one of {', '.join(known)}")
        try:
            number = int(raw.strip())
        except ValueError:
            raise ValueError(f"{item!r}: {value} must be an integer {low}-{high}") from None
        if not low <= number <= high:
            raise ValueError(f"{item!r}: {value} must be an integer {low}-{high}")
        out[name] = number
    return out
