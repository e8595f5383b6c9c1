"""safe_link: the one check a URL from outside passes before any chat offers it as a link."""

from __future__ import annotations

import pytest

from bot.urls import MAX_LINK_LENGTH, safe_link


@pytest.mark.parametrize(
    "url",
    [
        "https://intranet.example.com/hr/pto",
        "http://wiki.example.com:8080/a b?x=1&y=(2)#part",  # adapters escape spaces and brackets for their syntax
        "HTTPS://Example.COM/Upper",
        "https://[2001:db8::1]/v6",
        "https://example.com/" + "p" * (MAX_LINK_LENGTH - len("https://example.com/")),
    ],
)
def test_plain_web_links_pass_unchanged(url: str) -> None:
    assert safe_link(url) == url


@pytest.mark.parametrize(
    "url",
    [
        None,
        "",
        "javascript:alert(1)",
        "JavaScript:alert(1)",
        "java\nscript:alert(1)",  # urlsplit drops the newline and would see http-less javascript:
        "data:text/html,<script>alert(1)</script>",
        "mailto:someone@example.com",
        "ftp://files.example.com/x",
        "/relative/path",
        "//example.com/no-scheme",
        "https:///no-host",
        "https://user:secret@example.com/",  # a credential handed to whoever clicks
        "https://trusted.example.com@evil.example/",  # a host that reads like another
        "https://example.com\\@evil.example/",
        "https://:secret@example.com/",
        "https://@example.com/",
        "https://example.com:99999/",  # not a port
        "https://example.com:http/",
        "http://[::1/",  # an unclosed IPv6 literal
        "https://example.com/\x00",
        "https://example.com/\x85next",
        "https://example.com/" + "p" * MAX_LINK_LENGTH,
    ],
)
def test_anything_else_is_no_link(url: str | None) -> None:
    assert safe_link(url) is None


def test_surrounding_whitespace_is_trimmed() -> None:
    assert safe_link("  https://example.com/x\n") == "https://example.com/x"
