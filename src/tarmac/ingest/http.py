"""The HTTP connector: a paginated JSON REST API read into Arrow, one chunk per page.

Real APIs are messy, so reading one is defensive on every axis:

* **Pagination** by page number, by cursor token, or by the RFC 8288 ``Link: <...>; rel="next"``
  header, bounded by ``max_pages`` and guarded against endless loops (a cursor token or next
  URL coming back, or a page repeating the previous page's records).
* **Failures**: timeouts, dropped connections, HTTP 429 and 5xx are retried with exponential
  backoff and full jitter, honouring ``Retry-After``; all the waiting in one read is capped by
  ``retry_budget`` so a struggling API fails the load in bounded time instead of hanging it.
  Wrong credentials (401/403) and other client errors fail at once: retrying cannot help.
* **Records** of one page may disagree on their keys and on their value types; the page still
  becomes one table (union of keys; a column mixing types becomes strings, nested values JSON
  text) and a record that is not a JSON object is rejected to quarantine, not dropped.
* **Secrets** (the token from ``auth_env``, URL passwords, key-like query parameters) never
  appear in origins or error messages, and the token is only sent to the configured host.
"""

from __future__ import annotations

import json
import math
import os
import random
import re
import time
from collections.abc import Callable, Generator, Iterator
from dataclasses import dataclass
from datetime import UTC, date, datetime
from email.utils import parsedate_to_datetime
from pathlib import Path
from typing import Any
from urllib.parse import urlencode

import httpx

from tarmac.config import redact
from tarmac.ingest.base import (
    Chunk,
    Connector,
    FileMark,
    Reject,
    Sample,
    Stream,
    raw_json,
    records_table,
)
from tarmac.ingest.base import table_name as default_table_name
from tarmac.ingest.spec import HttpSource

#: keys whose list value is taken as the records when ``records:`` is not declared
RECORD_KEYS = ("data", "items", "results", "records")
#: keys an API uses for the total number of records (read by ``sample``)
TOTAL_KEYS = ("total", "total_count", "count")
_MAX_REDIRECTS = 5
_SNIPPET = 200
#: query parameter names whose values are masked when a URL is shown
_SECRET_PARAM = re.compile(
    r"(?i)^(api[-_]?key|key|token|access[-_]?token|auth|secret|client[-_]?secret|password|"
    r"passwd|sig|signature)$|[-_](key|secret|password|token)$"
)
_MISSING = object()
_HEADER_VALUE = re.compile(r"[\x20-\x7e\t]*")  # printable ASCII: what httpx can send
#: compact JSON text of a nested or non-string value (as ``raw_json``, but one encoder reused)
_JSON = json.JSONEncoder(ensure_ascii=False, separators=(",", ":"), default=str).encode


@dataclass
class _Page:
    """One fetched page: its parsed body and records, and where it came from."""

    number: int
    url: str  # safe to print
    body: Any
    records: list[Any]
    nbytes: int
    last: bool = False  # True when the API says there is no further page

    @property
    def origin(self) -> str:
        return f"GET {self.url} (page {self.number})"


@dataclass
class _Budget:
    """Seconds spent waiting between retries during one read."""

    spent: float = 0.0


