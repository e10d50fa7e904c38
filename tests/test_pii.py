"""Personal-data scrubbers: each kind caught, and the look-alikes left alone."""

from __future__ import annotations

import pyarrow as pa
import pytest

from lfft.data.pii import luhn_ok, scrub_array, scrub_text
from lfft.errors import ConfigError


def scrubbed(text: str) -> str:
    return scrub_text(text)[0]


@pytest.mark.parametrize(
    "text",
    [
        "Call +1 (415) 555-0132 now",
        "or 415-555-0132.",
        "(415) 555-0132",
        "+44 20 7946 0958",
        "call 555-0132",
        "415.555.0132",
        "+14155550132",
        "020 7946 0958",
        "01 23 45 67 89",
        "555 123 4567",
    ],
)
def test_phone_numbers_are_replaced(text):
    out, counts = scrub_text(text)
    assert "<PHONE>" in out and counts == {"phone": 1}
    assert not any(c.isdigit() for c in out.replace("<PHONE>", ""))


@pytest.mark.parametrize(
    "text",
    [
        "In 2024 prices rose to $1,299.99",
        "Python 3.11.4, v2.7.18.1234 and build 10.0.19041.1",
        "on 2024-01-15 or 15.01.2024 at 12:30:45",
        "the id 1234567890 is an undelimited run",
        "order #123-456-789",
        "12 000 000 people and 1,000,000 dollars",
        "from 1990-2000",
        "scores 10 20 30 40 50",
        "ISBN 978-3-16-148410-0",
        "pi 3.14159 2.71828",
    ],
)
def test_ordinary_numbers_are_not_phones(text):
    assert scrub_text(text) == (text, {})


def test_luhn_valid_cards_are_replaced_invalid_kept():
    assert luhn_ok("4111111111111111") and not luhn_ok("4111111111111112")
    for card in ("4111 1111 1111 1111", "4111-1111-1111-1111", "4111111111111111"):
        assert scrub_text(f"card {card} ok") == ("card <CARD> ok", {"card": 1})
    assert scrubbed("amex 3782 822463 10005") == "amex <CARD>"
    invalid = "card 4111 1111 1111 1112 ok"
    assert scrubbed(invalid) == invalid


def test_ip_addresses_vs_versions():
    text = "ip 192.168.1.20:8080 and fe80::1ff:fe23:4567:890a, ::1."
    assert scrub_text(text) == ("ip <IP>:8080 and <IP>, <IP>.", {"ip": 3})
    for keep in (
        "not ip 1.2.3, 1.2.3.4.5, 300.1.1.1 or v1.2.3.4",
        "std::vector and a::b",
        "MAC 00:1A:2B:3C:4D:5E at 12:30:45",
    ):
        assert scrubbed(keep) == keep


def test_emails():
    assert scrub_text("mail john.doe+x@example.co.uk.") == ("mail <EMAIL>.", {"email": 1})
    assert (
        scrubbed("git clone ssh://git@github.com/a.git") == "git clone ssh://git@github.com/a.git"
    )
    assert scrubbed("not an email: a@b or @handle") == "not an email: a@b or @handle"


def test_urls_with_credentials_or_tokens():
    text = (
        "https://user:hunter2@db.example.com/x and https://api.x.com/v1?api_key=abc123&x=1. "
        "and https://example.com/?q=1"
    )
    out, counts = scrub_text(text)
    assert out == "<URL_SECRET> and <URL_SECRET>. and https://example.com/?q=1"
    assert counts == {"url_secret": 2}


def test_kinds_can_be_chosen_and_unknown_kinds_are_errors():
    assert scrub_text("a@b.com 192.168.0.1", kinds=["ip"]) == ("a@b.com <IP>", {"ip": 1})
    with pytest.raises(ConfigError, match="passport"):
        scrub_text("x", kinds=["passport"])


def test_scrub_array_keeps_nulls_and_counts():
    arr = pa.array(["mail a@b.com", None, "plain text", "call +1 415 555 0132 or c@d.org"])
    out, counts = scrub_array(arr)
    assert out.to_pylist() == ["mail <EMAIL>", None, "plain text", "call <PHONE> or <EMAIL>"]
    assert counts == {"email": 2, "phone": 1}
