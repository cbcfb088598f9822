"""Content features for RVC: HuBERT/ContentVec through `transformers`, without fairseq.

Two forms of the same weights load onto one model (`HubertModel` plus the `final_proj` linear layer):
- a transformers folder (`config.json` + `model.safetensors` or `pytorch_model.bin`), as newer RVC
  builds and Applio ship ContentVec;
- the classic fairseq `hubert_base.pt`: its pickle is read by a restricted unpickler that rebuilds
  tensors and turns every other class (fairseq's configs, argparse, omegaconf) into an inert stub,
  so nothing from fairseq is imported or run; the `model` state dict is renamed onto transformers'
  keys and the architecture is read from the tensor shapes.

v1 voice models take layer 9 through `final_proj` (256-d), v2 the last layer (768-d).
"""

from __future__ import annotations

import pickle
import re
from pathlib import Path
from types import SimpleNamespace

import torch
from torch import nn

from ara_sidecar.errors import BackendUnavailable
from ara_sidecar.weights import is_state_dict, read_checkpoint

V1_LAYER = 9
FOLDER_NAMES = ("contentvec", "hubert_base")  # transformers folders under models/hubert/
FAIRSEQ_NAME = "hubert_base.pt"
CONV_STRIDES = (5, 2, 2, 2, 2, 2, 2)  # of HuBERT's waveform encoder; not stored in the weights

# fairseq key (regex) → transformers key, for HuBERT base (post-norm transformer, group-norm convs)
FAIRSEQ_KEYS = (
    (r"feature_extractor\.conv_layers\.(\d+)\.0\.weight", r"feature_extractor.conv_layers.\1.conv.weight"),
    (
        r"feature_extractor\.conv_layers\.0\.2\.(weight|bias)",
        r"feature_extractor.conv_layers.0.layer_norm.\1",
    ),
    (r"layer_norm\.(weight|bias)", r"feature_projection.layer_norm.\1"),
    (r"post_extract_proj\.(weight|bias)", r"feature_projection.projection.\1"),
    (r"mask_emb", r"masked_spec_embed"),
    (r"encoder\.pos_conv\.0\.bias", r"encoder.pos_conv_embed.conv.bias"),
    (r"encoder\.pos_conv\.0\.weight_g", r"encoder.pos_conv_embed.conv.<g>"),
    (r"encoder\.pos_conv\.0\.weight_v", r"encoder.pos_conv_embed.conv.<v>"),
    (r"encoder\.layer_norm\.(weight|bias)", r"encoder.layer_norm.\1"),
    (r"encoder\.layers\.(\d+)\.self_attn\.(\w+_proj)\.(weight|bias)", r"encoder.layers.\1.attention.\2.\3"),
    (r"encoder\.layers\.(\d+)\.self_attn_layer_norm\.(weight|bias)", r"encoder.layers.\1.layer_norm.\2"),
    (r"encoder\.layers\.(\d+)\.fc1\.(weight|bias)", r"encoder.layers.\1.feed_forward.intermediate_dense.\2"),
    (r"encoder\.layers\.(\d+)\.fc2\.(weight|bias)", r"encoder.layers.\1.feed_forward.output_dense.\2"),
    (r"encoder\.layers\.(\d+)\.final_layer_norm\.(weight|bias)", r"encoder.layers.\1.final_layer_norm.\2"),
    (r"final_proj\.(weight|bias)", r"final_proj.\1"),
)
FAIRSEQ_UNUSED = ("label_embs_concat",)  # pre-training targets


def find_hubert(models_dir: Path, configured: Path | None) -> Path:
    """The configured file or folder, else the first of models/hubert/{contentvec,hubert_base}/ and
    models/hubert/hubert_base.pt that exists."""
    folder = models_dir / "hubert"
    candidates = (
        [configured]
        if configured is not None
        else [
            *(folder / name for name in FOLDER_NAMES),
            folder / FAIRSEQ_NAME,
        ]
    )
    found = next((p for p in candidates if (p / "config.json").is_file() or p.is_file()), None)
    if found is None:
        where = (
            f"{candidates[0]} (rvc.hubert)"
            if configured is not None
            else (
                f"{folder}/contentvec/ (config.json + model.safetensors or pytorch_model.bin) or "
                f"{folder}/{FAIRSEQ_NAME}"
            )
        )
        raise BackendUnavailable(
            f"RVC needs the ContentVec/HuBERT base weights: put them at {where}; see models/README.md"
        )
    return found


class ContentEncoder(nn.Module):
    """A transformers `HubertModel` with the `final_proj` layer RVC v1 uses."""

    def __init__(self, hubert: nn.Module, final_proj: nn.Linear):
        super().__init__()
        self.hubert = hubert
        self.final_proj = final_proj

    @torch.no_grad()
    def forward(self, audio: torch.Tensor, version: str) -> torch.Tensor:
        """audio (1, samples) at 16 kHz → (1, frames, 256 | 768), one frame per 20 ms."""
        if version == "v1":
            hidden = self.hubert(audio, output_hidden_states=True).hidden_states[V1_LAYER]
            return self.final_proj(hidden)
        return self.hubert(audio).last_hidden_state


def _with_final_proj():
    from transformers import HubertModel

    class HubertWithFinalProj(HubertModel):
        def __init__(self, config):
            super().__init__(config)
            self.final_proj = nn.Linear(config.hidden_size, config.classifier_proj_size)

    return HubertWithFinalProj


