"""One list of settings: ``Settings``, ``leaderelection serve --help`` and the README agree.

The service's settings are the fields of ``Settings``; the flags of ``serve``
are generated from them, and the README's configuration table documents them.
The first test reads all three as a user would (the help as printed, the table
as written) and fails on any difference in names, flags or defaults; the others
hold the flags to their behaviour: a flag beats the environment, and reaches
every worker process.
"""

from __future__ import annotations

import os
import re
import sqlite3
import subprocess
import sys
from pathlib import Path

import httpx
import pytest

from leaderelection_service import cli
from leaderelection_service.flags import given
from leaderelection_service.settings import Settings
from leaderelection_service.sql_names import DEFAULT_TABLE
from support.procs import REPO, ServiceProcess

PREFIX = "LEADERELECTION_"


def clean_env(**extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(PREFIX)}
    return {**env, **extra}


def leaderelection(*args: str, cwd: Path, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    cmd = [sys.executable, "-m", "leaderelection_service.cli", *args]
    return subprocess.run(cmd, cwd=cwd, env=env, capture_output=True, text=True, timeout=60)


def help_flags(text: str) -> dict[str, str]:
    """``serve --help`` as {flag: default}, the flag as the README writes it."""
    entries: list[list[str]] = []
    for line in text.split("options:", 1)[1].splitlines():
        if match := re.match(r"^  (-\S.*?)(?: {2,}(.*))?$", line):
            entries.append([match[1], match[2] or ""])
        elif line.strip():
            entries[-1][1] += " " + line.strip()
    flags = {}
    for invocation, text in entries:
        names = re.findall(r"--[a-z][a-z-]*", invocation)
        if names == ["--help"]:
            continue
        described = re.fullmatch(r"(.+?) \(default: (.+)\)", text.strip())
        assert described, f"{invocation}: no description or no default in {text!r}"
        if len(names) == 2 and names[1] == "--no-" + names[0][2:]:
            names = ["--[no-]" + names[0][2:]]
        (name,) = names
        flags[name] = described[2]
    return flags


def readme_table() -> dict[str, tuple[str, str]]:
    """The README's configuration table as {variable: (flag, default)}."""
    text = (REPO / "README.md").read_text()
    section = text.split("\n## Configuration\n", 1)[1].split("\n## ", 1)[0]
    rows = {}
    for line in section.splitlines():
        if not line.startswith(f"| `{PREFIX}"):
            continue
        variable, flag, default, meaning = (cell.strip() for cell in line.strip("|").split(" | "))
        shown = re.match(r"`([^`]*)`", default)
        rows[variable.strip("`")] = (flag.strip("`"), shown[1] if shown else default.split()[0])
        assert meaning, f"{variable}: no meaning"
    return rows


def test_settings_serve_help_and_readme_list_the_same_flags_and_defaults(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    done = leaderelection("serve", "--help", cwd=tmp_path, env=clean_env(COLUMNS="1000"))
    assert done.returncode == 0, done.stderr
    shown = help_flags(done.stdout)
    readme = {
        variable: (flag, default.replace("$PWD", str(tmp_path)))
        for variable, (flag, default) in readme_table().items()
    }

    variables = {PREFIX + name.upper(): name for name in Settings.model_fields}
    assert sorted(readme) == sorted(variables), "README rows vs Settings fields"
    expected_flags = {
        ("--[no-]" if field.annotation is bool else "--") + name.replace("_", "-")
        for name, field in Settings.model_fields.items()
    }
    assert sorted(shown) == sorted(expected_flags), "serve --help vs Settings fields"
    assert {flag: default for flag, default in readme.values()} == shown, "README vs --help"

    # Each default shown is the real one: given back as its variable, it changes nothing.
    for name in Settings.model_fields:
        monkeypatch.delenv(PREFIX + name.upper(), raising=False)
    monkeypatch.chdir(tmp_path)
    defaults = Settings()
    for variable, (_, default) in readme.items():
        name = variables[variable]
        if default == "none":
            assert getattr(defaults, name) in (None, ""), name
            continue
        with monkeypatch.context() as env:
            env.setenv(variable, default)
            assert getattr(Settings(), name) == getattr(defaults, name), f"{variable}={default}"


def test_only_the_flags_given_are_settings_and_booleans_take_no() -> None:
    def parsed(*args: str) -> dict[str, object]:
        return given(cli.build_parser().parse_args(["serve", *args]))

    assert parsed() == {}
    assert parsed("--insecure", "--no-sql-create-schema", "--port", "9000") == {
        "insecure": True,
        "sql_create_schema": False,
        "port": 9000,
    }
    assert parsed("--no-insecure") == {"insecure": False}
    # the command line also takes a plain directory, made a file URL against the cwd
    assert parsed("--backend-url", "data") == {"backend_url": (Path.cwd() / "data").as_uri()}


def test_a_bad_flag_is_refused_naming_it(tmp_path: Path) -> None:
    done = leaderelection("serve", "--port", "eighty", cwd=tmp_path, env=clean_env())
    assert done.returncode == 2 and "--port" in done.stderr and "Traceback" not in done.stderr
    done = leaderelection("serve", "--file-sync", "never", cwd=tmp_path, env=clean_env())
    assert done.returncode == 2 and "--file-sync" in done.stderr


def test_workers_get_the_environment_and_the_flags_that_beat_it(tmp_path: Path) -> None:
    env = {PREFIX + "TTL_MIN": "2", PREFIX + "TTL_MAX": "10"}
    service = ServiceProcess(tmp_path.as_uri(), workers=2, env=env, extra_args=("--ttl-max", "20"))
    with service:
        # workers=2: what answers is a worker process, configured only by its environment
        for _ in range(4):
            with httpx.Client(base_url=service.url, timeout=10) as http:
                answer = http.post("/v1/leases/k/acquire", json={"holder": "h", "ttl": 100})
            assert answer.status_code == 422, answer.text
            assert "between 2 and 20 seconds" in answer.text


def test_migrate_takes_the_table_from_the_environment_unless_a_flag_names_one(
    tmp_path: Path,
) -> None:
    url = f"sqlite:///{tmp_path / 'leases.db'}"
    env = clean_env(**{PREFIX + "SQL_TABLE": "from_env"})
    done = leaderelection("migrate", "--backend-url", url, cwd=tmp_path, env=env)
    assert done.returncode == 0, done.stderr
    assert "table from_env at schema version" in done.stdout
    done = leaderelection(
        "migrate", "--backend-url", url, "--sql-table", "from_flag", cwd=tmp_path, env=env
    )
    assert done.returncode == 0, done.stderr
    with sqlite3.connect(tmp_path / "leases.db") as db:
        names = {row[0] for row in db.execute("SELECT name FROM sqlite_master WHERE type='table'")}
    assert {"from_env", "from_env_meta", "from_flag", "from_flag_meta"} <= names
    assert DEFAULT_TABLE not in names
