"""Reading the next chunks of a source on a background thread while the current one is checked
and written (parsing, the network or the database overlap with Parquet writing)."""

from __future__ import annotations

import contextlib
import queue
import threading
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

from tarmac.ingest.base import Chunk


def read_ahead(chunks: Iterator[Chunk], depth: int = 2) -> Iterator[Chunk]:
    """Read the next chunks on a background thread while this one is checked and written, so
    parsing (or the network, or the database) and Parquet writing overlap on two cores. Errors
    reach the caller; if the caller stops, the reader stops."""
    box: queue.Queue[Any] = queue.Queue(maxsize=depth)
    stop = threading.Event()
    end = object()

    def produce() -> None:
        try:
            for chunk in chunks:
                while not stop.is_set():
                    try:
                        box.put(chunk, timeout=0.1)
                        break
                    except queue.Full:
                        continue
                if stop.is_set():
                    return
            box.put(end)
        except BaseException as exc:  # noqa: BLE001 - handed to the consumer, raised there
            box.put(_Failed(exc))

    reader = threading.Thread(target=produce, name="tarmac-read-ahead", daemon=True)
    reader.start()
    try:
        while True:
            item = box.get()
            if item is end:
                return
            if isinstance(item, _Failed):
                raise item.error
            yield item
    finally:
        stop.set()
        while reader.is_alive():
            with contextlib.suppress(queue.Empty):
                box.get(timeout=0.1)
        closer = getattr(chunks, "close", None)
        if closer is not None:
            closer()  # the reader is done: release its connection or file now


@dataclass
class _Failed:
    error: BaseException