class HttpConnector(Connector[HttpSource]):
    """Reads one JSON REST endpoint as a single stream, one ``Chunk`` per page."""

    def __init__(self, name: str, spec: HttpSource, root: Path) -> None:
        super().__init__(name, spec, root)
        self._client: httpx.Client | None = None
        self._sleep: Callable[[float], None] = time.sleep  # tests record waits instead
        self.waits: list[float] = []  # the waits between retries of the last read() or sample()
        self._url: httpx.URL | None = None

    # -- the Connector interface ----------------------------------------------------------------

    def streams(self) -> list[Stream]:
        """The single stream of this endpoint (the server is not contacted)."""
        spec = self.spec
        return [Stream(source=self.name, name=self.name,
                       table=spec.table or default_table_name(self.name),
                       location=spec.location())]

    def read(self, stream: Stream, *, since: Any = None,
             seen: dict[str, FileMark] | None = None) -> Iterator[Chunk]:
        """Every page as a chunk; ``since`` goes to the API as ``since_param`` when declared.

        Pages without records are skipped. Raises ``SourceError`` naming the source when the
        API cannot be read completely (the loader then commits nothing)."""
        self.waits = []
        for page in self._pages(since):
            if not page.records:
                continue
            rows, rejects = _split(page)
            yield Chunk(data=records_table(rows), origin=page.origin, nbytes=page.nbytes,
                        rejects=rejects)

    def sample(self, stream: Stream, rows: int) -> Sample:
        """Up to ``rows`` records from the first pages, and the total when the API tells it.

        The total is exact when every page was read; else the body's ``total``/``total_count``/
        ``count``, else ``total_pages`` times the first page's size (flagged as estimated)."""
        self.waits = []
        kept: list[dict[str, Any]] = []
        count = nbytes = parts = rejected = 0
        first: _Page | None = None
        last: _Page | None = None
        pages = self._pages(None)
        try:
            for page in pages:
                parts += 1
                nbytes += page.nbytes
                count += len(page.records)
                first = first or page
                last = page
                good, rejects = _split(page)
                rejected += len(rejects)
                kept.extend(good[: max(rows - len(kept), 0)])
                if len(kept) >= rows or page.last:
                    break
        finally:
            pages.close()
        total: int | None = None
        estimated = False
        notes: list[str] = []
        if last is None or last.last:
            total = count
        else:
            total = _body_total(last.body, more_than=count)
            if total is None and first is not None:
                total = _body_total(first.body, more_than=count)
            if total is None and first is not None:
                total_pages = _as_int(_dig(first.body, "total_pages"))
                if total_pages is not None:
                    total, estimated = total_pages * len(first.records), True
            notes.append(f"read the first {parts} page(s) of {self.spec.location()}")
        if rejected:
            notes.append(f"{rejected} record(s) in the sampled pages are not JSON objects")
        return Sample(stream, rows=records_table(kept), total_rows=total, estimated=estimated,
                      nbytes=nbytes, parts=parts, notes=notes)

    def close(self) -> None:
        """Close the HTTP client (a later read opens a new one)."""
        if self._client is not None:
            self._client.close()
            self._client = None

    # -- pagination -------------------------------------------------------------------------------

    def _pages(self, since: Any) -> Generator[_Page, None, None]:
        """Fetch the pages in order until the API says there are no more.

        Raises on a pagination loop or more than ``max_pages`` pages."""
        spec = self.spec
        headers = self._headers()  # a missing token fails before any request
        base: dict[str, str | int] = dict(spec.params)
        if spec.size_param and spec.page_size:
            base[spec.size_param] = spec.page_size
        if spec.since_param and since is not None:
            base[spec.since_param] = _param_value(since)
        first = {**base, spec.page_param: 1} if spec.paginate == "page" else base
        url: httpx.URL | None = self._start.copy_merge_params(first)
        budget = _Budget()
        seen: set[str] = set()  # cursor tokens or URLs already read
        previous: list[Any] | None = None
        number = 0
        while url is not None:
            number += 1
            if number > spec.max_pages:
                raise self.error(
                    f"more than max_pages={spec.max_pages} pages from {self._shown(self._start)}; "
                    f"stopped before page {number} ({self._shown(url)})",
                    hint="the API may be paginating endlessly; if it really has more pages, "
                         "raise max_pages")
            response, body = self._get(url, headers, budget, number)
            shown = self._shown(url)
            records = self._records(body, shown)
            if spec.paginate == "page" and records and records == previous:
                raise self.error(
                    f"pagination loop: page {number} ({shown}) returned the same "
                    f"{len(records)} records as page {number - 1}; the API seems to ignore "
                    f"'{spec.page_param}'")
            seen.add(str(url))
            nxt = self._next(url, response, body, records, base, number, seen) if records else None
            yield _Page(number, shown, body, records, len(response.content), last=nxt is None)
            previous, url = records, nxt

    def _next(self, url: httpx.URL, response: httpx.Response, body: Any, records: list[Any],
              base: dict[str, str | int], number: int, seen: set[str]) -> httpx.URL | None:
        """The next page's URL, None at the end; raises on a pagination loop."""
        spec = self.spec
        if spec.paginate == "page":
            total_pages = _as_int(_dig(body, "total_pages"))
            current = _as_int(_dig(body, "page")) or number
            if total_pages is not None and current >= total_pages:
                return None
            if spec.page_size and len(records) < spec.page_size:
                return None
            return self._start.copy_merge_params({**base, spec.page_param: number + 1})
        if spec.paginate == "cursor":
            token = _dig(body, spec.next_cursor)
            if token is _MISSING or token is None or token == "":
                return None
            if isinstance(token, dict | list):
                raise self.error(f"'{spec.next_cursor}' in page {number} ({self._shown(url)}) "
                                 f"is not a token but {_json_type(token)}",
                                 hint="next_cursor: must be the dot path of the token")
            token = str(token)
            if f"cursor:{token}" in seen:
                raise self.error(
                    f"pagination loop: page {number} ({self._shown(url)}) returned "
                    f"{spec.next_cursor} {token!r}, which an earlier page already returned; "
                    "stopping instead of reading the same pages forever")
            seen.add(f"cursor:{token}")
            return self._start.copy_merge_params({**base, spec.cursor_param: token})
        if spec.paginate == "link":
            link = response.links.get("next", {}).get("url")
            if not link:
                return None
            nxt = response.url.join(link)
            if str(nxt) in seen:
                raise self.error(
                    f"pagination loop: page {number} ({self._shown(url)}) links to "
                    f"{self._shown(nxt)} as its next page, which was already read; stopping "
                    "instead of reading the same pages forever")
            return nxt
        return None

    # -- one request, retried ---------------------------------------------------------------------

    def _get(self, url: httpx.URL, headers: dict[str, str], budget: _Budget,
             number: int) -> tuple[httpx.Response, Any]:
        """GET one page and its JSON body, retrying timeouts, connection errors, 429, 5xx and
        a body that is not valid JSON (a page cut off in transit) within the budget."""
        spec = self.spec
        shown = self._shown(url)
        attempt = 0
        while True:
            retry_after: float | None = None
            invalid: str | None = None  # why the last 2xx body was not JSON
            try:
                response = self._send(url, headers)
            except httpx.TimeoutException:
                problem = f"timed out after {spec.timeout:g}s"
            except httpx.TransportError as exc:
                problem = f"connection failed ({type(exc).__name__}: {exc})"
            else:
                status = response.status_code
                if 200 <= status < 300:
                    body, invalid = _decode(response)
                    if invalid is None:
                        return response, body
                if status in (401, 403):
                    hint = (f"check the token in ${spec.auth_env}" if spec.auth_env else
                            "the API needs credentials: set auth_env: to the environment "
                            "variable holding the token")
                    raise self.error(f"authentication failed (HTTP {status}) at {shown}",
                                     hint=hint)
                if invalid is not None:
                    problem = f"not valid JSON: {invalid}"
                elif status != 429 and status < 500:
                    raise self.error(f"HTTP {status} {response.reason_phrase} from {shown} "
                                     f"(page {number}): {_snippet(response.content)}")
                else:
                    problem = f"HTTP {status} {response.reason_phrase}"
                if status in (429, 503):
                    retry_after = _retry_after(response.headers.get("Retry-After"))
            if attempt >= spec.retries and invalid is not None:
                raise self.error(
                    f"page {number} at {shown} is not valid JSON after {attempt + 1} "
                    f"attempt(s): {invalid}",
                    hint="the API keeps sending a broken page; try again later or raise "
                         "retries")
            if attempt >= spec.retries:
                raise self.error(
                    f"GET {shown} (page {number}) failed after {attempt + 1} attempt(s); "
                    f"last: {problem}", hint="the API keeps failing; try again later or raise "
                                             "retries")
            wait = retry_after if retry_after is not None else random.uniform(
                0, spec.backoff * 2 ** attempt)
            if budget.spent + wait > spec.retry_budget:
                why = f"Retry-After {wait:g}s" if retry_after is not None else f"{wait:.2f}s"
                raise self.error(
                    f"GET {shown} (page {number}): {problem}; waiting {why} more would exceed "
                    f"the retry budget of {spec.retry_budget:g}s ({budget.spent:.2f}s already "
                    "spent waiting); giving up",
                    hint="try again later, or raise retry_budget")
            self._sleep(wait)
            self.waits.append(wait)
            budget.spent += wait
            attempt += 1

    def _send(self, url: httpx.URL, headers: dict[str, str]) -> httpx.Response:
        """Send a GET, following redirects; the token only goes to the configured origin."""
        client = self._http()
        auth = self._auth_header()
        request = client.build_request("GET", url, headers=self._for(url, headers))
        for _ in range(_MAX_REDIRECTS + 1):
            response = client.send(request)
            nxt = response.next_request
            if not response.is_redirect or nxt is None:
                return response
            if auth is not None and not self._same_origin(nxt.url):
                nxt.headers.pop(auth, None)
            request = nxt
        raise self.error(f"more than {_MAX_REDIRECTS} redirects from {self._shown(url)}")

    @property
    def _start(self) -> httpx.URL:
        """The declared URL, parsed (its origin is the only one the token is sent to)."""
        if self._url is None:
            try:
                self._url = httpx.URL(self.spec.url)
            except httpx.InvalidURL as exc:
                raise self.error(f"invalid url {self.spec.location()!r}: {exc}") from None
        return self._url

    def _http(self) -> httpx.Client:
        if self._client is None:
            self._client = httpx.Client(
                timeout=self.spec.timeout, follow_redirects=False,
                headers={"Accept": "application/json", "User-Agent": "tarmac-ingest"})
        return self._client

    def _auth_header(self) -> str | None:
        return self.spec.auth_header if self.spec.auth_env else None

    def _headers(self) -> dict[str, str]:
        """The declared headers plus the token from ``auth_env``; raises if it is not set."""
        spec = self.spec
        headers = dict(spec.headers)
        if spec.auth_env:
            token = os.environ.get(spec.auth_env, "").strip()
            if not token:
                raise self.error(f"environment variable {spec.auth_env} is not set; it should "
                                 "hold the API token",
                                 hint=f"export {spec.auth_env}=... before loading this source")
            if not _HEADER_VALUE.fullmatch(token):
                raise self.error(f"environment variable {spec.auth_env} holds characters that "
                                 "cannot go in an HTTP header (value not shown)")
            headers[spec.auth_header] = f"{spec.auth_scheme} {token}" if spec.auth_scheme else token
        for key, value in spec.headers.items():  # httpx would echo a bad value in its error
            if not _HEADER_VALUE.fullmatch(value):
                raise self.error(f"header {key!r} has characters that cannot go in an HTTP "
                                 "header (value not shown)")
        return headers

    def _for(self, url: httpx.URL, headers: dict[str, str]) -> dict[str, str]:
        """The headers to send to ``url``: without the token when it is another origin."""
        auth = self._auth_header()
        if auth is None or self._same_origin(url):
            return headers
        return {k: v for k, v in headers.items() if k != auth}

    def _same_origin(self, url: httpx.URL) -> bool:
        start = self._start
        return (url.scheme, url.host, url.port) == (start.scheme, start.host, start.port)

    # -- bodies -----------------------------------------------------------------------------------

    def _records(self, body: Any, shown: str) -> list[Any]:
        """The list of records in a page body (``records:`` path, else found by convention)."""
        path = self.spec.records
        if path:
            node = body
            for part in path.split("."):
                if not isinstance(node, dict) or part not in node:
                    raise self.error(
                        f"records path '{path}' not found in the response from {shown}: no key "
                        f"'{part}' in {_describe(node)}",
                        hint="records: is the dot path of the list of records, e.g. "
                             "result.items")
                node = node[part]
            if node is None:
                return []
            if not isinstance(node, list):
                raise self.error(f"records path '{path}' in the response from {shown} is "
                                 f"{_json_type(node)}, not a list of records")
            return node
        if isinstance(body, list):
            return body
        if isinstance(body, dict):
            for key in RECORD_KEYS:
                if isinstance(body.get(key), list):
                    return list(body[key])
            if any(key in body and body[key] is None for key in RECORD_KEYS):
                return []
        raise self.error(
            f"cannot find the records in the response from {shown}: the body is "
            f"{_describe(body)}, and none of {'/'.join(RECORD_KEYS)} holds a list",
            hint="set records: to the dot path of the list of records, e.g. records: result.items")

    def _shown(self, url: httpx.URL) -> str:
        """``url`` safe to print: password and key-like query parameters masked."""
        params = url.params
        secret = [k for k in params if _SECRET_PARAM.search(k) and k != self.spec.cursor_param]
        if secret:
            pairs = [(k, "***" if k in secret else v) for k, v in params.multi_items()]
            url = url.copy_with(query=urlencode(pairs, safe="*").encode())
        return redact(str(url))


