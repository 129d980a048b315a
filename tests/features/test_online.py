"""The online store on both backends: SQLite in a temp folder and the real Redis.

Behaviour tests run on each backend (``store`` fixture); Redis tests use a fresh namespace and
delete its keys afterwards. Faults are real: a closed port, a dropped connection, a foreign value
under one of the store's keys, a malformed batch, threads, and a fork.
"""

from __future__ import annotations

import contextlib
import os
import random
import socket
import threading
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
import redis

from conftest import require_server
from tarmac.errors import BackendUnavailableError, ConfigError, UsageError
from tarmac.features.online import (
    OnlineStore,
    RedisOnlineStore,
    SqliteOnlineStore,
    open_online_store,
)

REDIS_HOST, REDIS_PORT = "127.0.0.1", 6379
REDIS_URL = f"redis://{REDIS_HOST}:{REDIS_PORT}/0"
CLOSED_URL = "redis://127.0.0.1:1/0"  # nothing listens on port 1


@pytest.fixture
def admin() -> Iterator[redis.Redis]:
    """A plain Redis client, to look at and tamper with what the store wrote."""
    require_server("Redis", REDIS_HOST, REDIS_PORT)
    client = redis.Redis(host=REDIS_HOST, port=REDIS_PORT, db=0)
    yield client
    client.close()


@pytest.fixture
def open_redis(admin: redis.Redis) -> Iterator[Callable[..., RedisOnlineStore]]:
    """``open_redis(namespace=None)``: a Redis store in a fresh (or the given) namespace; all
    stores are closed and every namespace used is deleted afterwards."""
    stores: list[OnlineStore] = []
    namespaces: set[str] = set()

    def make(namespace: str | None = None) -> RedisOnlineStore:
        ns = namespace or f"t{uuid.uuid4().hex[:12]}"
        namespaces.add(ns)
        store = open_online_store(REDIS_URL, namespace=ns, root=Path("."))
        assert isinstance(store, RedisOnlineStore)
        stores.append(store)
        return store

    yield make
    for store in stores:
        store.close()
    for ns in namespaces:
        names = list(admin.scan_iter(match=f"tarmac:{ns}:*", count=1000))
        for start in range(0, len(names), 1000):
            admin.delete(*names[start:start + 1000])


