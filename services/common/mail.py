"""What a service puts in an email's headers, checked at the API's edge: a 422 naming the
field, not a message Gmail cannot parse or a header the MIME library refuses (a 500).

:data:`EmailAddress` is an RFC 5322 ``dot-atom`` local part (``atext`` runs joined by single
dots: no dot first, last or doubled, which Python's header parser cannot read after a comma),
``@``, and a domain of letters, digits and hyphens in dot-separated labels (at least two), as
the HTML standard's "valid email address" has it. Anything else is a 422 naming the field:
RFC 5322 specials in an address change the header's meaning (``a:b@c.d`` is a group,
``a(b)@c.d`` a comment, ``a]b@c.d`` no address at all), and control characters have no place
in one. Internationalized domains go in their ``xn--`` form.

:data:`ONE_LINE_PATTERN` (a subject's) is one line: no character at which Python's
``splitlines`` breaks (CR, LF, VT, FF, FS, GS, RS, NEL, the line and paragraph separators),
which is what ``email.policy`` refuses in a header value.
"""

from __future__ import annotations

from typing import Annotated

from pydantic import Field

__all__ = ["EMAIL_PATTERN", "ONE_LINE_PATTERN", "EmailAddress"]

_LABEL = r"[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?"
_ATOM = r"[A-Za-z0-9!#$%&'*+/=?^_`{|}~-]+"
EMAIL_PATTERN = rf"^{_ATOM}(?:\.{_ATOM})*@{_LABEL}(?:\.{_LABEL})+$"

EmailAddress = Annotated[str, Field(max_length=254, pattern=EMAIL_PATTERN)]

ONE_LINE_PATTERN = r"^[^\n\r\x0b\x0c\x1c-\x1e\x85\u2028\u2029]*$"
