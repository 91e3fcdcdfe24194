"""Token providers and building them from Secrets Manager (moto); no network."""

from __future__ import annotations

import json

import boto3
import pytest
from aws_lambda_powertools.utilities import parameters

from profile_sync.adobe_target.auth import (
    NoAuth,
    OAuthServerToServer,
    StaticToken,
    TokenProvider,
    profile_token_from_secret,
    provider_from_secret_value,
)
from profile_sync.adobe_target.errors import TargetAuthError, TargetRetryLater
from profile_sync.aws.secrets import token_provider_from_secret

CREDS = {
    "client_id": "cid",
    "client_secret": "very-secret",
    "tenant": "acme",
    "scopes": "openid,AdobeID,target_sdk",
}


class FakeResponse:
    def __init__(self, status: int, body: dict | None = None) -> None:
        self.status_code = status
        self._body = body

    def json(self):
        if self._body is None:
            raise ValueError("no json")
        return self._body


class FakeSession:
    """Answers like IMS and the Admin API token endpoint; records calls."""

    def __init__(self, current: str | None = "tok-current") -> None:
        self.calls: list[tuple[str, str, dict]] = []
        self.current = current
        self.fail_with: int | None = None

    def request(self, method, url, **kwargs):
        self.calls.append((method, url, kwargs))
        if self.fail_with:
            return FakeResponse(self.fail_with, {})
        if "ims" in url:
            return FakeResponse(200, {"access_token": "ims-abc", "token_type": "bearer", "expires_in": 86399})
        if method == "GET":
            if self.current is None:
                return FakeResponse(404, {"message": "none"})
            return FakeResponse(200, {"accessToken": self.current, "expiresIn": 7775999})
        self.current = f"tok-new-{len(self.calls)}"
        return FakeResponse(200, {"accessToken": self.current, "tokenType": "bearer", "expiresIn": 3600})


@pytest.fixture(autouse=True)
def _fresh_parameter_cache():
    parameters.clear_caches()
    yield
    parameters.clear_caches()


def test_no_auth():
    assert NoAuth().token() is None
    assert isinstance(NoAuth(), TokenProvider)


@pytest.mark.parametrize(
    "value", ["tok", " tok\n", '{"profile_token": "tok"}', {"profile_token": "tok"}, {"access_token": "tok"}]
)
def test_profile_token_secret_shapes(value):
    assert profile_token_from_secret(value) == "tok"


@pytest.mark.parametrize("value", ["", {}, {"profile_token": ""}])
def test_empty_token_secrets_are_auth_errors(value):
    with pytest.raises(TargetAuthError):
        profile_token_from_secret(value)


def test_static_token_caches_until_invalidated():
    values = iter(["one", "two"])
    provider = StaticToken(lambda: next(values))
    assert provider.token() == provider.token() == "one"
    provider.invalidate()
    assert provider.token() == "two"
    assert "one" not in repr(provider) and "two" not in repr(provider)


def test_oauth_flow_reads_the_current_token_first():
    session = FakeSession()
    now = [1000.0]
    provider = OAuthServerToServer(lambda: CREDS, session=session, clock=lambda: now[0])
    assert provider.token() == "tok-current"
    (m1, ims_url, ims_kw), (m2, token_url, token_kw) = session.calls
    assert (m1, ims_url) == ("POST", "https://ims-na1.adobelogin.com/ims/token/v3")
    assert ims_kw["data"] == {
        "client_id": "cid",
        "client_secret": "very-secret",
        "grant_type": "client_credentials",
        "scope": "openid,AdobeID,target_sdk",
    }
    assert (m2, token_url) == (
        "GET",
        "https://mc.adobe.io/acme/target/authentication/token?authorizationScope=profile_api",
    )
    assert token_kw["headers"]["Authorization"] == "Bearer ims-abc"
    assert token_kw["headers"]["X-Api-Key"] == "cid"
    assert token_kw["headers"]["Content-Type"] == "application/vnd.adobe.target.v1+json"
    assert provider.token() == "tok-current" and len(session.calls) == 2  # cached
    # A refused token that GET still returns: a new one is generated (POST).
    provider.invalidate()
    assert provider.token().startswith("tok-new-")
    assert [c[0] for c in session.calls[2:]] == ["POST", "GET", "POST"]
    assert "very-secret" not in repr(provider) and "tok" not in repr(provider)


