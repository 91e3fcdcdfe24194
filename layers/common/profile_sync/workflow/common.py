"""What several workflow steps share: the job's authentication stop, and wording of reasons."""

from __future__ import annotations

import contextlib
import json
import re
from datetime import UTC, datetime
from urllib.parse import urlsplit

from profile_sync.adobe_target.errors import TargetAuthError, TargetError
from profile_sync.model import AuthFailure, JobRecord, StepError
from profile_sync.ports import Clock, JobStore

# A Target error's own wording is per try ("after 3 attempt(s)", "giving up for now"): a reason
# keeps what Target answered.
PER_TRY = re.compile(r"\s*\|\s*after \d+ attempt\(s\)|: giving up for now")


def iso(moment: float) -> str:
    return datetime.fromtimestamp(moment, UTC).isoformat(timespec="seconds")


def short(text: str, limit: int = 300) -> str:
    text = " ".join(str(text).split())
    return text if len(text) <= limit else text[: limit - 1] + "…"


def without_tries(exc: Exception) -> str:
    return PER_TRY.sub("", str(exc))


# ------------------------------------------------------------------------------------- job stop
def job_stop(jobs: JobStore, job_id: str) -> str | None:
    """Why the job stopped calling Target (an authentication failure), or None: checked before each call."""
    failure = (jobs.get_job(job_id) or JobRecord()).get("authFailure")
    return auth_reason(failure) if failure else None


def auth_reason(failure: AuthFailure) -> str:
    return (
        f"Target refused authentication: HTTP {failure.get('status') or '?'} from "
        f"{failure.get('endpoint')} after one token refresh. Check the profile token or OAuth "
        "credentials in the token secret, then drop the file again"
    )


def stop_job_for_auth(jobs: JobStore, now: Clock, job_id: str, exc: TargetAuthError, endpoint: str) -> str:
    """Record on the job that Target refused our credentials: no batch of the job calls Target again."""
    failure: AuthFailure = {"status": exc.status, "endpoint": endpoint, "at": iso(now())}
    jobs.update_job(job_id, {"authFailure": failure})
    return auth_reason(failure)


def endpoint(method: str, url: str) -> str:
    """An endpoint for a reason: method, host and path (no query: it may hold ids)."""
    parts = urlsplit(url)
    return f"{method} {parts.scheme}://{parts.netloc}{parts.path}"


# ------------------------------------------------------------------------------------- reasons
def calls_answer(exc: TargetError) -> str:
    last = f"answered HTTP {exc.status}" if exc.status is not None else "got no answer"
    return f"{exc.attempts} call(s), the last {last}"


def answer(exc: TargetError) -> str:
    """Target's last answer and the calls that got it, without the client's wording."""
    got = f"HTTP {exc.status}" if exc.status is not None else "no answer"
    return f"{got}, {exc.attempts} call(s) in this try"


def error_reason(error: StepError) -> str:
    """A Step Functions error (Error + Cause, the Cause being Lambda's error JSON) in one line."""
    cause: object = error.get("Cause", "")
    with contextlib.suppress(ValueError, AttributeError, TypeError):
        cause = json.loads(str(cause)).get("errorMessage", cause)
    cause = PER_TRY.sub("", str(cause)).strip(" |:")
    return f"{error.get('Error', 'error')}: {short(str(cause))}"
