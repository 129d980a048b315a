"""The online store in Redis: ``b"<event_us>|" + payload`` under
``tarmac:{namespace}:{view}:{key}``; a batch is one atomic Lua script, a read one ``MGET``.
The ``redis`` client is imported only when a store is opened (``import tarmac`` stays light);
imports are absolute, so this module never shadows the library."""

from __future__ import annotations

from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from tarmac.config import redact
from tarmac.errors import BackendUnavailableError, ConfigError, UsageError
from tarmac.features.online._base import OnlineStore, ReadResult, _check_view

_BATCH_LUA = """#!lua
local n = #KEYS - 2
local chunk = 1000  -- keys per MGET / MSET: unpack() is limited to a few thousand values
local latest = {}
local take = {}
local written = 0
for first = 1, n, chunk do
  local last = math.min(first + chunk - 1, n)
  local olds = redis.call('MGET', unpack(KEYS, first + 2, last + 2))
  for i = first, last do
    local key = KEYS[i + 2]
    local stored = latest[key]
    if stored == nil then
      local old = olds[i - first + 1]
      stored = false
      if old then
        local bar = string.find(old, '|', 1, true)
        stored = bar and tonumber(string.sub(old, 1, bar - 1))
        if not stored then
          return redis.error_reply('ERR ' .. key .. ' does not hold a Tarmac feature record')
        end
      end
    end
    local ts = tonumber(ARGV[2 * i + 2])
    if stored == false or ts >= stored then
      take[i] = true
      latest[key] = ts
      written = written + 1
    else
      latest[key] = stored
    end
  end
end
local pairs = {}
for i = 1, n do
  if take[i] then
    pairs[#pairs + 1] = KEYS[i + 2]
    pairs[#pairs + 1] = ARGV[2 * i + 2] .. '|' .. ARGV[2 * i + 3]
  end
end
for first = 1, #pairs, 2 * chunk do
  redis.call('MSET', unpack(pairs, first, math.min(first + 2 * chunk - 1, #pairs)))
end
if ARGV[2] == '1' then
  redis.call('SET', KEYS[2], ARGV[3])
end
if n > 0 or ARGV[2] == '1' then
  redis.call('SADD', KEYS[1], ARGV[1])
end
return written
"""

_GLOB_SPECIAL = str.maketrans({c: "\\" + c for c in "\\*?[]"})


def _decode(value: bytes | None) -> tuple[int, bytes] | None:
    if value is None:
        return None
    ts, _, payload = value.partition(b"|")
    return int(ts), payload


