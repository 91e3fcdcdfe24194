"""`make sam-local`: every function, in SAM's Lambda container, against the local stack over HTTP.

For each file in events/, in a fresh account on a moto server: seed what the event needs (the drop,
and earlier steps, run by the real handlers in this process: the same code as `profile-sync run`),
run `sam local invoke <Function> -e <event>` in a container, then check the answer and the records
the function wrote. sam exits 0 even when the handler raises, so its output is read, never its
exit code alone.

Where a container can reach what runs here:
- moto listens on the Docker bridge address (172.17.0.1, SAM_LOCAL_HOST to change it), and the
  functions reach it through AWS_ENDPOINT_URL (a template Parameter, empty in an account).
- The Target emulator stays on loopback; a TLS relay on the bridge address forwards to it. The
  functions send the token only over HTTPS to a non-loopback host, so the relay serves HTTPS with
  a throwaway CA that is added to the CA bundle of a separate build (.aws-sam/sam-local), never
  to the build `sam deploy` uses. `--docker-network host` is no way out: SAM CLI skips "host", and
  the container's own 127.0.0.1:8080 is sam's runtime port (answers 404 to Target calls).

Event times: the events carry fixed times (the handler tests run them on a fixed clock); here the
poll state is the one the submit step just returned, so its deadline is relative to the run.

Needs Docker and public.ecr.aws/lambda/python:3.13-x86_64 (pulled, or built offline: README).
Without a Docker engine it says it did not run, and why, and exits 0.

Modules: :mod:`.functions` (the template's functions and the env file sam gets), :mod:`.certificates`
and :mod:`.relay` (HTTPS from the bridge to the emulator), :mod:`.sam` (`sam local invoke` and its
answer), :mod:`.world` (the local account, the emulator, and each event's steps and checks),
:mod:`.cli` (`python -m sam_local`, what `make sam-local` runs).
"""

from sam_local.cli import main
from sam_local.functions import declared_variables, env_file, function_env, function_for, functions
from sam_local.sam import Answer, parse_output
from sam_local.world import STEPS, World, local_world, report, run_events

__all__ = [
    "STEPS",
    "Answer",
    "World",
    "declared_variables",
    "env_file",
    "function_env",
    "function_for",
    "functions",
    "local_world",
    "main",
    "parse_output",
    "report",
    "run_events",
]