def test_oauth_refreshes_before_expiry():
    session = FakeSession(current=None)
    now = [0.0]
    provider = OAuthServerToServer(
        lambda: CREDS, session=session, clock=lambda: now[0], refresh_margin_seconds=300
    )
    first = provider.token()  # POST: expires in 3600 s
    now[0] = 3299
    assert provider.token() == first
    now[0] = 3301
    assert provider.token() == first  # GET hands back the current token with a fresh expiry
    assert provider.mint_count == 2


def test_oauth_generates_a_new_token_when_the_current_one_is_about_to_expire():
    session = FakeSession()
    real = session.request

    def expiring(method, url, **kwargs):
        answer = real(method, url, **kwargs)
        if method == "GET" and "ims" not in url:
            answer._body["expiresIn"] = 60
        return answer

    session.request = expiring
    provider = OAuthServerToServer(lambda: CREDS, session=session, refresh_margin_seconds=300)
    assert provider.token().startswith("tok-new-")
    assert [c[0] for c in session.calls] == ["POST", "GET", "POST"]


@pytest.mark.parametrize(
    ("status", "error"), [(401, TargetAuthError), (500, TargetRetryLater), (429, TargetRetryLater)]
)
def test_oauth_endpoint_failures(status, error):
    session = FakeSession()
    session.fail_with = status
    with pytest.raises(error) as caught:
        OAuthServerToServer(lambda: CREDS, session=session).token()
    assert "very-secret" not in str(caught.value)


def test_oauth_needs_complete_credentials():
    with pytest.raises(TargetAuthError, match="tenant"):
        OAuthServerToServer(lambda: {"client_id": "a", "client_secret": "b"}, session=FakeSession()).token()


def test_provider_choice_from_a_secret_value():
    assert isinstance(provider_from_secret_value("", lambda: ""), NoAuth)
    assert isinstance(provider_from_secret_value("tok", lambda: "tok"), StaticToken)
    assert isinstance(provider_from_secret_value(json.dumps(CREDS), lambda: CREDS), OAuthServerToServer)


@pytest.fixture
def secrets_client(aws):
    yield boto3.client("secretsmanager", region_name="us-east-1")


def test_static_token_from_secrets_manager_rereads_after_a_refusal(secrets_client):
    secrets_client.create_secret(Name="target/profile", SecretString=json.dumps({"profile_token": "tok-1"}))
    provider = token_provider_from_secret("target/profile")
    assert isinstance(provider, StaticToken)
    assert provider.token() == "tok-1"
    secrets_client.put_secret_value(
        SecretId="target/profile", SecretString=json.dumps({"profile_token": "tok-2"})
    )
    assert provider.token() == "tok-1"  # cached while Target accepts it
    provider.invalidate()
    assert provider.token() == "tok-2"  # re-read past the Powertools cache


def test_plain_string_secret(secrets_client):
    secrets_client.create_secret(Name="target/plain", SecretString="tok-plain")
    assert token_provider_from_secret("target/plain").token() == "tok-plain"


def test_oauth_credentials_from_secrets_manager(secrets_client):
    secrets_client.create_secret(Name="target/oauth", SecretString=json.dumps(CREDS))
    session = FakeSession()
    provider = token_provider_from_secret("target/oauth", session=session)
    assert isinstance(provider, OAuthServerToServer)
    assert provider.token() == "tok-current"


def test_no_secret_id_is_no_auth():
    assert isinstance(token_provider_from_secret(""), NoAuth)
    assert isinstance(token_provider_from_secret(None), NoAuth)


def test_oauth_calls_never_run_past_the_invocations_time():
    session = FakeSession()
    left = [25.0]
    provider = OAuthServerToServer(lambda: CREDS, session=session, time_left=lambda: left[0])
    provider.token()
    assert [c[2]["timeout"] for c in session.calls] == [15.0, 15.0]  # 25 s left - 10 s margin, not 30
    provider.invalidate()
    left[0] = 10.5
    with pytest.raises(TargetRetryLater, match="no time left"):
        provider.token()
    assert len(session.calls) == 2  # nothing sent
