"""Every number that enters convcost is bounded here: one range per kind of value, checked at the boundary.

Flags, YAML files (batch, model, budget), baseline and calibration JSON and ``--set`` values all parse numbers
through :func:`whole` and :func:`real`, so a value far outside any real layer is refused with the field's range
instead of surfacing later as an OverflowError, a billion-digit integer, an endless timing loop or a tensor that
cannot be allocated. Text is never converted to a number before its length is checked: ``int()`` of 5,000 digits
raises (with advice about ``sys.set_int_max_str_digits``), and ``10 ** 999999999`` runs for minutes.

Pure Python: no torch, no pydantic. Errors are ValueErrors whose message is ready for users (the caller adds
the field's name).
"""

from __future__ import annotations

import math
import os
from dataclasses import dataclass, replace

# No number convcost accepts needs more characters than this; longer text is refused before it is converted.
MAX_NUMBER_TEXT = 40


@dataclass(frozen=True)
class Bound:
    """The plausible range of one kind of value, and why it is that wide (the README's table lists them)."""

    low: float
    high: float
    why: str
    low_open: bool = False  # True: the low end itself is refused (a width multiplier of 0)
    say_why: bool = False  # True: messages give the reason (a bound that depends on the machine)

    def contains(self, value: float) -> bool:
        above_low = value > self.low if self.low_open else value >= self.low
        return above_low and value <= self.high

    def describe(self) -> str:
        """``from 1 to 1,000,000`` or ``above 0 and at most 1,000``."""
        low, high = number_text(self.low), number_text(self.high)
        text = f"above {low} and at most {high}" if self.low_open else f"from {low} to {high}"
        return f"{text} ({self.why})" if self.say_why else text


# Channels, spatial sizes, kernels, strides, groups, batch: a million is beyond any real layer and keeps every
# product of them (MACs, bytes) far inside what Python's floats and torch's int64 hold exactly.
COUNT = Bound(1, 1_000_000, "beyond any real layer; keeps MACs and bytes exact")
PADDING = Bound(0, 1_000_000, "as a kernel")
REPEAT = Bound(1, 10_000, "a model file's layer copies; see MAX_LAYERS")
EXPAND = Bound(1, 1_000, "an inverted residual's expansion (MobileNetV2 uses 6)")
WIDTH = Bound(0, 1_000, "a width multiplier α (MobileNets use 0.25 to 1.4)", low_open=True)
ROUNDS = Bound(1, 1_000, "interleaved timing rounds, when fixed (the default adapts: see TARGET, MAX_TIME)")
MIN_TIME = Bound(0.001, 60.0, "seconds of timed calls per layer per round (the default is 0.004)")
TARGET = Bound(0.1, 50.0, "the speedup interval's half-width that stops sampling, per cent (default 3)")
MAX_TIME = Bound(0.05, 600.0, "seconds of sampling per layer pair before giving up (default 2)")
DEPTH = Bound(1, 100, "module nesting shown by model --depth")
LIMIT = Bound(0, 1e18, "a budget's params, MACs or latency_ms (1e18 = 1,000,000T)")
TOLERANCE = Bound(0, 10_000, "growth over the baseline, per cent")
FIGURE = Bound(0, 1e18, "a baseline's params, MACs or latency_ms")

# A model file's planned network: layers after `repeat`, checked before any copy is made.
MAX_LAYERS = 10_000
# A sweep's grid points (the product of its axes), checked before any point is planned.
MAX_SWEEP_POINTS = 10_000


def cores() -> int:
    """The CPU cores this process may run on (its affinity mask, else the machine's count)."""
    try:
        return len(os.sched_getaffinity(0)) or 1
    except (AttributeError, OSError):  # not on Linux
        return os.cpu_count() or 1


def threads_bound() -> Bound:
    return Bound(1, cores(), "the CPU cores this process may use", say_why=True)


# The settings flags and the library take alike, by flag name: what each is and its range (threads: threads_bound).
SETTINGS = {"rounds": ("a whole number", ROUNDS), "min_time": ("a number of seconds", MIN_TIME),
            "target": ("a percentage", TARGET), "max_time": ("a number of seconds", MAX_TIME),
            "depth": ("a whole number", DEPTH)}  # fmt: skip


