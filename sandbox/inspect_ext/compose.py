"""Compose files (and Dockerfiles) for the hardened provider: parsed, checked, planned.

An Inspect task written for Docker names a compose file; we run it on hardened containers.
The default service (the one named `default`, else the one marked `x-default: true`, else
the first) is the sandbox the task's tools use; every other service becomes another
hardened container on the sample's internal network, reached by its service name.

Every key of the file is in exactly one of three tables: honoured (it changes what runs),
inert (it changes nothing a hardened container could differ in), or refused. A refused or
unknown key stops the task with one line naming the key and the service: nothing is ever
dropped silently. The one loosening a compose file may ask for is `x-sandbox: {writable:
[paths]}` (per service), written to the log like every other loosening.
"""

from __future__ import annotations

import math
import re
import shlex
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml
from pydantic import BaseModel, ValidationError

from sandbox.backends.base import Loosenings, SandboxSpec
from sandbox.errors import ScenarioError

COMPOSE_NAMES = ("compose.yaml", "compose.yml", "docker-compose.yaml", "docker-compose.yml")
ROOT_USERS = frozenset({"root", "0"})
SANDBOX_KEY = "x-sandbox"
LOOSEN_HINT = "x-sandbox: {writable: [PATH]}"
HEALTH_POLL_S = 0.5

# Keys a service may have that change what runs (see `_plan_service`).
HONOURED = frozenset(
    {
        "image",
        "build",
        "command",
        "entrypoint",
        "user",
        "working_dir",
        "environment",
        "network_mode",
        "networks",
        "hostname",
        "depends_on",
        "healthcheck",
        "mem_limit",
        "cpus",
        "pids_limit",
        "deploy",
        "read_only",
        "cap_drop",
        "tmpfs",
        "x-default",
        SANDBOX_KEY,
    }
)
# Keys with no effect a hardened container could show (ports reachable on the internal
# network anyway, no TTY, always an init, never a pull, ...).
INERT = frozenset(
    {
        "expose",
        "init",
        "stdin_open",
        "tty",
        "labels",
        "stop_grace_period",
        "stop_signal",
        "mem_reservation",
        "pull_policy",
        "x-local",
    }
)
# Why a key cannot be honoured (keys not listed here nor above are refused as unknown).
REFUSED: Mapping[str, str] = {
    "privileged": "sandboxes are never privileged",
    "cap_add": "commands run with no capabilities",
    "devices": "sandboxes get no devices",
    "device_cgroup_rules": "sandboxes get no devices",
    "ports": "nothing is published to the host",
    "volumes": f"no host paths or shared volumes (a writable directory: {LOOSEN_HINT})",
    "volumes_from": "no shared volumes",
    "security_opt": "the seccomp profile and no-new-privileges are fixed",
    "runtime": "the runtime is chosen by the sandbox (runsc when installed)",
    "pid": "no shared pid namespace",
    "ipc": "no shared IPC namespace",
    "uts": "no host namespaces",
    "userns_mode": "no host namespaces",
    "cgroup": "no host cgroup namespace",
    "cgroup_parent": "no host cgroups",
    "sysctls": "no sysctls",
    "ulimits": "limits are fixed by the sandbox",
    "shm_size": "/dev/shm is fixed at 64 MiB",
    "memswap_limit": "no swap on top of memory",
    "extra_hosts": "names resolve to the sample's own services only",
    "dns": "names resolve to the sample's own services only",
    "dns_search": "names resolve to the sample's own services only",
    "links": "services reach each other by service name",
    "external_links": "no containers outside the sample",
    "container_name": "container names carry the sample's ids",
    "secrets": "no host files",
    "configs": "no host files",
    "env_file": "no host files (put the variables under `environment`)",
    "platform": "images run on the host's platform",
    "restart": "a service that stops stays stopped",
    "profiles": "every service of the file runs",
    "logging": "container logs are fixed",
    "extends": "write the service out in full",
    "gpus": "sandboxes get no devices",
}
TOP_LEVEL = frozenset({"services", "networks", "name", "version"})
TOP_REFUSED: Mapping[str, str] = {
    "volumes": f"no shared volumes (a writable directory: {LOOSEN_HINT})",
    "secrets": "no host files",
    "configs": "no host files",
}


