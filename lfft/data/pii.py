"""Personal-data scrubbers: each match becomes a typed placeholder, and every kind is counted.

Kinds, in the order they run (earlier kinds claim text first, so a URL's ``user@host`` is not
also an email and a card number is not also a phone number):

=============  ===============  ===========================================================
kind           placeholder      matches
=============  ===============  ===========================================================
url_secret     ``<URL_SECRET>`` URLs with ``user:password@`` or a secret query parameter
                                (``token``, ``api_key``, ``password``, ``sig``, ...)
email          ``<EMAIL>``      ``name@domain.tld``
card           ``<CARD>``       13-19 digits (contiguous or in groups of 4) passing Luhn
ip             ``<IP>``         IPv4 (each part 0-255) and IPv6 (checked by ``ipaddress``)
phone          ``<PHONE>``      ``+`` international numbers, ``(area) ...``, and separated
                                national forms; never years, dates, prices, versions,
                                thousands-grouped numbers or undelimited digit runs
=============  ===============  ===========================================================

The phone rules are deliberately conservative (see :func:`_is_phone`): a false positive destroys
ordinary numbers in answers, which hurts training more than a rare missed phone number.

:func:`scrub_array` runs over an Arrow string column: one RE2 pre-filter picks the few strings
that may hold personal data, and only those go through the Python regexes.
"""

from __future__ import annotations

import ipaddress
import re
from collections import Counter
from collections.abc import Iterable

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from lfft.errors import ConfigError

PII_KINDS = ("url_secret", "email", "card", "ip", "phone")
PLACEHOLDERS = {
    "url_secret": "<URL_SECRET>",
    "email": "<EMAIL>",
    "card": "<CARD>",
    "ip": "<IP>",
    "phone": "<PHONE>",
}

_SECRET_PARAMS = (
    "token|access_token|refresh_token|id_token|auth_token|api_key|apikey|key|secret|"
    "client_secret|password|passwd|pwd|sig|signature|sessionid|session_id|jwt|auth|"
    "x-amz-signature|x-amz-credential|x-goog-signature"
)
_URL = re.compile(r"\b[a-zA-Z][a-zA-Z0-9+.\-]*://[^\s<>\"'`]+")
_URL_CREDENTIALS = re.compile(r"^[^:/]+://[^/@\s:]+:[^/@\s]*@")
_URL_SECRET_PARAM = re.compile(rf"[?&#;](?:{_SECRET_PARAMS})=[^&#\s]", re.IGNORECASE)
_URL_TRAILING = ".,;:!?)]}'\""

_EMAIL = re.compile(
    r"(?<![\w.%+/-])[A-Za-z0-9._%+-]+@(?:[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?\.)+"
    r"[A-Za-z]{2,24}(?![\w-])"
)

_CARD = re.compile(
    r"(?<![\d-])(?:\d{13,19}|\d{4}([ -])\d{4}\1\d{4}\1\d{1,7}|\d{4}([ -])\d{6}\2\d{4,5})(?!\d)"
)

_OCTET = r"(?:25[0-5]|2[0-4]\d|1\d\d|[1-9]?\d)"
_IPV4 = re.compile(rf"(?<![\w.])(?:{_OCTET}\.){{3}}{_OCTET}(?!\w|\.\d)")
_IPV6 = re.compile(r"(?<![\w:.])[0-9A-Fa-f]{0,4}:[0-9A-Fa-f:.]*:[0-9A-Fa-f.]*(?![\w:])")

_PHONE = re.compile(
    r"(?<![\w+.,/-])"
    r"(?:\+\d{1,3}[ .-]?)?"  # country code
    r"(?:\(\d{1,4}\)[ .-]?)?"  # area code in parentheses
    r"(?:\d{1,4}(?:[ .-]\d{1,4}){1,5}|\d{7,15})"  # digit groups, or one run
    r"(?!\w|[.,/-]?\d)"
)

# Cheap RE2 test for "this string may hold personal data" (most strings do not).
_PREFILTER = (
    r"@|://"
    r"|\d[ .()+-]{0,2}\d[ .()+-]{0,2}\d[ .()+-]{0,2}\d[ .()+-]{0,2}\d[ .()+-]{0,2}\d[ .()+-]{0,2}\d"
    r"|\d\.\d+\.\d+\.\d"
    r"|[0-9A-Fa-f]:[0-9A-Fa-f:]*:|::"
)


def check_kinds(kinds: Iterable[str]) -> tuple[str, ...]:
    """Validate PII kind names; returns them in scrubbing order."""
    kinds = {kinds} if isinstance(kinds, str) else set(kinds)
    unknown = sorted(kinds - set(PII_KINDS))
    if unknown:
        raise ConfigError(
            f"unknown PII kind(s) {', '.join(unknown)}; known: {', '.join(PII_KINDS)}"
        )
    return tuple(k for k in PII_KINDS if k in kinds)


