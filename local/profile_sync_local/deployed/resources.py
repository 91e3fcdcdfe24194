"""The deployed stack's resources (the drop bucket, the jobs table, SSM paths): named by options
(`--bucket`, `--table`) or read from the stack's Outputs; and the errors a user can meet, each one
line on stderr and an exit code."""

from __future__ import annotations

import argparse
import functools
import os
import sys
from collections.abc import Callable
from dataclasses import dataclass, field

import boto3
from boto3.exceptions import S3UploadFailedError
from botocore.exceptions import (
    BotoCoreError,
    ClientError,
    NoCredentialsError,
    NoRegionError,
)

from profile_sync.aws.jobs import DynamoJobStore

DEFAULT_STACK = "target-profile-sync"
EXIT_OK = 0
EXIT_NOT_FOUND = 1
EXIT_ERROR = 2
NOT_FOUND_CODES = {"404", "NoSuchKey", "NoSuchBucket", "ResourceNotFoundException"}


class CliError(Exception):
    def __init__(self, message: str, exit_code: int = EXIT_ERROR) -> None:
        super().__init__(message)
        self.exit_code = exit_code


@dataclass
class Deployed:
    """The stack's resources: names from the options, else from the stack's Outputs."""

    session: boto3.Session
    stack: str
    bucket_option: str | None = None
    table_option: str | None = None
    _outputs: dict | None = field(default=None, repr=False)

    @property
    def region(self) -> str:
        return self.session.region_name

    def output(self, name: str, option: str) -> str:
        if self._outputs is None:
            self._outputs = stack_outputs(self.session.client("cloudformation"), self.stack, self.region)
        if name not in self._outputs:
            raise CliError(f"stack {self.stack!r} has no output {name}: give {option}")
        return self._outputs[name]

    @property
    def bucket(self) -> str:
        return self.bucket_option or self.output("DropBucketName", "--bucket")

    @property
    def table(self) -> str:
        return self.table_option or self.output("JobsTableName", "--table")

    def s3(self):
        return self.session.client("s3")

    def jobs(self) -> DynamoJobStore:
        return DynamoJobStore(self.table, resource=self.session.resource("dynamodb"))


def stack_outputs(cloudformation, stack: str, region: str) -> dict[str, str]:
    try:
        stacks = cloudformation.describe_stacks(StackName=stack)["Stacks"]
    except ClientError as exc:
        if "does not exist" in exc.response["Error"].get("Message", ""):
            raise CliError(
                f"stack {stack!r} not found in {region}: name it with --stack, or give --bucket / --table",
                EXIT_NOT_FOUND,
            ) from exc
        raise
    return {o["OutputKey"]: o["OutputValue"] for o in stacks[0].get("Outputs", [])}


def connect(args: argparse.Namespace) -> Deployed:
    # AWS_REGION as the AWS CLI reads it (boto3 itself reads AWS_DEFAULT_REGION and the config).
    session = boto3.Session(region_name=args.region or os.environ.get("AWS_REGION") or None)
    if not session.region_name:
        raise CliError("no AWS region: give --region or set AWS_REGION (or a region in ~/.aws/config)")
    if session.get_credentials() is None:
        raise CliError("no AWS credentials: set AWS_PROFILE, run `aws configure` or `aws sso login`")
    return Deployed(
        session,
        args.stack,
        bucket_option=getattr(args, "bucket", None),
        table_option=getattr(args, "table", None),
    )


def guarded(
    command: Callable[[argparse.Namespace], int],
) -> Callable[[argparse.Namespace], int]:
    """One line on stderr and an exit code for every error a user can meet."""

    @functools.wraps(command)
    def run(args: argparse.Namespace) -> int:
        try:
            return command(args)
        except CliError as exc:
            message, code = str(exc), exc.exit_code
        except NoCredentialsError:
            message, code = (
                "no AWS credentials: set AWS_PROFILE, run `aws configure` or `aws sso login`",
                EXIT_ERROR,
            )
        except NoRegionError:
            message, code = "no AWS region: give --region or set AWS_REGION", EXIT_ERROR
        except ClientError as exc:
            error = exc.response.get("Error", {})
            code = EXIT_NOT_FOUND if error.get("Code") in NOT_FOUND_CODES else EXIT_ERROR
            message = f"AWS refused {exc.operation_name}: {error.get('Code')}: {error.get('Message', '')}"
        except (BotoCoreError, S3UploadFailedError) as exc:
            message, code = f"AWS: {exc}", EXIT_ERROR
        print(f"profile-sync: {message}", file=sys.stderr)
        return code

    return run


def missing(exc: ClientError) -> bool:
    """AWS answered that the thing asked for does not exist."""
    return exc.response.get("Error", {}).get("Code") in NOT_FOUND_CODES


def stack_options(parser: argparse.ArgumentParser, *, bucket: bool = False, table: bool = False) -> None:
    group = parser.add_argument_group("the deployed stack")
    group.add_argument(
        "--stack",
        default=DEFAULT_STACK,
        help=f"CloudFormation stack whose Outputs name the resources (default {DEFAULT_STACK})",
    )
    if bucket:
        group.add_argument("--bucket", help="the drop bucket (default: the stack's DropBucketName)")
    if table:
        group.add_argument("--table", help="the jobs table (default: the stack's JobsTableName)")
    group.add_argument("--region", help="AWS region (default: AWS_REGION or your AWS config)")
