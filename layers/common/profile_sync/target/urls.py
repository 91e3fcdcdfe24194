"""URL rules: HTTPS everywhere except loopback (the local emulator), status URLs followed as-is."""

from __future__ import annotations

import ipaddress
from urllib.parse import urlsplit, urlunsplit

from .errors import TargetRejected


def is_loopback_host(host: str | None) -> bool:
    if not host:
        return False
    host = host.strip("[]").lower()
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def require_secure(url: str) -> str:
    """Return url if it is https://, or http:// to a loopback host; raise TargetRejected otherwise."""
    parts = urlsplit(url)
    if not parts.hostname:
        raise TargetRejected(f"not an absolute URL: {_safe(url)}")
    if parts.scheme == "https":
        return url
    if parts.scheme == "http" and is_loopback_host(parts.hostname):
        return url
    raise TargetRejected(f"refusing a non-HTTPS URL to a non-loopback host: {_safe(url)}")


def upgrade_to_https(url: str) -> str:
    """Status URLs often come back as http:// edge hosts: keep everything but the scheme.

    Tokens must not travel in clear text, and the edge hosts answer on HTTPS too. Loopback URLs
    (the emulator) stay as they are.
    """
    parts = urlsplit(url)
    if parts.scheme == "http" and not is_loopback_host(parts.hostname):
        parts = parts._replace(scheme="https")
    return require_secure(urlunsplit(parts))


def with_show_details(url: str) -> str:
    """Append showDetails=true to the URL as returned, keeping its other query parameters."""
    base, hash_, fragment = url.partition("#")
    query = urlsplit(base).query
    if any(p.split("=", 1)[0] == "showDetails" for p in query.split("&") if p):
        return url
    if "?" not in base:
        sep = "?"
    elif base.endswith(("?", "&")):
        sep = ""
    else:
        sep = "&"
    return f"{base}{sep}showDetails=true{hash_}{fragment}"


def _safe(url: str) -> str:
    # Only scheme + host in messages: queries may carry visitor ids.
    parts = urlsplit(url)
    return f"{parts.scheme}://{parts.netloc}" if parts.netloc else "<invalid url>"
