"""The stream log on Redis Streams (``streams: redis://host:port/db``).

Key layout (``{base}`` is ``tarmac:{project}:_streams:``; the project name keeps two projects on
one Redis apart, and the leading ``_`` keeps clear of the online store's ``tarmac:{project}:
{view}:`` keys, whose view names may not start with ``_``)::

    {base}_topics          set   the topic names
    {base}{topic}          hash  partitions, retention_s ("" = forever), created_us,
                                 next:{p} (the next offset of partition p), start:{p} (the
                                 first offset still held)
    {base}{topic}:{p}      stream  one entry per record, entry id ``{offset}-1``, fields
                                 t (timestamp, UTC microseconds), v (value), k (key, absent if
                                 the record has none)
    {base}{topic}:{p}:time zset  the time index: member offset, score timestamp, holding only
                                 the records that raise the partition's running maximum
                                 timestamp (from its start offset)
    {base}{topic}:group:{group}  hash  partition -> committed next offset

Offsets. Redis entry ids are not dense, so Tarmac chooses them: offset ``o`` is stored under the
explicit id ``o-1`` (the millisecond part *is* the offset; the sequence part is 1 because
``0-0`` is not a valid id). Read by offset is ``XRANGE key o +`` (O(log n)); retention is
``XTRIM MINID o`` (drops every id below ``o-0``, keeps ``o-1``). The next offset is a counter in
the topic hash, not Redis's last-generated id, so offsets are never reused, not even when
retention emptied a stream.

Read by time. The first offset whose timestamp is at or after ``t`` equals the first offset
whose *running maximum* timestamp reaches ``t``; the running maximum rises monotonically with
the offset, so the index keeps only the records that raise it (one per record for ordered
timestamps, far fewer for batches stamped at append time) and the lookup is one
``ZRANGEBYSCORE idx t +inf LIMIT 0 1`` (O(log n)). Retention cuts at exactly such an index entry,
so the index stays the running maximum from the new start and only its prefix is removed.
Scores are doubles: microsecond timestamps are exact up to the year 2255.

Atomicity. A produce batch is one Lua script (Redis runs a script alone, from start to end): it
reads the counters, checks every partition first, then appends the entries, the index entries
and the new counters; the offsets are returned only after it ran. A client killed mid-call
leaves either the whole batch or nothing of it; Redis replicates and writes the script's effects
to the AOF as one ``MULTI``/``EXEC``, and an AOF cut in the middle of one is dropped whole on
load, so a Redis crash never leaves half a batch or a counter ahead of its entries. Topic
creation and retention are scripts too; a commit of several partitions is one ``MULTI``/``EXEC``.
Durability of a confirmed record is Redis's: with ``appendfsync always`` it survives a power
loss, with the default ``everysec`` up to a second of confirmed batches may be lost on one.

Consumer groups here are Tarmac's offset-based groups (a hash of committed next offsets), the
same semantics as the embedded log and what the exactly-once lake sink needs. Redis's own
``XREADGROUP``/``XACK``/pending-entry machinery (with ``XAUTOCLAIM`` of a dead consumer's
entries) is for the runner, the next step, and is not used yet.

Standalone Redis only: a batch spans the keys of several partitions (no Cluster hash tags yet).
"""

from __future__ import annotations

import time
from collections.abc import Mapping, Sequence
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from tarmac.config import redact
from tarmac.errors import BackendUnavailableError, ConfigError, UsageError
from tarmac.streams.embedded import _MAX_PARTITIONS, _TOPIC_NAME
from tarmac.streams.log import (
    Delivered,
    KeyOf,
    Message,
    Produced,
    StreamLog,
    TopicInfo,
    as_retention,
    check_group,
    from_us,
    partition_for,
    to_us,
)