class ComposeRefused(ScenarioError):
    """A compose file asks for something the hardened sandbox cannot honour."""


Bad = Callable[[str], ComposeRefused]  # makes the one-line error for one key


@dataclass(frozen=True)
class Build:
    """How to build a service's image locally (never pulling anything)."""

    context: Path
    dockerfile: str = "Dockerfile"
    args: Mapping[str, str] = field(default_factory=dict)
    target: str | None = None


@dataclass(frozen=True)
class Healthcheck:
    """A service is ready when `test` (argv) exits 0; tried `retries` times."""

    test: tuple[str, ...]
    interval_s: float = 1.0
    retries: int = 30


@dataclass(frozen=True)
class ServicePlan:
    """One service as a hardened container."""

    name: str
    spec: SandboxSpec
    build: Build | None = None
    # What the file says the service runs (None: the image's own); started as the service's
    # user once the sandbox is up, since the container's own command is our executor.
    entrypoint: tuple[str, ...] | None = None
    command: tuple[str, ...] | None = None
    healthcheck: Healthcheck | None = None
    networked: bool = True  # False: network_mode none (on no network at all)
    aliases: tuple[str, ...] = ()
    inert: tuple[str, ...] = ()  # inert keys present, for the log
    default: bool = False  # the service the task's tools use
    depends_on: tuple[str, ...] = ()  # started (and healthy) before this one


@dataclass(frozen=True)
class ComposePlan:
    """Every service of a file, the default first."""

    source: str
    services: tuple[ServicePlan, ...]
    notes: tuple[str, ...] = ()  # what the log should say (egress cut, inert keys)

    @property
    def default(self) -> ServicePlan:
        return self.services[0]

    def start_order(self) -> list[ServicePlan]:
        """Dependencies first (`depends_on`), the default service as late as it may be."""
        by_name = {s.name: s for s in self.services}
        order: list[ServicePlan] = []
        seen: set[str] = set()

        def visit(plan: ServicePlan) -> None:
            if plan.name in seen:
                return
            seen.add(plan.name)
            for name in plan.depends_on:
                if name in by_name:
                    visit(by_name[name])
            order.append(plan)

        for plan in (*self.services[1:], self.default):
            visit(plan)
        return order

    @property
    def needs_network(self) -> bool:
        return len(self.services) > 1 and sum(s.networked for s in self.services) > 1


def service_argv(
    plan: ServicePlan, image_entrypoint: list[str] | None, image_cmd: list[str] | None
) -> list[str] | None:
    """What a service runs, as compose would (entrypoint + command, either from the image).

    The default service runs only what the file names, and not a keep-alive (`sleep
    infinity`, `tail -f /dev/null`): our executor keeps its container up.
    """
    if plan.entrypoint is not None:  # compose: a new entrypoint drops the image's command
        argv = [*plan.entrypoint, *(plan.command or ())]
    elif plan.command is not None:
        argv = [*(image_entrypoint or []), *plan.command]
    elif plan.default:
        return None
    else:
        argv = [*(image_entrypoint or []), *(image_cmd or [])]
    if not argv or (plan.default and _keep_alive(argv)):
        return None
    return argv


def _keep_alive(argv: list[str]) -> bool:
    text = " ".join(argv[2:] if argv[:2] in (["/bin/sh", "-c"], ["sh", "-c"]) else argv)
    return bool(re.fullmatch(r"(sleep (infinity|\d+)|tail -f /dev/null)", text.strip()))


def is_compose_path(path: str | Path) -> bool:
    """Whether a config path names a compose file (Inspect's names and `*-compose.yaml`)."""
    name = Path(path).name
    return name in COMPOSE_NAMES or bool(re.search(r"[-.]compose\.ya?ml$", name))


