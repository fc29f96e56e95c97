"""A sample's services: images built locally, containers started, the internal network.

Images named by `build:` are built on the local engine (`pull=False`: a Dockerfile FROM
an image must find it locally); an `image:` without `build:` must already exist here.
Nothing is ever pulled. Each service is a hardened container of its own (the backend's
full profile); with more than one networked service they share a Docker network created
for the sample with `internal=True` (no route out of the host), where each is reachable
by its service name (and `hostname`). A service's own command runs as its user once its
executor answers, detached, its output in /tmp/.service.log; a healthcheck is then
retried until it passes.
"""

from __future__ import annotations

import time
import uuid
from collections.abc import Mapping
from contextlib import ExitStack
from dataclasses import dataclass, field
from typing import Any

import docker
import docker.errors

from sandbox.backends.base import AttachedNetwork, SandboxSpec
from sandbox.backends.docker.backend import DockerBackend
from sandbox.backends.docker.profile import labels_for
from sandbox.errors import ImageMissing, InfrastructureError
from sandbox.inspect_ext.compose import ComposePlan, ServicePlan, service_argv
from sandbox.inspect_ext.users import MultiUserSession
from sandbox.logs import get_logger

log = get_logger(__name__)

SERVICE_LOG = "/tmp/.service.log"
ROLE = "compose"


def build_images(plan: ComposePlan, client: docker.DockerClient) -> list[str]:
    """Build every `build:` image of the plan locally; check the others exist. Returns tags."""
    built: list[str] = []
    for service in plan.services:
        image = service.spec.image
        if service.build is None:
            try:
                client.images.get(image)
            except docker.errors.ImageNotFound:
                raise ImageMissing(
                    f"{plan.source}: service {service.name!r}: image {image!r} is not on this "
                    "Docker engine and has no `build:`; nothing is pulled: build or tag it "
                    "locally first"
                ) from None
            continue
        b = service.build
        try:
            client.images.build(
                path=str(b.context),
                dockerfile=b.dockerfile,
                tag=image,
                buildargs=dict(b.args) or None,
                target=b.target,
                pull=False,
                rm=True,
                forcerm=True,
                labels={"sandbox.managed": "true"},
            )
        except docker.errors.BuildError as exc:
            tail = " ".join(str(c.get("stream", c.get("error", ""))).strip() for c in exc.build_log)
            raise InfrastructureError(
                f"{plan.source}: service {service.name!r}: building {image!r} failed "
                f"(no registry is reachable; FROM must name a local image): {tail[-400:]}"
            ) from exc
        except docker.errors.APIError as exc:
            raise InfrastructureError(
                f"{plan.source}: service {service.name!r}: building {image!r} failed: {exc}"
            ) from exc
        log.info("inspect.image_built", service=service.name, image=image)
        built.append(image)
    return built


def _image_config(client: docker.DockerClient, image: str) -> Mapping[str, Any]:
    try:
        return client.images.get(image).attrs.get("Config") or {}
    except docker.errors.ImageNotFound:
        raise ImageMissing(
            f"image {image!r} is not on this Docker engine (nothing is pulled)"
        ) from None


def _effective_spec(plan: ServicePlan, config: Mapping[str, Any], base: SandboxSpec) -> SandboxSpec:
    """The image's own USER (when not root) and WORKDIR apply unless the file set them."""
    update: dict[str, Any] = {}
    image_user = str(config.get("User") or "")
    if plan.spec.user == base.user and image_user and image_user.split(":")[0] not in ("root", "0"):
        update["user"] = image_user
    image_dir = str(config.get("WorkingDir") or "")
    if plan.spec.workdir == base.workdir and image_dir not in ("", "/"):
        update["workdir"] = image_dir
    return plan.spec.model_copy(update=update) if update else plan.spec


@dataclass
class SampleServices:
    """Every running service of one sample (default first) and the network they share."""

    sessions: dict[str, MultiUserSession] = field(default_factory=dict)
    specs: dict[str, SandboxSpec] = field(default_factory=dict)
    network: str | None = None
    _stack: ExitStack = field(default_factory=ExitStack)

    def close(self) -> None:
        """Remove every container, then the network (idempotent)."""
        self._stack.close()


def start_services(
    plan: ComposePlan, backend: DockerBackend, *, run_id: str, trial_id: str
) -> SampleServices:
    """Start the plan's services (the others first, so the default finds them up)."""
    client = backend.client
    services = SampleServices()
    base = SandboxSpec()
    with ExitStack() as undo:
        undo.callback(services.close)
        if plan.needs_network:
            name = f"sandbox-{trial_id[:40]}-{uuid.uuid4().hex[:6]}"
            net = client.networks.create(
                name,
                driver="bridge",
                internal=True,
                labels=labels_for(run_id, trial_id, role="network"),
            )
            services.network = net.name
            services._stack.callback(_remove_network, client, net.id)
        for service in plan.start_order():
            config = _image_config(client, service.spec.image)
            spec = _effective_spec(service, config, base)
            attach = None
            if services.network is not None and service.networked:
                attach = AttachedNetwork(name=services.network, aliases=service.aliases)
            session = backend.start(
                spec, run_id=run_id, trial_id=f"{trial_id}-{service.name}", network=attach
            )
            multi = MultiUserSession(session, client)
            services._stack.callback(session.close)
            services.sessions[service.name] = multi
            services.specs[service.name] = spec
            argv = service_argv(service, config.get("Entrypoint"), config.get("Cmd"))
            if argv is not None:
                _run_detached(multi, service.name, argv)
            if service.healthcheck is not None:
                _wait_healthy(multi, service)
        # the default first: Inspect takes the first environment as the default
        ordered = {plan.default.name: services.sessions[plan.default.name]}
        ordered.update((k, v) for k, v in services.sessions.items() if k != plan.default.name)
        services.sessions = ordered
        undo.pop_all()
    return services


def _run_detached(session: MultiUserSession, name: str, argv: list[str]) -> None:
    script = f'"$@" >{SERVICE_LOG} 2>&1 </dev/null &'
    result = session.exec(["/bin/sh", "-c", script, "sh", *argv], timeout=30)
    if not result.ok:
        raise InfrastructureError(
            f"service {name!r}: its command could not start: "
            f"{result.stderr.decode('utf-8', 'replace')[-300:]}"
        )
    log.info("inspect.service_started", service=name, argv=argv)


def _wait_healthy(session: MultiUserSession, service: ServicePlan) -> None:
    check = service.healthcheck
    assert check is not None
    for _ in range(check.retries):
        result = session.exec(list(check.test), timeout=30)
        if result.ok:
            return
        time.sleep(check.interval_s)
    tail = session.exec(["tail", "-c", "600", SERVICE_LOG], timeout=10).stdout
    raise InfrastructureError(
        f"service {service.name!r} did not become healthy after {check.retries} checks; "
        f"its log ends: {tail.decode('utf-8', 'replace')!r}"
    )


def _remove_network(client: docker.DockerClient, network_id: str) -> None:
    try:
        client.networks.get(network_id).remove()
    except docker.errors.NotFound:
        pass
    except docker.errors.DockerException as exc:
        log.warning("inspect.network_remove_failed", network=network_id, error=str(exc))


__all__ = ["SampleServices", "build_images", "start_services"]
