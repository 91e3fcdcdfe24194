"""The header line: the id column, the parameter names as they are written in every batch file."""

from __future__ import annotations

from dataclasses import dataclass
from urllib.parse import quote

from profile_sync.settings import Settings
from profile_sync.validate.records import ID_CONTROL, encoding_problem, escape_form_syntax
from profile_sync.validate.results import EXPERIENCE_CLOUD_IDS, ID_COLUMNS, FileRejected

_NAMES_SHOWN = 5  # header names quoted in a warning; the rest are counted


@dataclass
class Header:
    names: list[str]  # the id column, then the parameter names as written
    warnings: list[str]

    @property
    def prefix(self) -> bytes:
        """The first line of every batch file."""
        return b"batch=" + ",".join(self.names).encode() + b"\n"


def shown(name: str, limit: int = 64) -> str:
    """A header name short enough for a message (a header line may be a megabyte)."""
    return name if len(name) <= limit else name[: limit - 1] + "…"


def read_header(fields: list[bytes], settings: Settings, where: str) -> Header:
    """The header from its fields; raises FileRejected saying what is wrong (``where`` starts it)."""
    try:
        names = [f.decode().strip(" ") for f in fields]
    except UnicodeDecodeError:
        raise FileRejected(f"{where}: not valid UTF-8") from None
    first = names[0]
    if first.lower() in EXPERIENCE_CLOUD_IDS:
        raise FileRejected(
            f"{where}: first column '{first}' is an Experience Cloud id: Target's bulk API does not "
            "accept Experience Cloud ids; use pcId or thirdPartyId"
        )
    if first not in ID_COLUMNS:
        # Name the column only when it is a misspelt id header: in a file without a header this
        # field is a visitor id, which must not reach logs or messages.
        misspelt = first.lower() in {n.lower() for n in (*ID_COLUMNS, "mbox3rdPartyId", "mboxPC", "tntId")}
        found = f"is '{first}'" if misspelt else "is not pcId or thirdPartyId"
        raise FileRejected(
            f"{where}: the first column {found}; the first line must be a header whose first column is "
            "exactly pcId (Target's visitor id) or thirdPartyId (your own id, mbox3rdPartyId)"
        )
    if len(names) == 1:
        raise FileRejected(f"{where}: no parameter columns after {first}; add at least one")
    most = settings.header_max_columns
    if most and len(names) - 1 > most:
        raise FileRejected(
            f"{where}: {len(names) - 1:,} parameter columns, over the maximum of {most:,} "
            "(HEADER_MAX_COLUMNS); split the file into files with fewer columns"
        )
    raw = settings.input_mode == "raw"
    params: list[str] = []
    prefixed: list[str] = []
    for number, given in enumerate(names[1:], start=2):
        name = given.removeprefix("profile.")
        if name != given:
            prefixed.append(given)
        if not name:
            raise FileRejected(f"{where}: column {number} has an empty name; give every column a name")
        if raw:
            if ID_CONTROL.search(name.encode()):
                raise FileRejected(f"{where}: column {number} name holds a control character")
            name = quote(name, safe="")
        else:
            problem = encoding_problem(name.encode()) or ("raw '+'" if "+" in name else None)
            if problem:
                raise FileRejected(
                    f"{where}: column {number} name is not URL-encoded: {problem}; "
                    "URL-encode it or use input mode raw"
                )
            name = escape_form_syntax(name.encode()).decode()
        params.append(name)
    seen: set[str] = set()
    for name in [first, *params]:
        if name in seen:
            raise FileRejected(
                f"{where}: column name '{shown(name)}' appears more than once; names must be unique"
            )
        seen.add(name)
    warnings = []
    if prefixed:
        # A count and the first names: the warning goes into the job record (DynamoDB: 400 KB).
        listed = ", ".join(shown(name) for name in prefixed[:_NAMES_SHOWN])
        more = len(prefixed) - _NAMES_SHOWN
        warnings.append(
            f"{where}: removed the 'profile.' prefix from {len(prefixed):,} "
            f"{'column' if len(prefixed) == 1 else 'columns'} ({listed}"
            f"{f' and {more:,} more' if more > 0 else ''}) (Target adds it itself)"
        )
    return Header([first, *params], warnings)
