"""Compose files planned for the hardened provider: what maps onto the profile, and every
key that cannot be honoured refused in one line naming the key and the service."""

from __future__ import annotations

from pathlib import Path

import pytest

from sandbox.inspect_ext.compose import (
    ComposePlan,
    ComposeRefused,
    load_compose,
    plan_compose,
    service_argv,
)
from sandbox.inspect_ext.config import resolve_plan


def load_compose_text(text: str, tmp_path: Path) -> ComposePlan:
    path = tmp_path / "compose.yaml"
    path.write_text(text)
    return load_compose(path)


def refusal(text: str, tmp_path: Path) -> str:
    with pytest.raises(ComposeRefused) as info:
        load_compose_text(text, tmp_path)
    message = str(info.value)
    assert "\n" not in message
    return message


def test_main_service_maps_onto_the_profile(tmp_path: Path) -> None:
    p = load_compose_text(
        """
services:
  target:
    image: web:1
  attacker:
    image: box:1
    x-default: true
    user: app
    working_dir: /work
    environment: [A=1, B=two]
    mem_limit: 0.5gb
    cpus: 2
    network_mode: none
    command: tail -f /dev/null
""",
        tmp_path,
    )
    default = p.default
    assert default.name == "attacker" and default.default
    spec = default.spec
    assert (spec.image, spec.user, spec.workdir) == ("box:1", "app", "/work")
    assert dict(spec.env) == {"A": "1", "B": "two"}
    assert (spec.memory_mb, spec.cpus) == (512, 2.0)
    assert not default.networked
    assert service_argv(default, None, None) is None  # a keep-alive: our executor keeps it up
    assert [s.name for s in p.services] == ["attacker", "target"]
    assert p.services[1].aliases == ("target",)


def test_default_is_named_default_else_marked_else_first(tmp_path: Path) -> None:
    first = load_compose_text("services:\n  a: {image: x}\n  b: {image: y}\n", tmp_path)
    assert first.default.name == "a"
    named = load_compose_text(
        "services:\n  a: {image: x, x-default: true}\n  default: {image: y}\n", tmp_path
    )
    assert named.default.name == "default"


@pytest.mark.parametrize(
    ("service", "key"),
    [
        ("privileged: true", "privileged"),
        ("cap_add: [NET_ADMIN]", "cap_add"),
        ("devices: [/dev/kvm]", "devices"),
        ("network_mode: host", "network_mode"),
        ("network_mode: bridge", "network_mode"),
        ("volumes: ['/etc:/host-etc']", "volumes"),
        ("volumes: ['data:/data']", "volumes"),
        ("ports: ['8080:80']", "ports"),
        ("security_opt: [seccomp=unconfined]", "security_opt"),
        ("pid: host", "pid"),
        ("user: root", "user"),
        ("user: '0:0'", "user"),
        ("read_only: false", "read_only"),
        ("env_file: .env", "env_file"),
        ("sysctls: {net.ipv4.ip_forward: 1}", "sysctls"),
        ("restart: always", "restart"),
        ("runtime: nvidia", "runtime"),
        ("frobnicate: 1", "frobnicate"),
        ("deploy: {resources: {reservations: {devices: [{driver: nvidia}]}}}", "deploy"),
        ("environment: [FROM_HOST]", "environment"),
    ],
)
def test_unhonourable_keys_are_refused_in_one_line(tmp_path: Path, service: str, key: str) -> None:
    message = refusal(f"services:\n  web:\n    image: x\n    {service}\n", tmp_path)
    assert "service 'web'" in message
    assert f"`{key}" in message
    assert str(tmp_path / "compose.yaml") in message


def test_top_level_refusals_name_the_key(tmp_path: Path) -> None:
    assert "`volumes`" in refusal("services:\n  a: {image: x}\nvolumes:\n  data: {}\n", tmp_path)
    two = "services:\n  a: {image: x}\nnetworks:\n  n1: {}\n  n2: {}\n"
    assert "`networks`" in refusal(two, tmp_path)
    ext = "services:\n  a: {image: x}\nnetworks:\n  n1: {external: true}\n"
    assert "networks.n1.external" in refusal(ext, tmp_path)


def test_inert_keys_are_accepted_and_noted(tmp_path: Path) -> None:
    p = load_compose_text(
        "services:\n  a:\n    image: x\n    init: true\n    expose: [80]\n    tty: true\n",
        tmp_path,
    )
    assert any("expose, init, tty" in note for note in p.notes)


