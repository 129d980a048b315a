"""The online store: the latest feature values of every entity, read on the serving hot path.

One record per (view, entity key): the event time of the value (int, UTC microseconds) and a
payload (bytes, orjson of the feature dict, made by the caller). Entity keys arrive already
encoded to strings (``tarmac.features.keys.encode_key``); the store never looks inside them.

Two rules hold on every backend:

* a write never regresses a value: a record is replaced only when the incoming event time is
  ``>=`` the stored one, so replaying a batch or a late, older row is harmless;
* a batch and the caller's checkpoint for the view land in ONE atomic step: after a crash either
  both are there or neither, so a materializer resumes from the checkpoint without gaps.

Backends, chosen by URL (``open_online_store``):

* ``sqlite:///path.db`` (relative to the project folder) - embedded, one file, WAL. A connection
  per thread (readers run in parallel) and per process (reconnects after ``fork``);
* ``redis://host:port/db`` - values ``b"<event_us>|" + payload`` under
  ``tarmac:{namespace}:{view}:{key}``; a batch is one Lua script (atomic), a read one ``MGET``.

Example::

    store = open_online_store("sqlite:///.tarmac/online.db", namespace="shop", root=root)
    store.write_batch("users", ["1", "2"], [t1, t2], [b'{"age":3}', b'{"age":5}'],
                      checkpoint='{"version": 7}')
    store.read([("users", ["1", "3"])])   # [[(t1, b'{"age":3}'), None]]
"""

from tarmac.features.online._base import OnlineStore, ReadResult, open_online_store
from tarmac.features.online.redis import RedisOnlineStore
from tarmac.features.online.sqlite import SqliteOnlineStore

__all__ = ["OnlineStore", "ReadResult", "RedisOnlineStore", "SqliteOnlineStore",
           "open_online_store"]
