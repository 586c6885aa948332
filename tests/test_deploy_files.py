"""deploy/: the image, compose and Kubernetes files agree with the app.

No container engine runs here, so the files are checked against the code they
configure: every YAML parses; every ``LEADERELECTION_*`` variable is a setting
the service reads, with a value it accepts; commands parse with the CLI's own
parser; probes and health checks name real routes, and answer without a token
when the service has tokens; ports, service names, secrets and labels agree.
The image's command and its health check are also run, as written, against a
real service process.
"""

from __future__ import annotations

import json
import os
import re
import shlex
import subprocess
import sys
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import httpx
import pytest
import yaml

from leaderelection_service import cli, registry
from leaderelection_service.app import create_app
from leaderelection_service.auth import TokenTable, check_exposure, parse_entries
from leaderelection_service.settings import Settings
from support.procs import REPO, ServiceProcess, free_port, wait_until

DEPLOY = REPO / "deploy"
KUBE = DEPLOY / "kubernetes"
PREFIX = "LEADERELECTION_"


# -- what the app accepts ------------------------------------------------------------


def setting_names() -> set[str]:
    return {PREFIX + name.upper() for name in Settings.model_fields}


def routes() -> set[str]:
    """The paths the app serves, as its OpenAPI document lists them."""
    app = create_app(Settings(backend_url="memory://", auth_file=None))
    return set(app.openapi()["paths"])


def settings_from(env: dict[str, str], monkeypatch: pytest.MonkeyPatch) -> Settings:
    """The service's settings from exactly these variables (a bad value raises)."""
    for name in list(os.environ):
        if name.startswith(PREFIX):
            monkeypatch.delenv(name)
    unknown = {k for k in env if k.startswith(PREFIX)} - setting_names()
    assert not unknown, f"not settings of the service: {sorted(unknown)}"
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    return Settings()


def check_backend_url(url: str) -> None:
    scheme = urlsplit(url).scheme
    assert scheme in registry.schemes(), f"{scheme} is not a backend scheme"


# -- the Dockerfile -------------------------------------------------------------------


def dockerfile() -> list[tuple[str, str]]:
    """(INSTRUCTION, arguments) of deploy/Dockerfile, continuation lines joined."""
    text = (DEPLOY / "Dockerfile").read_text()
    text = re.sub(r"\\\n", " ", text)
    out = []
    for line in text.splitlines():
        line = line.strip()
        if line and not line.startswith("#"):
            word, _, rest = line.partition(" ")
            out.append((word.upper(), rest.strip()))
    return out


def final_stage() -> list[tuple[str, str]]:
    steps = dockerfile()
    last_from = max(i for i, (word, _) in enumerate(steps) if word == "FROM")
    return steps[last_from:]


def instruction(word: str) -> str:
    found = [rest for w, rest in final_stage() if w == word]
    assert len(found) == 1, f"the final stage should have one {word}, has {len(found)}"
    return found[0]


def image_env() -> dict[str, str]:
    env = {}
    for _, rest in (step for step in final_stage() if step[0] == "ENV"):
        for pair in shlex.split(rest):
            name, _, value = pair.partition("=")
            env[name] = value
    return env


def image_cmd() -> list[str]:
    cmd: list[str] = json.loads(instruction("CMD"))
    return cmd


def healthcheck_cmd() -> list[str]:
    rest = instruction("HEALTHCHECK")
    exec_form = rest[rest.index("CMD ") + 4 :]
    cmd: list[str] = json.loads(exec_form)
    return cmd


def test_every_yaml_file_parses() -> None:
    files = sorted([*DEPLOY.rglob("*.yaml"), *DEPLOY.rglob("*.yml")])
    assert len(files) >= 6
    for path in files:
        docs = list(yaml.safe_load_all(path.read_text()))
        assert docs and all(isinstance(doc, dict) for doc in docs), path


def test_image_base_user_port_and_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    assert re.fullmatch(r"python:3\.1[1-9]-slim", instruction("FROM").split()[0])
    user = instruction("USER").split(":")[0]
    assert user not in ("root", "0"), "the image must not run as root"
    env = image_env()
    settings = settings_from(env, monkeypatch)
    assert instruction("EXPOSE") == str(settings.port)
    check_backend_url(settings.backend_url)
    assert settings.auth_file is not None, "a non-loopback service needs tokens"
    installs = [rest for w, rest in dockerfile() if w == "RUN" and "pip" in rest]
    assert any("[server]" in rest for rest in installs), "install the server extra"


