"""Trials on a Ray cluster of Docker hosts (`sandbox run ... --cluster ADDRESS`).

Each trial is one Ray task, scheduled on a node that advertises the `docker` custom
resource, where it runs exactly as it does locally (`sandbox.trial.run.run_trial`: the
executor's unix socket and the stub world stay on that node). The finished log's bytes
come back to the driver and are written under the driver's run directory at the same
path, so `seal_run` seals the run there and report, gate, view and replay work unchanged.

Only this package imports Ray (an .importlinter contract), and only `sandbox.cluster.ray_exec`
does so at import time; the local path never loads it. Pieces:

- `policy`: what a trial asks of a node (resources), the retry policy, provider limits,
  cluster addresses (no Ray);
- `remote`: the worker side of one trial (no Ray: it is handed callables);
- `reaper`: the per-trial dead man's switch that removes that trial's containers on
  its node when the worker running it dies;
- `ray_exec`: the driver (`run_suite_on_ray`) and the run's control actor.
"""
