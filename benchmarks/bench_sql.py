"""SQL over the lake: p.sql vs DuckDB reading the same Parquet files directly.

Queries over an N-row, 12-column lake table (median of --repeat runs after one warm-up each,
tarmac and DuckDB runs interleaved):
  aggregate   GROUP BY a low-cardinality string column with sum/avg/count (full scan)
  filter id   SELECT * WHERE id BETWEEN ... (~1% of rows; ids are sorted in the files, so
              row groups are skipped by their min/max statistics: pushdown)
  filter user SELECT * WHERE user_id < ... (~1% of rows, but spread over every row group:
              nothing can be skipped; the contrast shows what pushdown buys)

    python benchmarks/bench_sql.py [--rows N] [--quick] [--json]
"""

from __future__ import annotations

import math
import sys
from pathlib import Path

import duckdb
import pyarrow as pa

sys.path.insert(0, str(Path(__file__).resolve().parent))
import _common as c  # noqa: E402

TABLE = "events"


def main() -> None:
    ap = c.parser(__doc__.splitlines()[0], default_rows=10_000_000, quick_rows=1_000_000)
    ap.add_argument("--repeat", type=int, default=5, help="timed runs per query (median)")
    args = ap.parse_args()
    n = c.rows_for(args)
    res = c.Result("sql", rows=n, repeat=args.repeat, **c.env_info())

    from deltalake import DeltaTable

    import tarmac

    lo = n // 2
    hi = lo + n // 100 - 1
    queries = {
        "aggregate": ("SELECT region, sum(price) AS revenue, avg(qty) AS avg_qty, "
                      "count(*) AS n FROM {src} GROUP BY region ORDER BY region"),
        "filter id (1%, prunable)": f"SELECT * FROM {{src}} WHERE id BETWEEN {lo} AND {hi}",
        "filter user_id (1%, not prunable)": "SELECT * FROM {src} WHERE user_id < 10000",
    }
    with c.workdir("sql") as work:
        p = tarmac.open(c.make_project(work / "proj"))
        c.log(f"writing {n:,} rows to the lake")
        reader = pa.RecordBatchReader.from_batches(c.SCHEMA, c.gen_batches(n))
        write_s, _ = c.timed(lambda: p.lake.write(TABLE, reader))
        files = DeltaTable(p.lake.uri(TABLE)).file_uris()
        res.figure("table written", n, "rows", f"{write_s:.1f} s, {len(files)} Parquet files")
        listing = ", ".join("'" + f.replace("'", "''") + "'" for f in files)
        direct_src = f"read_parquet([{listing}])"

        for label, template in queries.items():
            c.log(label)
            t_sql = template.format(src=TABLE)
            d_sql = template.format(src=direct_src)

            def run_tarmac(q: str = t_sql) -> pa.Table:
                return p.sql(q)

            def run_duck(q: str = d_sql) -> pa.Table:
                return duckdb.sql(q).to_arrow_table()

            a, b = run_tarmac(), run_duck()  # warm-up, and the results must agree
            same = agree(a, b)
            t_times, d_times = [], []
            for _ in range(args.repeat):
                t_times.append(c.timed(run_tarmac)[0])
                d_times.append(c.timed(run_duck)[0])
            tm, dm = c.median(t_times), c.median(d_times)
            ratio = dm / tm
            res.figure(f"{label}: p.sql", tm * 1000, "ms",
                       f"{a.num_rows:,} rows out" + ("" if same else "; RESULTS DIFFER"))
            res.figure(f"{label}: duckdb direct", dm * 1000, "ms")
            res.figure(f"{label}: ratio duckdb/tarmac", ratio, "x",
                       f"tarmac overhead {(tm - dm) * 1000:+.1f} ms")
            res.goal(f"{label}: duckdb/tarmac", ratio, "x", ">= 0.8", ratio >= 0.8 and same)
        p.close()
    res.emit(args.json)


def agree(a: pa.Table, b: pa.Table) -> bool:
    """Same rows; floats equal up to summation order (relative 1e-9)."""
    if a.num_rows != b.num_rows or a.column_names != b.column_names:
        return False
    key = a.column_names[0]
    for x, y in zip(a.sort_by(key).to_pylist(), b.sort_by(key).to_pylist(), strict=True):
        for k in x:
            u, v = x[k], y[k]
            if isinstance(u, float) and isinstance(v, float):
                if not math.isclose(u, v, rel_tol=1e-9, abs_tol=1e-9):
                    return False
            elif u != v:
                return False
    return True


if __name__ == "__main__":
    main()