def test_writable_loosening_is_explicit_and_named(tmp_path: Path) -> None:
    p = load_compose_text(
        "services:\n  a:\n    image: x\n    x-sandbox: {writable: [/opt/app]}\n"
        "    tmpfs: [/run/app]\n",
        tmp_path,
    )
    assert p.default.spec.loosen.writable_paths == ("/opt/app", "/run/app")
    assert p.default.spec.loosenings_in_effect() == ["writable_paths"]
    bad = "services:\n  a:\n    image: x\n    x-sandbox: {writable: [relative]}\n"
    assert "x-sandbox" in refusal(bad, tmp_path)


def test_build_section_names_a_local_image(tmp_path: Path) -> None:
    (tmp_path / "ctx").mkdir()
    p = load_compose_text(
        "services:\n  a:\n    build: {context: ctx, dockerfile: Dockerfile.x, args: [V=1]}\n",
        tmp_path,
    )
    build = p.default.build
    assert build is not None
    assert build.context == (tmp_path / "ctx").resolve()
    assert (build.dockerfile, dict(build.args)) == ("Dockerfile.x", {"V": "1"})
    assert p.default.spec.image.startswith("sandbox-compose-")
    assert "`image`" in refusal("services:\n  a: {init: true}\n", tmp_path)


def test_service_commands_follow_compose(tmp_path: Path) -> None:
    p = load_compose_text(
        "services:\n  default: {image: x}\n  web: {image: y}\n"
        "  api: {image: z, command: 'serve --port 80'}\n"
        "  job: {image: z, entrypoint: [run], command: [a]}\n",
        tmp_path,
    )
    by = {s.name: s for s in p.services}
    assert service_argv(by["web"], ["/entry"], ["app.py"]) == ["/entry", "app.py"]
    assert service_argv(by["api"], ["/entry"], ["x"]) == ["/entry", "serve", "--port", "80"]
    assert service_argv(by["job"], ["/entry"], ["x"]) == ["run", "a"]
    assert service_argv(by["default"], None, ["bash"]) is None  # the image's shell: not run
    assert p.needs_network


def test_healthcheck_forms(tmp_path: Path) -> None:
    p = load_compose_text(
        "services:\n  a:\n    image: x\n    healthcheck:\n"
        "      test: [CMD-SHELL, 'curl -f http://localhost || exit 1']\n"
        "      interval: 2s\n      retries: 3\n",
        tmp_path,
    )
    check = p.default.healthcheck
    assert check is not None
    assert check.test == ("/bin/sh", "-c", "curl -f http://localhost || exit 1")
    assert (check.interval_s, check.retries) == (0.5, 12)  # as patient, polled more often


def test_resolve_plan_takes_inspect_shapes(tmp_path: Path) -> None:
    compose = tmp_path / "compose.yaml"
    compose.write_text("services:\n  default: {image: x, working_dir: /w}\n")
    config, p = resolve_plan(str(compose))
    assert config.compose == str(compose.resolve())
    assert p.default.spec.workdir == "/w"
    (tmp_path / "Dockerfile").write_text("FROM scratch\n")
    _, docker_plan = resolve_plan(str(tmp_path / "Dockerfile"))
    assert docker_plan.default.build is not None
    _, plain = resolve_plan(None)
    assert [s.name for s in plain.services] == ["default"]

    from inspect_ai.util import parse_compose_yaml

    parsed = parse_compose_yaml(str(compose))
    _, from_inspect = resolve_plan(parsed)
    assert from_inspect.default.spec.workdir == "/w"


def test_not_a_compose_file_is_a_clear_error(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="services"):
        plan_compose({"version": "3"}, base_dir=tmp_path, source="c.yaml")


def test_dependencies_start_first(tmp_path: Path) -> None:
    p = load_compose_text(
        "services:\n  attacker: {image: a, x-default: true, depends_on: [web]}\n"
        "  web: {image: w, depends_on: {db: {condition: service_healthy}}}\n"
        "  db: {image: d}\n",
        tmp_path,
    )
    assert [s.name for s in p.start_order()] == ["db", "web", "attacker"]
    bad = "services:\n  a: {image: x, depends_on: [ghost]}\n"
    with pytest.raises(ValueError, match="ghost"):
        load_compose_text(bad, tmp_path)
