"""Error types: every failure a user can cause is one of these, with a message and a hint.

The CLI turns a ``TarmacError`` into one clear line and an exit code; anything else is a bug
and shows a traceback only when ``TARMAC_DEBUG=1``.
"""

from __future__ import annotations

ECHO_CHARS = 80  # user input quoted back in a message is cut to this many characters


def echo(value: object, limit: int = ECHO_CHARS) -> str:
    """``value`` (user input: a name, a request field) as it may be quoted in a message: its
    text (``repr`` unless a string), cut to ``limit`` characters and marked
    ``…(N chars)`` when longer, so a 1 MB name never comes back whole in an error."""
    text = value if isinstance(value, str) else repr(value)
    if len(text) <= limit:
        return text
    return f"{text[:limit]}…({len(text):,} chars)"


class TarmacError(Exception):
    """Base of all user-facing errors.

    ``exit_code`` follows the CLI convention: 1 a check failed, 2 usage or configuration error,
    3 not allowed (no valid token, or a permission the user lacks).
    """

    exit_code: int = 1

    def __init__(self, message: str, *, hint: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.hint = hint

    def __str__(self) -> str:
        return self.message if not self.hint else f"{self.message}\n  hint: {self.hint}"


class ConfigError(TarmacError):
    """The project file or a backend URL is wrong: names the file, the key and what was expected."""

    exit_code = 2


class UsageError(TarmacError):
    """A call was made with arguments that cannot work (unknown table, bad option value...)."""

    exit_code = 2


class BackendUnavailableError(TarmacError):
    """A server the project points at (PostgreSQL, Redis...) cannot be reached."""

    exit_code = 2


class TableNotFoundError(UsageError):
    """A lake table that does not exist was named."""


class TopicNotFoundError(UsageError):
    """A stream topic that does not exist was named."""


class VersionNotFoundError(UsageError):
    """Time travel to a version or timestamp the table does not have."""


class SchemaConflictError(TarmacError):
    """Incoming data does not fit the table's schema; the table was left untouched."""


class MergeKeyError(TarmacError):
    """A merge was asked without keys, with unknown keys, or with duplicate keys in the data."""


class WriteConflictError(TarmacError):
    """Another writer committed to the same table first and retrying did not help."""


class SqlError(UsageError):
    """A SQL query failed: DuckDB's message plus what the lake holds."""


class AuthenticationRequired(TarmacError):
    """Access is enforced and no valid token says who is acting (``TARMAC_TOKEN``); the message
    does not say which part of a token was wrong."""

    exit_code = 3


class PermissionDenied(TarmacError):
    """The acting user's role and grants do not allow this; names the permission and resource
    (the denial is audited as ``access.denied``)."""

    exit_code = 3


class ApprovalRequired(TarmacError):
    """A protected alias moves only with approvals from other users: the change is recorded
    as a request (``request_id``) and waits for ``tarmac approve``."""

    exit_code = 3

    def __init__(self, message: str, *, request_id: str, hint: str | None = None) -> None:
        super().__init__(message, hint=hint)
        self.request_id = request_id


class AuditChainError(TarmacError):
    """The audit trail's hash chain is broken; names the first bad record."""


class SourceError(TarmacError):
    """A declared source cannot be read (unreachable, wrong credentials, missing table or file,
    an API that keeps failing); names the source. Nothing of the failed load was committed."""


class ContractError(TarmacError):
    """A source's rows or schema broke its contract under the ``fail`` policy; names the source,
    the column and what changed. Nothing of the load was committed."""


class OnDemandError(UsageError):
    """An on-demand feature function failed, returned the wrong shape, or changed since
    ``tarmac apply``: a problem of the definitions, not of the request that ran into it.
    ``view`` names the on-demand view: what a server tells its caller (the message, which
    may quote the function's exception and feature values, goes to the server's log)."""

    def __init__(self, message: str, *, view: str, hint: str | None = None) -> None:
        super().__init__(message, hint=hint)
        self.view = view


class ConflictError(TarmacError):
    """Someone else changed the same thing first (two promotions racing): nothing was changed."""


class PromotionRefused(TarmacError):
    """A promotion (or rollback) the gate results do not allow: exit 1, like a failed check,
    so CI can tell it from a typo (exit 2)."""


class ArtifactError(TarmacError):
    """A stored artifact is missing or its bytes no longer match their recorded SHA-256."""

    exit_code = 2


class TrainingError(TarmacError):
    """The user's training function failed or returned something that cannot serve: the run is
    recorded as failed with the traceback, and nothing is registered."""



class DataFileMissingError(TarmacError):
    """A data file the table's current version references is gone from storage (deleted by
    hand, a failed copy): names the table, the version and the file."""

    def __init__(self, table: str, version: int, files: list[str], folder: str) -> None:
        more = f" (and {len(files) - 1} more of its files)" if len(files) > 1 else ""
        super().__init__(
            f"table '{table}' version {version} is missing data file {folder}/{files[0]}{more}; "
            "it was removed outside Tarmac, so this version cannot be read",
            hint="restore the file from a backup, or reload the table from its source "
                 "(`tarmac ingest SOURCE --full-refresh`); `tarmac doctor` checks every table")
        self.table, self.version, self.files = table, version, files


class CommitPlanError(TarmacError):
    """A saved commit plan cannot be read back (not JSON, a field missing or of the wrong type,
    an unknown format): names where the plan is stored and what is wrong with it. Nothing was
    committed from it."""
