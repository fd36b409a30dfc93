"""Secrets out of messages: URLs shown with their password and query values replaced by ``***``."""

from __future__ import annotations

import urllib.parse

HIDDEN = "***"


def redact_url(url: str) -> str:
    """``url`` safe for output and logs: the user's password and every query value hidden, the rest as given.

    A reject webhook often carries its credential in the URL (``https://user:token@gw/...`` or ``?token=...``).
    Something that does not parse as a URL is not echoed at all.
    """
    try:
        parts = urllib.parse.urlsplit(url)
        port = parts.port
    except ValueError:
        return "<unparseable URL>"
    netloc = parts.netloc
    if parts.password is not None or "@" in netloc:
        host = parts.hostname or ""
        user = parts.username or ""
        netloc = f"{user}:{HIDDEN}@{host}" if parts.password is not None else f"{user}@{host}"
        if port is not None:
            netloc += f":{port}"
    query = urllib.parse.urlencode([(key, HIDDEN) for key, _ in urllib.parse.parse_qsl(parts.query,
                                                                                    keep_blank_values=True)],
                                   safe="*")
    fragment = HIDDEN if parts.fragment else ""
    return urllib.parse.urlunsplit((parts.scheme, netloc, parts.path, query, fragment))