_CREATE_LUA = """#!lua
local existing = redis.call('HGET', KEYS[1], 'partitions')
if existing then return tonumber(existing) end
local n = tonumber(ARGV[1])
redis.call('HSET', KEYS[1], 'partitions', ARGV[1], 'retention_s', ARGV[2], 'created_us', ARGV[3])
for p = 0, n - 1 do
  redis.call('HSET', KEYS[1], 'next:' .. p, '0', 'start:' .. p, '0')
end
redis.call('SADD', KEYS[2], ARGV[4])
return -1
"""

# KEYS: the topic hash, the N streams, the N time indexes. ARGV: N, then per record partition,
# timestamp (us), has-key flag, key, value. Checks every partition it touches (the counter is
# there, the keys are a stream and a zset or absent, no entry at or past the counter) before
# the first write: Redis does not roll a script back, so nothing may fail after it.
_PRODUCE_LUA = """#!lua
local n = tonumber(ARGV[1])
if tonumber(redis.call('HGET', KEYS[1], 'partitions')) ~= n then
  return redis.error_reply('ERR TARMAC topic ' .. KEYS[1] .. ' is gone or changed')
end
local nxt, top = {}, {}
for i = 2, #ARGV, 5 do
  local p = tonumber(ARGV[i])
  if nxt[p] == nil then
    nxt[p] = tonumber(redis.call('HGET', KEYS[1], 'next:' .. p))
    if nxt[p] == nil then
      return redis.error_reply('ERR TARMAC ' .. KEYS[1] .. ' has no counter for partition ' .. p)
    end
    local st = redis.call('TYPE', KEYS[2 + p]).ok
    local it = redis.call('TYPE', KEYS[n + 2 + p]).ok
    if (st ~= 'none' and st ~= 'stream') or (it ~= 'none' and it ~= 'zset') then
      return redis.error_reply('ERR TARMAC ' .. KEYS[2 + p] .. ' or its time index holds a ' ..
                               'value Tarmac did not write')
    end
    local tail = redis.call('XREVRANGE', KEYS[2 + p], '+', '-', 'COUNT', 1)
    if #tail > 0 and tonumber(string.match(tail[1][1], '^(%d+)')) >= nxt[p] then
      return redis.error_reply('ERR TARMAC ' .. KEYS[2 + p] .. ' holds an entry at or past ' ..
                               'its counter (written by something other than Tarmac)')
    end
    local last = redis.call('ZRANGE', KEYS[n + 2 + p], -1, -1, 'WITHSCORES')
    if #last > 0 then top[p] = tonumber(last[2]) end
  end
end
local out = {}
for i = 2, #ARGV, 5 do
  local p = tonumber(ARGV[i])
  local o = nxt[p]
  local id = string.format('%d-1', o)
  if ARGV[i + 2] == '1' then
    redis.call('XADD', KEYS[2 + p], id, 't', ARGV[i + 1], 'v', ARGV[i + 4], 'k', ARGV[i + 3])
  else
    redis.call('XADD', KEYS[2 + p], id, 't', ARGV[i + 1], 'v', ARGV[i + 4])
  end
  local ts = tonumber(ARGV[i + 1])
  if top[p] == nil or ts > top[p] then
    redis.call('ZADD', KEYS[n + 2 + p], ARGV[i + 1], string.format('%d', o))
    top[p] = ts
  end
  nxt[p] = o + 1
  out[#out + 1] = o
end
for p, o in pairs(nxt) do
  redis.call('HSET', KEYS[1], 'next:' .. p, string.format('%d', o))
end
return out
"""

# KEYS: the topic hash, the stream, the time index. ARGV: partition, cutoff (us).
_RETAIN_LUA = """#!lua
local p = ARGV[1]
local start = tonumber(redis.call('HGET', KEYS[1], 'start:' .. p))
local first = tonumber(redis.call('HGET', KEYS[1], 'next:' .. p))
if start == nil or first == nil then return 0 end
local hit = redis.call('ZRANGEBYSCORE', KEYS[3], ARGV[2], '+inf', 'LIMIT', 0, 1)
if #hit > 0 then first = tonumber(hit[1]) end
if first <= start then return 0 end
local deleted = redis.call('XTRIM', KEYS[2], 'MINID', string.format('%d', first))
if #hit > 0 then
  local rank = redis.call('ZRANK', KEYS[3], hit[1])
  if rank > 0 then redis.call('ZREMRANGEBYRANK', KEYS[3], 0, rank - 1) end
else
  redis.call('DEL', KEYS[3])
end
redis.call('HSET', KEYS[1], 'start:' .. p, string.format('%d', first))
return deleted
"""

