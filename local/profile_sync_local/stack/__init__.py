"""The stack as deployed, on one machine: template resources in moto, the real handlers, the real ASL.

Used by the workflow and handler tests, by `profile-sync run` and by `make sam-local`. moto runs in
server mode (:class:`AwsServer`) and every AWS client reaches it over HTTP through AWS_ENDPOINT_URL,
as boto3 reaches AWS in an account: botocore's real response path (urllib3 streaming bodies,
paginators, retries) is the one that runs. The resources are built from template.yaml (key schemas,
indexes), the state machine from statemachine/*.asl.json with the template's DefinitionSubstitutions,
and each Lambda task is routed to functions/<name>/app.py in-process.

Modules: :mod:`.project` (template.yaml, its tables, Timeouts and DefinitionSubstitutions),
:mod:`.aws_server` (moto in server mode), :mod:`.resources` (:class:`LocalResources`),
:mod:`.events` (the ingest's events), :mod:`.functions` (loading functions/<name>/app.py),
:mod:`.workflow` (:func:`run_workflow`).
"""

from profile_sync_local.stack.aws_server import REGION, AwsServer, atomic_dynamodb_writes, local_aws
from profile_sync_local.stack.events import ODD_KEY_CSV, drop_event, event_sources
from profile_sync_local.stack.functions import load_function, workflow_handlers
from profile_sync_local.stack.project import (
    ROOT,
    STATE_MACHINE,
    WORKFLOW_FUNCTIONS,
    definition_substitutions,
    function_timeouts,
    state_machine_definition,
    table_definition,
    template,
)
from profile_sync_local.stack.resources import LocalResources
from profile_sync_local.stack.workflow import run_workflow, steps_on

__all__ = [
    "ODD_KEY_CSV",
    "REGION",
    "ROOT",
    "STATE_MACHINE",
    "WORKFLOW_FUNCTIONS",
    "AwsServer",
    "LocalResources",
    "atomic_dynamodb_writes",
    "definition_substitutions",
    "drop_event",
    "event_sources",
    "function_timeouts",
    "load_function",
    "local_aws",
    "run_workflow",
    "state_machine_definition",
    "steps_on",
    "table_definition",
    "template",
    "workflow_handlers",
]
