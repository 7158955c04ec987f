"""Relay URLs as an operator may see them: the relay's access token never shown.

A relay that requires an access token (docs/OPERATIONS.md §1.5) is named by a URL that
carries it as HTTP Basic credentials, ``ws://:TOKEN@host:port`` (the form SMP servers use
for their passwords). The full URL is the circuit's identity: it is stored, put in
invitations and circuit changes, and used to connect. Everywhere else (logs, status, alarms,
errors, CLI output) the station shows :func:`shown`, with the credentials replaced by
``***``, so a token never reaches a log file or a screen.
"""

from __future__ import annotations

from collections.abc import Iterable


def shown(url: str) -> str:
    """``url`` with any credentials (``user:token@``) replaced by ``***@``."""
    scheme, sep, rest = url.partition("://")
    if not sep:
        return url
    end = min((i for i in (rest.find(c) for c in "/?#") if i >= 0), default=len(rest))
    authority, tail = rest[:end], rest[end:]
    if "@" in authority:
        authority = "***@" + authority.rpartition("@")[2]
    return f"{scheme}://{authority}{tail}"


def _bare(url: str) -> str:
    """``url`` without any credentials."""
    return shown(url).replace("://***@", "://", 1)


def named(given: str, urls: Iterable[str]) -> list[str]:
    """The URLs among ``urls`` that ``given`` names: itself, or, when ``given`` carries no token
    (``ws://host:port``) or the masked one an operator sees (``ws://***@host:port``), every URL
    that is the same but for its credentials. An operator can so name a circuit as shown."""
    urls = list(urls)
    if given in urls:
        return [given]
    if shown(given) != given and "://***@" not in given:
        return []  # a wrong token is not a way to name the right circuit
    return [url for url in urls if _bare(url) == _bare(given)]
