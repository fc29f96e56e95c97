"""Evidence for people: statistics, the terminal summary and the log viewer.

Everything here reads audit logs only (see sandbox/audit/records.py). Modules:
`stats.summarize_run(run_dir) -> RunResults` (results.json, versioned) and `stats.wilson`;
`summary.print_summary` (terminal); `viewer.render_view` (one self-contained HTML page);
`tui.print_timeline`. The release gate and its outputs (policy, JUnit, Markdown) live in
`sandbox.gate`, which reads these results; nothing here imports the gate.
"""