_GLOB_SPECIAL = str.maketrans({c: "\\" + c for c in "\\*?[]"})


class RedisStreamLog(StreamLog):
    """The stream log on Redis Streams: a topic is one stream per partition, offsets are
    explicit entry ids, groups are hashes of committed offsets (see the module docstring)."""

    @classmethod
    def from_url(cls, url: str, *, root: Path, namespace: str | None = None) -> RedisStreamLog:
        """``redis://[user:password@]host:port/db``. Keys are prefixed by ``namespace``, the
        project name, which the caller passes (``Project.streams`` does; ``root`` is unused: a
        Redis server has no project folder)."""
        if namespace is None:
            raise ConfigError(f"the Redis stream log {redact(url)} needs a namespace (the "
                              "project name) to keep its keys apart from other projects'",
                              hint="open it through tarmac.open(...).streams, or pass "
                                   "namespace=PROJECT_NAME")
        return cls(url, namespace=namespace)

    def __init__(self, url: str, *, namespace: str) -> None:
        self.url = redact(url)
        if not isinstance(namespace, str) or not namespace or ":" in namespace:
            raise UsageError(f"stream log {self.url}: bad namespace {namespace!r}",
                             hint="the namespace is the project name: non-empty, no ':'")
        if urlsplit(url).scheme not in ("redis", "rediss"):
            raise ConfigError(f"streams URL {self.url!r}: expected redis://host:port/db",
                              hint="fix streams in tarmac.yaml")
        db = urlsplit(url).path.strip("/")
        if db and not db.isdigit():  # redis-py would silently fall back to db 0
            raise ConfigError(f"streams URL {self.url}: the database {db!r} is not a number",
                              hint="expected redis://[user:password@]host:port/db, db like 0")
        try:
            import redis
        except ModuleNotFoundError:
            raise ConfigError(f"the streams URL {self.url} points at Redis but the client is "
                              "not installed", hint="pip install 'tarmac[redis]'") from None
        self._errors: tuple[type[Exception], ...] = (redis.ConnectionError, redis.TimeoutError)
        self._response_error: type[Exception] = redis.ResponseError
        try:
            self._pool = redis.ConnectionPool.from_url(
                url, socket_connect_timeout=2, socket_timeout=10, decode_responses=False)
        except ValueError as exc:
            raise ConfigError(f"streams URL {self.url}: {exc}",
                              hint="expected redis://[user:password@]host:port/db") from None
        self._client = redis.Redis(connection_pool=self._pool)
        self._create_script = self._client.register_script(_CREATE_LUA)
        self._produce_script = self._client.register_script(_PRODUCE_LUA)
        self._retain_script = self._client.register_script(_RETAIN_LUA)
        self.namespace = namespace
        self._base = f"tarmac:{namespace}:_streams:"
        self._topics_key = f"{self._base}_topics"
        self._closed = False
        self._partitions: dict[str, int] = {}
        self._round_robin: dict[str, int] = {}
        self._first_partition: dict[tuple[str, str], int] = {}
        self._positions: dict[tuple[str, str, int], int] = {}
        self._call(self._client.ping)

    # --- plumbing ------------------------------------------------------------------------------
    def _meta(self, topic: str) -> str:
        return f"{self._base}{topic}"

    def _stream(self, topic: str, partition: int) -> str:
        return f"{self._base}{topic}:{partition}"

    def _index(self, topic: str, partition: int) -> str:
        return f"{self._base}{topic}:{partition}:time"

    def _group_key(self, group: str, topic: str) -> str:
        return f"{self._base}{topic}:group:{group}"

    def _call(self, method: Any, *args: Any, note: str = "", refused: str = "",
              **kwargs: Any) -> Any:
        if self._closed:
            raise UsageError(f"stream log {self.url} is closed",
                             hint="open it again (tarmac.open(...).streams)")
        try:
            return method(*args, **kwargs)
        except self._errors as exc:
            raise BackendUnavailableError(
                f"stream log {self.url} is unreachable ({exc}){note}",
                hint="is Redis running, and the streams URL in tarmac.yaml right?") from None
        except self._response_error as exc:
            raise UsageError(
                f"stream log {self.url}: Redis refused the command ({exc}){refused}",
                hint=f"a key under {self._base}* that Tarmac did not write, Redis out of "
                     "memory (maxmemory), or a read-only replica?") from None

    # --- topics --------------------------------------------------------------------------------
    def create_topic(self, name: str, partitions: int = 1,
                     retention: timedelta | float | str | None = None, *,
                     exist_ok: bool = False) -> TopicInfo:
        if not isinstance(name, str) or not _TOPIC_NAME.match(name):
            raise UsageError(f"bad topic name {name!r}",
                             hint="letters, digits, '.', '_' and '-', up to 200 characters, "
                                  "starting with a letter or digit")
        if not isinstance(partitions, int) or not 1 <= partitions <= _MAX_PARTITIONS:
            raise UsageError(f"topic {name!r}: bad partition count {partitions!r}",
                             hint=f"between 1 and {_MAX_PARTITIONS}")
        keep = as_retention(retention)
        existing = int(self._call(
            self._create_script, keys=[self._meta(name), self._topics_key],
            args=[partitions, "" if keep is None else repr(keep.total_seconds()),
                  to_us(datetime.now(UTC)), name]))
        if existing >= 0:
            if not exist_ok:
                raise UsageError(f"topic {name!r} exists already ({existing} partitions)")
            if existing != partitions:
                raise UsageError(f"topic {name!r} exists with {existing} partitions, not "
                                 f"{partitions}", hint="partition counts are fixed")
        return self.topic(name)

    def _names(self) -> list[str]:
        return sorted(bytes(n).decode() for n in self._call(self._client.smembers,
                                                            self._topics_key))

    def topics(self) -> list[TopicInfo]:
        names = self._names()
        pipe = self._client.pipeline(transaction=False)
        for name in names:
            pipe.hgetall(self._meta(name))
        return [info for name, raw in zip(names, self._call(pipe.execute), strict=True)
                if (info := _info(name, raw)) is not None]

    def topic(self, name: str) -> TopicInfo:
        info = _info(name, self._call(self._client.hgetall, self._meta(name)))
        if info is None:
            raise self._unknown_topic(name, self._names())
        return info

    def _partition_count(self, topic: str) -> int:
        count = self._partitions.get(topic)
        if count is None:
            raw = self._call(self._client.hget, self._meta(topic), "partitions")
            if raw is None:
                raise self._unknown_topic(topic, self._names())
            count = self._partitions[topic] = int(raw)
        return count

    def _bounds(self, topic: str, partition: int) -> tuple[int, int]:
        start, end = self._call(self._client.hmget, self._meta(topic),
                                [f"start:{partition}", f"next:{partition}"])
        if start is None or end is None:
            raise self._unknown_topic(topic, self._names())
        return int(start), int(end)

    def end_offsets(self, topic: str) -> list[int]:
        count = self._partition_count(topic)
        raw = self._call(self._client.hmget, self._meta(topic),
                         [f"next:{p}" for p in range(count)])
        if any(r is None for r in raw):
            raise self._unknown_topic(topic, self._names())
        return [int(r) for r in raw]

    # --- produce -------------------------------------------------------------------------------
    def produce(self, topic: str, records: Sequence[Produced], *, key: KeyOf = None,
                timestamp: datetime | None = None) -> list[Delivered]:
        count = self._partition_count(topic)
        encoded = self._encode(records, key, timestamp)
        if not encoded:
            return []
        now = to_us(datetime.now(UTC))
        rr = self._round_robin.get(topic, 0)
        args: list[Any] = [count]
        parts: list[int] = []
        for k, value, ts in encoded:
            if k is None:
                p = rr % count
                rr += 1
            else:
                p = partition_for(k, count)
            parts.append(p)
            args += [p, now if ts is None else to_us(ts), "0" if k is None else "1",
                     b"" if k is None else k, value]
        keys = [self._meta(topic)] + [self._stream(topic, p) for p in range(count)] \
            + [self._index(topic, p) for p in range(count)]
        offsets = self._call(
            self._produce_script, keys=keys, args=args,
            note="; the batch is one atomic script, so Redis holds either none of it or all "
                 "of it (if it ran before the connection dropped): check end_offsets before "
                 "producing it again",
            refused=f"; nothing of the batch was appended to topic {topic!r}")
        self._round_robin[topic] = rr % count
        return [Delivered(topic, p, int(o)) for p, o in zip(parts, offsets, strict=True)]

    # --- reads ---------------------------------------------------------------------------------
    def _messages(self, topic: str, partition: int, offset: int, limit: int) -> list[Message]:
        if limit <= 0:
            return []
        entries = self._call(self._client.xrange, self._stream(topic, partition),
                             min=str(offset), count=limit)
        return [_message(topic, partition, eid, fields) for eid, fields in entries]

    def read(self, topic: str, partition: int, *, from_offset: int | None = None,
             from_time: datetime | None = None, limit: int = 1000) -> list[Message]:
        start, end = self._read_bounds(topic, partition, from_offset, from_time, limit)
        if from_time is not None:
            hit = self._call(self._client.zrangebyscore, self._index(topic, partition),
                             to_us(from_time), "+inf", start=0, num=1)
            if not hit:
                return []
            offset = int(hit[0])
        elif from_offset is None:
            offset = start
        else:
            if not isinstance(from_offset, int) or from_offset < 0 or from_offset > end:
                raise UsageError(
                    f"topic {topic!r} partition {partition}: bad offset {from_offset!r}",
                    hint=f"offsets held now are {start}..{end - 1}; {end} is the next one to "
                         "be written")
            if from_offset < start:
                raise UsageError(f"topic {topic!r} partition {partition}: offset "
                                 f"{from_offset} was deleted by retention",
                                 hint=f"the earliest offset held is {start}")
            offset = from_offset
        return self._messages(topic, partition, offset, limit)

    # --- consumer groups -----------------------------------------------------------------------
    def consume(self, topic: str, group: str, *, max_records: int = 500,
                timeout: float = 0.0) -> list[Message]:
        count = self._partition_count(topic)
        check_group(group)
        if not isinstance(max_records, int) or max_records < 1:
            raise UsageError(f"consume: bad max_records {max_records!r}", hint="a count >= 1")
        deadline = time.monotonic() + max(0.0, timeout)
        first = self._first_partition.get((group, topic), 0)
        while True:
            committed = self.committed(group, topic)
            positions = {p: self._positions.get((group, topic, p), committed.get(p, 0))
                         for p in range(count)}
            order = [(first + i) % count for i in range(count)]
            # one round trip for a fair share of every partition; then, if some had more and
            # the share of others went unused, top up from those in rotation order
            share = -(-max_records // count)
            pipe = self._client.pipeline(transaction=False)
            for p in order:
                pipe.xrange(self._stream(topic, p), min=str(positions[p]), count=share)
            fetched = dict(zip(order, self._call(pipe.execute), strict=True))
            total = sum(len(e) for e in fetched.values())
            for p in order:
                if total >= max_records:
                    break
                if len(fetched[p]) == share:  # maybe more there
                    last = int(bytes(fetched[p][-1][0]).partition(b"-")[0])
                    more = self._call(self._client.xrange, self._stream(topic, p),
                                      min=str(last + 1), count=max_records - total)
                    fetched[p] = fetched[p] + more
                    total += len(more)
            out: list[Message] = []
            for p in order:
                got = [_message(topic, p, eid, f)
                       for eid, f in fetched[p][:max_records - len(out)]]
                if got:
                    self._positions[(group, topic, p)] = got[-1].offset + 1
                out.extend(got)
            self._first_partition[(group, topic)] = (first + 1) % count
            remaining = deadline - time.monotonic()
            if out or remaining <= 0:
                return out
            # wait for any partition to get an entry past its position (XREAD BLOCK), then read
            streams = {self._stream(topic, p): f"{positions[p] - 1}-1" if positions[p] else "0-0"
                       for p in range(count)}
            self._call(self._client.xread, streams, count=1,
                       block=max(1, int(min(remaining, 5.0) * 1000)))

    def commit(self, group: str,
               offsets: Mapping[tuple[str, int], int] | None = None) -> None:
        rows = self._commits(group, offsets)
        if not rows:
            return
        pipe = self._client.pipeline(transaction=True)  # MULTI/EXEC: all partitions or none
        for topic, partition, offset in rows:
            pipe.hset(self._group_key(group, topic), str(partition), str(offset))
        self._call(pipe.execute, note="; the commit is one MULTI/EXEC: commit again")
        for topic, partition, offset in rows:
            self._positions[(group, topic, partition)] = offset

    def committed(self, group: str, topic: str) -> dict[int, int]:
        self._partition_count(topic)
        raw = self._call(self._client.hgetall, self._group_key(group, topic))
        return dict(sorted((int(p), int(o)) for p, o in raw.items()))

    def seek(self, group: str, topic: str, partition: int, offset: int) -> None:
        check_group(group)
        self._check_partition(topic, partition)
        self.read(topic, partition, from_offset=offset, limit=0)  # the same offset checks
        self._positions[(group, topic, partition)] = offset

    # --- maintenance ---------------------------------------------------------------------------
    def apply_retention(self, now: datetime | None = None) -> int:
        now_us = to_us(now or datetime.now(UTC))
        deleted = 0
        for info in self.topics():
            if info.retention is None:
                continue
            cutoff = now_us - int(info.retention.total_seconds() * 1_000_000)
            for p in range(info.partitions):
                deleted += int(self._call(
                    self._retain_script,
                    keys=[self._meta(info.name), self._stream(info.name, p),
                          self._index(info.name, p)], args=[p, cutoff]))
        return deleted

    def drop_all(self) -> int:
        """Delete every key of this namespace's streams (tests, a project being removed).
        Not atomic against concurrent producers. Returns how many keys."""
        pattern = self._base.translate(_GLOB_SPECIAL) + "*"
        names = list(self._call(self._client.scan_iter, match=pattern, count=1000))
        for i in range(0, len(names), 1000):
            self._call(self._client.unlink, *names[i:i + 1000])
        self._partitions.clear()
        self._positions.clear()
        return len(names)

    def close(self) -> None:
        self._closed = True
        self._pool.disconnect()


def _info(name: str, raw: Mapping[bytes, bytes]) -> TopicInfo | None:
    if not raw:
        return None
    fields = {bytes(k).decode(): bytes(v).decode() for k, v in raw.items()}
    count = int(fields["partitions"])
    retention = fields.get("retention_s") or None
    return TopicInfo(name, count, None if retention is None else
                     timedelta(seconds=float(retention)),
                     end_offsets=[int(fields[f"next:{p}"]) for p in range(count)],
                     start_offsets=[int(fields[f"start:{p}"]) for p in range(count)])


def _message(topic: str, partition: int, entry_id: bytes,
             fields: Mapping[bytes, bytes]) -> Message:
    offset = int(bytes(entry_id).partition(b"-")[0])
    return Message(topic, partition, offset, fields.get(b"k"), fields[b"v"],
                   from_us(int(fields[b"t"])))
