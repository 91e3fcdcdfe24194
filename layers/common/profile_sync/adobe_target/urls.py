"""URL rules: where the profile token may go, HTTPS everywhere except loopback, status URLs as-is.

TargetScope decides, before a byte is sent, whether a URL may receive the profile token: the
configured base URL's host and hosts under tt.omtrdc.net (Target's edge hosts), over HTTPS; plain
HTTP only to a loopback host, and only when the base URL itself is loopback (the local emulator).
A status URL Target returned is followed as-is except that http:// becomes https:// (Adobe's
examples show http:// edge hosts; a token must not travel in clear text).
"""

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


TARGET_DOMAIN = "tt.omtrdc.net"


class TargetScope:
    """The hosts a client may send its token to (see the module docstring)."""

    def __init__(self, base_url: str) -> None:
        parts = urlsplit(require_secure(base_url))
        if parts.username or parts.password or parts.query or parts.fragment:
            raise TargetRejected(
                f"the Target base URL must be scheme://host[:port][/path]: {_safe(base_url)}"
            )
        self.base_host = (parts.hostname or "").lower()
        self.loopback = is_loopback_host(self.base_host)

    def allows_host(self, host: str | None) -> bool:
        host = (host or "").lower().rstrip(".")
        return bool(host) and (host == self.base_host or host.endswith("." + TARGET_DOMAIN))

    def check(self, url: str) -> str:
        """url when it may receive the token; TargetRejected with the reason otherwise."""
        parts = urlsplit(url)
        if not parts.hostname or parts.scheme not in ("http", "https"):
            raise TargetRejected(f"refusing a URL that is not absolute http(s): {_safe(url)}")
        if parts.username or parts.password:
            raise TargetRejected(f"refusing a URL with credentials in it: {_safe(url)}")
        if not self.allows_host(parts.hostname):
            raise TargetRejected(
                f"refusing to send the Target token to {_safe(url)}: only {self.base_host} and hosts "
                f"under {TARGET_DOMAIN} may receive it"
            )
        if parts.scheme == "http" and not (self.loopback and is_loopback_host(parts.hostname)):
            raise TargetRejected(
                f"refusing plain HTTP to {_safe(url)}: HTTP is only for a loopback Target (the emulator)"
            )
        return url

    def status_url(self, url: str) -> str:
        """A status URL as Target returned it, with http:// upgraded (except to a loopback base)."""
        parts = urlsplit(url.strip())
        if parts.scheme == "http" and not (self.loopback and is_loopback_host(parts.hostname)):
            parts = parts._replace(scheme="https")
        return self.check(urlunsplit(parts))


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
    # Only scheme + host[:port] in messages: queries may carry visitor ids, userinfo a password.
    parts = urlsplit(url)
    host = parts.hostname
    if not host:
        return "<invalid url>"
    host = f"[{host}]" if ":" in host else host
    try:
        port = f":{parts.port}" if parts.port else ""
    except ValueError:
        port = ""
    return f"{parts.scheme}://{host}{port}"