def problem(name: str, value: object, per_cent: bool = True) -> str | None:
    """What is wrong with ``value`` (None: nothing, also for None) for the setting ``name``, threads or one of
    SETTINGS; ``per_cent`` False: the target as LatencySettings holds it, a fraction."""
    what, bound = ("a whole number", threads_bound()) if name == "threads" else SETTINGS[name]
    if name == "target" and not per_cent:
        what, bound = "a fraction", replace(bound, low=bound.low / 100, high=bound.high / 100)
    try:
        if value is not None:
            real(value, bound, what)
    except ValueError as error:
        return str(error)
    whole = value is None or what != "a whole number" or isinstance(value, int)  # not 2.5 threads, nor "2" rounds
    return None if whole else f"must be {what} {bound.describe()}, got {shown(value)}"


def number_text(value: float) -> str:
    """``1,000,000``, ``0.001``, ``1e+18``: a bound as users read it."""
    if float(value).is_integer() and abs(value) < 1e16:
        return f"{int(value):,}"
    return f"{value:g}"


def shown(value: object) -> str:
    """``value!r`` for a message, safe and short for any value: a 5,000-digit int or text is summarised."""
    if isinstance(value, int) and not isinstance(value, bool):
        # str() of an int over 4,300 digits raises; its length is known from its bit length
        if value.bit_length() > 128:
            return f"a {int(value.bit_length() * math.log10(2)) + 1:,}-digit number"
        return str(value)
    if isinstance(value, str) and len(value) > MAX_NUMBER_TEXT:
        return f"{value[:20]!r}… ({len(value):,} characters)"
    return repr(value)


def check(value: float, bound: Bound, what: str, given: object = None) -> None:
    """Raise ValueError naming the range when ``value`` (an int or finite float) is outside ``bound``."""
    if not bound.contains(value):
        raise ValueError(f"must be {what} {bound.describe()}, got {shown(value if given is None else given)}")


def whole(text: str, bound: Bound, what: str) -> int:
    """Decimal digits (already matched as such) → int within ``bound``; the length is checked first."""
    digits = text.strip().lstrip("+-").lstrip("0")
    if len(digits) > MAX_NUMBER_TEXT:
        raise ValueError(f"must be {what} {bound.describe()}, got {shown(text.strip())}")
    value = int(text)
    check(value, bound, what, given=value)
    return value


def real(value: object, bound: Bound, what: str) -> float:
    """An int, float or numeric text → a finite float within ``bound``; ValueError otherwise."""
    if isinstance(value, bool):
        raise ValueError(f"must be {what} {bound.describe()}, got boolean {str(value).lower()}")
    if isinstance(value, int):
        check(value, bound, what)  # before float(): float(10**400) raises OverflowError
        return float(value)
    number = value if isinstance(value, float) else math.nan  # other values and overlong text: nan, refused below
    if isinstance(value, str) and len(value.strip()) <= MAX_NUMBER_TEXT:
        try:
            number = float(value)
        except ValueError:
            raise ValueError(f"must be {what} {bound.describe()}, got {value!r}") from None
    if not math.isfinite(number):
        raise ValueError(f"must be {what} {bound.describe()}, got {shown(value)}")
    check(number, bound, what, given=value)
    return number


def available_memory() -> int | None:
    """Bytes the OS says are available (Linux MemAvailable), or None where unknown."""
    try:
        with open("/proc/meminfo", encoding="ascii") as meminfo:
            for line in meminfo:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024
    except (OSError, ValueError):
        return None
    return None


# Refuse a run whose tensors alone would take more than this share of available memory.
MEMORY_SHARE = 0.5


def over_share(needed: int) -> int | None:
    """The bytes available when ``needed`` bytes exceed the share of them a run may take, else None (it fits, or
    the OS does not say): the one test of every memory guard."""
    available = available_memory()
    return available if available is not None and needed > MEMORY_SHARE * available else None
