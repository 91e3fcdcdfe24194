"""S3 as the ingest's object store."""

from __future__ import annotations

import json
from pathlib import Path
from typing import BinaryIO

import boto3
from botocore.exceptions import ClientError


class S3ObjectStore:
    def __init__(self, bucket: str, client=None) -> None:
        self.bucket = bucket
        self._s3 = client or boto3.client("s3")

    def open(self, key: str) -> BinaryIO:
        """A streaming body: the object is read once, in chunks, never whole."""
        try:
            return self._s3.get_object(Bucket=self.bucket, Key=key)["Body"]
        except ClientError as exc:
            if exc.response["Error"]["Code"] in ("NoSuchKey", "404"):
                raise FileNotFoundError(key) from exc
            raise

    def upload_file(self, path: Path, key: str, content_type: str) -> None:
        # upload_file switches to multipart for large batch files on its own.
        self._s3.upload_file(str(path), self.bucket, key, ExtraArgs={"ContentType": content_type})

    def put_json(self, key: str, document: object) -> None:
        body = json.dumps(document, separators=(",", ":")).encode()
        self._s3.put_object(Bucket=self.bucket, Key=key, Body=body, ContentType="application/json")

    def get_json(self, key: str) -> object:
        return json.loads(self._s3.get_object(Bucket=self.bucket, Key=key)["Body"].read())

    def list_keys(self, prefix: str) -> list[str]:
        keys = []
        for page in self._s3.get_paginator("list_objects_v2").paginate(Bucket=self.bucket, Prefix=prefix):
            keys.extend(item["Key"] for item in page.get("Contents", []))
        return keys
