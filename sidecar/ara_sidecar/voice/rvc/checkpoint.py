"""Finding and loading RVC voice models (`NAME.pth`, optional `NAME.index` beside it).

A community RVC model is a `torch.save`d dict: `weight` (the generator's state dict without the
training-only posterior encoder `enc_q`), `config` (the 18 constructor arguments, ending with
spk_embed_dim, gin_channels and the sample rate), `f0` (1 = pitch-conditioned, 0 = not), `version`
("v1": 256-d content features, "v2": 768-d; absent in early v1 files) and `sr` ("40k", …).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from ara_sidecar.config import Settings
from ara_sidecar.errors import BackendUnavailable
from ara_sidecar.weights import read_checkpoint, shape_mismatches

if TYPE_CHECKING:
    import torch

    from ara_sidecar.voice.rvc.synthesizer import Synthesizer


def model_dir(settings: Settings) -> Path:
    return settings.path(settings.models_dir) / "rvc"


# What a name that is not found was meant to be (the places looked at are listed before it).
SETTING_HINT = "set rvc.model, ARA_RVC_MODEL or --rvc-model to NAME under models/rvc/ or a .pth path"
MODE_HINT = "a mode's rvc_model in the persona's modes.yaml: NAME under models/rvc/ or a .pth path"


def find_model(settings: Settings, mode_model: str | None = None) -> Path:
    """The model of a mode: the rvc.model setting (ARA_RVC_MODEL, --rvc-model) when set, else the
    mode's `rvc_model` (modes.yaml), else the only `.pth` in models/rvc/."""
    if settings.rvc.model is None and mode_model is not None:
        return _resolve(settings, mode_model, MODE_HINT)
    model = default_model(settings)
    if model is None:
        models = _models(settings)
        have = f"found {', '.join(p.name for p in models)}" if models else "found none"
        raise BackendUnavailable(
            f"no RVC model chosen: put one NAME.pth in {model_dir(settings)}/, choose one with rvc.model, "
            f"ARA_RVC_MODEL or --rvc-model, or name one with rvc_model in the persona's modes.yaml ({have})"
        )
    return model


def default_model(settings: Settings) -> Path | None:
    """The model of modes without their own `rvc_model`: the rvc.model setting (an error when it is
    not found), else the only `.pth` in models/rvc/; None when there are none or several."""
    if settings.rvc.model is not None:
        return _resolve(settings, settings.rvc.model, SETTING_HINT)
    models = _models(settings)
    return models[0] if len(models) == 1 else None


def _models(settings: Settings) -> list[Path]:
    folder = model_dir(settings)
    return sorted(folder.glob("*.pth")) if folder.is_dir() else []


def _resolve(settings: Settings, value: str, hint: str) -> Path:
    """A model named as NAME (models/rvc/NAME or NAME.pth) or a path."""
    path = Path(value)
    candidates = [settings.path(path)]
    if path.parent == Path("."):  # a bare name: models/rvc/NAME(.pth)
        folder = model_dir(settings)
        candidates += [folder / path.name, folder / f"{path.name}.pth"]
    found = next((p for p in candidates if p.is_file()), None)
    if found is None:
        raise BackendUnavailable(
            f"RVC model not found: {value} (looked for {', '.join(map(str, candidates))}; {hint})"
        )
    return found


def find_index(settings: Settings, model: Path, mode_model: str | None = None) -> Path | None:
    """The configured index (rvc.index, but not for a model a mode chose: it may be any voice), else
    NAME.index or the one `*.index` mentioning NAME beside the model."""
    chosen_by_mode = settings.rvc.model is None and mode_model is not None
    if settings.rvc.index is not None and not chosen_by_mode:
        path = settings.path(settings.rvc.index)
        if not path.is_file():
            raise BackendUnavailable(f"RVC index not found: {path} (rvc.index)")
        return path
    exact = model.with_suffix(".index")
    if exact.is_file():
        return exact
    named = [p for p in model.parent.glob("*.index") if model.stem in p.name]
    return named[0] if len(named) == 1 else None


@dataclass(frozen=True)
class VoiceModel:
    path: Path
    synthesizer: Synthesizer
    version: str
    f0: bool
    sample_rate: int


def load_model(path: Path) -> VoiceModel:
    """A `Synthesizer` in eval mode on the CPU with the weights of the RVC model at `path`."""

    from ara_sidecar.voice.rvc.synthesizer import SynthConfig, Synthesizer, fold_weight_norm

    def bad(what: str) -> BackendUnavailable:
        return BackendUnavailable(f"{path} is not an RVC voice model: {what}")

    data = read_checkpoint(path)
    if not isinstance(data, dict) or not isinstance(data.get("weight"), dict) or "config" not in data:
        keys = ", ".join(map(str, data)) if isinstance(data, dict) else type(data).__name__
        raise bad(f"expected a dict with 'weight' and 'config' (an RVC inference model), found {keys}")
    weight = {k: v for k, v in data["weight"].items() if not k.startswith("enc_q.")}
    version = data.get("version", "v1")
    f0 = data.get("f0", 1)
    if version not in ("v1", "v2"):
        raise bad(f"unknown version {version!r} (expected 'v1' or 'v2')")
    if f0 not in (0, 1):
        raise bad(f"f0 must be 0 or 1, got {f0!r}")
    if "emb_g.weight" not in weight:
        raise bad("its weight has no emb_g.weight (speaker table)")
    config = list(data["config"])
    if len(config) == 18:
        config[15] = weight["emb_g.weight"].shape[0]  # the speaker count, as RVC itself does
    try:
        cfg = SynthConfig.from_list(config)
    except (TypeError, ValueError) as exc:
        raise bad(f"its config {data['config']!r} is not the 18-entry RVC list ({exc})") from None
    model = Synthesizer(cfg, version, bool(f0))
    problems = shape_mismatches({k: v.shape for k, v in weight.items()}, model.checkpoint_shapes())
    if problems:
        raise bad(f"its weights do not fit a {version} {'f0' if f0 else 'no-f0'} model ({problems})")
    state = {k: v.float() for k, v in weight.items() if not k.endswith(("weight_g", "weight_v"))}
    for key in weight:
        if key.endswith(".weight_g"):
            base = key.removesuffix("_g")
            state[base] = fold_weight_norm(weight[key].float(), weight[f"{base}_v"].float())
    model.load_state_dict(state)
    return VoiceModel(path, model.eval().requires_grad_(False), version, bool(f0), cfg.sr)


def saved_weights(model: Synthesizer) -> dict[str, torch.Tensor]:
    """`model`'s weights as RVC saves a voice model (its `weight` entry, before the fp16 cast):
    weight-normalised layers split into `weight_g` (the norm) and `weight_v` (the direction)."""
    weight = {}
    for name, module in model.named_modules():
        for pname, param in module.named_parameters(recurse=False):
            if pname == "weight" and getattr(module, "weight_norm", False):
                norm = param.detach().flatten(1).norm(dim=1).view(-1, *[1] * (param.dim() - 1))
                weight[f"{name}.weight_g"] = norm
                weight[f"{name}.weight_v"] = param.detach()
            else:
                weight[f"{name}.{pname}"] = param.detach()
    return weight
