"""Every recipient list the send API accepts becomes To/Cc/Bcc headers that read back as the
same addresses and display names (property-based, over the API's own address pattern and any
one-line name in any script), and the lists fuzzing found are refused before any header is
built. Non-ASCII display names are accepted (RFC 2047 encoded words in the header); a
non-ASCII mailbox or a domain not in its xn-- form is a 422 saying so."""

from __future__ import annotations

import email
import email.policy
import email.utils
from collections.abc import Callable
from email.header import decode_header, make_header

import pytest
from fakes.google import Mailbox
from fastapi.testclient import TestClient
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from pydantic import TypeAdapter, ValidationError

from services.common.mail import EMAIL_PATTERN, EmailAddress
from services.gmail.mime import NAME_LIMIT, Draft, build_mime
from services.gmail.routers.messages import Address

pytestmark = pytest.mark.unit
Headers = Callable[..., dict[str, str]]
ADDRESSES = TypeAdapter(list[EmailAddress])
RECIPIENTS = TypeAdapter(list[Address])
address = st.from_regex(EMAIL_PATTERN, fullmatch=True).filter(lambda a: len(a) <= 254)
name = (
    st.text(
        st.characters(blacklist_categories=("Cc", "Cs"), blacklist_characters="<>\u2028\u2029"),
        max_size=NAME_LIMIT,
    )
    .map(lambda n: " ".join(n.split()))  # whitespace runs are one space in a header
    .filter(lambda n: "=?" not in n and not (len(n) > 1 and n[0] == n[-1] == '"'))
)


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


def _rfc2047_reading(value: str) -> list[tuple[str, str]]:
    """(name, address) as RFC 2047 readers (Gmail, mail clients) read an address header: the
    whitespace between adjacent encoded words dropped (6.2). Python 3.11's header registry
    keeps it as a space, so a name split over encoded words reads with a space there."""
    unfolded = value.replace("\r\n", "").replace("\n", "")
    return [
        (str(make_header(decode_header(n))), a) for n, a in email.utils.getaddresses([unfolded])
    ]


@settings(max_examples=300, deadline=None, suppress_health_check=list(HealthCheck))
@given(to=st.lists(st.tuples(name, address), min_size=1, max_size=6))
def test_every_accepted_name_and_address_reads_back_from_the_header(
    to: list[tuple[str, str]],
) -> None:
    """Found writing this: the ``email`` package's folder dropped the quotes of a quoted name
    longer than a line (``"Doe, John, xxx…"`` became recipients ``Doe`` and ``John``) and
    split encoded words mid-character; the service folds To, Cc and Bcc itself."""
    written = [f"{n} <{a}>" if n else a for n, a in to]
    RECIPIENTS.validate_python(written)  # the API accepts them
    raw = build_mime(Draft(to=tuple(written), subject="s", text="t")).as_bytes()
    assert all(len(line) <= 998 for line in raw.split(b"\n"))
    assert _rfc2047_reading(email.message_from_bytes(raw)["To"]) == to
    parsed = email.message_from_bytes(raw, policy=email.policy.default)
    assert [a.addr_spec for a in parsed["to"].addresses] == [a for _, a in to]
    assert parsed["to"].defects == ()


def test_non_ascii_display_names_are_sent_and_read_back(
    client: TestClient, box: Mailbox, as_user: Headers
) -> None:
    """Recipients with display names were refused (the address pattern took a bare address
    only), whatever their script; now a name is any one-line text, quoted or in RFC 2047
    encoded words (as a received header holds it) read as the name it stands for."""
    body = {
        "to": [
            "Éloïse Dupont <eloise@example.com>",
            "山田 太郎 <taro@example.jp>",
            "=?utf-8?b?w4lsb8Ovc2U=?= <e2@example.com>",
        ],
        "cc": ['"Doe, John" <john@example.com>', "Ada <ada@xn--bcher-kva.example>"],
        "bcc": ["Ωmega <omega@example.com>"],
        "subject": "hi",
        "text": "x",
    }
    r = client.post("/api/v2/gmail/messages/send", json=body, headers=as_user("editor"))
    assert r.status_code == 201, r.text
    [sent] = box.sent
    assert [(a.display_name, a.addr_spec) for a in sent["to"].addresses] == [
        ("Éloïse Dupont", "eloise@example.com"),
        ("山田 太郎", "taro@example.jp"),
        ("Éloïse", "e2@example.com"),
    ]
    assert [(a.display_name, a.addr_spec) for a in sent["cc"].addresses] == [
        ("Doe, John", "john@example.com"),
        ("Ada", "ada@xn--bcher-kva.example"),
    ]
    assert [(a.display_name, a.addr_spec) for a in sent["bcc"].addresses] == [
        ("Ωmega", "omega@example.com")
    ]
    assert box.messages[r.json()["id"]].raw.isascii()  # 7-bit: the names in encoded words
    got = client.get(f"/api/v2/gmail/messages/{r.json()['id']}", headers=as_user())
    assert got.json()["to"] == (
        "Éloïse Dupont <eloise@example.com>, 山田 太郎 <taro@example.jp>, Éloïse <e2@example.com>"
    )


@pytest.mark.parametrize(
    ("recipient", "problem"),
    [
        ("élo@example.com", "the mailbox before @ must be ASCII"),
        ("Éloïse <élo@example.com>", "the mailbox before @ must be ASCII"),
        ("ana@bücher.example", "an internationalized domain goes in its ASCII form (xn--...)"),
        ("Ana <ana@bücher.example>", "an internationalized domain goes in its ASCII form"),
        ("Ana\x07 <ana@example.com>", "control characters and line breaks are not allowed"),
        ("=?x-nonesuch?q?abc?= <a@example.com>", "holds an encoded word that does not decode"),
        ("=?utf-8?q?a=0Ab?= <a@example.com>", "holds a control character or line break"),
        ("é" * (NAME_LIMIT + 1) + " <a@example.com>", f"is over {NAME_LIMIT} characters"),
        ("Ana <ana@example.com", "expected an email address"),
        ("Ana, Bob <ana@example.com>, <bob@example.com>", "expected an email address"),
    ],
)
def test_a_recipient_that_cannot_be_written_is_a_422_saying_why(
    client: TestClient, box: Mailbox, as_user: Headers, recipient: str, problem: str
) -> None:
    """Python's ``email`` refuses a non-ASCII mailbox in a 7-bit header (an addr-spec holds no
    encoded word; sending one needs SMTPUTF8), and a U-label domain would be written as an
    encoded word Gmail cannot route: both are refused naming the field, as the pattern did,
    with a message that says what to do instead of "should match pattern"."""
    body = {"to": ["carol@example.com"], "cc": [recipient], "subject": "hi", "text": "x"}
    r = client.post("/api/v2/gmail/messages/send", json=body, headers=as_user("editor"))
    assert r.status_code == 422, r.text
    [field] = r.json()["fields"]
    assert field["field"] == "cc.0"
    assert problem in field["message"], field
    assert box.sent == []
