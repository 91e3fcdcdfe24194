"""The template's functions and their events, and the env file `sam local invoke` gets."""

from __future__ import annotations

import json

from profile_sync_local.stack.project import ROOT, template


def functions() -> dict[str, str]:
    """Function folder -> logical id, for every AWS::Serverless::Function in template.yaml."""
    found = {}
    for logical_id, resource in template()["Resources"].items():
        if resource["Type"] == "AWS::Serverless::Function":
            found[resource["Properties"]["CodeUri"].strip("/").removeprefix("functions/")] = logical_id
    return found


def function_for(event_name: str) -> str:
    """events/<folder>_<what>.json -> folder (the longest folder that prefixes the name)."""
    matches = [folder for folder in functions() if event_name.startswith(f"{folder}_")]
    if not matches:
        raise ValueError(f"events/{event_name} belongs to no function")
    return max(matches, key=len)


def declared_variables(logical_id: str) -> set[str]:
    """The environment variables the template gives a function (Globals and its own)."""
    resources = template()["Resources"]
    own = resources[logical_id]["Properties"].get("Environment", {}).get("Variables", {})
    return set(template()["Globals"]["Function"]["Environment"]["Variables"]) | set(own)


def env_file(overrides: dict[str, str]) -> dict:
    """sam's --env-vars document: env.json with ``overrides`` for every function that declares them.

    sam drops, without a word, what the template does not declare for a function: so only
    declared variables are written (a test holds AWS_ENDPOINT_URL among them).
    """
    settings = json.loads((ROOT / "env.json").read_text())
    document: dict = {"Parameters": settings.get("Parameters", {})}
    for logical_id in functions().values():
        declared = declared_variables(logical_id)
        values = {**settings.get(logical_id, {}), **overrides}
        document[logical_id] = {name: value for name, value in values.items() if name in declared}
    return document


def function_env(document: dict, logical_id: str) -> dict[str, str]:
    """What a function's container gets from the env file (sam's merge: Parameters, then its block)."""
    declared = declared_variables(logical_id)
    values = {**document.get("Parameters", {}), **document.get(logical_id, {})}
    return {name: value for name, value in values.items() if name in declared}
