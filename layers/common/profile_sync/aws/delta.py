"""The delta snapshot's pointer in the JobsTable: `pk=DELTA#<client>#<idType>, sk=POINTER`.

One conditional write per snapshot version: the put succeeds only while the stored version is the
one the merge started from, so two jobs of a client never overwrite each other's merge.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import boto3
from botocore.exceptions import ClientError

from profile_sync.delta.snapshot import Pointer

if TYPE_CHECKING:  # the stubs are a development dependency, not in the layer
    from mypy_boto3_dynamodb import DynamoDBServiceResource
    from mypy_boto3_dynamodb.type_defs import PutItemInputTablePutItemTypeDef

POINTER_SK = "POINTER"


def pointer_key(client_code: str, id_type: str) -> dict[str, str]:
    return {"pk": f"DELTA#{client_code}#{id_type}", "sk": POINTER_SK}


class DynamoSnapshotPointers:
    def __init__(self, table_name: str, resource: DynamoDBServiceResource | None = None) -> None:
        self.table = (resource or boto3.resource("dynamodb")).Table(table_name)

    def get(self, client_code: str, id_type: str) -> Pointer | None:
        item = self.table.get_item(Key=pointer_key(client_code, id_type), ConsistentRead=True).get("Item")
        return Pointer.from_dict(item) if item else None  # from_dict reads DynamoDB's Decimals

    def put(self, client_code: str, id_type: str, pointer: Pointer, *, expect_version: int) -> bool:
        item: dict[str, Any] = {**pointer_key(client_code, id_type), **pointer.to_dict()}
        kwargs: PutItemInputTablePutItemTypeDef = {
            "Item": item,
            "ConditionExpression": "attribute_not_exists(pk)",
        }
        if expect_version:
            kwargs["ConditionExpression"] = "#version = :expected"
            kwargs["ExpressionAttributeNames"] = {"#version": "version"}
            kwargs["ExpressionAttributeValues"] = {":expected": expect_version}
        try:
            self.table.put_item(**kwargs)
        except ClientError as exc:
            if exc.response["Error"]["Code"] == "ConditionalCheckFailedException":
                return False
            raise
        return True
