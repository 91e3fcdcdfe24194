"""The emulator's HTTP side: routes, faults, auth and the answer of each endpoint."""

from __future__ import annotations

import json
import logging
import re
import socket
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import TYPE_CHECKING, Any
from urllib.parse import parse_qsl, unquote, urlsplit

from profile_sync_local.emulator.batches import batch_digest
from profile_sync_local.emulator.render import JSON, XML, _iso, render_xml
from profile_sync_local.emulator.settings import LIMITED_ENDPOINTS, LOOPBACK_HOSTS, EmulatorConfig

if TYPE_CHECKING:
    from profile_sync_local.emulator.state import TargetEmulator

logger = logging.getLogger(__name__)


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    allow_reuse_address = True
    emulator: TargetEmulator

    def handle_error(self, request: Any, client_address: Any) -> None:
        # Clients time out and hang up on purpose in tests: don't print tracebacks.
        logger.debug("emulator connection error", exc_info=True)


_ROUTES: list[tuple[re.Pattern[str], str, str]] = [
    (re.compile(r"^/m2/([^/]+)/v2/profile/batchUpdate/?$"), "batchUpdate", "v2"),
    (re.compile(r"^/m2/([^/]+)/profile/batchUpdate/?$"), "batchUpdate", "v1"),
    (re.compile(r"^/m2/([^/]+)(?:/v2)?/profile/batchStatus/?$"), "batchStatus", ""),
    (re.compile(r"^/m2/([^/]+)/profile/update/?$"), "update", ""),
    (re.compile(r"^/rest/v1/profiles/thirdPartyId/([^/]+)$"), "profiles", "thirdPartyId"),
    (re.compile(r"^/rest/v1/profiles/([^/]+)$"), "profiles", "pcId"),
    (re.compile(r"^/ims/token/v\d+$"), "ims", ""),
    (re.compile(r"^/([^/]+)/target/authentication/token$"), "token", ""),
]


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server: _Server
    _entry: dict[str, Any] | None = None  # this request's record, until it is logged
    _status: int = 0

    def setup(self) -> None:
        super().setup()
        # Headers and body go out in two writes: without this, Nagle + delayed ACK add 40 ms a call.
        self.request.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)

    def log_message(self, format: str, *args: Any) -> None:
        logger.debug("emulator: " + format, *args)

    def do_GET(self) -> None:
        self._handle()

    def do_POST(self) -> None:
        self._handle()

    def do_PUT(self) -> None:
        self._handle()

    def _read_body(self) -> bytes:
        if "chunked" in self.headers.get("Transfer-Encoding", "").lower():
            chunks: list[bytes] = []
            while True:
                size = int(self.rfile.readline(1024).split(b";")[0].strip() or b"0", 16)
                if size == 0:
                    while self.rfile.readline(1024) not in (b"\r\n", b"\n", b""):
                        pass
                    return b"".join(chunks)
                chunks.append(self.rfile.read(size))
                self.rfile.readline(1024)
        length = int(self.headers.get("Content-Length") or 0)
        return self.rfile.read(length) if length else b""

    def _send(
        self, status: int, body: str | bytes, content_type: str = XML, headers: dict[str, str] | None = None
    ) -> None:
        data = body.encode("utf-8") if isinstance(body, str) else body
        self._status = status
        self._log_request()  # before answering: a test reading the log after the answer sees it
        self.send_response(status)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(data)))
        for name, value in (headers or {}).items():
            self.send_header(name, value)
        self.end_headers()
        self.wfile.write(data)

    def _log_request(self) -> None:
        if self._entry is not None:
            self._entry["status"] = self._status
            self.server.emulator._record(self._entry)
            self._entry = None

    def _handle(self) -> None:
        emu = self.server.emulator
        cfg = emu.config
        self._status = 0
        body = self._read_body()
        parts = urlsplit(self.path)
        query = dict(parse_qsl(parts.query, keep_blank_values=True))
        endpoint, match, variant = "unknown", None, ""
        for pattern, name, kind in _ROUTES:
            match = pattern.match(parts.path)
            if match:
                endpoint, variant = name, kind
                break
        self._entry = {
            "endpoint": endpoint,
            "method": self.command,
            "path": parts.path,
            "content_type": self.headers.get("Content-Type", ""),
            "content_length": self.headers.get("Content-Length"),
            "chunked": "chunked" in self.headers.get("Transfer-Encoding", "").lower(),
            "authorized": bool(self.headers.get("Authorization") or self.headers.get("access_token")),
            "body_bytes": len(body),
            "show_details": query.get("showDetails") == "true",
            "query_keys": sorted(query),
        }
        if endpoint == "batchUpdate":
            self._entry["digest"] = batch_digest(body)  # which batch (received_batches' key)
        with emu._lock:
            emu.calls[endpoint] += 1
            if endpoint == "batchUpdate":
                emu.calls[f"batchUpdate.{variant}"] += 1
        try:
            self._dispatch(
                emu, cfg=cfg, endpoint=endpoint, variant=variant, match=match, query=query, body=body
            )
        except (BrokenPipeError, ConnectionResetError):
            self.close_connection = True
        finally:
            self._log_request()  # no answer was sent (a dropped connection)

    def _dispatch(
        self,
        emu: TargetEmulator,
        *,
        cfg: EmulatorConfig,
        endpoint: str,
        variant: str,
        match: re.Match[str] | None,
        query: dict[str, str],
        body: bytes,
    ) -> None:
        if match is None:
            self._send(404, "<response><success>false</success><message>Not found</message></response>")
            return
        if cfg.delay_seconds:
            time.sleep(cfg.delay_seconds)
        fault = emu._next_fault(endpoint, cfg)
        if fault == "slow":
            time.sleep(cfg.slow_fault_seconds)
        elif fault == "drop":
            self.close_connection = True  # hang up without an answer
            return
        elif fault in ("500", "503", "429"):
            self._send(int(fault), f"<html><body>HTTP {fault}</body></html>", "text/html")
            return
        elif fault in ("401", "403"):
            self._send(
                int(fault), "<response><success>false</success><message>Unauthorized</message></response>"
            )
            return
        elif fault == "garbage":
            self._send(200, "<html><body>Gateway says hello</body></html>", "text/html")
            return

        if endpoint == "ims":
            self._ims(emu, cfg, body)
            return
        if endpoint == "token":
            self._token(emu, cfg, match.group(1))
            return

        # Which client's token came with the call (recorded by client code, never the token itself).
        owners = {token: code for code, token in cfg.client_tokens}
        if self._entry is not None:
            self._entry["client"] = query.get("client", "") if endpoint == "profiles" else match.group(1)
            self._entry["token_of"] = owners.get(self._token_sent())
        if cfg.require_auth and not self._authorized(cfg):
            self._send(
                cfg.auth_failure_status,
                "<response><success>false</success><message>Authentication failed</message></response>",
            )
            return
        client = match.group(1)
        if endpoint in LIMITED_ENDPOINTS and not emu._take_rate_slot(client, cfg):
            self._send(503, "<html><body>Service Unavailable</body></html>", "text/html")
            return
        if endpoint == "batchUpdate":
            if self.command != "POST":
                self._send(405, "<response><success>false</success><message>Use POST</message></response>")
                return
            emu._note_posted(body)
            accepted, result = emu._submit(client, variant, body, cfg)
            if accepted:
                emu._note_accepted(body)
                if fault == "accept_drop":
                    self.close_connection = True  # took the batch, hung up without an answer
                    return
                if fault == "accept_stall":
                    time.sleep(cfg.slow_fault_seconds)
                if fault == "accept_garbage":
                    self._send(200, "<html><body>Batch received</body></html>", "text/html")
                    return
                answer = render_xml(
                    cfg,
                    [
                        ("success", "true"),
                        ("batchStatus", result),
                        ("message", "Batch submitted for processing"),
                    ],
                )
                if fault == "accept_truncated":
                    answer = answer[: answer.index("<message>") + len("<message>Batch")]
                self._send(200, answer)
            else:
                self._send(
                    cfg.reject_http_status,
                    render_xml(cfg, [("success", "false"), ("batchStatus", ""), ("message", result)]),
                )
        elif endpoint == "batchStatus":
            status, text = emu._status(query.get("batchId", ""), query.get("showDetails") == "true", cfg)
            self._send(status, text)
        elif endpoint == "update":
            self._single_update(emu, cfg, client, query, body)
        elif endpoint == "profiles":
            self._fetch(emu, match.group(1), variant, query)

    def _token_sent(self) -> str:
        header = self.headers.get("Authorization", "")
        token = header[7:].strip() if header.lower().startswith("bearer ") else ""
        return token or self.headers.get("access_token", "")  # older docs' header

    def _authorized(self, cfg: EmulatorConfig) -> bool:
        token = self._token_sent()
        own = dict(cfg.client_tokens).get(self._entry["client"]) if self._entry else None
        if own is not None:
            return token == own
        return bool(token) and token in cfg.valid_tokens

    def _single_update(
        self, emu: TargetEmulator, cfg: EmulatorConfig, client: str, query: dict, body: bytes
    ) -> None:
        if self.command == "GET" and len(self.path.encode()) > cfg.single_get_max_bytes:
            self._send(
                414, "<response><success>false</success><message>Request too large</message></response>"
            )
            return
        if self.command == "POST" and len(body) > cfg.single_post_max_bytes:
            self._send(
                413, "<response><success>false</success><message>Request too large</message></response>"
            )
            return
        params = dict(query)
        if body:
            params.update(parse_qsl(body.decode("utf-8", "replace"), keep_blank_values=True))
        if client == "client":
            host = (self.headers.get("Host") or "").split(":")[0]
            is_ip = host in LOOPBACK_HOSTS or re.fullmatch(r"[\d.]+", host or "0")
            client = params.get("client") or (cfg.default_client if is_ip else host.split(".")[0])
        if params.get("mboxPC"):
            id_type, visitor_id = "pcId", params["mboxPC"]
        elif params.get("mbox3rdPartyId"):
            id_type, visitor_id = "thirdPartyId", params["mbox3rdPartyId"]
        else:
            self._send(
                cfg.reject_http_status,
                "<response><success>false</success>"
                "<message>mboxPC or mbox3rdPartyId is required</message></response>",
            )
            return
        attrs = {k[len("profile.") :]: v for k, v in params.items() if k.startswith("profile.") and v != ""}
        emu._single_update(client, id_type, visitor_id, attrs)
        self._send(
            200,
            render_xml(
                cfg, [("success", "true"), ("pcId", ""), ("message", "Request successfully submitted")]
            ),
        )

    def _fetch(self, emu: TargetEmulator, raw_id: str, id_type: str, query: dict) -> None:
        client = query.get("client", "")
        visitor_id = unquote(raw_id)  # a path segment: "+" is a plus
        if not client:
            self._send(400, json.dumps({"status": 400, "message": "client is required"}), JSON)
            return
        emu._advance_all()
        record = emu.store.record(client, id_type, visitor_id)
        if record is None:
            kind = "third party id" if id_type == "thirdPartyId" else "tnt id"
            message = f"No profile found for client {client} with {kind}={visitor_id}"
            self._send(404, json.dumps({"status": 404, "message": message}), JSON)
            return
        answer = {
            "client": client,
            "visitorId": visitor_id,  # a string in Adobe's sample
            "modifiedAt": _iso(record["modifiedAt"]),
            "profileAttributes": {
                name: {"value": value, "modifiedAt": _iso(at)}
                for name, (value, at) in record["attributes"].items()
            },
        }
        self._send(200, json.dumps(answer), JSON)

    def _ims(self, emu: TargetEmulator, cfg: EmulatorConfig, body: bytes) -> None:
        form = dict(parse_qsl(body.decode("utf-8", "replace")))
        if (
            self.command != "POST"
            or form.get("grant_type") != "client_credentials"
            or form.get("client_id") != cfg.oauth_client_id
            or form.get("client_secret") != cfg.oauth_client_secret
        ):
            self._send(
                401, json.dumps({"error": "invalid_client", "error_description": "invalid client"}), JSON
            )
            return
        answer = {"access_token": emu._mint_ims(), "token_type": "bearer", "expires_in": cfg.ims_token_ttl}
        self._send(200, json.dumps(answer), JSON)

    def _token(self, emu: TargetEmulator, cfg: EmulatorConfig, tenant: str) -> None:
        header = self.headers.get("Authorization", "")
        ims = header[7:].strip() if header.lower().startswith("bearer ") else ""
        if not emu._ims_valid(ims) or self.headers.get("X-Api-Key") != cfg.oauth_client_id:
            self._send(401, json.dumps({"error_code": "401013", "message": "Oauth token is not valid"}), JSON)
            return
        if self.command == "POST":
            token = emu.issue_token()
        else:
            token = sorted(cfg.valid_tokens)[0] if cfg.valid_tokens else ""
            if not token:
                self._send(404, json.dumps({"httpStatus": 404, "message": "No token found"}), JSON)
                return
        answer = {
            "accessToken": token,
            "tokenType": "bearer",
            "scope": "profile_api",
            "expiresIn": cfg.profile_token_ttl,
        }
        self._send(200, json.dumps(answer), JSON)
