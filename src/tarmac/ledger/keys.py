"""The audit key: a secret kept OUTSIDE the catalog that keys every new audit record.

Without a key the hash chain proves order and content, but anyone who can write the catalog can
edit a record and re-hash every record after it. With a key, each record also carries an
HMAC-SHA256 over its hash; re-hashing without the key leaves MACs that do not verify.

Where the key comes from, first found wins:

1. ``TARMAC_AUDIT_KEY`` (environment): 64 hex digits (32 bytes), or any text of 16+ bytes;
2. ``audit_key: /path/to/file`` in ``tarmac.yaml`` (``~`` and relative paths resolved against
   the project folder); a configured file that is missing or unreadable is an error, never a
   silent fall-back to unkeyed records;
3. the default key file ``$XDG_CONFIG_HOME/tarmac/<project>.key``
   (``~/.config/tarmac/<project>.key``), used only if it exists.

``tarmac audit key init`` creates a key file (32 random bytes as hex, mode 0600).

Example::

    key = create_key_file(default_key_path("acme"))     # once, on the machine that writes
    key.mac(record.hash) == record.mac                   # what verify checks per record
"""

from __future__ import annotations

import hashlib
import hmac
import os
import re
import secrets
from dataclasses import dataclass, field
from pathlib import Path

from tarmac.errors import UsageError

ENV_VAR = "TARMAC_AUDIT_KEY"
MIN_KEY_BYTES = 16
_HEX = re.compile(r"^[0-9a-fA-F]+$")
_KEY_ID_LABEL = b"tarmac audit key id v1"


@dataclass(frozen=True)
class AuditKey:
    """A loaded audit key: ``source`` says where it came from (never the secret itself)."""

    secret: bytes = field(repr=False)
    source: str

    @property
    def key_id(self) -> str:
        """A 16-hex-digit id of the key (an HMAC of a fixed label: it reveals nothing of the
        key), stored beside each MAC so a verify with another key says "wrong key"."""
        return hmac.new(self.secret, _KEY_ID_LABEL, hashlib.sha256).hexdigest()[:16]

    def mac(self, record_hash: str) -> str:
        """HMAC-SHA256 of one record's hash (which covers its fields and its link), hex."""
        return hmac.new(self.secret, record_hash.encode("ascii"), hashlib.sha256).hexdigest()


@dataclass(frozen=True)
class KeySetting:
    """What a project is configured with: a ``key``, or none; ``problem`` when a key was
    configured but cannot be used (then writes and verify refuse, naming it)."""

    key: AuditKey | None = None
    problem: str | None = None


def parse_key(text: str, source: str) -> AuditKey:
    """A key from its text form: an even number (32+) of hex digits is bytes, anything else is
    UTF-8 text; fewer than 16 bytes is refused (``UsageError`` naming ``source``)."""
    value = text.strip()
    if len(value) >= 2 * MIN_KEY_BYTES and len(value) % 2 == 0 and _HEX.match(value):
        secret = bytes.fromhex(value)
    else:
        secret = value.encode("utf-8")
    if len(secret) < MIN_KEY_BYTES:
        raise UsageError(f"the audit key from {source} is too short ({len(secret)} bytes; at "
                         f"least {MIN_KEY_BYTES} needed)",
                         hint="create one with `tarmac audit key init`, or set "
                              f"{ENV_VAR} to 64 hex digits (e.g. `openssl rand -hex 32`)")
    return AuditKey(secret, source)


def default_key_path(project: str) -> Path:
    """``$XDG_CONFIG_HOME/tarmac/<project>.key``, else ``~/.config/tarmac/<project>.key``:
    outside the project folder and the catalog, private to the user."""
    base = os.environ.get("XDG_CONFIG_HOME", "").strip()
    root = Path(base) if base else Path.home() / ".config"
    return root / "tarmac" / f"{project}.key"


def key_file_path(configured: str | None, *, project: str, root: Path) -> Path:
    """The key file a project uses: ``audit_key`` from tarmac.yaml (relative to the project
    folder) if given, else the default location."""
    if configured:
        path = Path(configured).expanduser()
        return path if path.is_absolute() else (root / path).resolve()
    return default_key_path(project)


def read_key_file(path: Path) -> AuditKey:
    """Load a key file; a missing, unreadable or too-short file is a ``UsageError``."""
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise UsageError(f"audit key file {path} does not exist",
                         hint="create it with `tarmac audit key init`") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise UsageError(f"cannot read the audit key file {path}: "
                         f"{getattr(exc, 'strerror', None) or exc}") from None
    return parse_key(text, str(path))


def resolve_key(*, project: str, configured: str | None, root: Path) -> KeySetting:
    """The audit key a project uses (see the module docstring for the order); never raises:
    a configured key that cannot be used comes back as ``problem``."""
    env = os.environ.get(ENV_VAR, "")
    try:
        if env.strip():
            return KeySetting(parse_key(env, ENV_VAR))
        path = key_file_path(configured, project=project, root=root)
        if configured or path.exists():
            return KeySetting(read_key_file(path))
    except UsageError as exc:
        return KeySetting(None, exc.message)
    return KeySetting()


def create_key_file(path: Path) -> AuditKey:
    """Write a new random key (32 bytes, hex) to ``path`` with mode 0600, creating its folder
    (mode 0700). An existing file is never overwritten: records keyed with it would no longer
    verify."""
    path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
    text = secrets.token_hex(32)
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except FileExistsError:
        raise UsageError(f"audit key file {path} already exists; it is not replaced (records "
                         "keyed with it would no longer verify)") from None
    with os.fdopen(fd, "w", encoding="ascii") as fh:
        fh.write(text + "\n")
    os.chmod(path, 0o600)  # whatever the umask
    return AuditKey(bytes.fromhex(text), str(path))


__all__ = ["ENV_VAR", "AuditKey", "KeySetting", "create_key_file", "default_key_path",
           "key_file_path", "parse_key", "read_key_file", "resolve_key"]
