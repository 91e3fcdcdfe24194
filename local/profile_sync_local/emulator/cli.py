"""`profile-sync emulator` (and `python -m profile_sync_local.emulator`): its switches and its loop."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable

from profile_sync_local.emulator.settings import DEFAULT_PROFILE_TOKEN, LOOPBACK_HOSTS, EmulatorConfig
from profile_sync_local.emulator.state import TargetEmulator


def add_arguments(parser: argparse.ArgumentParser) -> None:
    d = EmulatorConfig()
    parser.add_argument(
        "--host", default=d.host, choices=LOOPBACK_HOSTS, help="loopback address to listen on"
    )
    parser.add_argument("--port", type=int, default=8080, help="port (0 = a free one)")
    parser.add_argument("--require-auth", action="store_true", help="profile API calls need a bearer token")
    parser.add_argument(
        "--token",
        action="append",
        dest="tokens",
        metavar="TOKEN",
        help=f"a valid profile token, repeatable (default {DEFAULT_PROFILE_TOKEN})",
    )
    parser.add_argument("--auth-failure-status", type=int, default=d.auth_failure_status, choices=(401, 403))
    parser.add_argument("--oauth-client-id", default=d.oauth_client_id)
    parser.add_argument("--oauth-client-secret", default=d.oauth_client_secret)
    parser.add_argument(
        "--calls-per-minute", type=int, default=d.calls_per_minute, help="503 above this (0 = off)"
    )
    parser.add_argument("--polls-until-complete", type=int, default=d.polls_until_complete)
    parser.add_argument(
        "--processing-seconds",
        "--seconds-until-complete",
        dest="seconds_until_complete",
        type=float,
        default=d.seconds_until_complete,
        metavar="N",
        help="a batch completes N seconds after it was submitted, on the emulator's clock (with "
        "--polls-until-complete: both must hold)",
    )
    parser.add_argument("--stuck-share", type=float, default=d.stuck_share)
    parser.add_argument(
        "--stuck-batches", type=int, default=d.stuck_batches, help="the first N batches end stuck"
    )
    parser.add_argument(
        "--vanish-batches",
        type=int,
        default=d.vanish_batches,
        help="the N batches after the stuck ones lose their status",
    )
    parser.add_argument("--fail-ids", default="", help="comma-separated visitor ids whose rows fail")
    parser.add_argument("--fail-share", type=float, default=d.fail_share)
    parser.add_argument(
        "--lose-share",
        type=float,
        default=d.lose_share,
        help="share of rows reported successful and never applied (profile fetch does not show them)",
    )
    parser.add_argument(
        "--visibility-seconds",
        type=float,
        default=d.visibility_seconds,
        metavar="N",
        help="applied values show in profile fetch N seconds after the batch completed",
    )
    parser.add_argument("--vanish-share", type=float, default=d.vanish_share)
    parser.add_argument("--vanish-after-polls", type=int, default=d.vanish_after_polls)
    parser.add_argument("--vanish-style", choices=("404", "empty"), default=d.vanish_style)
    parser.add_argument("--keep-statuses", type=int, default=d.keep_statuses, help="legacy Target kept 10")
    parser.add_argument("--profile-format", choices=("failures", "all"), default=d.profile_format)
    parser.add_argument(
        "--status-url-extra",
        default=d.status_url_extra,
        help='appended to status URLs (default "&m2Node=00")',
    )
    parser.add_argument(
        "--status-url-base",
        default=d.status_url_base,
        help="status URLs point at this base instead (e.g. a foreign host a client must refuse)",
    )
    parser.add_argument(
        "--escaped-xml",
        action="store_true",
        help="escaped, pretty-printed XML answers instead of Adobe's documented shape (raw &, one line)",
    )
    parser.add_argument("--delay", type=float, default=d.delay_seconds, help="seconds before every answer")
    parser.add_argument("--error-500-share", type=float, default=d.error_500_share)
    parser.add_argument("--drop-share", type=float, default=d.drop_share)
    parser.add_argument("--max-rows", type=int, default=d.max_rows)
    parser.add_argument("--max-bytes", type=int, default=d.max_bytes)
    parser.add_argument("--single-get-max-bytes", type=int, default=d.single_get_max_bytes)
    parser.add_argument("--single-post-max-bytes", type=int, default=d.single_post_max_bytes)
    parser.add_argument("--reject-http-status", type=int, default=d.reject_http_status)
    parser.add_argument("--default-client", default=d.default_client)
    parser.add_argument("--seed", type=int, default=None)


def config_from_args(args: argparse.Namespace) -> EmulatorConfig:
    return EmulatorConfig(
        host=args.host,
        port=args.port,
        require_auth=args.require_auth,
        valid_tokens=frozenset(args.tokens or [DEFAULT_PROFILE_TOKEN]),
        auth_failure_status=args.auth_failure_status,
        oauth_client_id=args.oauth_client_id,
        oauth_client_secret=args.oauth_client_secret,
        calls_per_minute=args.calls_per_minute,
        polls_until_complete=args.polls_until_complete,
        seconds_until_complete=args.seconds_until_complete,
        stuck_share=args.stuck_share,
        stuck_batches=args.stuck_batches,
        vanish_batches=args.vanish_batches,
        fail_ids=frozenset(i for i in args.fail_ids.split(",") if i),
        fail_share=args.fail_share,
        lose_share=args.lose_share,
        visibility_seconds=args.visibility_seconds,
        vanish_share=args.vanish_share,
        vanish_after_polls=args.vanish_after_polls,
        vanish_style=args.vanish_style,
        keep_statuses=args.keep_statuses,
        profile_format=args.profile_format,
        status_url_extra=args.status_url_extra,
        status_url_base=args.status_url_base,
        escaped_xml=args.escaped_xml,
        delay_seconds=args.delay,
        error_500_share=args.error_500_share,
        drop_share=args.drop_share,
        max_rows=args.max_rows,
        max_bytes=args.max_bytes,
        single_get_max_bytes=args.single_get_max_bytes,
        single_post_max_bytes=args.single_post_max_bytes,
        reject_http_status=args.reject_http_status,
        default_client=args.default_client,
        seed=args.seed,
    )


def run_from_args(args: argparse.Namespace, *, ready: Callable[[TargetEmulator], None] | None = None) -> int:
    """Run until interrupted; prints the base URL (and the OAuth endpoints) on start."""
    try:
        config = config_from_args(args)
    except ValueError as exc:  # a share outside 0..1, a negative count: one line, exit 2
        print(f"profile-sync emulator: {exc}", file=sys.stderr)
        return 2
    emulator = TargetEmulator(config).start()
    print(f"Target emulator on {emulator.url}", flush=True)
    print(f"  IMS token:     {emulator.ims_url()}", flush=True)
    print(f"  profile token: {emulator.token_url()}", flush=True)
    if ready is not None:
        ready(emulator)
    try:
        while emulator._thread is not None and emulator._thread.is_alive():
            emulator._thread.join(timeout=0.5)
    except KeyboardInterrupt:
        pass
    finally:
        emulator.stop()
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="target-emulator",
        description="A local Adobe Target that follows TARGET_API.md, over real HTTP on loopback.",
    )
    add_arguments(parser)
    return run_from_args(parser.parse_args(argv))
