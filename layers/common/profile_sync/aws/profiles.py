"""Client profiles in SSM Parameter Store: one String parameter per client code under a path.

Why Parameter Store and not a DynamoDB item: an operator changes a profile with the console, the
AWS CLI or `profile-sync clients set`, without a deploy; every put gets a new Version and the
parameter's history keeps the earlier ones (GetParameterHistory), so the version a job recorded
can always be looked up; IAM can grant exactly the `<path>/*` parameters; and Powertools
Parameters caches it across warm invocations. A profile is small (a Standard parameter holds 4
KB), so DynamoDB's item size and query power buy nothing here.

The functions read through Powertools' SSMProvider with max_age caching; the provider is
subclassed only to return the parameter's Version along with its value, and to cache "no
profile" like a value (a client without a profile costs one call per max_age, not one per batch).
"""

from __future__ import annotations

import json
from typing import TYPE_CHECKING, Any

import boto3
from aws_lambda_powertools.utilities.parameters import SSMProvider

from profile_sync.client_profiles import ClientProfile, parse_profile
from profile_sync.settings import Settings

if TYPE_CHECKING:  # the stubs are a development dependency, not in the layer
    from mypy_boto3_ssm import SSMClient


class _VersionedSSMProvider(SSMProvider):
    def _get(self, name: str, decrypt: bool = False, **sdk_options: Any) -> str:
        try:
            parameter = self.client.get_parameter(Name=name, WithDecryption=decrypt)["Parameter"]
        except self.client.exceptions.ParameterNotFound:
            return json.dumps({"value": None, "version": None})
        return json.dumps({"value": parameter["Value"], "version": parameter["Version"]})


def parameter_name(path: str, client_code: str) -> str:
    return f"{path.rstrip('/')}/{client_code}"


class SsmProfileStore:
    """ProfileStore over SSM: `<path>/<clientCode>` holds the profile's JSON."""

    def __init__(
        self,
        path: str,
        *,
        max_age: int = 60,
        settings: Settings | None = None,
        client: SSMClient | None = None,
    ) -> None:
        self.path = path
        self.max_age = max_age
        self.settings = settings or Settings()
        self._provider = _VersionedSSMProvider(boto3_client=client or boto3.client("ssm"))

    def get(self, client_code: str) -> ClientProfile | None:
        found = self._provider.get(
            parameter_name(self.path, client_code), max_age=self.max_age, transform="json"
        )
        if not isinstance(found, dict):  # _get always answers a JSON object
            raise TypeError(
                f"client profile {client_code}: unexpected {type(found).__name__} from the provider"
            )
        if found["value"] is None:
            return None
        # A profile stored by hand (console, CLI) is checked here too: a bad one fails the drop
        # with its message instead of sending with the stack's defaults.
        return parse_profile(found["value"], client_code, version=found["version"], settings=self.settings)


def profile_store_from_settings(settings: Settings) -> SsmProfileStore | None:
    """The stack's store, or None when profiles are off (no CLIENT_PROFILES_PATH)."""
    if not settings.client_profiles_path:
        return None
    return SsmProfileStore(
        settings.client_profiles_path, max_age=settings.client_profiles_max_age_seconds, settings=settings
    )