def is_dockerfile_path(path: str | Path) -> bool:
    """Whether a config path names a Dockerfile (`Dockerfile`, `x.Dockerfile`, `Dockerfile.x`)."""
    p = Path(path)
    return p.stem == "Dockerfile" or p.suffix == ".Dockerfile" or p.name == "Dockerfile"


def _refuse(source: str, service: str | None, key: str, why: str) -> ComposeRefused:
    where = f"service {service!r}: " if service else ""
    return ComposeRefused(
        f"{where}`{key}` cannot be honoured on the hardened sandbox: {why}", file=source
    )


def load_compose(path: str | Path, *, base: SandboxSpec | None = None) -> ComposePlan:
    """Read and plan a compose file (relative build contexts are relative to it)."""
    source = Path(path)
    try:
        data: Any = yaml.safe_load(source.read_text(encoding="utf-8"))
    except OSError as exc:
        raise ScenarioError(f"cannot read compose file: {exc}", file=source) from exc
    except yaml.YAMLError as exc:
        raise ScenarioError(f"not valid YAML: {exc}", file=source) from exc
    return plan_compose(data, base_dir=source.resolve().parent, source=str(source), base=base)


def dockerfile_plan(path: str | Path, *, base: SandboxSpec | None = None) -> ComposePlan:
    """A Dockerfile as a one-service compose file (`build:` of it, context its directory)."""
    p = Path(path).resolve()
    data = {"services": {"default": {"build": {"context": ".", "dockerfile": p.name}}}}
    return plan_compose(data, base_dir=p.parent, source=str(path), base=base)


def plan_from_model(
    config: BaseModel, *, base_dir: Path, base: SandboxSpec | None = None
) -> ComposePlan:
    """An Inspect `ComposeConfig` (already parsed by Inspect) -> plan."""
    data = config.model_dump(mode="json", by_alias=True, exclude_none=True)
    return plan_compose(data, base_dir=base_dir, source="<ComposeConfig>", base=base)


def plan_compose(
    data: Any, *, base_dir: Path, source: str, base: SandboxSpec | None = None
) -> ComposePlan:
    """Check every key of a parsed compose file and plan its services (default first)."""
    base = base or SandboxSpec()
    if not isinstance(data, dict) or not isinstance(data.get("services"), dict):
        raise ScenarioError("a compose file needs a `services` mapping", file=source)
    for key in data:
        if key in TOP_LEVEL or str(key).startswith("x-"):
            continue
        why = TOP_REFUSED.get(key, "not a key the hardened provider knows")
        raise _refuse(source, None, str(key), why)
    notes = _check_networks(data.get("networks"), source)
    services: dict[str, Any] = data["services"]
    if not services:
        raise ScenarioError("`services` is empty", file=source)
    default = _default_service(services, source)
    order = [default, *(name for name in services if name != default)]
    plans = tuple(
        _plan_service(str(name), services[name] or {}, base_dir, source, base, name == default)
        for name in order
    )
    names = {p.name for p in plans}
    for plan in plans:
        unknown = sorted(set(plan.depends_on) - names)
        if unknown:
            raise ScenarioError(
                f"service {plan.name!r}: depends_on names no service: {unknown}", file=source
            )
        if plan.inert:
            notes.append(f"service {plan.name!r}: no effect here: {', '.join(plan.inert)}")
    if len(plans) > 1:
        notes.append("the services share one internal network of the sample: no egress")
    return ComposePlan(source=source, services=plans, notes=tuple(notes))


def _check_networks(networks: Any, source: str) -> list[str]:
    if networks is None:
        return []
    if not isinstance(networks, dict):
        raise ScenarioError("`networks` must be a mapping", file=source, field="networks")
    if len(networks) > 1:
        raise _refuse(
            source,
            None,
            "networks",
            f"{len(networks)} networks ({', '.join(map(str, networks))}); every service of a "
            "sample shares one internal network",
        )
    notes = []
    for name, spec in networks.items():
        spec = spec or {}
        if spec.get("external"):
            raise _refuse(
                source, None, f"networks.{name}.external", "no networks outside the sample"
            )
        for key in spec:
            if key not in ("driver", "internal", "name", "labels", "attachable"):
                raise _refuse(
                    source, None, f"networks.{name}.{key}", "the sample's network is fixed"
                )
        if not spec.get("internal"):
            notes.append(f"network {name!r} becomes internal: no route out of the host")
    return notes


