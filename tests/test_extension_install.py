"""`python install.py --tgwui PATH`: the extension copied into text-generation-webui."""

from __future__ import annotations

import ast
import importlib.util
import json
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture
def install(monkeypatch):
    """install.py as a module, with the sidecar setup (venv + pip) stubbed out."""
    spec = importlib.util.spec_from_file_location("ara_install", str(ROOT / "install.py"))
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    calls = []
    monkeypatch.setattr(module, "ensure_venv", lambda: calls.append("venv") or Path(sys.executable))
    monkeypatch.setattr(module, "install_project", lambda *args: calls.append("project"))
    module.calls = calls
    return module


@pytest.fixture
def tgwui(tmp_path) -> Path:
    folder = tmp_path / "text-generation-webui"
    (folder / "extensions" / "silero_tts").mkdir(parents=True)
    (folder / "server.py").write_text("# text-generation-webui\n")
    return folder


def test_install_copies_records_and_prints_the_launch_command(install, tgwui, capsys):
    assert install.main(["--tgwui", str(tgwui)]) == 0
    target = tgwui / "extensions" / "ara_avatar"
    for name in ("script.py", "README.md", "ara_tgwui/runtime.py", "ara_tgwui/panel.py"):
        assert (target / name).read_bytes() == (ROOT / "extension" / name).read_bytes()
    record = json.loads((target / "ara_avatar.json").read_text())
    assert record["repo"] == str(ROOT) and record["command"] == [str(install.venv_script("ara-sidecar"))]
    out = capsys.readouterr().out
    assert "python server.py --extensions ara_avatar" in out and f"cd {tgwui}" in out
    assert install.calls == ["venv", "project"]  # the sidecar's own setup still runs
    assert (tgwui / "extensions" / "silero_tts").is_dir()


def test_rerun_updates_in_place(install, tgwui):
    install.main(["--tgwui", str(tgwui)])
    target = tgwui / "extensions" / "ara_avatar"
    (target / "stale.py").write_text("old\n")
    (target / "script.py").write_text("old\n")
    install.main(["--tgwui", str(tgwui)])
    assert not (target / "stale.py").exists()
    assert (target / "script.py").read_bytes() == (ROOT / "extension" / "script.py").read_bytes()
    assert not list(target.rglob("__pycache__"))


def test_refuses_foreign_folders(install, tgwui, tmp_path):
    with pytest.raises(SystemExit):
        install.main(["--tgwui", str(tmp_path / "elsewhere")])
    assert install.calls == []  # checked before the long sidecar setup
    (tgwui / "extensions" / "ara_avatar").mkdir()
    (tgwui / "extensions" / "ara_avatar" / "mine.txt").write_text("someone else's\n")
    with pytest.raises(SystemExit):
        install.main(["--tgwui", str(tgwui)])
    assert (tgwui / "extensions" / "ara_avatar" / "mine.txt").is_file()


def test_the_installed_copy_finds_the_repository(install, tgwui, monkeypatch):
    install.main(["--tgwui", str(tgwui)])
    script = tgwui / "extensions" / "ara_avatar" / "script.py"
    spec = importlib.util.spec_from_file_location("extensions.ara_avatar.script", str(script))
    ext = importlib.util.module_from_spec(spec)
    monkeypatch.setitem(sys.modules, spec.name, ext)
    spec.loader.exec_module(ext)
    assert ext.runtime.install.repo == ROOT
    assert ext.runtime.install.command == (str(install.venv_script("ara-sidecar")),)
    assert ext.runtime.persona().name == "ara"


def test_install_py_stays_old_python_friendly():
    tree = ast.parse((ROOT / "install.py").read_text())
    assert not [node for node in ast.walk(tree) if isinstance(node, ast.JoinedStr)]
