"""The simulated outside world: stub services in their own container, and their event feed.

- `sandbox.stubs.world`: start one trial's world (a hardened stubs container owning
  a loopback-only network namespace the sandbox joins), poll its events, read its final
  state, remove it.
- `sandbox.stubs.pool`: pre-started worlds for fast trial start-up.
- `sandbox.stubs.feed`: the host-side reader of the stubs' event journal (untrusted input).
- `sandbox.stubs.service`: the stdlib-only services that run inside the stubs container.
- API.md: every service's host names, endpoints and credentials.
"""
