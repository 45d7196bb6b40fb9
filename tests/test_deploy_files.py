"""The deployment files of docker/ agree with the code: the commands parse with the real CLI,
the environment variables are ones the settings read, replicas would start and leave the
worker and the monitor to their own containers, Redis keeps an append-only file, the image
does not run as root, and nginx balances over every replica.

These checks need no Docker daemon; they catch the drift between the files and the code that
only a deployment would otherwise show.
"""

from __future__ import annotations

import re
import shlex
from pathlib import Path

import yaml  # PyYAML comes with uvicorn[standard]

from onlearn import config as config_module
from onlearn.config import load_settings
from onlearn.tools.cli import build_parser, cmd_monitor, cmd_serve, cmd_worker, open_without_keys

ROOT = Path(__file__).resolve().parent.parent
DOCKER = ROOT / "docker"
REDIS_URL = "redis://redis:6379/0"


def compose() -> dict:
    return yaml.safe_load((DOCKER / "compose.yaml").read_text())


def onlearn_services() -> dict[str, dict]:
    return {
        name: s
        for name, s in compose()["services"].items()
        if s.get("image", "").startswith("onlearn")
    }


def role(service: dict) -> str:
    return service["command"][0]


def substituted(environment: dict) -> dict[str, str]:
    """The environment with ``${VAR:?message}`` replaced by a value, as compose would from .env."""
    values = {"ONLEARN_SECRET_KEY": "k" * 64, "ONLEARN_API_KEYS": "app:predict:secret-key-1"}

    def value(text: str) -> str:
        match = re.fullmatch(r"\$\{(\w+)(:?\?[^}]*)?\}", str(text))
        return values[match.group(1)] if match else str(text)

    return {name: value(v) for name, v in environment.items()}


def known_variables() -> set[str]:
    known = set(config_module.ENVIRONMENT)
    known |= set(getattr(config_module, "LIMITS_ENVIRONMENT", {}))
    return known | {"ONLEARN_API_KEYS"}  # read apart: keys add to the config's


def test_the_image_runs_onlearn_as_a_user_other_than_root_with_a_healthcheck():
    lines = [
        line.strip()
        for line in (DOCKER / "Dockerfile").read_text().replace("\\\n", " ").splitlines()
        if line.strip() and not line.strip().startswith("#")
    ]
    instructions = [(line.split()[0].upper(), line.split(None, 1)[1]) for line in lines]
    assert instructions[0] == ("FROM", "python:3.11-slim")
    users = [i for i, (op, _) in enumerate(instructions) if op == "USER"]
    assert users, "no USER: the container would run as root"
    user = instructions[users[-1]][1]
    assert user not in ("root", "0") and not user.startswith(("root:", "0:")), user
    installs = [
        i for i, (op, arg) in enumerate(instructions) if op == "RUN" and "pip install" in arg
    ]
    assert installs and installs[-1] < users[-1], "install as root, then drop to the user"
    install = instructions[installs[-1]][1]
    assert "pip install ." in install and "[dev]" not in install, install
    entrypoint = dict(instructions)["ENTRYPOINT"]
    assert entrypoint == '["onlearn"]', entrypoint
    assert "/healthz" in dict(instructions)["HEALTHCHECK"]
    for op, arg in instructions:
        if op == "COPY":
            for source in shlex.split(arg)[:-1]:
                assert (ROOT / source).exists(), f"COPY {source}: not in the repository"


def test_the_build_context_sends_what_the_image_copies():
    ignore = (ROOT / ".dockerignore").read_text().split()
    kept = {line[1:].rstrip("/") for line in ignore if line.startswith("!")}
    assert {"pyproject.toml", "README.md", "onlearn", "serving"} <= kept, kept


def test_every_onlearn_container_shares_the_redis_store_and_the_secret():
    services = onlearn_services()
    assert sorted(role(s) for s in services.values()) == [
        "monitor",
        *["serve"] * 3,
        "worker",
    ], "three replicas, one worker, one monitor"
    handlers = {"serve": cmd_serve, "worker": cmd_worker, "monitor": cmd_monitor}
    for name, service in services.items():
        env = service["environment"]
        unknown = {v for v in env if v.startswith("ONLEARN_")} - known_variables()
        assert not unknown, f"{name}: onlearn reads no {unknown}"
        assert env["ONLEARN_STORE_URL"] == REDIS_URL, name
        assert env["ONLEARN_SECRET_KEY"].startswith("${ONLEARN_SECRET_KEY:?"), (
            f"{name}: the secret key comes from .env, and compose refuses to start without it"
        )
        args = build_parser().parse_args(service["command"])
        assert args.func is handlers[role(service)], name
        # The config the container reads is the one mounted there.
        target = env["ONLEARN_CONFIG"]
        mounts = {v.split(":")[1]: v.split(":")[0] for v in service["volumes"]}
        assert (DOCKER / mounts[target]).resolve().is_file(), (name, mounts[target])
        # As the CLI loads them: every flag passed, None when not given.
        flags = {"store_url": args.store, "config_path": args.config}
        if role(service) == "serve":
            flags.update(host=args.host, port=args.port, run_worker=None, run_monitor=None)
        settings = load_settings(
            args.config,
            environ=substituted(env) | {"ONLEARN_CONFIG": str(DOCKER / mounts[target])},
            **flags,
        )
        assert settings.store_url == REDIS_URL and settings.models, name
        assert settings.secret_key, name
        if role(service) == "serve":
            # Replicas serve; the worker and the monitor run once, in their own containers.
            assert settings.run_worker is False and settings.run_monitor is False, name
            assert settings.host == "0.0.0.0" and args.port == 8000, name
            assert open_without_keys(settings) is None, f"{name} would refuse to start"
            assert "healthcheck" not in service, "replicas keep the image's /healthz check"
        else:
            assert service["healthcheck"] == {"disable": True}, f"{name} serves no HTTP"


def test_redis_keeps_an_append_only_file_on_a_volume_and_never_evicts():
    redis = compose()["services"]["redis"]
    assert redis["image"].startswith("redis:")
    command = " ".join(redis["command"])
    assert "--appendonly yes" in command
    assert re.search(r"--appendfsync (everysec|always)", command), command
    assert "--maxmemory-policy noeviction" in command
    assert any(v.endswith(":/data") for v in redis["volumes"]), redis["volumes"]
    assert "ports" not in redis, "Redis is not published outside the compose network"
    for name, service in onlearn_services().items():
        assert service["depends_on"]["redis"]["condition"] == "service_healthy", name


def test_nginx_balances_over_every_replica():
    services = compose()["services"]
    replicas = sorted(n for n, s in onlearn_services().items() if role(s) == "serve")
    nginx = services["nginx"]
    assert sorted(nginx["depends_on"]) == replicas
    conf = (DOCKER / "nginx.conf").read_text()
    upstream = re.search(r"upstream onlearn \{(.*?)\}", conf, re.S).group(1)
    servers = re.findall(r"^\s*server (\S+?):(\d+)", upstream, re.M)
    assert sorted(s for s, _ in servers) == replicas
    assert {int(p) for _, p in servers} == {8000}
    assert "proxy_pass http://onlearn;" in conf
    mounted = {v.split(":")[1] for v in nginx["volumes"]}
    assert "/etc/nginx/nginx.conf" in mounted


def test_the_env_example_names_only_variables_onlearn_reads():
    lines = (DOCKER / "onlearn.env.example").read_text().splitlines()
    names = {line.split("=")[0] for line in lines if line and not line.startswith("#")}
    assert names == {"ONLEARN_SECRET_KEY", "ONLEARN_API_KEYS"}
    assert names <= known_variables()
