"""The one quantity parser: Kubernetes edge cases, the apiserver's canonical value, and
properties checked against values built from their parts with exact fractions."""

from __future__ import annotations

from decimal import Decimal
from fractions import Fraction

import pytest
from hypothesis import given
from hypothesis import strategies as st

from apis.quantity import canonical_quantity, parse_quantity, same_quantity

DECIMAL_SUFFIXES = {"n": -9, "u": -6, "m": -3, "": 0, "k": 3, "M": 6, "G": 9, "T": 12, "P": 15}
DECIMAL_SUFFIXES["E"] = 18
BINARY_SUFFIXES = {"Ki": 10, "Mi": 20, "Gi": 30, "Ti": 40, "Pi": 50, "Ei": 60}


@pytest.mark.parametrize(
    ("text", "value"),
    [
        ("1e3", Decimal(1000)),
        ("1E3", Decimal(1000)),
        ("1e-3", Decimal("0.001")),
        ("2E+2", Decimal(200)),
        ("1Ki", Decimal(1024)),
        ("1.5Gi", Decimal(3 * 2**29)),
        ("500m", Decimal("0.5")),
        (".5", Decimal("0.5")),
        ("5.", Decimal(5)),
        ("+1", Decimal(1)),
        ("-2", Decimal(-2)),
        ("0", Decimal(0)),
        ("007", Decimal(7)),
        ("1E", Decimal(10) ** 18),
        ("3n", Decimal("3e-9")),
        ("3u", Decimal("3e-6")),
        ("1Ei", Decimal(2**60)),
        ("1000Ei", Decimal(1000 * 2**60)),
        (12, Decimal(12)),
    ],
)
def test_parses_kubernetes_forms(text: str | int, value: Decimal) -> None:
    assert parse_quantity(text) == value


@pytest.mark.parametrize(
    "text",
    ["1.2.3", "", "m", "Ki", ".", "+", "1e", "1K", "1e3m", "1Kib", "1 Gi", " 1", "1\n", "0x10",
     "1,5", "one", "1e1.5", "--1", "1e1234567890123456789"],
)  # fmt: skip
def test_rejects_what_is_not_a_quantity_saying_what_was_expected(text: str) -> None:
    with pytest.raises(ValueError, match=r"invalid quantity .*expected a number.*500m.*512Mi"):
        parse_quantity(text)


@pytest.mark.parametrize("value", [True, 1.5, None, b"1"])
def test_rejects_other_types(value: object) -> None:
    with pytest.raises(ValueError, match="invalid quantity"):
        parse_quantity(value)  # type: ignore[arg-type]


def test_1ei_and_1000ei_differ_exactly_but_the_apiserver_caps_binary_values() -> None:
    assert parse_quantity("1Ei") < parse_quantity("1000Ei")
    assert canonical_quantity("1Ei") == 2**60
    # ParseQuantity caps binary-suffixed values at the int64 maximum; decimal ones are not capped
    assert canonical_quantity("1000Ei") == 2**63 - 1
    assert same_quantity("1000Ei", "9223372036854775807")
    assert canonical_quantity("1000E") == Decimal(10) ** 21


def test_canonical_value_rounds_up_to_a_nano_unit_away_from_zero() -> None:
    assert canonical_quantity("0.0000000001") == Decimal("1e-9")
    assert canonical_quantity("-0.0000000001") == Decimal("-1e-9")
    assert canonical_quantity("1.0000000001") == Decimal("1.000000001")
    assert canonical_quantity("1e-999999999999999999") == Decimal("1e-9")
    assert canonical_quantity("0") == 0


@pytest.mark.parametrize(
    ("a", "b"),
    [("1000m", "1"), ("1000m", 1), ("1k", "1000"), ("0.5", "500m"), ("1Ki", "1024"),
     ("1e3", "1k"), ("1Gi", "1024Mi"), ("+1", "1"), ("-0", "0")],
)  # fmt: skip
def test_same_quantity_compares_values(a: str | int, b: str | int) -> None:
    assert same_quantity(a, b)
    assert same_quantity(b, a)


@pytest.mark.parametrize(
    ("a", "b"),
    [("1k", "1Ki"), ("1", "2"), ("500m", "0.501"), ("lots", "lots"), ("1", "x"), ("1M", "1Mi")],
)
def test_same_quantity_is_false_for_different_or_invalid(a: str, b: str) -> None:
    assert not same_quantity(a, b)


digits = st.text(alphabet="0123456789", min_size=1, max_size=12)


@given(
    sign=st.sampled_from(["", "+", "-"]),
    whole=digits,
    fraction=st.one_of(st.none(), st.text(alphabet="0123456789", max_size=9)),
    suffix=st.sampled_from(sorted(DECIMAL_SUFFIXES)),
)
def test_decimal_suffixes_scale_by_powers_of_ten(
    sign: str, whole: str, fraction: str | None, suffix: str
) -> None:
    number = whole if fraction is None else f"{whole}.{fraction}"
    exact = Fraction(int(whole)) + (Fraction(int(fraction), 10 ** len(fraction)) if fraction else 0)
    exact *= Fraction(10) ** DECIMAL_SUFFIXES[suffix]
    if sign == "-":
        exact = -exact
    assert Fraction(parse_quantity(f"{sign}{number}{suffix}")) == exact


@given(
    whole=digits,
    fraction=st.text(alphabet="0123456789", max_size=6),
    suffix=st.sampled_from(sorted(BINARY_SUFFIXES)),
)
def test_binary_suffixes_scale_by_powers_of_two(whole: str, fraction: str, suffix: str) -> None:
    exact = Fraction(int(whole)) + (Fraction(int(fraction), 10 ** len(fraction)) if fraction else 0)
    exact *= 2 ** BINARY_SUFFIXES[suffix]
    assert Fraction(parse_quantity(f"{whole}.{fraction}{suffix}")) == exact


@given(mantissa=st.integers(min_value=-(10**12), max_value=10**12), exp=st.integers(-40, 40))
def test_exponent_form_equals_the_scaled_integer(mantissa: int, exp: int) -> None:
    for e in ("e", "E"):
        assert Fraction(parse_quantity(f"{mantissa}{e}{exp}")) == mantissa * Fraction(10) ** exp


@given(value=st.decimals(min_value=-(10**12), max_value=10**12, places=9))
def test_plain_decimal_text_round_trips(value: Decimal) -> None:
    text = format(value, "f")
    assert parse_quantity(text) == value
    assert same_quantity(text, f"{format(value * 1000, 'f')}m")


@given(a=st.integers(0, 10**15), b=st.integers(0, 10**15), suffix=st.sampled_from(["m", "", "Mi"]))
def test_order_follows_the_number(a: int, b: int, suffix: str) -> None:
    assert (parse_quantity(f"{a}{suffix}") < parse_quantity(f"{b}{suffix}")) == (a < b)


@given(text=st.text(max_size=30))
def test_any_text_is_a_value_or_a_value_error(text: str) -> None:
    try:
        result = parse_quantity(text)
    except ValueError as err:
        message = str(err)
        result = None
    if result is None:
        assert repr(text) in message
    else:
        assert same_quantity(text, text)