# -- records -> Arrow ----------------------------------------------------------------------------


def _split(page: _Page) -> tuple[list[dict[str, Any]], list[Reject]]:
    """The page's JSON objects, and a ``Reject`` for each record that is not one."""
    rows = [r for r in page.records if isinstance(r, dict)]
    if len(rows) == len(page.records):
        return rows, []
    rejects = [Reject(origin=f"{page.origin}, record {i + 1}",
                      reason=f"record is {_json_type(r)}, not a JSON object", raw=raw_json(r))
               for i, r in enumerate(page.records) if not isinstance(r, dict)]
    return rows, rejects


# -- helpers -------------------------------------------------------------------------------------


def _dig(body: Any, path: str) -> Any:
    """The value at a dot path in a JSON body, ``_MISSING`` when absent."""
    node = body
    for part in path.split("."):
        if not isinstance(node, dict) or part not in node:
            return _MISSING
        node = node[part]
    return node


def _as_int(value: Any) -> int | None:
    if isinstance(value, bool):
        return None
    if isinstance(value, int):
        return value
    if isinstance(value, str) and value.isdigit():
        return int(value)
    return None


def _body_total(body: Any, *, more_than: int) -> int | None:
    """The record total a body carries at its top level or one object down (``meta.total``).

    Only called when more pages remain, so a value not above the records already read is a
    count of the page (some APIs' ``count``), not a total."""
    if not isinstance(body, dict):
        return None
    places = [body] + [v for v in body.values() if isinstance(v, dict)]
    for place in places:
        for key in TOTAL_KEYS:
            total = _as_int(place.get(key))
            if total is not None and total > more_than:
                return total
    return None