def test_image_copies_what_exists_and_the_ignore_file_lets_it_through() -> None:
    ignore = (DEPLOY / "Dockerfile.dockerignore").read_text().splitlines()
    for word, rest in dockerfile():
        if word == "COPY" and not rest.startswith("--from"):
            *sources, _ = rest.split()
            for source in sources:
                assert (REPO / source).exists(), source
                assert f"!{source.rstrip('/')}" in {line.rstrip("/") for line in ignore}


def test_image_command_is_serve_and_healthcheck_asks_a_real_route() -> None:
    cmd = image_cmd()
    assert cmd[0] == "leaderelection"
    assert cli.build_parser().parse_args(cmd[1:]).command == "serve"
    check = healthcheck_cmd()
    paths = re.findall(r"/[a-z]+z\b", " ".join(check))
    assert paths == ["/healthz"] and "/healthz" in routes()


def test_image_command_serves_and_its_healthcheck_passes(tmp_path: Path) -> None:
    """The CMD and HEALTHCHECK as written, with the image's environment (on loopback)."""
    tokens = tmp_path / "tokens.json"
    tokens.write_text(json.dumps([{"token": "t" * 32, "role": "write"}]))
    port = free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith(PREFIX)}
    env.update(image_env())
    env.update(
        LEADERELECTION_HOST="127.0.0.1",
        LEADERELECTION_PORT=str(port),
        LEADERELECTION_BACKEND_URL=(tmp_path / "data").as_uri(),
        LEADERELECTION_AUTH_FILE=str(tokens),
    )
    bindir = Path(sys.executable).parent

    def run_check() -> int:
        check = [sys.executable if part == "python" else part for part in healthcheck_cmd()]
        return subprocess.run(check, env=env, capture_output=True, timeout=30).returncode

    cmd = [str(bindir / image_cmd()[0]), *image_cmd()[1:]]
    proc = subprocess.Popen(cmd, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        wait_until(lambda: run_check() == 0, 60, interval=0.5, what="the health check passing")
        assert httpx.get(f"http://127.0.0.1:{port}/readyz", timeout=10).status_code == 200
    finally:
        proc.terminate()
        proc.wait(timeout=30)
    assert run_check() != 0, "the health check must fail when the service is down"


# -- compose.yaml ---------------------------------------------------------------------


def compose() -> dict[str, Any]:
    doc: dict[str, Any] = yaml.safe_load((DEPLOY / "compose.yaml").read_text())
    return doc


def test_compose_two_replicas_and_postgres(monkeypatch: pytest.MonkeyPatch) -> None:
    doc = compose()
    services = doc["services"]
    app, db = services["leaderelection"], services["postgres"]
    assert app["deploy"]["replicas"] >= 2
    assert re.fullmatch(r"postgres:1[5-9]", db["image"])
    assert (DEPLOY / app["build"]["context"] / app["build"]["dockerfile"]).resolve() == (
        DEPLOY / "Dockerfile"
    )
    settings = settings_from(app["environment"], monkeypatch)

    url = urlsplit(settings.backend_url)
    check_backend_url(settings.backend_url)
    assert url.hostname in services and services[url.hostname] is db
    assert url.port == 5432
    assert url.username == db["environment"]["POSTGRES_USER"]
    assert url.password == db["environment"]["POSTGRES_PASSWORD"]
    assert url.path.lstrip("/") == db["environment"]["POSTGRES_DB"]
    assert app["depends_on"]["postgres"]["condition"] == "service_healthy"

    # the published range gives each replica a host port; the container port is the app's
    (published,) = app["ports"]
    host_ports, container_port = published.rsplit(":", 1)
    assert int(container_port) == settings.port
    first, last = (int(p) for p in host_ports.split(":")[-1].split("-"))
    assert last - first + 1 >= app["deploy"]["replicas"]

    # the token file: a compose secret, mounted where the app reads it, never committed
    (secret,) = app["secrets"]
    assert str(settings.auth_file) == f"/run/secrets/{secret}"
    source = doc["secrets"][secret]["file"]
    assert source.removeprefix("./") in (DEPLOY / ".gitignore").read_text().split()
    assert app["image"] == deployment_container()["image"]


# -- kubernetes/ ----------------------------------------------------------------------


def kube() -> dict[str, dict[str, Any]]:
    """Every object of the kustomization, by kind (one of each)."""
    kustomization = yaml.safe_load((KUBE / "kustomization.yaml").read_text())
    listed = set(kustomization["resources"])
    assert listed == {p.name for p in KUBE.glob("*.yaml")} - {"kustomization.yaml"}
    objects: dict[str, dict[str, Any]] = {}
    for name in sorted(listed):
        for doc in yaml.safe_load_all((KUBE / name).read_text()):
            assert doc["kind"] not in objects, f"two {doc['kind']}s"
            objects[doc["kind"]] = doc
    return objects


def deployment_container() -> dict[str, Any]:
    (container,) = kube()["Deployment"]["spec"]["template"]["spec"]["containers"]
    return container


def container_env(objects: dict[str, dict[str, Any]]) -> dict[str, str]:
    """The container's environment as Kubernetes would build it."""
    container = deployment_container()
    env: dict[str, str] = {}
    for source in container.get("envFrom", []):
        assert source["configMapRef"]["name"] == objects["ConfigMap"]["metadata"]["name"]
        env.update(objects["ConfigMap"]["data"])
    secret = objects["Secret"]
    for item in container.get("env", []):
        ref = item["valueFrom"]["secretKeyRef"]
        assert ref["name"] == secret["metadata"]["name"]
        env[item["name"]] = secret["stringData"][ref["key"]]
    return env


def test_kubernetes_objects_agree(monkeypatch: pytest.MonkeyPatch) -> None:
    objects = kube()
    assert set(objects) == {"ConfigMap", "Secret", "Deployment", "Service", "PodDisruptionBudget"}
    deployment = objects["Deployment"]
    pod = deployment["spec"]["template"]
    labels = pod["metadata"]["labels"]
    assert deployment["spec"]["replicas"] >= 2
    assert deployment["spec"]["selector"]["matchLabels"].items() <= labels.items()

    container = deployment_container()
    assert cli.build_parser().parse_args(container["args"]).command == "serve"
    assert container["command"] == image_cmd()[:1]
    settings = settings_from(container_env(objects), monkeypatch)
    check_backend_url(settings.backend_url)
    (port,) = container["ports"]
    assert port["containerPort"] == settings.port

    ready, live = container["readinessProbe"]["httpGet"], container["livenessProbe"]["httpGet"]
    assert (ready["path"], live["path"]) == ("/readyz", "/healthz")
    assert {ready["path"], live["path"]} <= routes()
    assert ready["port"] == live["port"] == port["name"]

    for kind in ("requests", "limits"):
        assert {"cpu", "memory"} <= set(container["resources"][kind])

    # the token file: a Secret key mounted where LEADERELECTION_AUTH_FILE points
    (mount,) = [m for m in container["volumeMounts"] if m["name"] == "tokens"]
    (volume,) = [v for v in pod["spec"]["volumes"] if v["name"] == "tokens"]
    (item,) = volume["secret"]["items"]
    assert str(settings.auth_file) == f"{mount['mountPath']}/{item['path']}"
    table = TokenTable(parse_entries(json.loads(objects["Secret"]["stringData"][item["key"]]), "s"))
    check_exposure(settings.host, tokens=table, insecure=settings.insecure)

    user = int(instruction("USER").split(":")[0])
    assert pod["spec"]["securityContext"]["runAsUser"] == user

    service = objects["Service"]["spec"]
    assert service["selector"].items() <= labels.items()
    assert service["ports"][0]["targetPort"] == port["name"]
    budget = objects["PodDisruptionBudget"]["spec"]
    assert budget["selector"]["matchLabels"].items() <= labels.items()
    assert 1 <= budget["minAvailable"] < deployment["spec"]["replicas"]


def test_probes_answer_without_a_token_when_tokens_are_required(tmp_path: Path) -> None:
    """Kubelet and Docker send no Authorization header: the probe routes must not need one."""
    tokens = tmp_path / "tokens.json"
    tokens.write_text(json.dumps([{"token": "r" * 32, "role": "read"}]))
    container = deployment_container()
    paths = [container[p]["httpGet"]["path"] for p in ("readinessProbe", "livenessProbe")]
    with ServiceProcess(
        (tmp_path / "data").as_uri(), extra_args=("--auth-file", str(tokens))
    ) as svc:
        assert httpx.get(f"{svc.url}/v1/leases", timeout=10).status_code == 401
        for path in paths:
            assert httpx.get(svc.url + path, timeout=10).status_code == 200, path