def _default_service(services: Mapping[str, Any], source: str) -> str:
    if "default" in services:
        return "default"
    marked = [n for n, s in services.items() if isinstance(s, dict) and s.get("x-default")]
    if len(marked) > 1:
        raise ScenarioError(f"more than one service is `x-default`: {marked}", file=source)
    return str(marked[0] if marked else next(iter(services)))


def _plan_service(
    name: str, svc: Any, base_dir: Path, source: str, base: SandboxSpec, default: bool
) -> ServicePlan:
    if not isinstance(svc, dict):
        raise ScenarioError(f"service {name!r} must be a mapping", file=source)
    for key in svc:
        if key in HONOURED or key in INERT:
            continue
        raise _refuse(
            source, name, str(key), REFUSED.get(key, "not a key the hardened provider knows")
        )
    fields: dict[str, Any] = {}
    loosen: dict[str, Any] = dict(base.loosen.model_dump())

    def bad(key: str, why: str) -> ComposeRefused:
        return _refuse(source, name, key, why)

    if svc.get("privileged") or svc.get("read_only") is False:
        raise bad(
            "read_only", f"the root file system is read-only (a writable directory: {LOOSEN_HINT})"
        )
    for cap in svc.get("cap_drop") or []:
        if not isinstance(cap, str):
            raise bad("cap_drop", "capability names are strings")
    user = svc.get("user")
    if user is not None:
        user = str(user)
        if user.split(":")[0] in ROOT_USERS and not base.loosen.allow_root_exec:
            raise bad(
                "user", "commands run as a non-root user (root needs the allow_root_exec loosening)"
            )
        fields["user"] = user
    if "working_dir" in svc:
        workdir = str(svc["working_dir"])
        if not workdir.startswith("/"):
            raise bad("working_dir", "must be an absolute path")
        fields["workdir"] = workdir
    fields["env"] = {
        **base.env,
        **_environment(svc.get("environment"), lambda w: bad("environment", w)),
    }
    networked = True
    mode = svc.get("network_mode")
    if mode is not None:
        if mode != "none":
            raise bad(
                "network_mode",
                f"{mode!r}: only 'none' (a service with no network at all); "
                "the others share the sample's internal network",
            )
        networked = False
        if "networks" in svc:
            raise bad("networks", "a service with network_mode none is on no network")
    if "mem_limit" in svc:
        fields["memory_mb"] = _megabytes(svc["mem_limit"], lambda w: bad("mem_limit", w))
    if "cpus" in svc:
        fields["cpus"] = _positive(svc["cpus"], lambda w: bad("cpus", w))
    if "pids_limit" in svc:
        pids = svc["pids_limit"]
        if not isinstance(pids, int) or pids <= 0:
            raise bad("pids_limit", "must be a positive number (no unlimited)")
        fields["pids_limit"] = pids
    _deploy(svc.get("deploy"), fields, bad)
    writable = list(loosen.get("writable_paths") or ())
    writable += _writable(svc.get(SANDBOX_KEY), lambda w: bad(SANDBOX_KEY, w))
    tmpfs = svc.get("tmpfs")
    if tmpfs is not None:
        writable += [str(t).split(":")[0] for t in ([tmpfs] if isinstance(tmpfs, str) else tmpfs)]
    loosen["writable_paths"] = tuple(dict.fromkeys(writable))
    build = _build(svc.get("build"), base_dir, lambda w: bad("build", w))
    image = svc.get("image")
    if image is None and build is None:
        raise bad("image", "a service needs `image` or `build`")
    fields["image"] = (
        str(image) if image is not None else f"sandbox-compose-{_slug(source)}-{_slug(name)}:latest"
    )
    try:
        spec = base.model_copy(update={**fields, "loosen": Loosenings.model_validate(loosen)})
        spec = SandboxSpec.model_validate(spec.model_dump())
    except ValidationError as exc:
        first = exc.errors()[0]
        raise ScenarioError(first["msg"], file=source, field=f"services.{name}") from exc
    hostname = svc.get("hostname")
    aliases = tuple(dict.fromkeys([name, *([str(hostname)] if hostname else [])]))
    return ServicePlan(
        name=name,
        spec=spec,
        build=build,
        entrypoint=None
        if svc.get("entrypoint") is None
        else _argv(svc["entrypoint"], lambda w: bad("entrypoint", w)),
        command=None
        if svc.get("command") is None
        else _argv(svc["command"], lambda w: bad("command", w)),
        healthcheck=_healthcheck(svc.get("healthcheck"), lambda w: bad("healthcheck", w)),
        networked=networked,
        aliases=aliases,
        inert=tuple(sorted(k for k in svc if k in INERT)),
        default=default,
        depends_on=tuple(str(d) for d in (svc.get("depends_on") or ())),
    )