def _decode(response: httpx.Response) -> tuple[Any, str | None]:
    """A page's JSON body, or None and why it is not JSON (where it broke, how it starts)."""
    try:
        return json.loads(response.content), None
    except json.JSONDecodeError as exc:
        return None, (f"{exc.msg} at line {exc.lineno} column {exc.colno} (char {exc.pos}); "
                      f"body starts {_snippet(response.content)}")
    except ValueError as exc:  # undecodable bytes
        return None, str(exc)


def _retry_after(value: str | None) -> float | None:
    """Seconds to wait from a ``Retry-After`` header (seconds or an HTTP-date), else None."""
    if not value:
        return None
    value = value.strip()
    try:
        seconds = float(value)
    except ValueError:
        try:
            when = parsedate_to_datetime(value)
        except (TypeError, ValueError, IndexError):
            return None
        if when.tzinfo is None:
            when = when.replace(tzinfo=UTC)
        seconds = (when - datetime.now(UTC)).total_seconds()
    if math.isnan(seconds):
        return None
    return max(0.0, seconds)


def _param_value(value: Any) -> str:
    """A cursor value as a query parameter: datetimes as ISO 8601 in UTC with ``Z``."""
    if isinstance(value, datetime):
        if value.tzinfo is None:
            value = value.replace(tzinfo=UTC)
        return value.astimezone(UTC).isoformat().replace("+00:00", "Z")
    if isinstance(value, date):
        return value.isoformat()
    return str(value)


def _json_type(value: Any) -> str:
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "a boolean"
    if isinstance(value, int | float):
        return "a number"
    if isinstance(value, str):
        return "a string"
    if isinstance(value, list):
        return "a list"
    if isinstance(value, dict):
        return "an object"
    return type(value).__name__


def _describe(body: Any) -> str:
    """What a JSON value looks like, for error messages (an object's keys, else its type)."""
    if isinstance(body, dict):
        keys = list(body)
        shown = ", ".join(repr(k) for k in keys[:15]) + (", ..." if len(keys) > 15 else "")
        return f"an object with keys {shown}" if keys else "an empty object"
    return _json_type(body)


def _snippet(content: bytes) -> str:
    text = " ".join(content[: _SNIPPET * 4].decode("utf-8", "replace").split())
    return repr(text[:_SNIPPET] + ("..." if len(text) > _SNIPPET else ""))

