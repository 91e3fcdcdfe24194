"""Token provider from a Secrets Manager secret (a profile token or OAuth server-to-server credentials).

The secret is read through Powertools Parameters, cached for max_age seconds across warm
invocations; a re-read after Target refused a token bypasses the cache.
"""

from __future__ import annotations

import json
import threading
from collections.abc import Mapping
from typing import Any

from aws_lambda_powertools.utilities import parameters

from profile_sync.adobe_target.auth import NoAuth, TokenProvider, provider_from_secret_value


class SecretLoader:
    """Reads the secret: the first call may use the cache, later calls (after a refusal) fetch it fresh."""

    def __init__(self, secret_id: str, *, max_age: int = 300) -> None:
        self.secret_id = secret_id
        self.max_age = max_age
        self._calls = 0
        self._lock = threading.Lock()

    def __call__(self) -> str | Mapping[str, Any]:
        with self._lock:
            force = self._calls > 0
            self._calls += 1
        value = parameters.get_secret(self.secret_id, max_age=self.max_age, force_fetch=force)
        if isinstance(value, bytes):
            value = value.decode("utf-8")
        text = str(value).strip()
        return json.loads(text) if text.startswith("{") else text

    def __repr__(self) -> str:
        return f"SecretLoader({self.secret_id!r})"


def token_provider_from_secret(
    secret_id: str | None, *, max_age: int = 300, **oauth_options: Any
) -> TokenProvider:
    """NoAuth for an empty secret id; otherwise StaticToken or OAuthServerToServer by the secret's content.

    oauth_options go to OAuthServerToServer (session, timeout, clock, refresh_margin_seconds).
    """
    if not secret_id:
        return NoAuth()
    loader = SecretLoader(secret_id, max_age=max_age)
    first = loader()
    # Later reads go through the same loader; the first one is reused, not fetched again.
    unused = [first]

    def load() -> str | Mapping[str, Any]:
        return unused.pop() if unused else loader()

    return provider_from_secret_value(first, load, **oauth_options)
