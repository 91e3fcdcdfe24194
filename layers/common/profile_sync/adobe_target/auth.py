"""Where the profile token comes from: nowhere, a stored profile token, or OAuth server-to-server.

A token only ever leaves a provider through token(): never in reprs, logs or exception messages.
"""

from __future__ import annotations

import hashlib
import json
import logging
import threading
import time
from collections.abc import Callable, Mapping
from typing import Any, Protocol, runtime_checkable

import requests

from profile_sync import clock as step_clock

from .errors import TargetAuthError, TargetRejected, TargetRetryLater
from .urls import require_secure

logger = logging.getLogger(__name__)

DEFAULT_IMS_URL = "https://ims-na1.adobelogin.com/ims/token/v3"
DEFAULT_TOKEN_URL = "https://mc.adobe.io/{tenant}/target/authentication/token?authorizationScope=profile_api"  # noqa: S105 - a URL
DEFAULT_SCOPES = "openid,AdobeID,target_sdk,additional_info.projectedProductContext,read_organizations"


@runtime_checkable
class TokenProvider(Protocol):
    def token(self) -> str | None:
        """The bearer token to send, or None for no Authorization header."""
        ...

    def invalidate(self) -> None:
        """Target refused the last token: forget it so the next token() gets a fresh one."""
        ...


class NoAuth:
    def token(self) -> str | None:
        return None

    def invalidate(self) -> None:
        return None

    def __repr__(self) -> str:
        return "NoAuth()"


def _fingerprint(token: str | None) -> str:
    return hashlib.sha256(token.encode()).hexdigest()[:12] if token else ""


def profile_token_from_secret(value: str | Mapping[str, Any]) -> str:
    """A secret holding {"profile_token": "..."} (or the bare token string)."""
    if isinstance(value, str):
        text = value.strip()
        if text.startswith("{"):
            return profile_token_from_secret(json.loads(text))
        if not text:
            raise TargetAuthError("the token secret is empty")
        return text
    for name in ("profile_token", "profileToken", "access_token", "accessToken"):
        if value.get(name):
            return str(value[name])
    raise TargetAuthError("the token secret has no profile_token")


class StaticToken:
    """A profile token read through loader() (e.g. from Secrets Manager).

    The token is kept in memory; invalidate() drops it so the next token() reads the loader again,
    which picks up a token an admin regenerated and stored in the secret.
    """

    def __init__(self, loader: Callable[[], str | Mapping[str, Any]]) -> None:
        self._loader = loader
        self._token: str | None = None
        self._lock = threading.Lock()

    def token(self) -> str | None:
        with self._lock:
            if self._token is None:
                self._token = profile_token_from_secret(self._loader())
            return self._token

    def invalidate(self) -> None:
        with self._lock:
            self._token = None

    def __repr__(self) -> str:
        return "StaticToken(<hidden>)"