def load_hubert(path: Path) -> ContentEncoder:
    """The content encoder from a transformers folder or a fairseq `hubert_base.pt` (on the CPU)."""
    model = _load_folder(path) if path.is_dir() else _load_fairseq(path)
    if model.config.num_hidden_layers < V1_LAYER:
        raise BackendUnavailable(
            f"{path} has {model.config.num_hidden_layers} layers; RVC needs at least {V1_LAYER}"
        )
    final_proj = model.final_proj
    del model.final_proj
    return ContentEncoder(model, final_proj).eval().requires_grad_(False)


def _load_folder(path: Path) -> nn.Module:
    try:
        model, info = _with_final_proj().from_pretrained(
            str(path), local_files_only=True, output_loading_info=True
        )
    except (OSError, ValueError) as exc:
        raise BackendUnavailable(
            f"{path} is not a readable transformers HuBERT/ContentVec folder: {exc}"
        ) from None
    missing = [k for k in info["missing_keys"] if not k.startswith("masked_spec_embed")]
    if missing:
        more = f" and {len(missing) - 3} more" if len(missing) > 3 else ""
        raise BackendUnavailable(
            f"{path} lacks {len(missing)} HuBERT weights ({', '.join(missing[:3])}{more}); RVC needs "
            "ContentVec/HuBERT base with its final_proj layer"
        )
    return model


class _Stub:
    """Stands in for any class the restricted unpickler does not rebuild; keeps what it is given."""

    def __init__(self, *args, **kwargs):
        self.args, self.kwargs = args, kwargs

    def __setstate__(self, state):
        self.state = state


def _restricted_pickle(allowed: set[tuple[str, str]]) -> SimpleNamespace:
    class Unpickler(pickle.Unpickler):
        def find_class(self, module: str, name: str):
            if (module, name) in allowed or (module == "torch" and name.endswith("Storage")):
                return super().find_class(module, name)
            return type(name, (_Stub,), {"__module__": "ara_sidecar.stub." + module})

    return SimpleNamespace(
        Unpickler=Unpickler, load=lambda f, **kw: Unpickler(f, **kw).load(), __name__="pickle"
    )


SAFE_GLOBALS = {
    ("torch._utils", "_rebuild_tensor_v2"),
    ("torch._utils", "_rebuild_parameter"),
    ("torch._utils", "_rebuild_tensor"),
    ("torch", "float32"),
    ("torch", "float16"),
    ("collections", "OrderedDict"),
}


def read_fairseq_state(path: Path) -> dict[str, torch.Tensor]:
    """The `model` state dict of a fairseq checkpoint, without importing fairseq."""
    data = read_checkpoint(path, weights_only=False, pickle_module=_restricted_pickle(SAFE_GLOBALS))
    state = data.get("model") if isinstance(data, dict) else None
    if not is_state_dict(state):
        raise BackendUnavailable(
            f"{path} is not a fairseq HuBERT checkpoint (expected a dict with a 'model' state dict)"
        )
    return state


def _rename(key: str) -> str | None:
    for pattern, target in FAIRSEQ_KEYS:
        if re.fullmatch(pattern, key):
            return re.sub(pattern, target, key)
    return None


def _load_fairseq(path: Path) -> nn.Module:
    from transformers import HubertConfig

    state = read_fairseq_state(path)
    unknown = [k for k in state if _rename(k) is None and k not in FAIRSEQ_UNUSED]
    required = (
        "post_extract_proj.weight",
        "encoder.pos_conv.0.weight_v",
        "final_proj.weight",
        "encoder.layers.0.fc1.weight",
    )
    absent = [k for k in required if k not in state]
    if unknown or absent:
        raise BackendUnavailable(
            f"{path} is not a fairseq HuBERT base checkpoint ("
            + "; ".join(
                f"{label}: {', '.join(keys[:3])}"
                for label, keys in (("unknown keys", unknown), ("missing", absent))
                if keys
            )
            + ")"
        )
    hidden = state["post_extract_proj.weight"].shape[0]
    convs = sorted(
        int(m[1])
        for k in state
        if (m := re.fullmatch(r"feature_extractor\.conv_layers\.(\d+)\.0\.weight", k))
    )
    pos = state["encoder.pos_conv.0.weight_v"]
    config = HubertConfig(
        hidden_size=hidden,
        num_hidden_layers=1 + max(int(k.split(".")[2]) for k in state if k.startswith("encoder.layers.")),
        num_attention_heads=hidden // 64,  # HuBERT's heads are 64 wide
        intermediate_size=state["encoder.layers.0.fc1.weight"].shape[0],
        conv_dim=tuple(state[f"feature_extractor.conv_layers.{i}.0.weight"].shape[0] for i in convs),
        conv_kernel=tuple(state[f"feature_extractor.conv_layers.{i}.0.weight"].shape[2] for i in convs),
        conv_stride=CONV_STRIDES[: len(convs)],
        num_conv_pos_embeddings=pos.shape[2],
        num_conv_pos_embedding_groups=hidden // pos.shape[1],
        classifier_proj_size=state["final_proj.weight"].shape[0],
        feat_extract_norm="group",
        do_stable_layer_norm=False,
    )
    model = _with_final_proj()(config)
    names = set(model.state_dict())
    g, v = (
        ("parametrizations.weight.original0", "parametrizations.weight.original1")
        if "encoder.pos_conv_embed.conv.parametrizations.weight.original0" in names
        else ("weight_g", "weight_v")
    )
    mapped = {
        _rename(k).replace("<g>", g).replace("<v>", v): t for k, t in state.items() if k not in FAIRSEQ_UNUSED
    }
    try:
        model.load_state_dict(mapped, strict=True)
    except RuntimeError as exc:
        raise BackendUnavailable(f"{path} does not fit HuBERT base: {str(exc).splitlines()[0]}") from None
    return model
