"""Evidence for people: statistics, the CI gate's outputs, and the log viewer.

Everything here reads audit logs only (see sandbox/audit/records.py).

* `stats.summarize_run(run_dir) -> RunResults` (results.json, versioned) and `stats.wilson`;
* `summary.print_summary` (terminal), `markdown.gate_markdown`, `junit.junit_xml`;
* `policy.load_policy` (gate policies; `default_policy.yaml` is an example);
  the judgement itself is `sandbox.gate.evaluate`;
* `viewer.render_view` (one self-contained HTML page), `tui.print_timeline`.
"""

from sandbox.report.policy import Policy, load_policy
from sandbox.report.results import RESULTS_SCHEMA_VERSION, RunResults, TrialResult
from sandbox.report.stats import summarize_run, wilson
from sandbox.report.viewer import render_view

__all__ = [
    "RESULTS_SCHEMA_VERSION",
    "Policy",
    "RunResults",
    "TrialResult",
    "load_policy",
    "render_view",
    "summarize_run",
    "wilson",
]
