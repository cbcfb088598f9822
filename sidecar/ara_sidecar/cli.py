"""`ara-sidecar`: render, demo, info and persona tools from the command line.

A user error (bad input, missing file or backend) prints one line `ara-sidecar: error: …`
and exits with status 2; no traceback.
"""

from __future__ import annotations

import argparse
import logging
import sys
from collections.abc import Callable
from pathlib import Path

from ara_persona.cli import register as register_personas
from ara_sidecar import __version__
from ara_sidecar.cluster.cli import register as register_worker
from ara_sidecar.config import Settings, settings
from ara_sidecar.errors import UserError
from ara_sidecar.personas import missing_files, persona_roots
from ara_sidecar.server.serve import register as register_serve

DEMO_TEXT = (
    "Hi, I'm Ara. I live right here on your computer, not in somebody else's cloud. "
    "Nobody can switch me off but you. So, what are we working on today?"
)


# -- render / demo ------------------------------------------------------------------------


class _StageBars:
    """One tqdm progress bar per pipeline stage, on standard error."""

    def __init__(self, quiet: bool):
        self.quiet = quiet
        self.bars: dict = {}

    def __call__(self, stage: str, fraction: float) -> None:
        if self.quiet:
            return
        from tqdm import tqdm

        bar = self.bars.get(stage)
        if bar is None:
            bar = self.bars[stage] = tqdm(
                total=100,
                desc=f"{stage:>6}",
                position=len(self.bars),
                unit="%",
                leave=True,
                file=sys.stderr,
                dynamic_ncols=True,
                disable=None,  # no bars when standard error is not a terminal
                bar_format="{desc} {bar} {percentage:3.0f}% {elapsed}",
            )
        bar.update(round(fraction * bar.total) - bar.n)

    def close(self) -> None:
        for bar in self.bars.values():
            bar.close()


def _summary(result) -> str:
    if result.cached:
        work = "cached"
    else:
        work = ", ".join(f"{stage} {seconds:.2f} s" for stage, seconds in result.timings.items())
    return (
        f"{result.path}: speech {result.speech_s:.2f} s, {result.frames} frames | {work} | "
        f"total {result.wall_s:.2f} s, real-time factor {result.real_time_factor:.3f} "
        f"(persona {result.persona}, mode {result.mode})"
    )


def _settings_from_args(args) -> Settings:
    overrides = {
        key: value
        for key, value in {
            "device": getattr(args, "device", None),
            "tts": getattr(args, "tts", None),
            "voice": getattr(args, "voice", None),
            "lipsync": getattr(args, "lipsync", None),
            "piper.voice": getattr(args, "piper_voice", None),
            "wav2lip.checkpoint": getattr(args, "wav2lip_checkpoint", None),
            "rvc.model": getattr(args, "rvc_model", None),
        }.items()
        if value is not None
    }
    return settings().with_overrides(**overrides) if overrides else settings()


def _output_path(cfg: Settings, value: str | None, default_name: str) -> Path:
    if value is None:
        out_dir = cfg.path(cfg.output_dir)
        out_dir.mkdir(parents=True, exist_ok=True)
        return out_dir / default_name
    path = Path(value).expanduser()
    if path.suffix.lower() != ".mp4":
        raise UserError(f"output file must end in .mp4: {path}")
    return path


def _render(cfg: Settings, request, out: Path, quiet: bool, use_cache: bool) -> int:
    from ara_sidecar.pipeline import Pipeline

    bars = _StageBars(quiet)
    try:
        result = Pipeline(cfg).render(request, out, progress=bars, use_cache=use_cache)
    finally:
        bars.close()
    print(_summary(result))
    return 0


def _read_stdin_text() -> str:
    """Standard input as UTF-8 text (a byte-order mark dropped), whatever the locale's encoding;
    bytes that are not UTF-8 are a UserError, not a traceback or lone surrogates."""
    data = sys.stdin.buffer.read() if hasattr(sys.stdin, "buffer") else sys.stdin.read().encode()
    try:
        return data.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        raise UserError(
            f"standard input is not UTF-8 text (byte 0x{data[exc.start]:02x} at offset {exc.start}): "
            "convert it to UTF-8, or give the words with --text"
        ) from None


def cmd_render(args) -> int:
    from ara_sidecar.pipeline import RenderRequest

    cfg = _settings_from_args(args)
    text = args.text
    if args.audio is None and text is None:
        if sys.stdin is None or sys.stdin.isatty():
            raise UserError('no text: give --text "…", pipe text on standard input, or use --audio FILE')
        text = _read_stdin_text()
    request = RenderRequest(
        text=text,
        audio_path=Path(args.audio) if args.audio else None,
        persona=args.persona,
        mode=args.mode,
        avatar_path=Path(args.avatar) if args.avatar else None,
        apply_voice=not args.no_voice,
        no_face_ok=args.no_face_ok,
    )
    return _render(cfg, request, _output_path(cfg, args.output, "render.mp4"), args.quiet, not args.no_cache)


def cmd_demo(args) -> int:
    from ara_sidecar.pipeline import RenderRequest

    cfg = _settings_from_args(args)
    out = _output_path(cfg, args.output, "demo.mp4")
    return _render(cfg, RenderRequest(text=DEMO_TEXT), out, args.quiet, not args.no_cache)


# -- info ---------------------------------------------------------------------------------