class OAuthServerToServer:
    """IMS access token (client credentials), then Target's profile token from the Admin API.

    The profile token is cached until refresh_margin seconds before it expires. Reading the
    current token (GET) comes first because generating one (POST) invalidates the token every
    other worker holds; POST only when there is none or GET hands back the token Target just
    refused.
    """

    def __init__(
        self,
        credentials_loader: Callable[[], Mapping[str, Any]],
        *,
        session: requests.Session | None = None,
        timeout: float = 30.0,
        clock: Callable[[], float] = time.time,
        refresh_margin_seconds: float = 300.0,
        time_left: Callable[[], float | None] = step_clock.time_left,
        time_margin: float = 10.0,
    ) -> None:
        self._loader = credentials_loader
        # Inside a Lambda invocation no token call may run past its time (as for Target calls).
        self._time_left = time_left
        self._time_margin = time_margin
        self._session = session or requests.Session()
        self._timeout = timeout
        self._clock = clock
        self._margin = refresh_margin_seconds
        self._lock = threading.Lock()
        self._token: str | None = None
        self._expires_at = 0.0
        self._refused: str = ""  # fingerprint of the last token Target refused
        self.mint_count = 0  # how many profile tokens were fetched (for tests and metrics)

    def __repr__(self) -> str:
        return "OAuthServerToServer(<hidden>)"

    def token(self) -> str | None:
        with self._lock:
            if self._token is None or self._clock() >= self._expires_at - self._margin:
                self._mint()
            return self._token

    def invalidate(self) -> None:
        with self._lock:
            if self._token is not None:
                self._refused = _fingerprint(self._token)
            self._token = None
            self._expires_at = 0.0

    def _mint(self) -> None:
        creds = self._loader()
        missing = [k for k in ("client_id", "client_secret", "tenant") if not creds.get(k)]
        if missing:
            raise TargetAuthError(f"OAuth credentials secret lacks {', '.join(missing)}")
        client_id = str(creds["client_id"])
        ims_url = require_secure(str(creds.get("ims_url") or DEFAULT_IMS_URL))
        token_url = str(creds.get("token_url") or DEFAULT_TOKEN_URL).replace("{tenant}", str(creds["tenant"]))
        token_url = require_secure(token_url)

        ims = self._call(
            "POST",
            ims_url,
            "IMS token",
            data={
                "client_id": client_id,
                "client_secret": str(creds["client_secret"]),
                "grant_type": "client_credentials",
                "scope": str(creds.get("scopes") or DEFAULT_SCOPES),
            },
        )
        ims_token = ims.get("access_token") or ims.get("accessToken")
        if not ims_token:
            raise TargetAuthError("IMS answered without an access token")
        headers = {
            "Authorization": f"Bearer {ims_token}",
            "X-Api-Key": client_id,
            "Content-Type": "application/vnd.adobe.target.v1+json",
            "Accept": "application/json",
        }
        found = self._call("GET", token_url, "profile token", headers=headers, missing_ok=True)
        token, expires_in = _token_and_expiry(found)
        # None yet, the one Target just refused, or about to expire: generate a new one.
        if not token or _fingerprint(token) == self._refused or expires_in <= self._margin:
            token, expires_in = _token_and_expiry(
                self._call("POST", token_url, "profile token", headers=headers)
            )
        if not token:
            raise TargetAuthError("the profile token endpoint answered without a token")
        self._token = str(token)
        self._expires_at = self._clock() + expires_in
        self.mint_count += 1
        logger.info("profile token minted", extra={"expires_in": int(expires_in)})

    def _call(
        self, method: str, url: str, what: str, *, missing_ok: bool = False, **kwargs: Any
    ) -> dict[str, Any]:
        timeout = self._timeout
        left = self._time_left()
        if left is not None:
            timeout = min(timeout, left - self._time_margin)
            if timeout < 1.0:
                raise TargetRetryLater(
                    f"{what}: no time left in this invocation for a call", retry_after_seconds=1.0
                )
        try:
            resp = self._session.request(method, url, timeout=timeout, allow_redirects=False, **kwargs)
        except requests.RequestException as exc:
            raise TargetRetryLater(f"{what}: {type(exc).__name__}", retry_after_seconds=5.0) from None
        if missing_ok and resp.status_code == 404:
            return {}
        if resp.status_code in (401, 403):
            raise TargetAuthError(f"{what} refused", status=resp.status_code)
        if resp.status_code == 429 or resp.status_code >= 500:
            raise TargetRetryLater(f"{what} unavailable", status=resp.status_code, retry_after_seconds=10.0)
        if not 200 <= resp.status_code < 300:
            raise TargetRejected(f"{what} request failed", status=resp.status_code)
        try:
            body = resp.json()
        except ValueError:
            raise TargetAuthError(f"{what}: answer is not JSON", status=resp.status_code) from None
        return body if isinstance(body, dict) else {}


def _token_and_expiry(answer: Mapping[str, Any]) -> tuple[str, float]:
    token = answer.get("accessToken") or answer.get("access_token") or ""
    try:
        expires_in = float(answer.get("expiresIn", answer.get("expires_in", 3600)))
    except (TypeError, ValueError):
        expires_in = 3600.0
    return str(token), expires_in


def provider_from_secret_value(
    value: str | Mapping[str, Any] | None,
    loader: Callable[[], str | Mapping[str, Any]],
    **oauth_options: Any,
) -> TokenProvider:
    """Pick the provider a secret calls for: OAuth credentials, a profile token, or none when empty."""
    if value is None or value == "":
        return NoAuth()
    if isinstance(value, str):
        text = value.strip()
        value = json.loads(text) if text.startswith("{") else {"profile_token": text}
    if value.get("client_id"):

        def creds() -> Mapping[str, Any]:
            fresh = loader()
            return json.loads(fresh) if isinstance(fresh, str) else fresh

        return OAuthServerToServer(creds, **oauth_options)
    return StaticToken(loader)