def luhn_ok(digits: str) -> bool:
    """The Luhn checksum that every payment card number satisfies."""
    total = 0
    for i, ch in enumerate(reversed(digits)):
        d = ord(ch) - 48
        if i % 2:
            d = d * 2 - 9 if d > 4 else d * 2
        total += d
    return total % 10 == 0


def _url_secret(m: re.Match) -> str:
    url = m.group()
    stripped = url.rstrip(_URL_TRAILING)
    if _URL_CREDENTIALS.match(stripped) or _URL_SECRET_PARAM.search(stripped):
        return PLACEHOLDERS["url_secret"] + url[len(stripped) :]
    return url


def _card(m: re.Match) -> str:
    digits = re.sub(r"\D", "", m.group())
    if 13 <= len(digits) <= 19 and luhn_ok(digits):
        return PLACEHOLDERS["card"]
    return m.group()


def _ipv6(m: re.Match) -> str:
    text = m.group()
    stripped = text.rstrip(".")
    if not any(c.isdigit() for c in stripped):
        return text  # "a::b", "dead::beef": more often code than an address
    try:
        ipaddress.IPv6Address(stripped)
    except ValueError:
        return text
    return PLACEHOLDERS["ip"] + text[len(stripped) :]


_YEAR = re.compile(r"[12]\d{3}")


def _is_phone(text: str) -> bool:
    """Does a candidate digit sequence look like a phone number rather than another number?"""
    digits = sum(c.isdigit() for c in text)
    if not 7 <= digits <= 15:
        return False
    if text.startswith("+"):
        return True  # international format: explicit
    has_paren = "(" in text
    body = text.split(")", 1)[1] if has_paren else text
    groups = re.findall(r"\d+", body)
    seps = set(re.findall(r"[ .-]", body.strip(" .-")))
    lengths = tuple(len(g) for g in groups)
    if len(seps) > 1:
        return False  # mixed separators: "3.11 2024-05"
    sep = next(iter(seps), "")
    if lengths in ((4, 2, 2), (2, 2, 4), (4, 1, 2), (4, 2, 1)) and sep in ".-":
        return False  # a date
    if len(lengths) == 2 and lengths == (4, 4) and all(_YEAR.fullmatch(g) for g in groups):
        return False  # a year range
    if len(lengths) >= 2 and all(n == 3 for n in lengths[1:]) and not has_paren:
        return False  # thousands grouping: 12 000 000, 1.234.567
    if has_paren:
        return True
    if not sep:
        return False  # an undelimited run of digits is more often an id than a phone
    if sep in " .":
        trunk = groups[0].startswith("0") and digits >= 10 and min(lengths) >= 2
        return lengths == (3, 3, 4) or trunk
    return lengths[-1] >= 4 or (groups[0].startswith("0") and digits >= 10)


def _phone(m: re.Match) -> str:
    return PLACEHOLDERS["phone"] if _is_phone(m.group()) else m.group()


_SCRUBBERS = {
    "url_secret": (_URL, _url_secret),
    "email": (_EMAIL, lambda m: PLACEHOLDERS["email"]),
    "card": (_CARD, _card),
    "ip": (None, None),  # two patterns, see scrub_text
    "phone": (_PHONE, _phone),
}


def scrub_text(text: str, kinds: Iterable[str] = PII_KINDS) -> tuple[str, Counter]:
    """Replace personal data in ``text`` with typed placeholders; count replacements by kind."""
    counts: Counter = Counter()
    for kind in check_kinds(kinds):
        placeholder = PLACEHOLDERS[kind]
        before = text.count(placeholder)
        if kind == "ip":
            text = _IPV4.sub(placeholder, text)
            text = _IPV6.sub(_ipv6, text)
        else:
            pattern, repl = _SCRUBBERS[kind]
            text = pattern.sub(repl, text)
        found = text.count(placeholder) - before
        if found:
            counts[kind] += found
    return text, counts


def scrub_array(
    arr: pa.Array | pa.ChunkedArray, kinds: Iterable[str] = PII_KINDS
) -> tuple[pa.Array, Counter]:
    """Scrub every string of an Arrow string array; returns the new array and counts by kind."""
    kinds = check_kinds(kinds)
    counts: Counter = Counter()
    if isinstance(arr, pa.ChunkedArray):
        arr = arr.combine_chunks()
    if len(arr) == 0 or not kinds:
        return arr, counts
    maybe = pc.fill_null(pc.match_substring_regex(arr, _PREFILTER), False)
    idx = np.flatnonzero(maybe.to_numpy(zero_copy_only=False))
    if idx.size == 0:
        return arr, counts
    new = []
    for text in arr.take(pa.array(idx)).to_pylist():
        text, found = scrub_text(text, kinds)
        counts.update(found)
        new.append(text)
    return pc.replace_with_mask(arr, maybe, pa.array(new, arr.type)), counts
