#!/usr/bin/env python3
"""Set up Ara's sidecar in ./.venv (standard library only; Windows, macOS and Linux).

    python install.py            create/update .venv and install the sidecar
    python install.py --demo     ... then render the demo video
    python install.py --test     ... with the test tools, then run the test suite
    python install.py --dev      ... with the test tools (pytest, ruff, scikit-image, torch)
    python install.py --tgwui PATH   ... and the text-generation-webui extension into PATH

Re-running is safe: an up-to-date environment is left as it is (use --force to reinstall).
"""

import argparse
import hashlib
import json
import os
import shutil
import subprocess
import sys
import venv
from pathlib import Path

MIN_PYTHON = (3, 10)
ROOT = Path(__file__).resolve().parent
VENV = ROOT / ".venv"
STAMP = VENV / ".ara-install-stamp"
EXTENSION = "ara_avatar"  # the extension's name in text-generation-webui
EXTENSION_RECORD = "ara_avatar.json"  # where the extension finds this checkout and its sidecar
# The settings panel's test runs in TGWUI's gradio (4.37.2; TGWUI ships a patched build of it from
# its own releases, so the PyPI build is used with the huggingface-hub that it still imports).
GRADIO_VENV = ROOT / ".venv-gradio437"
GRADIO_PACKAGES = ["gradio==4.37.2", "huggingface-hub<0.26", "fastapi==0.112.4", "pydantic==2.11.0"]


def fail(message):
    print("install.py: error: " + message, file=sys.stderr)
    raise SystemExit(1)


def venv_python():
    if os.name == "nt":
        return VENV / "Scripts" / "python.exe"
    return VENV / "bin" / "python"


def venv_script(name):
    if os.name == "nt":
        return VENV / "Scripts" / (name + ".exe")
    return VENV / "bin" / name


def run(args, **kwargs):
    print("  $ " + " ".join(str(a) for a in args), flush=True)
    result = subprocess.run([str(a) for a in args], cwd=str(ROOT), **kwargs)
    return result.returncode


def ensure_venv():
    python = venv_python()
    if python.exists():
        probe = subprocess.run(
            [str(python), "-c", "import sys; print(sys.version_info >= (3, 10))"],
            capture_output=True,
            text=True,
        )
        if probe.returncode == 0 and probe.stdout.strip() == "True":
            print("- using the existing environment " + str(VENV))
            return python
        fail(
            str(VENV) + " exists but its Python does not work or is older than 3.10; "
            "delete the folder and run install.py again"
        )
    print("- creating the environment " + str(VENV))
    try:
        venv.EnvBuilder(with_pip=True, upgrade_deps=False).create(str(VENV))
    except Exception as exc:  # ensurepip missing on some Linux distributions
        fail(
            "could not create the virtual environment (" + str(exc) + "). On Debian/Ubuntu install "
            "the python3-venv package, then run install.py again"
        )
    return python


def ensure_gradio_venv():
    """.venv-gradio437 with TGWUI's gradio, for the panel test; None (the test is skipped) if it fails."""
    python = GRADIO_VENV / ("Scripts/python.exe" if os.name == "nt" else "bin/python")
    stamp = GRADIO_VENV / ".ara-install-stamp"
    wanted = "|".join(GRADIO_PACKAGES) + "|" + sys.version
    if python.exists() and stamp.exists() and stamp.read_text() == wanted:
        return python
    print("- creating " + str(GRADIO_VENV) + " (gradio 4.37.2, for the settings panel's test)")
    try:
        if not python.exists():
            venv.EnvBuilder(with_pip=True, upgrade_deps=False).create(str(GRADIO_VENV))
    except Exception as exc:
        print("  could not create it (" + str(exc) + "); the panel test will be skipped", file=sys.stderr)
        return None
    if run([python, "-m", "pip", "install", "--disable-pip-version-check", "-q", *GRADIO_PACKAGES]) != 0:
        print("  gradio 4.37.2 could not be installed; the panel test will be skipped", file=sys.stderr)
        return None
    stamp.write_text(wanted)
    return python


def install_stamp(extras):
    digest = hashlib.sha256((ROOT / "pyproject.toml").read_bytes())
    digest.update((",".join(sorted(extras)) + "|" + sys.version).encode())
    return digest.hexdigest()


