"""Kubernetes resource quantities (`500m`, `1.5`, `1e3`, `512Mi`): the one parser of the project.

Follows the grammar of k8s.io/apimachinery `resource.Quantity`:

    quantity ::= [+-] number suffix
    number   ::= digits | digits "." [digits] | "." digits
    suffix   ::= "" | binarySI | decimalSI | ("e" | "E") [+-] digits
    binarySI ::= Ki | Mi | Gi | Ti | Pi | Ei
    decimalSI::= n | u | m | k | M | G | T | P | E

`parse_quantity` returns the exact value as a `Decimal`. `canonical_quantity` returns the value
the apiserver stores for it (rounded up to a nano unit, binary-suffixed values capped at
2^63-1, as `ParseQuantity` does), and `same_quantity` compares two quantities by that value, so
`1000m` written by us and `1` read back from the apiserver are the same. Pure: no I/O.
"""

from __future__ import annotations

import re
from decimal import MAX_EMAX, MAX_PREC, MIN_EMIN, ROUND_UP, Context, Decimal

__all__ = ["canonical_quantity", "parse_quantity", "same_quantity"]

_PATTERN = re.compile(
    r"(?P<sign>[+-]?)(?P<number>[0-9]+(?:\.[0-9]*)?|\.[0-9]+)"
    r"(?:(?P<binary>[KMGTPE]i)|[eE](?P<exp>[+-]?[0-9]{1,18})|(?P<decimal>[numkMGTPE]))?"
)
_DECIMAL_EXPONENTS = {"n": -9, "u": -6, "m": -3, "k": 3, "M": 6, "G": 9, "T": 12, "P": 15, "E": 18}
_BINARY_EXPONENTS = {"Ki": 10, "Mi": 20, "Gi": 30, "Ti": 40, "Pi": 50, "Ei": 60}
_NANO = Decimal("1e-9")
_MAX_BINARY = Decimal(2**63 - 1)
_EXACT = Context(prec=MAX_PREC, Emax=MAX_EMAX, Emin=MIN_EMIN)  # arithmetic here never rounds
_EXPECTED = "expected a number with an optional suffix, e.g. 500m, 2, 1.5, 1e3, 512Mi or 4Gi"


def parse_quantity(value: str | int) -> Decimal:
    """The exact value of a Kubernetes quantity; ValueError naming what was expected."""
    if isinstance(value, bool) or not isinstance(value, (str, int)):
        raise ValueError(f"invalid quantity {value!r}: {_EXPECTED}")
    if isinstance(value, int):
        return Decimal(value)
    match = _PATTERN.fullmatch(value)
    if match is None:
        raise ValueError(f"invalid quantity {value!r}: {_EXPECTED}")
    sign, number = match["sign"], match["number"]
    if match["binary"]:
        result = _EXACT.multiply(Decimal(number), 2 ** _BINARY_EXPONENTS[match["binary"]])
        return result.copy_negate() if sign == "-" else result
    exponent = int(match["exp"]) if match["exp"] else _DECIMAL_EXPONENTS.get(match["decimal"], 0)
    return Decimal(f"{sign}{number}E{exponent}")  # the string constructor is exact


def canonical_quantity(value: str | int) -> Decimal:
    """The value the apiserver keeps for `value` (what reading the field back gives)."""
    exact = parse_quantity(value)
    magnitude = exact.copy_abs()
    exponent = magnitude.as_tuple().exponent
    if magnitude and isinstance(exponent, int) and exponent < -9:  # finer than a nano unit
        magnitude = magnitude.quantize(_NANO, rounding=ROUND_UP, context=_EXACT)
    if isinstance(value, str) and value.endswith("i") and magnitude > _MAX_BINARY:
        magnitude = _MAX_BINARY
    return magnitude.copy_negate() if exact < 0 else magnitude


def same_quantity(a: str | int, b: str | int) -> bool:
    """True when both are quantities the apiserver keeps as the same value (`1000m` and `1`).

    False when either is not a quantity, so callers may pass any two scalars.
    """
    try:
        return canonical_quantity(a) == canonical_quantity(b)
    except ValueError:
        return False
