"""The `personas` command: `check [DIR]` validates personas, `select` tries the mode selector,
`eval [PERSONA]` measures it on a corpus split, `train [PERSONA]` rebuilds its model.

`register` adds it to any argparse command line (the sidecar's `ara-sidecar personas …`);
`main` is a stand-alone command line (`python -m ara_persona personas …`) that needs only
this package, for example inside text-generation-webui.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Callable
from dataclasses import asdict
from datetime import time
from functools import partial
from pathlib import Path

from ara_persona.dataset import DATASET_FILE
from ara_persona.loader import MANIFESTO_FILE, MODES_FILE, discover, load_persona
from ara_persona.model import MODE_NAMES, Persona, PersonaError, parse_time
from ara_persona.selector import select_mode, selector_data

Roots = Callable[[], list[Path]]
Requirements = Callable[[Persona], list[str]]  # what a persona needs that is missing, e.g. its voice files
SHIPPED_PERSONAS = Path(__file__).resolve().parents[2] / "personas"


def _clock(text: str) -> time:
    try:
        return parse_time(text)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


def _jobs(text: str) -> int:
    try:
        jobs = int(text)
    except ValueError:
        jobs = 0
    if jobs < 1:
        raise argparse.ArgumentTypeError(f"expected a number of processes (1 or more), not {text!r}")
    return jobs


def _mode_name(text: str) -> str:
    name = text.strip().lower()
    if name not in MODE_NAMES:
        raise argparse.ArgumentTypeError(f"unknown mode {text!r}; valid modes: {', '.join(MODE_NAMES)}")
    return name


def _persona_dirs(folder: Path) -> list[tuple[str, Path | None, str]]:
    """(name, persona folder or None, problem) for `folder`: one persona or a folder of them."""
    if (folder / MODES_FILE).is_file():
        return [(folder.name, folder, "")]
    if not folder.is_dir():
        return [(str(folder), None, "not a directory")]
    found: list[tuple[str, Path | None, str]] = []
    for child in sorted(p for p in folder.iterdir() if p.is_dir()):
        if (child / MODES_FILE).is_file():
            found.append((child.name, child, ""))
        elif (child / MANIFESTO_FILE).exists() or (child / DATASET_FILE).exists():
            found.append((child.name, None, f"{child}: not a persona (no {MODES_FILE})"))
    return found or [(str(folder), None, f"no personas found (a persona is a folder with {MODES_FILE})")]


def run_check(
    args: argparse.Namespace, default_roots: Roots, requirements: Requirements | None = None
) -> int:
    """Validate every persona under `args.dir` (default: all configured roots); 1 on any problem.
    `requirements` (the sidecar's) also says what a persona names that is not installed."""
    folders = [args.dir] if args.dir is not None else default_roots()
    failed = 0
    for folder in folders:
        for name, directory, problem in _persona_dirs(Path(folder)):
            persona = None
            if directory is not None:
                try:
                    persona = load_persona(directory)
                    selector_data(persona)  # selector/: crisis patterns, lexicon, acknowledgements, model
                    missing = requirements(persona) if requirements is not None else []
                    if missing:
                        persona, problem = None, "; ".join(missing)
                except PersonaError as exc:
                    persona, problem = None, str(exc)
            if persona is None:
                failed += 1
                print(f"FAIL  {name}: {problem}")
                continue
            text = (
                f"manifesto {len(persona.manifesto) / 1000:.1f} KB" if persona.manifesto else "no manifesto"
            )
            summary = f"{len(persona.modes)} modes, {text}, {len(persona.examples)} examples"
            print(f"OK    {name}: {summary} ({directory})")
    return 1 if failed else 0


def run_select(args: argparse.Namespace, default_roots: Roots) -> int:
    """Print the mode the selector picks for the given turn, and why."""
    found = discover(*default_roots())
    if args.persona not in found:
        valid = ", ".join(sorted(found)) or "none found"
        print(f"error: unknown persona {args.persona!r}; valid personas: {valid}", file=sys.stderr)
        return 1
    try:
        persona = load_persona(found[args.persona])
        choice = select_mode(
            persona,
            args.user,
            args.reply,
            now=args.time,
            previous=args.previous,
            force=args.force,
            disabled=args.disable,
        )
    except PersonaError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    print(json.dumps(asdict(choice), ensure_ascii=False) if args.json else f"{choice.mode}: {choice.reason}")
    return 0


def _persona(name: str, default_roots: Roots):
    found = discover(*default_roots())
    if name not in found:
        valid = ", ".join(sorted(found)) or "none found"
        raise PersonaError(f"unknown persona {name!r}; valid personas: {valid}")
    return load_persona(found[name])


def run_eval(args: argparse.Namespace, default_roots: Roots) -> int:
    """Accuracy, confusion, crisis recall, hard-negative alarms and latency on a corpus split."""
    from ara_persona.evaluate import evaluate, format_report

    try:
        report = evaluate(_persona(args.persona, default_roots), args.split, cv=args.cv)
    except PersonaError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    if args.json:
        print(json.dumps(report.as_dict(), indent=2))
    else:
        print(format_report(report, errors=args.errors))
    return 0


def run_train(args: argparse.Namespace, default_roots: Roots) -> int:
    """Refit selector/model.json and its arrays from selector/train/ (needs numpy, scipy and torch)."""
    try:
        from ara_persona.training import write_model

        persona = _persona(args.persona, default_roots)
        path = write_model(persona, jobs=args.jobs)
    except ImportError as exc:
        print(f"error: training needs numpy and scipy ({exc}); pip install 'ara-avatar'", file=sys.stderr)
        return 1
    except PersonaError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    print(f"wrote {path}")
    return 0


def register(
    subparsers: argparse._SubParsersAction, default_roots: Roots, requirements: Requirements | None = None
) -> argparse.ArgumentParser:
    """Add the `personas` command; `default_roots()` gives the configured persona root folders,
    `requirements` what `check` should also verify (see run_check)."""
    personas = subparsers.add_parser("personas", help="validate personas and try the mode selector")
    sub = personas.add_subparsers(dest="personas_command", metavar="COMMAND", required=True)

    check = sub.add_parser("check", help="validate personas; exits 1 on any problem")
    check.add_argument(
        "dir",
        nargs="?",
        type=Path,
        metavar="DIR",
        help="a persona folder or a folder of personas (default: every configured persona folder)",
    )
    check.set_defaults(func=partial(run_check, default_roots=default_roots, requirements=requirements))

    select = sub.add_parser("select", help="show the mode the selector picks for a turn, and why")
    select.add_argument("--user", required=True, metavar="TEXT", help="the user's last message")
    select.add_argument("--reply", default="", metavar="TEXT", help="Ara's reply, if there is one")
    select.add_argument("--time", type=_clock, metavar="HH:MM", help="local time (default: now)")
    select.add_argument("--previous", type=_mode_name, metavar="MODE", help="the mode of the previous turn")
    select.add_argument("--force", type=_mode_name, metavar="MODE", help="always use this mode")
    select.add_argument(
        "--disable",
        type=_mode_name,
        action="append",
        default=[],
        metavar="MODE",
        help="a mode automatic selection may not pick (repeatable)",
    )
    select.add_argument("--persona", default="ara", metavar="NAME", help="persona name (default: ara)")
    select.add_argument("--json", action="store_true", help='print {"mode": …, "reason": …}')
    select.set_defaults(func=partial(run_select, default_roots=default_roots))

    evaluate = sub.add_parser("eval", help="measure the mode selector on the persona's labelled corpus")
    evaluate.add_argument("persona", nargs="?", default="ara", metavar="PERSONA", help="default: ara")
    evaluate.add_argument(
        "--split", choices=("heldout", "train"), default="heldout", help="which split (default: heldout)"
    )
    evaluate.add_argument("--json", action="store_true", help="print the figures as JSON")
    evaluate.add_argument(
        "--cv",
        action="store_true",
        help="the training split, 5-fold cross-validated (refits the model 5 times)",
    )
    evaluate.add_argument(
        "--errors", action="store_true", help="list the misclassified messages (train only)"
    )
    evaluate.set_defaults(func=partial(run_eval, default_roots=default_roots))

    train = sub.add_parser("train", help="rebuild the selector model from the persona's training split")
    train.add_argument("persona", nargs="?", default="ara", metavar="PERSONA", help="default: ara")
    train.add_argument(
        "--jobs",
        type=_jobs,
        default=None,
        metavar="N",
        help="processes fitting the cross-validation folds and the model side by side "
        "(default: one per CPU core, at most 6; the same model either way)",
    )
    train.set_defaults(func=partial(run_train, default_roots=default_roots))
    return personas


def main(argv: list[str] | None = None) -> int:
    """`python -m ara_persona [--personas-dir DIR]… personas …`."""
    parser = argparse.ArgumentParser(prog="python -m ara_persona", description=__doc__.splitlines()[0])
    parser.add_argument(
        "--personas-dir",
        action="append",
        type=Path,
        metavar="DIR",
        help=f"a folder of personas; repeatable, the last wins on a name clash (default: {SHIPPED_PERSONAS})",
    )
    roots: list[Path] = []
    register(parser.add_subparsers(dest="command", metavar="COMMAND", required=True), lambda: roots)
    args = parser.parse_args(argv)
    roots.extend(args.personas_dir or [SHIPPED_PERSONAS])
    return args.func(args)
