"""S3 as the ingest's object store."""

from __future__ import annotations

import io
import json
from pathlib import Path
from typing import TYPE_CHECKING, BinaryIO

import boto3
from botocore.exceptions import ClientError
from botocore.response import StreamingBody

if TYPE_CHECKING:  # the stubs are a development dependency, not in the layer
    from collections.abc import Buffer

    from mypy_boto3_s3 import S3Client

READ_BUFFER_BYTES = 1 << 20


class _ObjectBody(io.RawIOBase):
    """An S3 object's body as a plain read-only file: readable (b"" at the end) until closed.

    botocore's StreamingBody is not one: used in `with`, it hands out its raw urllib3 stream,
    which closes itself at the end of the data, so a TextIOWrapper or csv reader over it fails with
    "I/O operation on closed file" (mock_aws's in-memory body never closes, real S3's does).
    Reads go through StreamingBody.read, which also checks that every byte of the object arrived.
    """

    def __init__(self, body: StreamingBody) -> None:
        self._body = body

    def readable(self) -> bool:
        return True

    def readinto(self, buffer: Buffer) -> int:
        view = memoryview(buffer).cast("B")
        data = self._body.read(len(view))
        view[: len(data)] = data
        return len(data)

    def close(self) -> None:
        if not self.closed:
            self._body.close()
        super().close()


class S3ObjectStore:
    def __init__(self, bucket: str, client: S3Client | None = None) -> None:
        self.bucket = bucket
        self._s3 = client or boto3.client("s3")

    def open(self, key: str) -> BinaryIO:
        """The object as a binary file, streamed: read once, in chunks, never whole. Close it (`with`)."""
        try:
            body = self._s3.get_object(Bucket=self.bucket, Key=key)["Body"]
        except ClientError as exc:
            if exc.response["Error"]["Code"] in ("NoSuchKey", "404"):
                raise FileNotFoundError(key) from exc
            raise
        return io.BufferedReader(_ObjectBody(body), buffer_size=READ_BUFFER_BYTES)

    def upload_file(self, path: Path, key: str, content_type: str) -> None:
        # upload_file switches to multipart for large batch files on its own.
        self._s3.upload_file(str(path), self.bucket, key, ExtraArgs={"ContentType": content_type})

    def put_json(self, key: str, document: object) -> None:
        body = json.dumps(document, separators=(",", ":")).encode()
        self._s3.put_object(Bucket=self.bucket, Key=key, Body=body, ContentType="application/json")

    def get_json(self, key: str) -> object:
        return json.loads(self._s3.get_object(Bucket=self.bucket, Key=key)["Body"].read())

    def delete_keys(self, keys: list[str]) -> None:
        """DeleteObjects, 1,000 keys a call; raises when S3 refused any (a missing key is no error)."""
        for start in range(0, len(keys), 1000):
            chunk = keys[start : start + 1000]
            answer = self._s3.delete_objects(
                Bucket=self.bucket, Delete={"Objects": [{"Key": key} for key in chunk], "Quiet": True}
            )
            if errors := answer.get("Errors"):
                first = errors[0]
                raise OSError(f"S3 refused to delete {len(errors)} object(s): {first.get('Code')}")

    def list_keys(self, prefix: str) -> list[str]:
        keys: list[str] = []
        for page in self._s3.get_paginator("list_objects_v2").paginate(Bucket=self.bucket, Prefix=prefix):
            keys.extend(item["Key"] for item in page.get("Contents", []))
        return keys
