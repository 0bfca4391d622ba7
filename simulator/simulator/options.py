"""Behaviour options read from the `/s/<options>/` prefix of a request path.

The router stores only a provider's base URL, so tests choose a failure mode by
choosing a base URL such as `http://127.0.0.1:18199/s/fail=500,tag=t1/v1`. The
options segment is a comma-separated list of `name` or `name=value` items.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from enum import StrEnum

DEFAULT_TAG = "default"
DEFAULT_URL_TTL_SECONDS = 3600.0
DEFAULT_MJ_STEPS = 2
MAX_DELAY_MS = 600_000

_TAG_PATTERN = re.compile(r"^[A-Za-z0-9_.-]{1,64}$")


class Format(StrEnum):
    """Provider wire format served by a route."""

    OPENAI = "openai"
    STABILITY = "stability"
    MIDJOURNEY = "midjourney"

    @property
    def display_name(self) -> str:
        return _DISPLAY_NAMES[self]


_DISPLAY_NAMES = {
    Format.OPENAI: "OpenAI",
    Format.STABILITY: "Stability",
    Format.MIDJOURNEY: "Midjourney",
}


class OptionError(ValueError):
    """Invalid options segment. The message names the option and the fix."""


@dataclass(frozen=True)
class Options:
    """Parsed behaviour options of one request."""

    tag: str = DEFAULT_TAG
    key: str | None = None
    delay_ms: int = 0
    hang: bool = False
    fail: int | None = None
    fail_first: int = 0
    rate_limit: int | None = None
    content_policy: bool = False
    filtered: bool = False
    malformed: bool = False
    empty: bool = False
    html: bool = False
    missing_images: bool = False
    url_ttl: float = DEFAULT_URL_TTL_SECONDS
    mj_steps: int = DEFAULT_MJ_STEPS
    mj_stuck: bool = False
    mj_fail: bool = False
    mj_queued: bool = False
    # Option names present in the URL, used to reject those of other formats.
    explicit_names: frozenset[str] = field(default_factory=frozenset)


@dataclass(frozen=True)
class _OptionSpec:
    attribute: str
    kind: type  # bool for flags, otherwise the type of the value
    minimum: float | None = None
    maximum: float | None = None
    formats: frozenset[Format] = frozenset(Format)


_SPECS: dict[str, _OptionSpec] = {
    "tag": _OptionSpec("tag", str),
    "key": _OptionSpec("key", str),
    "delay": _OptionSpec("delay_ms", int, 0, MAX_DELAY_MS),
    "hang": _OptionSpec("hang", bool),
    "fail": _OptionSpec("fail", int, 400, 599),
    "fail_first": _OptionSpec("fail_first", int, 0, 1_000_000),
    "rate_limit": _OptionSpec("rate_limit", int, 0, 86_400),
    "content_policy": _OptionSpec("content_policy", bool),
    "filtered": _OptionSpec("filtered", bool, formats=frozenset({Format.STABILITY})),
    "malformed": _OptionSpec("malformed", bool),
    "empty": _OptionSpec("empty", bool),
    "html": _OptionSpec("html", bool),
    "missing_images": _OptionSpec("missing_images", bool),
    "url_ttl": _OptionSpec(
        "url_ttl", float, 0, 86_400, frozenset({Format.OPENAI, Format.MIDJOURNEY})
    ),
    "mj_steps": _OptionSpec("mj_steps", int, 1, 1000, frozenset({Format.MIDJOURNEY})),
    "mj_stuck": _OptionSpec("mj_stuck", bool, formats=frozenset({Format.MIDJOURNEY})),
    "mj_fail": _OptionSpec("mj_fail", bool, formats=frozenset({Format.MIDJOURNEY})),
    "mj_queued": _OptionSpec("mj_queued", bool, formats=frozenset({Format.MIDJOURNEY})),
}
OPTION_NAMES = tuple(_SPECS)


def parse_options(segment: str) -> Options:
    """Parse an options segment such as `fail=500,tag=t1` into Options.

    An empty segment gives the defaults. Raises OptionError for an unknown
    option, a repeated option, a missing or extra value, or a value out of range.
    """
    values: dict[str, object] = {}
    for item in segment.split(","):
        item = item.strip()
        if not item:
            continue
        name, has_value, raw = item.partition("=")
        name = name.strip()
        spec = _SPECS.get(name)
        if spec is None:
            raise OptionError(
                f"Unknown simulator option '{name}'. "
                f"Known options: {', '.join(OPTION_NAMES)}."
            )
        if spec.attribute in values:
            raise OptionError(f"Simulator option '{name}' is given more than once.")
        values[spec.attribute] = _parse_value(name, spec, raw if has_value else None)
    _check_combinations(values)
    explicit_names = frozenset(
        name for name, spec in _SPECS.items() if spec.attribute in values
    )
    return Options(**values, explicit_names=explicit_names)  # type: ignore[arg-type]


def check_format(options: Options, served_format: Format) -> None:
    """Raise OptionError if an option given in the URL does not apply to the format."""
    for name in sorted(options.explicit_names):
        formats = _SPECS[name].formats
        if served_format not in formats:
            allowed = " and ".join(sorted(f.display_name for f in formats))
            raise OptionError(
                f"Simulator option '{name}' applies only to the {allowed} format, "
                f"not to {served_format.display_name}."
            )


def redact_options(segment: str) -> str:
    """Return the options segment with the value of `key=` replaced."""
    items = []
    for item in segment.split(","):
        if item.strip().startswith("key="):
            item = "key=<redacted>"
        items.append(item)
    return ",".join(items)


def _parse_value(name: str, spec: _OptionSpec, raw: str | None) -> object:
    if spec.kind is bool:
        if raw is not None:
            raise OptionError(
                f"Simulator option '{name}' is a flag and takes no value."
            )
        return True
    if raw is None or not raw.strip():
        raise OptionError(f"Simulator option '{name}' requires a value: {name}=VALUE.")
    raw = raw.strip()
    if spec.kind is str:
        return _parse_text(name, raw)
    return _parse_number(name, spec, raw)


def _parse_text(name: str, raw: str) -> str:
    if name == "tag" and not _TAG_PATTERN.match(raw):
        raise OptionError(
            f"Invalid value for simulator option 'tag': '{raw}'. Use 1 to 64 "
            "letters, digits, '_', '.' or '-'."
        )
    return raw


def _parse_number(name: str, spec: _OptionSpec, raw: str) -> int | float:
    try:
        value: int | float = spec.kind(raw)
    except ValueError:
        unit = "an integer" if spec.kind is int else "a number"
        raise OptionError(
            f"Invalid value for simulator option '{name}': '{raw}' is not {unit}."
        ) from None
    low, high = spec.minimum, spec.maximum
    if (low is not None and value < low) or (high is not None and value > high):
        raise OptionError(
            f"Invalid value for simulator option '{name}': {raw} is outside "
            f"the range {low:g} to {high:g}."
        )
    return value


def _check_combinations(values: dict[str, object]) -> None:
    if values.get("mj_stuck") and values.get("mj_fail"):
        raise OptionError(
            "Simulator options 'mj_stuck' and 'mj_fail' cannot be combined: a task "
            "either never finishes or ends in FAILURE."
        )
