"""A local Adobe Target that follows TARGET_API.md, over real HTTP on 127.0.0.1.

It serves, for any client code: bulk update v2 and v1, batch status (plain and showDetails=true),
single update (/m2/client/... and /m2/{clientCode}/...), profile fetch, and the IMS and profile
token endpoints. Profiles live in memory: v2 creates them, v1 and single update only update
existing ones, empty values never clear a value.

Answers take the shape of Adobe's documented examples by default: one line, elements separated
by single spaces, a raw `&` inside <batchStatus> (Adobe's v2 example, not well-formed XML), v2
status URLs with a /v2/ segment and `&m2Node=00`. escaped_xml=True gives the escaped,
pretty-printed form instead. Bulk bodies and single-update queries are decoded the way a form
is (`&` splits parameters, `+` is a space, then %XX), as Target's servlet does.

Where Adobe leaves behaviour undocumented, a switch picks the answer (EmulatorConfig): auth,
a calls-per-minute limit answering 503, polls or seconds until `complete`, stuck batches,
failing rows, statuses that vanish, slow answers, 500s, dropped connections, the per-profile
format of 2017-2020 ("all") or today ("failures"), size and row limits. Switches can change
while it runs (configure(), queue_faults(), revoke_token()); randomness is seeded; time comes
from an injectable clock so a virtual-clock test can drive "seconds until complete".

    with TargetEmulator(EmulatorConfig(polls_until_complete=2)) as emu:
        client = TargetClient(emu.url, "demo")
"""

from profile_sync_local.emulator.batches import batch_digest
from profile_sync_local.emulator.cli import add_arguments, config_from_args, main, run_from_args
from profile_sync_local.emulator.http_api import _Handler
from profile_sync_local.emulator.render import render_xml
from profile_sync_local.emulator.settings import (
    DEFAULT_CLIENT_ID,
    DEFAULT_CLIENT_SECRET,
    DEFAULT_PROFILE_TOKEN,
    ENDPOINTS,
    FAULT_KINDS,
    LOOPBACK_HOSTS,
    THIRD_PARTY_ID_MAX_CHARS,
    EmulatorConfig,
)
from profile_sync_local.emulator.state import EmulatorState, TargetEmulator
from profile_sync_local.emulator.store import ProfileStore

__all__ = [
    "DEFAULT_CLIENT_ID",
    "DEFAULT_CLIENT_SECRET",
    "DEFAULT_PROFILE_TOKEN",
    "ENDPOINTS",
    "FAULT_KINDS",
    "LOOPBACK_HOSTS",
    "THIRD_PARTY_ID_MAX_CHARS",
    "EmulatorConfig",
    "EmulatorState",
    "ProfileStore",
    "TargetEmulator",
    "_Handler",
    "add_arguments",
    "batch_digest",
    "config_from_args",
    "main",
    "render_xml",
    "run_from_args",
]