@pytest.fixture(params=["sqlite", pytest.param("redis", marks=pytest.mark.redis)])
def store(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[OnlineStore]:
    """The same store on each backend: a SQLite file, then the real Redis."""
    if request.param == "redis":
        yield request.getfixturevalue("open_redis")()
        return
    s = open_online_store("sqlite:///online.db", namespace="test", root=tmp_path)
    yield s
    s.close()


def one(store: OnlineStore, view: str, key: str) -> tuple[int, bytes] | None:
    return store.read([(view, [key])])[0][0]


# ---------------------------------------------------------------------------------------------
# Behaviour, on both backends


def test_newer_event_replaces_the_stored_value(store: OnlineStore) -> None:
    assert store.write_batch("users", ["1", "2"], [100, 100], [b'{"a":1}', b'{"a":2}']) == 2
    assert store.write_batch("users", ["1"], [200], [b'{"a":10}']) == 1
    assert store.read([("users", ["1", "2"])]) == [[(200, b'{"a":10}'), (100, b'{"a":2}')]]


def test_older_event_does_not_regress_the_value(store: OnlineStore) -> None:
    store.write_batch("users", ["1", "2"], [200, 200], [b"new1", b"new2"])
    # a late batch: one older row (ignored), one equal (replaces), one new key (inserted)
    written = store.write_batch("users", ["1", "2", "3"], [100, 200, 50], [b"old", b"same", b"k3"])
    assert written == 2
    assert store.read([("users", ["1", "2", "3"])]) == [
        [(200, b"new1"), (200, b"same"), (50, b"k3")]]


def test_replaying_a_batch_is_idempotent(store: OnlineStore) -> None:
    keys = [str(i) for i in range(100)]
    times = [1_700_000_000_000_000 + i for i in range(100)]
    payloads = [f'{{"v":{i}}}'.encode() for i in range(100)]
    store.write_batch("v", keys, times, payloads, checkpoint='{"offset": 100}')
    before = store.read([("v", keys)])
    assert store.write_batch("v", keys, times, payloads, checkpoint='{"offset": 100}') == 100
    assert store.read([("v", keys)]) == before
    assert store.count("v") == 100
    assert store.checkpoint("v") == '{"offset": 100}'


def test_duplicate_keys_in_one_batch_keep_the_latest(store: OnlineStore) -> None:
    store.write_batch("v", ["k", "k", "k", "j", "j"], [5, 9, 7, 3, 3],
                      [b"five", b"nine", b"seven", b"j1", b"j2"])
    assert store.read([("v", ["k", "j"])]) == [[(9, b"nine"), (3, b"j2")]]


def test_checkpoint_is_stored_with_the_batch(store: OnlineStore) -> None:
    assert store.checkpoint("v") is None
    store.write_batch("v", ["a"], [1], [b"x"], checkpoint='{"version": 1}')
    assert store.checkpoint("v") == '{"version": 1}'
    store.write_batch("v", ["b"], [2], [b"y"])  # no checkpoint: the last one stays
    assert store.checkpoint("v") == '{"version": 1}'
    store.write_batch("v", ["a"], [0], [b"older"], checkpoint='{"version": 2}')
    assert store.checkpoint("v") == '{"version": 2}'  # moves even when no record changed
    assert store.checkpoint("other") is None


def test_missing_keys_read_as_none(store: OnlineStore) -> None:
    store.write_batch("v", ["a"], [1], [b"x"])
    assert store.read([("v", ["nope"])]) == [[None]]
    assert store.read([("v", ["nope", "a", "nope2"])]) == [[None, (1, b"x"), None]]
    assert store.read([("never_written", ["a", "b"])]) == [[None, None]]
    assert store.read([("v", [])]) == [[]]
    assert store.read([]) == []


def test_read_across_views_keeps_order(store: OnlineStore) -> None:
    store.write_batch("users", ["u1", "u2"], [1, 2], [b"U1", b"U2"])
    store.write_batch("items", ["i1", "i2", "i3"], [3, 4, 5], [b"I1", b"I2", b"I3"])
    got = store.read([
        ("items", ["i3", "missing", "i1"]),
        ("users", ["u2"]),
        ("empty", []),
        ("users", ["u1", "u2", "u1"]),
        ("nothing", ["x"]),
    ])
    assert got == [
        [(5, b"I3"), None, (3, b"I1")],
        [(2, b"U2")],
        [],
        [(1, b"U1"), (2, b"U2"), (1, b"U1")],
        [None],
    ]


@pytest.mark.parametrize("n", [2, 3, 7, 100, 511, 512, 513, 1500])
def test_reads_of_many_keys_keep_order_at_every_size(store: OnlineStore, n: int) -> None:
    keys = [f"k{i}" for i in range(0, 2 * n, 2)]
    store.write_batch("v", keys, list(range(n)), [k.encode() for k in keys])
    asked = [f"k{i}" for i in range(2 * n)]  # every other one is missing
    random.Random(n).shuffle(asked)
    expected = [(int(k[1:]) // 2, k.encode()) if int(k[1:]) % 2 == 0 else None for k in asked]
    assert store.read([("v", asked)]) == [expected]


def test_clear_count_and_views(store: OnlineStore) -> None:
    assert store.views() == []
    store.write_batch("b", ["1", "2", "3"], [1, 1, 1], [b"x", b"y", b"z"], checkpoint="{}")
    store.write_batch("a", ["1"], [1], [b"x"])
    store.write_batch("a2", ["9"], [1], [b"x"])  # a view whose name extends another's
    store.write_batch("c", [], [], [], checkpoint='{"only": "checkpoint"}')
    assert store.views() == ["a", "a2", "b", "c"]
    assert (store.count("a"), store.count("a2"), store.count("b"), store.count("c")) == (1, 1, 3, 0)
    store.clear("b")
    store.clear("a")
    assert store.views() == ["a2", "c"]
    assert store.count("b") == 0 and store.checkpoint("b") is None
    assert store.read([("b", ["1"]), ("a2", ["9"])]) == [[None], [(1, b"x")]]
    store.clear("c")
    store.clear("never_there")
    assert store.views() == ["a2"]


def test_unicode_and_composite_keys(store: OnlineStore) -> None:
    keys = ["é", "東京", "1\x1fx", "a:b", "*", "[x]", "k\x1f\x1f", "", "🙂 space"]
    payloads = [b"\x00\xff|bin|", b'{"city":"\xe6\x9d\xb1"}', b"c", b"d", b"e", b"f", b"g", b"h",
                b""]
    assert store.write_batch("geo", keys, [1] * len(keys), payloads) == len(keys)
    assert store.read([("geo", keys)]) == [[(1, p) for p in payloads]]
    assert store.read([("geo", ["1\x1fy", "1"])]) == [[None, None]]
    assert store.count("geo") == len(keys)
    store.write_batch("geo*", ["x"], [1], [b"glob"])  # glob characters in a view name
    store.clear("geo")
    assert store.count("geo") == 0 and store.count("geo*") == 1


def test_empty_batch_is_a_no_op(store: OnlineStore) -> None:
    assert store.write_batch("v", [], [], []) == 0
    assert store.views() == [] and store.count("v") == 0
    assert store.write_batch("v", [], [], [], checkpoint='{"k": 1}') == 0
    assert store.checkpoint("v") == '{"k": 1}' and store.views() == ["v"]


def test_large_batch(store: OnlineStore) -> None:
    n = 50_000
    keys = [f"entity-{i}" for i in range(n)]
    payloads = [b'{"score":%d}' % i for i in range(n)]
    base = 1_700_000_000_000_000
    assert store.write_batch("big", keys, [base] * n, payloads, checkpoint='{"n": 50000}') == n
    assert store.count("big") == n
    assert store.checkpoint("big") == '{"n": 50000}'
    got = store.read([("big", keys)])[0]
    assert got[0] == (base, b'{"score":0}') and got[-1] == (base, b'{"score":49999}')
    assert all(g is not None and g[1] == p for g, p in zip(got, payloads, strict=True))
    # half newer, half older: only the newer half is written
    times = [base + 1 if i % 2 else base - 1 for i in range(n)]
    assert store.write_batch("big", keys, times, [b"v2"] * n) == n // 2
    assert store.read([("big", ["entity-0", "entity-1"])]) == [
        [(base, b'{"score":0}'), (base + 1, b"v2")]]


def test_batch_of_mismatched_lengths_writes_nothing(store: OnlineStore) -> None:
    store.write_batch("v", ["a"], [1], [b"x"], checkpoint='{"at": 1}')
    with pytest.raises(UsageError, match="2 keys, 2 event times and 1 payloads"):
        store.write_batch("v", ["a", "b"], [5, 5], [b"y"], checkpoint='{"at": 2}')
    assert store.read([("v", ["a", "b"])]) == [[(1, b"x"), None]]
    assert store.checkpoint("v") == '{"at": 1}'


@pytest.mark.parametrize("view", ["", "a:b", "_views", "_checkpoint"])
def test_bad_view_names_are_refused(store: OnlineStore, view: str) -> None:
    with pytest.raises(UsageError, match="bad view name"):
        store.write_batch(view, ["k"], [1], [b"x"])
    with pytest.raises(UsageError, match="bad view name"):
        store.clear(view)
    with pytest.raises(UsageError, match="bad view name"):
        store.read([("ok", ["k"]), (view, ["k"])])
    with pytest.raises(UsageError, match="bad view name"):
        store.checkpoint(view)
    with pytest.raises(UsageError, match="bad view name"):
        store.count(view)


def test_closed_store_refuses_use(store: OnlineStore) -> None:
    store.write_batch("v", ["a"], [1], [b"x"])
    store.close()
    with pytest.raises(UsageError, match="is closed"):
        store.read([("v", ["a"])])
    with pytest.raises(UsageError, match="is closed"):
        store.write_batch("v", ["a"], [2], [b"y"])


def test_child_process_reads_after_fork(store: OnlineStore) -> None:
    store.write_batch("v", ["a"], [1], [b"parent"])
    assert one(store, "v", "a") == (1, b"parent")  # the parent has a live connection
    pid = os.fork()
    if pid == 0:  # the child: report through the exit code, never return into pytest
        code = 1
        try:
            ok = one(store, "v", "a") == (1, b"parent")
            store.write_batch("v", ["b"], [2], [b"child"])
            code = 0 if ok else 3
        finally:
            os._exit(code)
    _, status = os.waitpid(pid, 0)
    assert os.waitstatus_to_exitcode(status) == 0
    assert store.read([("v", ["a", "b"])]) == [[(1, b"parent"), (2, b"child")]]


# ---------------------------------------------------------------------------------------------
# SQLite specifics


def test_sqlite_relative_path_parent_is_created(tmp_path: Path) -> None:
    store = open_online_store("sqlite:///deep/er/online.db", namespace="p", root=tmp_path)
    store.write_batch("v", ["a"], [1], [b"x"])
    store.close()
    assert (tmp_path / "deep" / "er" / "online.db").is_file()
    absolute = tmp_path / "abs" / "o.db"
    again = open_online_store(f"sqlite:///{absolute}", namespace="p", root=Path("/nonexistent"))
    assert again.url == f"sqlite:///{absolute}" and absolute.is_file()
    again.close()


def test_sqlite_store_is_shared_through_its_file(tmp_path: Path) -> None:
    writer = open_online_store("sqlite:///o.db", namespace="p", root=tmp_path)
    reader = open_online_store("sqlite:///o.db", namespace="p", root=tmp_path)
    writer.write_batch("v", ["a"], [1], [b"x"], checkpoint="1")
    assert reader.read([("v", ["a"])]) == [[(1, b"x")]] and reader.checkpoint("v") == "1"
    writer.close()
    reader.close()


def test_sqlite_batch_failing_midway_is_rolled_back(tmp_path: Path) -> None:
    store = open_online_store("sqlite:///o.db", namespace="p", root=tmp_path)
    store.write_batch("v", ["a"], [1], [b"x"], checkpoint='{"at": 1}')
    keys = [f"k{i}" for i in range(1000)]
    payloads: list[bytes] = [b"p"] * 1000
    payloads[700] = None  # type: ignore[call-overload]  # row 700 breaks NOT NULL
    with pytest.raises(UsageError, match="nothing of it was written"):
        store.write_batch("v", ["a", *keys], [2] * 1001, [b"y", *payloads], checkpoint='{"at": 2}')
    assert store.count("v") == 1
    assert store.read([("v", ["a", "k0", "k699"])]) == [[(1, b"x"), None, None]]
    assert store.checkpoint("v") == '{"at": 1}'
    store.close()


def test_sqlite_file_that_is_not_a_database(tmp_path: Path) -> None:
    (tmp_path / "junk.db").write_bytes(b"this is not sqlite" * 100)
    with pytest.raises(BackendUnavailableError, match="junk.db"):
        open_online_store("sqlite:///junk.db", namespace="p", root=tmp_path)


def test_sqlite_concurrent_readers_and_a_writer(tmp_path: Path) -> None:
    store = open_online_store("sqlite:///o.db", namespace="p", root=tmp_path)
    n = 2000
    keys = [str(i) for i in range(n)]
    store.write_batch("v", keys, [1] * n, [k.encode() for k in keys])
    errors: list[BaseException] = []
    start = threading.Barrier(9)

    def reader(seed: int) -> None:
        rng = random.Random(seed)
        try:
            start.wait()
            for _ in range(300):
                asked = rng.sample(keys, rng.choice([1, 5, 50]))
                got = store.read([("v", asked), ("w", asked[:1])])
                assert [g[1] if g else None for g in got[0]] == [k.encode() for k in asked]
                assert got[1][0] in (None, (1, b"w"))
        except BaseException as exc:  # reported by the main thread
            errors.append(exc)

    def writer() -> None:
        try:
            start.wait()
            for i in range(50):
                store.write_batch("w", [keys[0]], [1], [b"w"], checkpoint=str(i))
                store.write_batch("v", keys[:100], [2] * 100, [k.encode() for k in keys[:100]])
        except BaseException as exc:
            errors.append(exc)

    threads = [threading.Thread(target=reader, args=(i,)) for i in range(8)]
    threads.append(threading.Thread(target=writer))
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert errors == []
    assert store.checkpoint("w") == "49"
    store.close()


def test_sqlite_connections_of_ended_threads_are_closed(tmp_path: Path) -> None:
    store = open_online_store("sqlite:///o.db", namespace="p", root=tmp_path)
    assert isinstance(store, SqliteOnlineStore)
    store.write_batch("v", ["a"], [1], [b"x"])
    for _ in range(20):  # a thread per request: each opens a connection, then ends
        t = threading.Thread(target=store.read, args=([("v", ["a"])],))
        t.start()
        t.join()
    assert len(store._conns) <= 2  # this thread's and at most the last ended one
    store.close()


# ---------------------------------------------------------------------------------------------
# Redis specifics


@pytest.mark.redis
def test_redis_layout_and_namespaces(admin: redis.Redis,
                                     open_redis: Callable[..., RedisOnlineStore]) -> None:
    ns = f"t{uuid.uuid4().hex[:12]}"
    first, second = open_redis(ns), open_redis()
    first.write_batch("users", ["1\x1fx"], [1_700_000_000_000_001], [b'{"a":1}'], checkpoint="c")
    assert admin.get(f"tarmac:{ns}:users:1\x1fx") == b'1700000000000001|{"a":1}'
    assert admin.get(f"tarmac:{ns}:_checkpoint:users") == b"c"
    assert admin.smembers(f"tarmac:{ns}:_views") == {b"users"}
    assert second.read([("users", ["1\x1fx"])]) == [[None]] and second.views() == []
    second.write_batch("users", ["1\x1fx"], [5], [b"other"])
    second.clear("users")
    assert first.read([("users", ["1\x1fx"])]) == [[(1_700_000_000_000_001, b'{"a":1}')]]


@pytest.mark.redis
def test_redis_unreachable_names_the_url() -> None:
    with pytest.raises(BackendUnavailableError, match="redis://127.0.0.1:1/0 is unreachable"):
        open_online_store(CLOSED_URL, namespace="p", root=Path("."))
    with pytest.raises(BackendUnavailableError) as info:
        open_online_store("redis://:s3cret@127.0.0.1:1/0", namespace="p", root=Path("."))
    assert "s3cret" not in str(info.value) and ":***@127.0.0.1:1" in str(info.value)


class TcpProxy:
    """A TCP forwarder to Redis that a test can cut: ``stop()`` closes every connection and
    refuses new ones (Redis went away); ``cut_on_reply`` forwards requests but drops the
    connection when the reply comes back (the command ran, the client never hears of it)."""

    def __init__(self, host: str, port: int) -> None:
        self.target = (host, port)
        self.listener = socket.create_server(("127.0.0.1", 0))
        self.port = self.listener.getsockname()[1]
        self.cut_on_reply = False
        self.sockets: list[socket.socket] = []
        self.lock = threading.Lock()
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self) -> None:
        while True:
            try:
                client, _ = self.listener.accept()
            except OSError:
                return
            upstream = socket.create_connection(self.target)
            with self.lock:
                self.sockets += [client, upstream]
            threading.Thread(target=self._pump, args=(client, upstream, False), daemon=True).start()
            threading.Thread(target=self._pump, args=(upstream, client, True), daemon=True).start()

    def _pump(self, src: socket.socket, dst: socket.socket, is_reply: bool) -> None:
        try:
            while data := src.recv(65536):
                if is_reply and self.cut_on_reply:
                    self.stop()
                    return
                dst.sendall(data)
        except OSError:
            pass
        finally:
            for sock in (src, dst):
                with contextlib.suppress(OSError):
                    sock.shutdown(socket.SHUT_RDWR)

    def stop(self) -> None:
        with contextlib.suppress(OSError):
            self.listener.shutdown(socket.SHUT_RDWR)
        self.listener.close()
        with self.lock:
            for sock in self.sockets:
                with contextlib.suppress(OSError):
                    sock.shutdown(socket.SHUT_RDWR)
                sock.close()


@pytest.fixture
def proxy(admin: redis.Redis) -> Iterator[TcpProxy]:
    p = TcpProxy(REDIS_HOST, REDIS_PORT)
    yield p
    p.stop()


@pytest.fixture
def proxied(proxy: TcpProxy, open_redis: Callable[..., RedisOnlineStore]
            ) -> Iterator[tuple[RedisOnlineStore, RedisOnlineStore]]:
    """(a store reaching Redis through the proxy, a direct store on the same namespace)."""
    direct = open_redis()
    ns = direct._base.split(":")[1]
    through = open_online_store(f"redis://127.0.0.1:{proxy.port}/0", namespace=ns, root=Path("."))
    assert isinstance(through, RedisOnlineStore)
    yield through, direct
    through.close()


@pytest.mark.redis
def test_redis_lost_between_batches_applies_nothing(
        proxy: TcpProxy, proxied: tuple[RedisOnlineStore, RedisOnlineStore]) -> None:
    store, direct = proxied
    store.write_batch("v", ["a"], [1], [b"x"], checkpoint='{"at": 1}')
    proxy.stop()  # Redis goes away: the pooled connection dies and reconnecting is refused
    with pytest.raises(BackendUnavailableError, match="none of it was applied") as info:
        store.write_batch("v", ["a", "b"], [2, 2], [b"y", b"z"], checkpoint='{"at": 2}')
    assert f"redis://127.0.0.1:{proxy.port}/0 is unreachable" in str(info.value)
    with pytest.raises(BackendUnavailableError, match="unreachable"):
        store.read([("v", ["a"])])
    with pytest.raises(BackendUnavailableError):
        store.ping()
    assert direct.read([("v", ["a", "b"])]) == [[(1, b"x"), None]]
    assert direct.checkpoint("v") == '{"at": 1}'


@pytest.mark.redis
def test_redis_lost_before_the_reply_applied_all_or_nothing(
        proxy: TcpProxy, proxied: tuple[RedisOnlineStore, RedisOnlineStore]) -> None:
    store, direct = proxied
    store.write_batch("v", ["a"], [1], [b"x"], checkpoint='{"at": 1}')
    keys = [f"k{i}" for i in range(2000)]
    proxy.cut_on_reply = True  # the script reaches Redis, its reply never comes back
    with pytest.raises(BackendUnavailableError, match="replaying it is safe"):
        store.write_batch("v", ["a", *keys], [2] * 2001, [b"y"] * 2001, checkpoint='{"at": 2}')
    checkpoint = direct.checkpoint("v")
    got = direct.read([("v", ["a", *keys])])[0]
    if checkpoint == '{"at": 2}':  # Redis ran the script: all of it is there
        assert got == [(2, b"y")] * 2001
    else:
        assert checkpoint == '{"at": 1}' and got == [(1, b"x")] + [None] * 2000
    # replaying the batch once Redis is back is safe
    assert direct.write_batch("v", ["a", *keys], [2] * 2001, [b"y"] * 2001,
                              checkpoint='{"at": 2}') == 2001
    assert direct.count("v") == 2001 and direct.checkpoint("v") == '{"at": 2}'


@pytest.mark.redis
def test_redis_killed_connection_is_replaced(admin: redis.Redis,
                                             open_redis: Callable[..., RedisOnlineStore]) -> None:
    store = open_redis()
    store.write_batch("v", ["a"], [1], [b"x"])
    killed = admin.client_kill_filter(_id=str(store._client.client_id()))
    assert killed == 1
    # the next batch finds its pooled connection dead and retries once on a new one
    assert store.write_batch("v", ["a"], [2], [b"y"], checkpoint="2") == 1
    admin.client_kill_filter(_id=str(store._client.client_id()))
    assert store.read([("v", ["a"])]) == [[(2, b"y")]] and store.checkpoint("v") == "2"


@pytest.mark.redis
def test_redis_script_failing_midway_applies_nothing(
        admin: redis.Redis, open_redis: Callable[..., RedisOnlineStore]) -> None:
    store = open_redis()
    ns = store._base.split(":")[1]
    store.write_batch("v", ["k0"], [1], [b"old"], checkpoint='{"at": 1}')
    # a value that is not a record, in the second chunk of keys the script reads
    admin.set(f"tarmac:{ns}:v:k1500", b"no bar in here")
    keys = [f"k{i}" for i in range(2500)]
    with pytest.raises(UsageError, match="does not hold a Tarmac feature record") as info:
        store.write_batch("v", keys, [2] * 2500, [b"new"] * 2500, checkpoint='{"at": 2}')
    assert "nothing of it was applied" in str(info.value)
    assert store.read([("v", ["k0", "k1", "k999", "k1499", "k1501", "k2499"])]) == [
        [(1, b"old"), None, None, None, None, None]]
    assert store.checkpoint("v") == '{"at": 1}' and store.count("v") == 2


@pytest.mark.redis
def test_redis_script_is_reloaded_after_a_flush(
        admin: redis.Redis, open_redis: Callable[..., RedisOnlineStore]) -> None:
    store = open_redis()
    store.write_batch("v", ["a"], [1], [b"x"])
    admin.script_flush()  # as after a Redis restart
    assert store.write_batch("v", ["a"], [2], [b"y"]) == 1
    assert store.read([("v", ["a"])]) == [[(2, b"y")]]


@pytest.mark.redis
def test_redis_read_is_one_round_trip(open_redis: Callable[..., RedisOnlineStore],
                                      monkeypatch: pytest.MonkeyPatch) -> None:
    store = open_redis()
    store.write_batch("a", ["1"], [1], [b"x"])
    store.write_batch("b", ["2"], [2], [b"y"])
    commands: list[str] = []
    real = store._client.execute_command

    def spy(*args: object, **kwargs: object) -> object:
        commands.append(str(args[0]))
        return real(*args, **kwargs)

    monkeypatch.setattr(store._client, "execute_command", spy)
    got = store.read([("a", ["1", "x"]), ("b", ["2"]), ("c", [])])
    assert got == [[(1, b"x"), None], [(2, b"y")], []]
    assert commands == ["MGET"]


# ---------------------------------------------------------------------------------------------
# URLs


@pytest.mark.parametrize("url", ["mysql://h/db", "memcached://h:1", "online.db", "embedded"])
def test_unknown_scheme_is_a_config_error(url: str, tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="expected sqlite:///path.db"):
        open_online_store(url, namespace="p", root=tmp_path)


@pytest.mark.parametrize("url", ["sqlite:///:memory:", "sqlite://host/o.db", "sqlite:///"])
def test_sqlite_url_without_a_file_is_a_config_error(url: str, tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="expected sqlite:///relative/path.db"):
        open_online_store(url, namespace="p", root=tmp_path)


def test_bad_redis_url_is_a_config_error(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="the database .notadb. is not a number"):
        open_online_store("redis://127.0.0.1:6379/notadb", namespace="p", root=tmp_path)
    with pytest.raises(ConfigError, match="Port could not be cast"):
        open_online_store("redis://127.0.0.1:port/0", namespace="p", root=tmp_path)