def install_project(python, extras, force):
    stamp = install_stamp(extras)
    if not force and STAMP.exists() and STAMP.read_text().strip() == stamp:
        print("- the sidecar is already installed and up to date (--force reinstalls)")
        return
    target = "." + ("[" + ",".join(sorted(extras)) + "]" if extras else "")
    print("- installing the sidecar" + (" with " + ", ".join(sorted(extras)) if extras else ""))
    if run([python, "-m", "pip", "install", "--disable-pip-version-check", "-e", target]) != 0:
        fail("pip could not install the sidecar (see its messages above)")
    STAMP.write_text(stamp + "\n")


def tgwui_folder(path):
    """The text-generation-webui checkout at `path`, or fail."""
    tgwui = Path(path).expanduser().resolve()
    if not (tgwui / "server.py").is_file() or not (tgwui / "extensions").is_dir():
        fail(str(tgwui) + " is not a text-generation-webui folder (it needs server.py and extensions/)")
    return tgwui


def install_tgwui(tgwui):
    """Copy extension/ into TGWUI/extensions/ara_avatar (replacing an earlier copy) and record ROOT."""
    target = tgwui / "extensions" / EXTENSION
    if target.is_symlink():
        target.unlink()
    elif target.exists():
        if not (target / EXTENSION_RECORD).is_file() and not (target / "ara_tgwui").is_dir():
            fail(str(target) + " exists and is not Ara's extension; move it away and run install.py again")
        shutil.rmtree(str(target))
    ignore = shutil.ignore_patterns("__pycache__", "*.pyc", EXTENSION_RECORD)
    shutil.copytree(str(ROOT / "extension"), str(target), ignore=ignore)
    record = {"repo": str(ROOT), "command": [str(venv_script("ara-sidecar"))]}
    (target / EXTENSION_RECORD).write_text(json.dumps(record, indent=2) + "\n", encoding="utf-8")
    print("- installed the text-generation-webui extension in " + str(target))
    print(
        "\nStart text-generation-webui with Ara's avatar (with its own Python environment, e.g. after its\n"
        "cmd_linux.sh / cmd_windows.bat / cmd_macos.sh):\n"
        "  cd " + str(tgwui) + "\n"
        "  python server.py --extensions " + EXTENSION + "\n"
        "or tick " + EXTENSION + ' in the Session tab and click "Apply flags/extensions and restart".\n'
        "The extension starts the sidecar (" + str(venv_script("ara-sidecar")) + ") when it needs it."
    )


def main(argv=None):
    parser = argparse.ArgumentParser(description="Set up Ara's sidecar in ./.venv")
    parser.add_argument("--dev", action="store_true", help="also install the test tools")
    parser.add_argument("--test", action="store_true", help="install with --dev, then run the tests")
    parser.add_argument("--demo", action="store_true", help="after setup, render the demo video")
    parser.add_argument("--force", action="store_true", help="reinstall even when up to date")
    parser.add_argument(
        "--tgwui", metavar="PATH", help="also install the extension into the text-generation-webui at PATH"
    )
    args = parser.parse_args(argv)
    tgwui = tgwui_folder(args.tgwui) if args.tgwui else None

    if sys.version_info < MIN_PYTHON:
        fail(
            "Python %d.%d or newer is needed; this is %d.%d (%s). Run install.py with a newer Python."
            % (MIN_PYTHON + tuple(sys.version_info[:2]) + (sys.executable,))
        )

    python = ensure_venv()
    extras = {"dev"} if (args.dev or args.test) else set()
    install_project(python, extras, args.force)
    sidecar = venv_script("ara-sidecar")
    print("- done. The sidecar's command is " + str(sidecar))
    if tgwui is not None:
        install_tgwui(tgwui)

    if args.test:
        gradio = ensure_gradio_venv()
        env = dict(os.environ, **({"ARA_GRADIO437_PYTHON": str(gradio)} if gradio else {}))
        print("- running the tests")
        return run([python, "-m", "pytest"], env=env)
    if args.demo:
        print("- rendering the demo")
        return run([sidecar, "demo"])
    print(
        "\nNext:\n  " + str(sidecar) + " demo        render a talking video of the default persona\n"
        "  " + str(sidecar) + " info        show the device and the backends"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
