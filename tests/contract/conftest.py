"""Contract fixtures: the Target emulator on a free loopback port, fast clients, fake and virtual clocks.

Every test here talks to 127.0.0.1 only: a guard refuses any other socket connection.
"""

from __future__ import annotations

import ipaddress
import socket
import threading
from contextlib import contextmanager

import boto3
import pytest

from profile_sync.adobe_target.client import RetryPolicy, TargetClient
from profile_sync_local.emulator import EmulatorConfig, TargetEmulator
from profile_sync_local.stack.aws_server import atomic_dynamodb_writes

CLIENT = "demo"


@pytest.fixture(autouse=True)
def _loopback_only(monkeypatch: pytest.MonkeyPatch) -> None:
    real = socket.create_connection

    def guarded(address, *args, **kwargs):
        host = address[0]
        try:
            loopback = host == "localhost" or ipaddress.ip_address(host).is_loopback
        except ValueError:
            loopback = False
        if not loopback:
            raise AssertionError(f"test tried to reach {host}")
        return real(address, *args, **kwargs)

    monkeypatch.setattr(socket, "create_connection", guarded)


class FakeClock:
    """time() and sleep() for one thread of control: sleep advances time and is recorded."""

    def __init__(self, start: float = 1_700_000_000.0) -> None:
        self.now = start
        self.sleeps: list[float] = []
        self._lock = threading.Lock()

    def time(self) -> float:
        with self._lock:
            return self.now

    def sleep(self, seconds: float) -> None:
        with self._lock:
            self.sleeps.append(seconds)
            self.now += max(seconds, 0.0)

    def advance(self, seconds: float) -> None:
        self.sleep(seconds)


class VirtualScheduler:
    """A virtual clock for several worker threads: time moves only when every worker is asleep.

    So no HTTP request is ever in flight while the minute changes, and a limiter and the emulator
    reading this clock agree on which window each call falls in.
    """

    def __init__(self, workers: int, start: float = 1_700_000_000.0) -> None:
        self._now = start
        self._active = workers
        self._wakes: list[float] = []
        self._cond = threading.Condition()

    def time(self) -> float:
        with self._cond:
            return self._now

    def sleep(self, seconds: float) -> None:
        with self._cond:
            wake = self._now + max(seconds, 0.0)
            self._wakes.append(wake)
            self._active -= 1
            self._advance()
            while self._now < wake:
                self._cond.wait()
            self._wakes.remove(wake)
            self._active += 1

    def done(self) -> None:
        with self._cond:
            self._active -= 1
            self._advance()

    def _advance(self) -> None:
        if self._active == 0 and self._wakes:
            self._now = max(self._now, min(self._wakes))
            self._cond.notify_all()

    @contextmanager
    def worker(self):
        try:
            yield
        finally:
            self.done()


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


# Every contract test runs against both answer shapes: Adobe's documented examples (one line, a raw
# `&` in URLs: the default) and escaped, pretty-printed XML.
@pytest.fixture(params=["adobe", "escaped"])
def emulator(request: pytest.FixtureRequest, clock: FakeClock):
    config = EmulatorConfig(seed=7, escaped_xml=request.param == "escaped")
    with TargetEmulator(config, clock=clock.time) as emu:
        yield emu


@pytest.fixture
def make_client(emulator: TargetEmulator, clock: FakeClock):
    def make(**kwargs) -> TargetClient:
        kwargs.setdefault("retry", RetryPolicy.fast())
        kwargs.setdefault("sleep", clock.sleep)
        kwargs.setdefault("timeout", 5)
        return TargetClient(emulator.url, kwargs.pop("client_code", CLIENT), **kwargs)

    return make


@pytest.fixture
def client(make_client) -> TargetClient:
    return make_client()


def batch(*rows: str, header: str = "pcId,a,b") -> bytes:
    return ("batch=" + "\n".join((header, *rows)) + "\n").encode()


# Real DynamoDB's atomic conditional writes, for moto (the limiter relies on them).
atomic_moto_dynamodb = atomic_dynamodb_writes


def create_rate_table(name: str = "profile-sync-jobs", region: str = "us-east-1"):
    """A table with the key schema the limiter expects (pk/sk strings, TTL on expiresAt), in moto."""
    client = boto3.client("dynamodb", region_name=region)
    client.create_table(
        TableName=name,
        BillingMode="PAY_PER_REQUEST",
        AttributeDefinitions=[
            {"AttributeName": "pk", "AttributeType": "S"},
            {"AttributeName": "sk", "AttributeType": "S"},
        ],
        KeySchema=[{"AttributeName": "pk", "KeyType": "HASH"}, {"AttributeName": "sk", "KeyType": "RANGE"}],
    )
    client.update_time_to_live(
        TableName=name, TimeToLiveSpecification={"Enabled": True, "AttributeName": "expiresAt"}
    )
    return boto3.resource("dynamodb", region_name=region).Table(name)
