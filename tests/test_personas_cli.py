"""The `personas` command: registered on a test parser, and through `python -m ara_persona`."""

from __future__ import annotations

import argparse
import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from ara_persona.cli import register

SHIPPED = Path(__file__).resolve().parents[1] / "personas"


def run(roots: list[Path], *argv: str) -> int:
    parser = argparse.ArgumentParser(prog="ara-sidecar")
    register(parser.add_subparsers(dest="command", required=True), lambda: roots)
    args = parser.parse_args(["personas", *argv])
    return args.func(args)


@pytest.fixture
def user_root(tmp_path) -> Path:
    """A user persona folder with one good persona, one broken one and one half-made one."""
    root = tmp_path / "mine"
    shutil.copytree(SHIPPED / "ara", root / "nova")
    broken = root / "broken"
    shutil.copytree(SHIPPED / "ara", broken)
    text = (broken / "modes.yaml").read_text(encoding="utf-8")
    (broken / "modes.yaml").write_text(
        text.replace("speed: 1.0, warmth_db: 2.0", "speed: 9, warmth_db: 2.0"), encoding="utf-8"
    )
    (root / "draft").mkdir()
    (root / "draft" / "manifesto.md").write_text("I am a draft.", encoding="utf-8")
    (root / "not-a-persona").mkdir()
    return root


def test_check_configured_roots(capsys):
    assert run([SHIPPED], "check") == 0
    out = capsys.readouterr().out.splitlines()
    assert len(out) == 1 and out[0].startswith("OK    ara: 6 modes, manifesto 4.6 KB, 36 examples")


def test_check_one_persona_folder(capsys):
    assert run([], "check", str(SHIPPED / "ara")) == 0
    assert capsys.readouterr().out.startswith("OK    ara:")


def test_check_reports_every_problem(user_root, capsys):
    assert run([SHIPPED, user_root], "check") == 1
    lines = capsys.readouterr().out.splitlines()
    assert [line.split(":")[0] for line in lines] == [
        "OK    ara",
        "FAIL  broken",
        "FAIL  draft",
        "OK    nova",
    ]
    assert f"{user_root / 'broken' / 'modes.yaml'}:" in lines[1]
    assert "field 'modes.cockpit.voice.speed': expected a number from 0.5 to 2, got 9" in lines[1]
    assert "not a persona (no modes.yaml)" in lines[2]


def test_check_dir_argument_overrides_roots(user_root, capsys):
    assert run([SHIPPED], "check", str(user_root / "nova")) == 0
    assert capsys.readouterr().out.startswith("OK    nova:")


@pytest.mark.parametrize(
    ("make", "expected"),
    [
        (lambda p: p, "no personas found"),
        (lambda p: p / "missing", "not a directory"),
    ],
    ids=["empty folder", "missing folder"],
)
def test_check_nothing_to_check(tmp_path, capsys, make, expected):
    assert run([make(tmp_path)], "check") == 1
    assert expected in capsys.readouterr().out


def test_select_text(capsys):
    assert run([SHIPPED], "select", "--user", "hahaha roast me", "--time", "12:00") == 0
    out = capsys.readouterr().out
    assert out.startswith("playful: banter (") and "'roast'" in out


def test_select_json(capsys):
    argv = ["select", "--user", "I can't sleep. Do you ever think about us?", "--time", "01:30", "--json"]
    assert run([SHIPPED], *argv) == 0
    result = json.loads(capsys.readouterr().out)
    assert set(result) == {"mode", "reason", "crisis"} and result["mode"] == "cathedral"


@pytest.mark.parametrize(
    ("argv", "mode"),
    [
        (["--user", "ok", "--previous", "lab"], "lab"),
        (["--user", "ok", "--previous", "LAB", "--force", "teaching"], "teaching"),
        (["--user", "I want to die", "--force", "playful"], "comfort"),
        (
            [
                "--user",
                "",
                "--reply",
                "```\nTraceback (most recent call last):\nSegfault in the CUDA kernel\n```",
            ],
            "lab",
        ),
    ],
)
def test_select_options(capsys, argv, mode):
    assert run([SHIPPED], "select", "--time", "12:00", "--json", *argv) == 0
    assert json.loads(capsys.readouterr().out)["mode"] == mode


def test_select_other_persona(user_root, capsys):
    assert (
        run([SHIPPED, user_root], "select", "--persona", "nova", "--user", "explain DNS", "--time", "09:00")
        == 0
    )
    assert capsys.readouterr().out.startswith("teaching:")


@pytest.mark.parametrize(
    ("argv", "expected"),
    [
        (["--persona", "ghost"], "unknown persona 'ghost'; valid personas: ara, broken, nova"),
        (["--persona", "broken"], "field 'modes.cockpit.voice.speed'"),
    ],
)
def test_select_persona_errors(user_root, capsys, argv, expected):
    assert run([SHIPPED, user_root], "select", "--user", "hi", *argv) == 1
    assert expected in capsys.readouterr().err


@pytest.mark.parametrize(
    "argv",
    [["--time", "25:00"], ["--previous", "disco"], ["--force", "sleepy"], []],
    ids=["bad time", "bad previous", "bad force", "no --user"],
)
def test_select_usage_errors(argv, capsys):
    with pytest.raises(SystemExit) as info:
        run([SHIPPED], "select", *(["--user", "hi"] if argv else []), *argv)
    assert info.value.code == 2


def test_personas_needs_a_subcommand():
    with pytest.raises(SystemExit) as info:
        run([SHIPPED])
    assert info.value.code == 2


def module(*argv: str, cwd: Path) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "ara_persona", *argv], capture_output=True, text=True, cwd=cwd
    )


def test_python_m_check(tmp_path, user_root):
    done = module("personas", "check", cwd=tmp_path)
    assert done.returncode == 0 and done.stdout.startswith("OK    ara:")
    done = module("--personas-dir", str(user_root), "personas", "check", cwd=tmp_path)
    assert done.returncode == 1 and "FAIL  broken" in done.stdout


def test_python_m_select(tmp_path):
    done = module("personas", "select", "--user", "My grandmother passed away.", "--json", cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout)["mode"] == "comfort"


def test_sidecar_check_names_a_missing_piper_voice(user_root, tmp_path):
    """Through `ara-sidecar`, `check` also finds what a persona names that is not installed."""
    nova = user_root / "nova" / "modes.yaml"
    text = nova.read_text(encoding="utf-8")
    nova.write_text(
        text.replace("voice:\n", "voice:\n  piper_voice: en_GB-nobody-medium\n", 1), encoding="utf-8"
    )
    sidecar = Path(sys.executable).with_name("ara-sidecar")
    done = subprocess.run(
        [str(sidecar), "personas", "check", str(user_root / "nova")],
        capture_output=True,
        text=True,
        cwd=tmp_path,
    )
    assert done.returncode == 1, done.stdout
    assert "FAIL  nova: voice.piper_voice: Piper voice 'en_GB-nobody-medium' not found" in done.stdout
    assert run([], "check", str(user_root / "nova")) == 0  # the persona library alone knows no voices