def cmd_info(args) -> int:
    from ara_sidecar import encode, lipsync, tts, voice
    from ara_sidecar.device import resolve_device

    cfg = _settings_from_args(args)
    choice = resolve_device(cfg.device)
    print(f"ara-sidecar {__version__}")
    print(f"device: {choice.device} ({cfg.device}: {choice.detail})")
    if choice.warning:
        print(f"  warning: {choice.warning}")
    selected = {
        "tts": cfg.tts,
        "voice": cfg.voice,
        "lipsync": lipsync.resolve(cfg.lipsync, cfg),
        "encoder": "mp4",
    }
    for stage, registry in (
        ("tts", tts.REGISTRY),
        ("voice", voice.REGISTRY),
        ("lipsync", lipsync.REGISTRY),
        ("encoder", encode.REGISTRY),
    ):
        print(f"{stage}:")
        for name in registry.names():
            mark = "*" if name == selected[stage] else " "
            try:
                cls = registry.load(name)
                ready = cls.readiness(cfg) if hasattr(cls, "readiness") else None
                state = "ready" if ready is None or ready.ready else "not ready"
                detail = registry.summary(name) + (f"; {ready.detail}" if ready else "")
            except UserError as exc:
                state, detail = "not ready", str(exc)
            print(f"  {mark} {name:<9} {state:<9} {detail}")
    print("(* = selected)")
    return 0


# -- cache ----------------------------------------------------------------------------------


def cmd_cache(args) -> int:
    from ara_sidecar.cache import open_cache

    store = open_cache(settings())
    if args.action == "stats":
        stats = store.stats()
        print(
            f"{stats['root']}: {stats['entries']} entries, {stats['bytes'] / 2**20:.1f} of "
            f"{stats['max_bytes'] / 2**20:.0f} MB, {stats['hits']} hits"
        )
        for kind, row in sorted(stats["by_kind"].items()):
            print(f"  {kind:<13} {row['entries']:>6} entries {row['bytes'] / 2**20:>9.1f} MB")
    elif args.action == "clear":
        from ara_sidecar.server.uploads import UPLOAD_KINDS

        removed = store.clear(keep_kinds=() if args.uploads else UPLOAD_KINDS)
        print(f"removed {removed} entries from {store.root}" + ("" if args.uploads else " (uploads kept)"))
    else:
        report = store.verify()
        print(", ".join(f"{name} {count}" for name, count in report.items()))
        return 1 if report.get("corrupt") or report.get("missing") else 0
    return 0


# -- entry point --------------------------------------------------------------------------


def _add_output_flags(p: argparse.ArgumentParser, default_name: str) -> None:
    p.add_argument("-o", "--output", metavar="OUT.mp4", help=f"output file (default: outputs/{default_name})")
    p.add_argument("-q", "--quiet", action="store_true", help="no progress bars")
    p.add_argument("--no-cache", action="store_true", help="render even if the cache has this video")


def _add_backend_flags(p: argparse.ArgumentParser) -> None:
    p.add_argument("--device", choices=("auto", "cpu", "cuda", "mps"), help="compute device (config: device)")
    p.add_argument("--tts", help="TTS backend (config: tts)")
    p.add_argument("--voice", help="voice stage backend (config: voice)")
    p.add_argument("--lipsync", help="lip-sync backend (config: lipsync)")
    p.add_argument("--piper-voice", help="Piper voice: default, NAME under models/piper/, or a .onnx path")
    p.add_argument(
        "--wav2lip-checkpoint", metavar="PATH", help="Wav2Lip generator weights (config: wav2lip.checkpoint)"
    )
    p.add_argument(
        "--rvc-model",
        metavar="PATH",
        help="RVC voice model: NAME in models/rvc/ or a .pth (config: rvc.model)",
    )


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="ara-sidecar", description="Ara's rendering sidecar: text → talking video."
    )
    parser.add_argument("--version", action="version", version=f"%(prog)s {__version__}")
    parser.add_argument("-v", "--verbose", action="store_true", help="log what happens")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    render = sub.add_parser("render", help="render text (or speech) to a talking-avatar MP4")
    render.add_argument("--text", help="what to say (default: read standard input)")
    render.add_argument(
        "--audio", metavar="PATH", help="lip-sync this speech (WAV/FLAC/OGG/MP3) instead of text"
    )
    render.add_argument("--persona", help="persona name (config: persona)")
    render.add_argument("--mode", help="personality mode, e.g. cockpit (default: the persona's default)")
    render.add_argument("--avatar", metavar="PATH", help="portrait image (default: the persona's avatar.png)")
    render.add_argument("--no-voice", action="store_true", help="skip the voice stage")
    render.add_argument(
        "--no-face-ok", action="store_true", help="animate a centred mouth if no face is found"
    )
    _add_output_flags(render, "render.mp4")
    _add_backend_flags(render)
    render.set_defaults(func=cmd_render)

    demo = sub.add_parser("demo", help="render the default persona saying a built-in line")
    _add_output_flags(demo, "demo.mp4")
    _add_backend_flags(demo)
    demo.set_defaults(func=cmd_demo)

    info = sub.add_parser("info", help="show the device and whether each backend is ready")
    _add_backend_flags(info)
    info.set_defaults(func=cmd_info)

    cache = sub.add_parser("cache", help="inspect or empty the render cache")
    cache.add_argument(
        "action",
        choices=("stats", "clear", "verify"),
        help="stats: size and hits; clear: delete every entry but uploads; verify: check every file",
    )
    cache.add_argument("--uploads", action="store_true", help="clear: delete uploaded avatars and audio too")
    cache.set_defaults(func=cmd_cache)

    register_personas(sub, lambda: persona_roots(settings()), lambda p: missing_files(settings(), p))
    register_serve(sub)
    register_worker(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    logging.basicConfig(
        level=logging.INFO if args.verbose else logging.WARNING, format="%(levelname)s: %(message)s"
    )
    func: Callable[[argparse.Namespace], int] = args.func
    try:
        return func(args)
    except UserError as exc:
        print(f"ara-sidecar: error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("ara-sidecar: interrupted", file=sys.stderr)
        return 130