class RedisOnlineStore(OnlineStore):
    """The online store in Redis: one key per record, batches by one atomic Lua script.

    ``count`` and ``clear`` walk the namespace with SCAN (they cost O(keys in the database), fine
    for maintenance, not for the hot path); ``clear`` is not atomic against a concurrent writer
    of the same view. Standalone Redis only: a batch spans many hash slots, so no Cluster."""

    @classmethod
    def from_url(cls, url: str, *, namespace: str, root: Path,
                 create: bool = True) -> RedisOnlineStore:
        """``redis://[user:password@]host:port/db``; keys are prefixed by ``namespace``
        (``create`` is for file stores: a Redis server has nothing to create)."""
        return cls(url, namespace=namespace)

    def __init__(self, url: str, *, namespace: str) -> None:
        self.url = redact(url)
        if not namespace or ":" in namespace:
            raise UsageError(f"online store {self.url}: bad namespace {namespace!r}",
                             hint="the namespace is the project name: non-empty, no ':'")
        try:
            import redis
            from redis.backoff import NoBackoff
            from redis.retry import Retry
        except ModuleNotFoundError:
            raise ConfigError(
                f"the online store URL {self.url} points at Redis but the client is not installed",
                hint="pip install 'tarmac[redis]'",
            ) from None
        self._errors: tuple[type[Exception], ...] = (redis.ConnectionError, redis.TimeoutError)
        self._response_error: type[Exception] = redis.ResponseError
        db = urlsplit(url).path.strip("/")
        if db and not db.isdigit():  # redis-py would silently fall back to db 0
            raise ConfigError(f"online store URL {self.url}: the database {db!r} is not a number",
                              hint="expected redis://[user:password@]host:port/db, db like 0")
        try:
            # One retry, at once, on a dropped connection (an idle socket closed by the server or
            # a proxy); a batch is idempotent, so retrying one whose reply was lost is safe.
            pool = redis.ConnectionPool.from_url(
                url, socket_connect_timeout=2, socket_timeout=10, decode_responses=False,
                retry=Retry(NoBackoff(), 1, supported_errors=(redis.ConnectionError,)))
        except ValueError as exc:
            raise ConfigError(f"online store URL {self.url}: {exc}",
                              hint="expected redis://[user:password@]host:port/db") from None
        self._pool = pool
        self._client = redis.Redis(connection_pool=pool)
        self._script = self._client.register_script(_BATCH_LUA)
        self._base = f"tarmac:{namespace}:"
        self._views_key = f"{self._base}_views"
        self._prefixes: dict[str, str] = {}
        self._closed = False
        self.ping()

    def _prefix(self, view: str) -> str:
        prefix = self._prefixes.get(view)
        if prefix is None:
            _check_view(view, self.url)
            prefix = f"{self._base}{view}:"
            if len(self._prefixes) < 10_000:
                self._prefixes[view] = prefix
        return prefix

    def write_batch(self, view: str, keys: list[str], event_us: list[int],
                    payloads: list[bytes], *, checkpoint: str | None = None) -> int:
        self._check_batch(view, keys, event_us, payloads)
        if not keys and checkpoint is None:
            return 0
        self._check_open()
        n = len(keys)
        redis_keys = [self._views_key, f"{self._base}_checkpoint:{view}"]
        redis_keys += map(self._prefix(view).__add__, keys)
        args: list[Any] = [None] * (3 + 2 * n)
        args[0] = view
        args[1] = "0" if checkpoint is None else "1"
        args[2] = "" if checkpoint is None else checkpoint
        args[3::2] = event_us
        args[4::2] = payloads
        try:
            return int(self._script(keys=redis_keys, args=args))
        except self._errors as exc:
            raise self._unavailable(
                exc, f"; the batch for view {view!r} is one atomic script, so either none of it "
                "was applied or all of it with its checkpoint (if Redis ran it before the "
                "connection dropped): replaying it is safe") from None
        except self._response_error as exc:
            raise UsageError(
                f"online store {self.url}: Redis refused the batch for view {view!r} ({exc}); "
                "nothing of it was applied",
                hint=f"see Redis's reason: a value under {self._base}* that Tarmac did not write, "
                "Redis out of memory (maxmemory), or a read-only replica",
            ) from None

    def read(self, requests: list[tuple[str, list[str]]]) -> ReadResult:
        self._check_open()
        if len(requests) == 1:  # the common case: no splitting of the reply
            view, keys = requests[0]
            if not keys:
                return [[]]
            raw = self._mget(list(map(self._prefix(view).__add__, keys)))
            return [list(map(_decode, raw))]
        names: list[str] = []
        for view, keys in requests:
            names += map(self._prefix(view).__add__, keys)
        values = list(map(_decode, self._mget(names))) if names else []
        out: ReadResult = []
        start = 0
        for _, keys in requests:
            out.append(values[start:start + len(keys)])
            start += len(keys)
        return out

    def _mget(self, names: list[str]) -> list[bytes | None]:
        try:
            values: list[bytes | None] = self._client.execute_command("MGET", *names)
            return values
        except self._errors as exc:
            raise self._unavailable(exc, "") from None

    def checkpoint(self, view: str) -> str | None:
        self._check_open()
        _check_view(view, self.url)
        value = self._call(self._client.get, f"{self._base}_checkpoint:{view}")
        return None if value is None else bytes(value).decode()

    def clear(self, view: str) -> None:
        self._check_open()
        pattern = self._prefix(view).translate(_GLOB_SPECIAL) + "*"
        try:
            batch: list[bytes] = []
            for name in self._client.scan_iter(match=pattern, count=1000):
                batch.append(name)
                if len(batch) >= 1000:
                    self._client.unlink(*batch)
                    batch = []
            if batch:
                self._client.unlink(*batch)
            pipe = self._client.pipeline(transaction=True)
            pipe.delete(f"{self._base}_checkpoint:{view}")
            pipe.srem(self._views_key, view)
            pipe.execute()
        except self._errors as exc:
            raise self._unavailable(exc, f" while clearing view {view!r}") from None

    def count(self, view: str) -> int:
        self._check_open()
        pattern = self._prefix(view).translate(_GLOB_SPECIAL) + "*"
        try:
            return sum(1 for _ in self._client.scan_iter(match=pattern, count=1000))
        except self._errors as exc:
            raise self._unavailable(exc, f" while counting view {view!r}") from None

    def views(self) -> list[str]:
        self._check_open()
        members = self._call(self._client.smembers, self._views_key)
        return sorted(bytes(m).decode() for m in members)

    def ping(self) -> None:
        self._check_open()
        self._call(self._client.ping)

    def close(self) -> None:
        self._closed = True
        self._pool.disconnect()

    def _check_open(self) -> None:
        if self._closed:
            raise UsageError(f"online store {self.url} is closed",
                             hint="open it again with open_online_store")

    def _call(self, method: Any, *args: Any) -> Any:
        try:
            return method(*args)
        except self._errors as exc:
            raise self._unavailable(exc, "") from None

    def _unavailable(self, exc: Exception, detail: str) -> BackendUnavailableError:
        return BackendUnavailableError(
            f"online store {self.url} is unreachable ({exc}){detail}",
            hint="is Redis running, and the online_store URL in tarmac.yaml right?",
        )
