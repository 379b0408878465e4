"""Every recipient list the send API accepts becomes To/Cc/Bcc headers that read back as the
same addresses (property-based, over the API's own address pattern), and the lists fuzzing
found are refused before any header is built."""

from __future__ import annotations

import email
import email.policy

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from pydantic import TypeAdapter, ValidationError

from services.common.mail import EMAIL_PATTERN, EmailAddress
from services.gmail.mime import Draft, build_mime

pytestmark = pytest.mark.unit
ADDRESSES = TypeAdapter(list[EmailAddress])
address = st.from_regex(EMAIL_PATTERN, fullmatch=True).filter(lambda a: len(a) <= 254)


@settings(max_examples=100, deadline=None, suppress_health_check=list(HealthCheck))
@given(to=st.lists(address, min_size=1, max_size=5), cc=st.lists(address, max_size=5))
def test_every_accepted_address_reads_back_from_the_headers(to: list[str], cc: list[str]) -> None:
    ADDRESSES.validate_python(to + cc)  # the API accepts them
    raw = build_mime(Draft(to=tuple(to), cc=tuple(cc), subject="s", text="t")).as_bytes()
    parsed = email.message_from_bytes(raw, policy=email.policy.default)
    assert [a.addr_spec for a in parsed["to"].addresses] == to
    if cc:
        assert [a.addr_spec for a in parsed["cc"].addresses] == cc


@pytest.mark.parametrize(
    "address",
    [".ibR8!@AkVg.h.ipWt", "a.@example.com", "a..b@example.com", "a:b@example.com"],
)
def test_an_address_the_header_parser_cannot_read_is_refused(address: str) -> None:
    """Found by the soak fuzz: after a comma, a local part starting with a dot made
    build_mime raise HeaderParseError (a 500 at Gmail, a 502 at analytics' delivery)."""
    with pytest.raises(ValidationError) as err:
        ADDRESSES.validate_python(["x@example.com", address])
    assert [e["loc"] for e in err.value.errors()] == [(1,)]