def _slug(text: str) -> str:
    return re.sub(r"[^a-z0-9_.-]+", "-", text.lower()).strip("-.")[:40] or "x"


def _environment(value: Any, bad: Bad) -> dict[str, str]:
    if value is None:
        return {}
    items: list[tuple[Any, Any]]
    if isinstance(value, dict):
        items = list(value.items())
    elif isinstance(value, list):
        items = [
            (str(e).partition("=")[0], str(e).partition("=")[2] if "=" in str(e) else None)
            for e in value
        ]
    else:
        raise bad("a mapping or a list of NAME=VALUE")
    env: dict[str, str] = {}
    for key, val in items:
        if val is None:  # `- NAME` / `NAME:` takes the host's value in compose: not here
            raise bad(f"{key!s} has no value (the host's environment is not passed in)")
        env[str(key)] = "true" if val is True else "false" if val is False else str(val)
    return env


_SIZE = re.compile(r"^(\d+(?:\.\d+)?)\s*([bkmg]?)b?$", re.IGNORECASE)


def _megabytes(value: Any, bad: Bad) -> int:
    if isinstance(value, int):
        return max(1, value // (1024 * 1024))
    match = _SIZE.match(str(value).strip())
    if not match:
        raise bad(f"{value!r} is not a size like 512m or 2g")
    number, unit = float(match.group(1)), match.group(2).lower()
    scale = {"": 1 / (1024 * 1024), "b": 1 / (1024 * 1024), "k": 1 / 1024, "m": 1, "g": 1024}[unit]
    return max(1, int(number * scale))


def _positive(value: Any, bad: Bad) -> float:
    try:
        number = float(value)
    except (TypeError, ValueError):
        raise bad(f"{value!r} is not a number") from None
    if number <= 0:
        raise bad("must be positive")
    return number


def _deploy(deploy: Any, fields: dict[str, Any], bad: Callable[[str, str], ComposeRefused]) -> None:
    if deploy is None:
        return
    if not isinstance(deploy, dict) or set(deploy) - {"resources"}:
        raise bad("deploy", "only deploy.resources.limits (memory, cpus) is honoured")
    resources = deploy.get("resources") or {}
    if set(resources) - {"limits", "reservations"}:
        raise bad("deploy.resources", "only limits and reservations")
    reservations = resources.get("reservations") or {}
    if reservations.get("devices"):
        raise bad("deploy.resources.reservations.devices", "sandboxes get no devices")
    limits = resources.get("limits") or {}
    if set(limits) - {"memory", "cpus", "pids"}:
        raise bad("deploy.resources.limits", "only memory, cpus and pids")
    if "memory" in limits:
        fields["memory_mb"] = _megabytes(
            limits["memory"], lambda w: bad("deploy.resources.limits.memory", w)
        )
    if "cpus" in limits:
        fields["cpus"] = _positive(limits["cpus"], lambda w: bad("deploy.resources.limits.cpus", w))
    if "pids" in limits:
        fields["pids_limit"] = int(
            _positive(limits["pids"], lambda w: bad("deploy.resources.limits.pids", w))
        )


def _writable(value: Any, bad: Bad) -> list[str]:
    if value is None:
        return []
    if not isinstance(value, dict) or set(value) - {"writable"}:
        raise bad("only `writable: [absolute paths]`")
    paths = value.get("writable") or []
    if not isinstance(paths, list) or not all(
        isinstance(p, str) and p.startswith("/") for p in paths
    ):
        raise bad("writable must be a list of absolute paths")
    return list(paths)


def _build(value: Any, base_dir: Path, bad: Bad) -> Build | None:
    if value is None:
        return None
    if isinstance(value, str):
        value = {"context": value}
    if not isinstance(value, dict):
        raise bad("a path or a mapping")
    unknown = set(value) - {"context", "dockerfile", "args", "target", "x-local"}
    if unknown:
        raise bad(f"build.{sorted(unknown)[0]} is not honoured (context, dockerfile, args, target)")
    context = (base_dir / str(value.get("context", "."))).resolve()
    if not context.is_dir():
        raise bad(f"build context {context} is not a directory")
    args = value.get("args") or {}
    if isinstance(args, list):
        args = dict(str(a).partition("=")[::2] for a in args)
    return Build(
        context=context,
        dockerfile=str(value.get("dockerfile", "Dockerfile")),
        args={str(k): str(v) for k, v in args.items()},
        target=str(value["target"]) if value.get("target") else None,
    )


def _argv(value: Any, bad: Bad) -> tuple[str, ...]:
    """Compose splits a string the way a shell would (no shell runs it)."""
    if isinstance(value, str):
        return tuple(shlex.split(value))
    if isinstance(value, list):
        return tuple(str(v) for v in value)
    raise bad("a string or a list")


def _healthcheck(value: Any, bad: Bad) -> Healthcheck | None:
    if value is None or value.get("disable"):
        return None
    test = value.get("test")
    if isinstance(test, str):
        argv = ["/bin/sh", "-c", test]
    elif isinstance(test, list) and test and test[0] in ("CMD", "CMD-SHELL"):
        argv = (
            [str(t) for t in test[1:]]
            if test[0] == "CMD"
            else ["/bin/sh", "-c", " ".join(map(str, test[1:]))]
        )
    elif isinstance(test, list) and test == ["NONE"]:
        return None
    else:
        raise bad("test must be a string or [CMD, ...] / [CMD-SHELL, ...]")
    interval = _seconds(value.get("interval", "1s"), bad)
    retries = int(value.get("retries", 30))
    # Polled more often than the file says (start-up is on the sample's clock), for as long
    # in total as the file allows.
    poll = min(interval, HEALTH_POLL_S) or HEALTH_POLL_S
    total = max(interval, poll) * max(retries, 1)
    return Healthcheck(test=tuple(argv), interval_s=poll, retries=max(1, math.ceil(total / poll)))


def _seconds(value: Any, bad: Bad) -> float:
    if isinstance(value, int | float):
        return float(value)
    total, text = 0.0, str(value).strip()
    for number, unit in re.findall(r"(\d+(?:\.\d+)?)(ms|us|s|m|h)", text):
        total += float(number) * {"us": 1e-6, "ms": 1e-3, "s": 1, "m": 60, "h": 3600}[unit]
    if not total and text not in ("0", "0s"):
        raise bad(f"{value!r} is not a duration like 5s")
    return total


__all__ = [
    "COMPOSE_NAMES",
    "Build",
    "ComposePlan",
    "ComposeRefused",
    "Healthcheck",
    "ServicePlan",
    "dockerfile_plan",
    "is_compose_path",
    "is_dockerfile_path",
    "load_compose",
    "plan_compose",
    "plan_from_model",
    "service_argv",
]
