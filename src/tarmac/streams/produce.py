"""Producing to a topic with the checks its declared stream source asks for: the one path the
SDK (``p.produce``), the CLI (``tarmac stream produce``) and the HTTP endpoint (``POST
/v1/topics/{topic}``) share.

A name is a ``type: stream`` source of ``tarmac.yaml``, the topic of one (or of several), or
any other topic of the log, which is produced to as it is, unchecked. For a declared source,
every record is checked before anything enters the log:

* it is a JSON object;
* the source's contract holds: declared ``columns:`` coerce to their types and pass their rules
  (``required``, ``allowed``, ``min``/``max``, ``pattern``, ``unique`` within the batch), the
  primary key and the cursor are not null. ``tarmac.ingest.contract`` checks this, the same code
  as batch ingestion, on an Arrow table built from the records the way the HTTP connector builds
  one (``records_table``);
* the key field (``key:``, else the first ``primary_key`` column) is present, not null, and a
  string, number or boolean: it keys the message, so one entity always lands in one partition;
* the event-time field (``timestamp:``), when declared, is present and a valid time.

One bad record refuses the whole batch: ``RecordsRefused`` names every record and field at
fault, and nothing is produced. Valid records are produced as they were sent (the sink applies
the contract again when it loads them), keyed by the key field, in one batch. A topic that does
not exist yet is created with the source's ``partitions``. A new field the contract does not
name is not refused here: the sink applies the source's ``on_schema_change`` policy to it when
it loads the records, as batch ingestion does.

Example::

    result = p.produce("clicks", [{"event_id": "e1", "user_id": 7,
                                   "ts": "2026-05-01T10:00:00Z"}])
    result.count, result.delivered[0].partition
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from tarmac.errors import ConfigError, TopicNotFoundError, UsageError, echo
from tarmac.ingest.base import records_table
from tarmac.ingest.contract import Contract
from tarmac.ingest.spec import ColumnSpec, SourceSpec, StreamSource
from tarmac.streams.log import Delivered, StreamLog, encode_json

VALUE_CHARS = 200  # a value quoted back in an error is cut to this many characters
SHOWN = 10  # problems a RecordsRefused message lists (all are in .problems)


@dataclass(frozen=True)
class RecordProblem:
    """Why one record was refused: its position in the batch (0-based), the field at fault
    (None: the record as a whole), a message, and the kind of problem: ``not_object``,
    ``missing``, ``null``, ``key_type``, ``type``, ``allowed``, ``range``, ``pattern``,
    ``unique``."""

    index: int
    field: str | None
    message: str
    kind: str

    def where(self, numbers: Sequence[int] | None = None) -> str:
        """``line N`` (``numbers``: each record's line) or ``record I``, with the field."""
        at = f"line {numbers[self.index]}" if numbers is not None else f"record {self.index}"
        return at if self.field is None else f"{at}, field '{echo(self.field)}'"


class RecordsRefused(UsageError):
    """Records that break the contract of the stream source they were produced to; nothing
    was produced. ``problems`` holds every one, by record then field."""

    def __init__(self, problems: list[RecordProblem], *, records: int, topic: str,
                 sources: Sequence[str], numbers: Sequence[int] | None = None) -> None:
        bad = len({p.index for p in problems})
        names = " and ".join(f"'{s}'" for s in sources)
        lines = [f"  {p.where(numbers)}: {p.message}" for p in problems[:SHOWN]]
        if len(problems) > SHOWN:
            lines.append(f"  ... and {len(problems) - SHOWN:,} more")
        super().__init__(
            f"{bad:,} of {records:,} record(s) break the contract of stream source {names} "
            f"(topic '{topic}'); nothing was produced:\n" + "\n".join(lines),
            hint="fix the records, or the source's columns: in tarmac.yaml")
        self.problems = problems
        self.records = records
        self.topic = topic


@dataclass(frozen=True)
class Target:
    """Where a name produces to: the topic, and the stream sources declared over it (none for
    a topic no source declares: produced to unchecked)."""

    topic: str
    sources: tuple[tuple[str, StreamSource], ...] = ()

    @property
    def declared(self) -> bool:
        return bool(self.sources)

    @property
    def source(self) -> str | None:
        """The (first) source declared over the topic."""
        return self.sources[0][0] if self.sources else None

    @property
    def key_field(self) -> str | None:
        return self.sources[0][1].key_field if self.sources else None

    @property
    def partitions(self) -> int:
        return self.sources[0][1].partitions if self.sources else 1


@dataclass(frozen=True)
class ProduceResult:
    """What one produce call appended: where each record landed, in order."""

    topic: str
    source: str | None
    delivered: list[Delivered] = field(default_factory=list)
    created: bool = False  # the topic was created by this call

    @property
    def count(self) -> int:
        return len(self.delivered)

    def spans(self) -> list[dict[str, int]]:
        """Per partition, the first and last offset written (sorted by partition)."""
        spans: dict[int, list[int]] = {}
        for d in self.delivered:
            span = spans.setdefault(d.partition, [d.offset, d.offset])
            span[0], span[1] = min(span[0], d.offset), max(span[1], d.offset)
        return [{"partition": p, "first_offset": a, "last_offset": b}
                for p, (a, b) in sorted(spans.items())]

    def to_dict(self) -> dict[str, Any]:
        return {"topic": self.topic, "source": self.source, "count": self.count,
                "created": self.created,
                "deliveries": [{"partition": d.partition, "offset": d.offset}
                               for d in self.delivered]}


def find_target(sources: Mapping[str, SourceSpec], name: str) -> Target:
    """The topic ``name`` produces to: a stream source's topic (``name`` is the source), else
    ``name`` itself; with every stream source declared over that topic. A source of another
    type, or sources over one topic that disagree on its key or partitions, are refused."""
    spec = sources.get(name)
    if spec is not None and not isinstance(spec, StreamSource):
        raise UsageError(f"source '{echo(name)}' is a {spec.type} source, not a stream: "
                         "nothing can be produced to it",
                         hint="`tarmac ingest` loads it; produce to a `type: stream` source "
                              "or a topic")
    topic = spec.topic if isinstance(spec, StreamSource) else name
    over = tuple((n, s) for n, s in sources.items()
                 if isinstance(s, StreamSource) and s.topic == topic)
    if isinstance(spec, StreamSource):  # the source named first
        over = ((name, spec), *((n, s) for n, s in over if n != name))
    for what, value in (("key", lambda s: s.key_field), ("partitions", lambda s: s.partitions)):
        seen = {value(s) for _, s in over}
        if len(seen) > 1:
            raise ConfigError(
                f"tarmac.yaml: the stream sources {', '.join(n for n, _ in over)} read topic "
                f"'{topic}' with different {what} ({', '.join(map(str, seen))})",
                hint=f"sources over one topic must agree on its {what}")
    return Target(topic, over)


def contract_for(name: str, spec: StreamSource) -> Contract:
    """The contract records produced to ``spec`` are checked against: its declared columns,
    the event-time field required as a time, drift left to the sink (a fresh object per batch:
    a contract learns the types of the chunks it checks)."""
    columns = dict(spec.columns)
    if spec.timestamp:
        declared = columns.get(spec.timestamp) or ColumnSpec()
        columns[spec.timestamp] = declared.model_copy(
            update={"type": declared.type or "timestamp", "required": True})
    return Contract(name, spec.model_copy(update={"columns": columns,
                                                  "on_schema_change": "evolve"}))


def check_records(target: Target, records: Sequence[Any]) -> list[RecordProblem]:
    """Every problem of ``records`` against the sources declared over ``target``'s topic (see
    the module docstring), by record then field; empty when all may be produced."""
    if not target.declared or not records:
        return []
    problems: list[RecordProblem] = []
    is_object = np.fromiter((type(r) is dict for r in records), dtype=bool, count=len(records))
    for i in np.flatnonzero(~is_object).tolist():
        problems.append(RecordProblem(i, None, f"a record must be a JSON object, got "
                                               f"{_json_type(records[i])}", "not_object"))
    positions = np.flatnonzero(is_object)
    objects: list[dict[str, Any]] = [records[i] for i in positions.tolist()]
    if objects:
        table = records_table(objects)
        if table.num_columns == 0:  # only empty objects: keep one row per record
            table = pa.table({"_": pa.nulls(len(objects))}).drop_columns(["_"])
        key = target.key_field
        covered: set[tuple[int, str]] = set()  # (row, field) the key check reported
        if key is not None:
            for row, problem in _key_problems(target, key, table, objects):
                problems.append(_at(problem, int(positions[row])))
                covered.add((row, key))
        for name, spec in target.sources:
            checked = contract_for(name, spec).check(table, f"produce to topic {target.topic}")
            for failure in checked.failures:
                for row in failure.rows.tolist():
                    if (row, failure.column) in covered:
                        continue
                    covered.add((row, failure.column))
                    problems.append(_contract_problem(
                        int(positions[row]), name, spec, failure.column, failure.reason,
                        failure.kind, objects[row]))
    problems.sort(key=lambda p: (p.index, p.field or ""))
    return problems


def _at(problem: RecordProblem, index: int) -> RecordProblem:
    return RecordProblem(index, problem.field, problem.message, problem.kind)


def _key_problems(target: Target, key: str, table: pa.Table, objects: list[dict[str, Any]]
                  ) -> list[tuple[int, RecordProblem]]:
    """(row, problem) for each object whose key field is missing, null, or not a scalar."""
    why = (f"topic '{target.topic}' is keyed by it (stream source '{target.source}'), so "
           "that one entity always lands in one partition")
    if key not in table.column_names:
        rows: list[int] = list(range(len(objects)))
        values = None
    else:
        values = table[key]
        rows = np.flatnonzero(np.asarray(pc.is_null(values).to_numpy(
            zero_copy_only=False), dtype=bool)).tolist()
    out = []
    for row in rows:
        state = "null" if key in objects[row] else "missing"
        out.append((row, RecordProblem(row, key, f"a message without a key: field '{key}' is "
                                                 f"{state}; {why}", state)))
    if values is not None and pa.types.is_string(values.type):  # may hold objects as text
        out += [(row, RecordProblem(row, key, f"the key field '{key}' must be a string, a "
                                              f"number or a boolean, got {_json_type(v)}",
                                    "key_type"))
                for row, o in enumerate(objects) if type(v := o.get(key)) in (dict, list)]
    return out


def _contract_problem(index: int, source: str, spec: StreamSource, column: str, reason: str,
                      kind: str, record: dict[str, Any]) -> RecordProblem:
    if kind in ("missing", "null"):
        role = ("the primary key" if column in spec.primary_key else
                "the event time" if column == spec.timestamp else
                "the cursor" if column == spec.cursor else "required")
        state = "null" if column in record else "missing"
        return RecordProblem(index, column, f"field '{column}' is {state} ({role} of stream "
                                            f"source '{source}')", state)
    if column not in record:  # a rule on a column the record does not carry
        return RecordProblem(index, column, reason, kind)
    return RecordProblem(index, column, f"{reason}, got {shown(record[column])}", kind)


def shown(value: Any) -> str:
    """A JSON value as it may be quoted in an error: compact JSON, at most ``VALUE_CHARS``."""
    try:
        text = json.dumps(value, ensure_ascii=False, separators=(",", ":"), default=str)
    except ValueError:  # a circular structure (not from JSON)
        text = repr(value)
    return echo(text, VALUE_CHARS)


def _json_type(value: Any) -> str:
    return ("an array" if isinstance(value, list) else "a string" if isinstance(value, str)
            else "null" if value is None else "a boolean" if isinstance(value, bool)
            else "a number" if isinstance(value, int | float) else "an object"
            if isinstance(value, dict) else type(value).__name__)


class Producer:
    """Produces to topics, checking records against the stream sources declared over them.

    Example::

        producer = Producer(p.streams, p.sources)
        producer.produce("clicks", [{"event_id": "e1", "user_id": 7}]).count   # 1
    """

    def __init__(self, log: StreamLog, sources: Mapping[str, SourceSpec]) -> None:
        self.log = log
        self.sources = dict(sources)
        self._targets: dict[str, Target] = {}
        self._exists: set[str] = set()  # topics seen to exist (they are never deleted)

    def target(self, name: str) -> Target:
        """Where ``name`` produces to (``find_target``), remembered."""
        found = self._targets.get(name)
        if found is None:
            found = find_target(self.sources, name)
            if len(self._targets) < 10_000:  # undeclared names come from callers: bounded
                self._targets[name] = found
        return found

    def check(self, name: str, records: Sequence[Any]) -> list[RecordProblem]:
        """The problems producing ``records`` to ``name`` would be refused for."""
        return check_records(self.target(name), records)

    def produce(self, name: str, records: Sequence[Any], *, key: str | None = None,
                numbers: Sequence[int] | None = None) -> ProduceResult:
        """Check ``records`` against the sources declared over ``name``'s topic and append
        them in one batch (``RecordsRefused`` and nothing appended if any is bad). For a topic
        no source declares: JSON values appended as they are, keyed by the field ``key`` of
        object records, the topic must exist (``TopicNotFoundError``). ``numbers``: the line
        of each record, for errors about records read from a file."""
        target = self.target(name)
        if not target.declared:
            values = [r if isinstance(r, dict) else encode_json(r) for r in records]
            return ProduceResult(target.topic, None, self.log.produce(target.topic, values,
                                                                      key=key))
        if key is not None and key != target.key_field:
            raise UsageError(f"topic '{target.topic}' is keyed by "
                             f"{repr(target.key_field) if target.key_field else 'nothing'} "
                             f"(stream source '{target.source}'), not by {key!r}",
                             hint="leave out the key: the source declares it")
        problems = check_records(target, records)
        if problems:
            raise RecordsRefused(problems, records=len(records), topic=target.topic,
                                 sources=[n for n, _ in target.sources], numbers=numbers)
        created = self._ensure(target)
        delivered = self.log.produce(target.topic, list(records), key=target.key_field)
        return ProduceResult(target.topic, target.source, delivered, created)

    def _ensure(self, target: Target) -> bool:
        """Create a declared source's topic, with its partitions, if it does not exist yet."""
        if target.topic in self._exists:
            return False
        created = False
        try:
            self.log.topic(target.topic)
        except TopicNotFoundError:
            self.log.create_topic(target.topic, target.partitions, exist_ok=True)
            created = True
        self._exists.add(target.topic)
        return created


__all__ = ["ProduceResult", "Producer", "RecordProblem", "RecordsRefused", "Target",
           "check_records", "contract_for", "find_target"]
