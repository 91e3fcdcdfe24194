"""moto as the local account's AWS: a server in this process, and DynamoDB writes as atomic as AWS's."""

from __future__ import annotations

import contextlib
import logging
import os
import threading
import urllib.request
from collections.abc import Iterator

from moto.dynamodb.models import DynamoDBBackend
from moto.moto_server.threaded_moto_server import ThreadedMotoServer

REGION = "us-east-1"


class AwsServer:
    """moto in server mode, in this process: the AWS APIs over HTTP on ``host`` (a free port).

    In this process on purpose: the server's threads use the same moto backends (one per
    account/region) as the rest of the process, so sfn_local's patches on moto's Lambda and Step
    Functions and :func:`atomic_dynamodb_writes` apply to what it serves. Loopback by default; only
    `make sam-local` binds the Docker bridge, so a container can reach it.
    """

    def __init__(self, host: str = "127.0.0.1", port: int = 0) -> None:
        self._server = ThreadedMotoServer(ip_address=host, port=port, verbose=False)
        self.url = ""
        self.port = 0

    def __enter__(self) -> AwsServer:
        # werkzeug logs a line per request otherwise.
        logging.getLogger("werkzeug").setLevel(logging.WARNING)
        self._server.start()
        host, self.port = self._server.get_host_and_port()
        self.url = f"http://{host}:{self.port}"
        return self

    def __exit__(self, *exc: object) -> None:
        self._server.stop()

    def env(self) -> dict[str, str]:
        """What points boto3 here (and the credentials moto accepts, so nothing can reach AWS)."""
        return {
            "AWS_ENDPOINT_URL": self.url,
            # moto's Step Functions interpreter calls Lambda at localhost:MOTO_PORT (sfn_local).
            "MOTO_PORT": str(self.port),
            "AWS_ACCESS_KEY_ID": "local",
            "AWS_SECRET_ACCESS_KEY": "local",
            "AWS_SESSION_TOKEN": "local",
            "AWS_DEFAULT_REGION": REGION,
            "AWS_REGION": REGION,
        }

    def reset(self) -> None:
        """Forget every resource (moto's reset endpoint): a fresh account, cheaper than a new server."""
        # Our own server's http:// URL.
        request = urllib.request.Request(f"{self.url}/moto-api/reset", method="POST")  # noqa: S310
        with urllib.request.urlopen(request, timeout=30) as answer:  # noqa: S310
            answer.read()


@contextlib.contextmanager
def local_aws(server: AwsServer | None = None) -> Iterator[AwsServer]:
    """A fresh account on a moto server (``server`` or a new one on loopback), with its environment
    set for this process, and DynamoDB writes atomic as in AWS."""
    saved = {name: os.environ.get(name) for name in AwsServer().env()}
    with contextlib.ExitStack() as stack:
        if server is None:
            server = stack.enter_context(AwsServer())
        server.reset()  # moto's backends are the process's, whichever server serves them
        stack.enter_context(atomic_dynamodb_writes())
        os.environ.update(server.env())
        try:
            yield server
        finally:
            for name, value in saved.items():
                if value is None:
                    os.environ.pop(name, None)
                else:
                    os.environ[name] = value


@contextlib.contextmanager
def atomic_dynamodb_writes() -> Iterator[None]:
    """Give moto's DynamoDB the per-item atomicity of the real one.

    Real DynamoDB applies a conditional write atomically; moto checks the condition and writes in
    plain Python, so two threads can both pass `used <= :room` (quota) or `calls < :limit` (rate
    limit). The quota and the limiter rely on DynamoDB's guarantee, and the local pipeline runs
    its steps as threads, so writes are serialised here.
    """
    lock = threading.RLock()
    originals = {name: getattr(DynamoDBBackend, name) for name in ("update_item", "put_item", "delete_item")}

    def serialised(original):
        def write(*args, **kwargs):
            with lock:
                return original(*args, **kwargs)

        return write

    for name, original in originals.items():
        setattr(DynamoDBBackend, name, serialised(original))
    try:
        yield
    finally:
        for name, original in originals.items():
            setattr(DynamoDBBackend, name, original)
