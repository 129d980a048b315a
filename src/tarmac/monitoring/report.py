"""One monitor's recent history as a single HTML page a person can read in a minute.

``monitor_report(p, "churn")`` reads the monitor's rows of the ``monitor_results`` lake table
(the last ``windows`` evaluated windows), its evaluated windows in the catalog and its alert
deliveries, and lays them out top-down, most urgent first:

1. the monitor, the model and version it watched, the latest window and its overall verdict,
   with one square per window coloured by that window's verdict;
2. what fails in the latest window (and, folded, what could not be decided and why);
3. drift per feature: the reference and current distributions of the latest window (from the
   sketches stored in each drift row's ``detail``) and the effect size per window against the
   threshold;
4. data quality, performance (windows whose labels are incomplete drawn as hollow rings, off
   the line, never as a drop) and service levels per window;
5. the alert deliveries.

The page is one self-contained file: inline CSS and inline SVG, no script, no font, no request,
so it opens offline, attaches to a ticket and survives being mailed. Every name and reason in it
is escaped. ``tarmac monitor report NAME -o report.html`` writes it.

Example::

    from pathlib import Path
    from tarmac.monitoring.report import monitor_report
    Path("churn.html").write_text(monitor_report(p, "churn", windows=14), encoding="utf-8")
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import pyarrow.compute as pc

from tarmac.catalog.monitors import MonitorRun, monitor_records, monitor_runs
from tarmac.errors import UsageError, echo
from tarmac.features.definitions import suggest
from tarmac.monitoring._report_data import Data
from tarmac.monitoring._report_page import OPEN_CARDS, page
from tarmac.monitoring.alerts import alert_history
from tarmac.monitoring.results import RESULTS_TABLE, read_results

if TYPE_CHECKING:
    from tarmac.project import Project

#: windows shown when the caller does not say
WINDOWS = 30
#: alert deliveries listed
ALERTS_SHOWN = 50


def monitor_report(project: Project, monitor: str, *, windows: int = WINDOWS) -> str:
    """The HTML page of ``monitor``'s last ``windows`` evaluated windows (see the module).

    Raises ``UsageError`` for a monitor that was never evaluated (naming the close names) and
    for one with no result rows yet (saying how to evaluate it).

    Example::

        html = monitor_report(p, "churn")
        Path("churn.html").write_text(html, encoding="utf-8")
    """
    if isinstance(windows, bool) or not isinstance(windows, int) or windows < 1:
        raise UsageError(f"windows must be a whole number >= 1, got {echo(windows)!r}")
    runs = monitor_runs(project.catalog, monitor, limit=windows * 2)
    # the windows are chosen here, not with read_results(since=...): files that the lake's
    # merge wrote carry no min/max statistics for timestamp and float columns, and a filter on
    # one of those columns skips such files whole (delta-rs' to_pyarrow_dataset)
    table = read_results(project, monitor)
    if table.num_rows == 0:
        raise _nothing_to_show(project, monitor, runs)
    ends = pc.unique(table.column("window_end")).sort()
    first = ends[max(len(ends) - windows, 0)]
    table = table.filter(pc.greater_equal(table.column("window_end"), first))
    data = Data.build(monitor, table.to_pylist(), runs,
                      alert_history(project, monitor, limit=ALERTS_SHOWN))
    return page(data)


# -- errors ----------------------------------------------------------------------------------


def _nothing_to_show(project: Project, monitor: str, runs: list[MonitorRun]) -> UsageError:
    known = set(monitor_records(project.catalog))
    if project.lake.exists(RESULTS_TABLE):
        names = project.lake.read(RESULTS_TABLE, columns=["monitor"]).column("monitor")
        known |= {str(n) for n in pc.unique(names).to_pylist() if n is not None}
    if runs or monitor in known:
        failed = next((r for r in runs if r.status == "failed" and r.error), None)
        why = f"; its last evaluation failed: {echo(failed.error)}" if failed else ""
        return UsageError(f"monitor '{echo(monitor)}' has no evaluated windows yet{why}",
                          hint=f"run `tarmac monitor run {echo(monitor)}` first")
    return UsageError(f"no monitor named '{echo(monitor)}' has been evaluated"
                      + suggest(monitor, known, none=" (no monitor has been evaluated yet)"),
                      hint="declare it with monitor(...) in definitions.py, then run "
                           f"`tarmac monitor run {echo(monitor)}`")


__all__ = ["ALERTS_SHOWN", "OPEN_CARDS", "WINDOWS", "monitor_report"]
