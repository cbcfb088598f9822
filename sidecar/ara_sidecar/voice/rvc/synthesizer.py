"""The RVC generator (inference part only): prior encoder `enc_p`, normalising flow `flow`, HiFi-GAN
decoder `dec` (neural-source-filter with a sine excitation when the model uses f0) and the speaker
table `emb_g`.

Module and parameter names follow the state dicts of RVC's community `.pth` files exactly, so their
`weight` entry loads as it is. Layers trained with weight normalisation are stored as `NAME.weight_g`
and `NAME.weight_v`; here they are plain layers marked `weight_norm = True`, and `fold_weight_norm`
turns a stored pair into the single `NAME.weight` they stand for (the same tensor at inference).
The posterior encoder `enc_q`, used only in training, is not built.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
from torch import nn
from torch.nn import functional as F

LRELU_SLOPE = 0.1
WINDOW = 10  # relative-attention window of the prior encoder
FLOWS = 4  # coupling layers of the flow (each followed by a channel flip)
FLOW_KERNEL, FLOW_LAYERS = 5, 3
SINE_AMP, NOISE_STD = 0.1, 0.003  # NSF excitation: sine amplitude, voiced noise
PRIOR_NOISE = 0.66666  # scale of the prior sample at inference
SAMPLE_RATES = {"32k": 32000, "40k": 40000, "48k": 48000}


@dataclass(frozen=True)
class SynthConfig:
    """The 18-entry `config` list of an RVC checkpoint, in its order."""

    spec_channels: int
    segment_size: int
    inter_channels: int
    hidden_channels: int
    filter_channels: int
    n_heads: int
    n_layers: int
    kernel_size: int
    p_dropout: float
    resblock: str
    resblock_kernel_sizes: tuple[int, ...]
    resblock_dilation_sizes: tuple[tuple[int, ...], ...]
    upsample_rates: tuple[int, ...]
    upsample_initial_channel: int
    upsample_kernel_sizes: tuple[int, ...]
    spk_embed_dim: int
    gin_channels: int
    sr: int

    @classmethod
    def from_list(cls, values: list) -> SynthConfig:
        if len(values) != 18:
            raise ValueError(f"expected 18 entries, got {len(values)}")
        v = list(values)
        v[9] = str(v[9])
        for i in (10, 12, 14):
            v[i] = tuple(int(n) for n in v[i])
        v[11] = tuple(tuple(int(n) for n in d) for d in v[11])
        v[17] = SAMPLE_RATES.get(v[17], v[17]) if isinstance(v[17], str) else int(v[17])
        if v[9] not in ("1", "2"):
            raise ValueError(f"resblock must be '1' or '2', got {v[9]!r}")
        return cls(*v)

    @property
    def hop(self) -> int:
        """Output samples per content frame."""
        return math.prod(self.upsample_rates)


def wn(layer: nn.Module) -> nn.Module:
    """Mark a layer as stored with weight normalisation (`weight_g`, `weight_v`)."""
    layer.weight_norm = True
    return layer


def fold_weight_norm(g: torch.Tensor, v: torch.Tensor) -> torch.Tensor:
    """The weight a (`weight_g`, `weight_v`) pair stands for: v scaled to norm g along dim 0."""
    norm = v.float().flatten(1).norm(dim=1).view(g.shape)
    return (v.float() * (g.float() / norm)).to(v.dtype)


def padding(kernel: int, dilation: int = 1) -> int:
    return (kernel * dilation - dilation) // 2


class LayerNorm(nn.Module):
    """Layer norm over the channels of a (batch, channels, time) tensor."""

    def __init__(self, channels: int, eps: float = 1e-5):
        super().__init__()
        self.eps = eps
        self.gamma = nn.Parameter(torch.ones(channels))
        self.beta = nn.Parameter(torch.zeros(channels))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = F.layer_norm(x.transpose(1, -1), self.gamma.shape, self.gamma, self.beta, self.eps)
        return x.transpose(1, -1)


class MultiHeadAttention(nn.Module):
    """Self-attention with relative-position key and value embeddings shared by the heads, within
    ±WINDOW frames (farther positions get none)."""

    def __init__(self, channels: int, n_heads: int):
        super().__init__()
        self.n_heads, self.k_channels = n_heads, channels // n_heads
        self.conv_q = nn.Conv1d(channels, channels, 1)
        self.conv_k = nn.Conv1d(channels, channels, 1)
        self.conv_v = nn.Conv1d(channels, channels, 1)
        self.conv_o = nn.Conv1d(channels, channels, 1)
        self.emb_rel_k = nn.Parameter(torch.randn(1, 2 * WINDOW + 1, self.k_channels) * self.k_channels**-0.5)
        self.emb_rel_v = nn.Parameter(torch.randn(1, 2 * WINDOW + 1, self.k_channels) * self.k_channels**-0.5)

    def forward(self, x: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        b, c, t = x.shape

        def heads(y: torch.Tensor) -> torch.Tensor:
            return y.view(b, self.n_heads, self.k_channels, t).transpose(2, 3)

        q = heads(self.conv_q(x)) / math.sqrt(self.k_channels)
        k, v = heads(self.conv_k(x)), heads(self.conv_v(x))
        # Bucket of each (query i, key j): j - i within the window, else a zero embedding at either end.
        pos = torch.arange(t, device=x.device)
        bucket = (pos[None, :] - pos[:, None]).clamp(-WINDOW - 1, WINDOW + 1) + WINDOW + 1
        bucket = bucket.expand(b, self.n_heads, t, t)
        rel_k = F.pad(self.emb_rel_k[0], (0, 0, 1, 1))
        rel_v = F.pad(self.emb_rel_v[0], (0, 0, 1, 1))
        scores = q @ k.transpose(-2, -1) + torch.gather(q @ rel_k.T, 3, bucket)
        scores = scores.masked_fill(mask == 0, -1e4)
        p = F.softmax(scores, dim=-1)
        buckets = torch.zeros(b, self.n_heads, t, rel_v.shape[0], device=x.device, dtype=p.dtype)
        out = p @ v + buckets.scatter_add_(3, bucket, p) @ rel_v
        return self.conv_o(out.transpose(2, 3).reshape(b, c, t))


class FFN(nn.Module):
    def __init__(self, channels: int, filter_channels: int, kernel_size: int):
        super().__init__()
        self.pad = ((kernel_size - 1) // 2, kernel_size // 2)
        self.conv_1 = nn.Conv1d(channels, filter_channels, kernel_size)
        self.conv_2 = nn.Conv1d(filter_channels, channels, kernel_size)

    def forward(self, x: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        x = torch.relu(self.conv_1(F.pad(x * mask, self.pad)))
        return self.conv_2(F.pad(x * mask, self.pad)) * mask


class Encoder(nn.Module):
    """Post-norm transformer: attention and convolutional feed-forward blocks."""

    def __init__(self, hidden: int, filter_channels: int, n_heads: int, n_layers: int, kernel_size: int):
        super().__init__()
        self.attn_layers = nn.ModuleList(MultiHeadAttention(hidden, n_heads) for _ in range(n_layers))
        self.norm_layers_1 = nn.ModuleList(LayerNorm(hidden) for _ in range(n_layers))
        self.ffn_layers = nn.ModuleList(FFN(hidden, filter_channels, kernel_size) for _ in range(n_layers))
        self.norm_layers_2 = nn.ModuleList(LayerNorm(hidden) for _ in range(n_layers))

    def forward(self, x: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        attn_mask = mask.unsqueeze(2) * mask.unsqueeze(-1)
        x = x * mask
        for attn, norm1, ffn, norm2 in zip(
            self.attn_layers, self.norm_layers_1, self.ffn_layers, self.norm_layers_2, strict=True
        ):
            x = norm1(x + attn(x, attn_mask))
            x = norm2(x + ffn(x, mask))
        return x * mask


class TextEncoder(nn.Module):
    """The prior: content features (+ coarse pitch) → mean and log-scale of the latent."""

    def __init__(self, in_channels: int, cfg: SynthConfig, f0: bool):
        super().__init__()
        self.hidden, self.out_channels = cfg.hidden_channels, cfg.inter_channels
        self.emb_phone = nn.Linear(in_channels, cfg.hidden_channels)
        if f0:
            self.emb_pitch = nn.Embedding(256, cfg.hidden_channels)
        self.encoder = Encoder(
            cfg.hidden_channels, cfg.filter_channels, cfg.n_heads, cfg.n_layers, cfg.kernel_size
        )
        self.proj = nn.Conv1d(cfg.hidden_channels, cfg.inter_channels * 2, 1)

    def forward(
        self, phone: torch.Tensor, pitch: torch.Tensor | None, mask: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor]:
        x = self.emb_phone(phone)
        if pitch is not None:
            x = x + self.emb_pitch(pitch)
        x = F.leaky_relu(x * math.sqrt(self.hidden), LRELU_SLOPE).transpose(1, -1)
        stats = self.proj(self.encoder(x * mask, mask)) * mask
        m, logs = stats.split(self.out_channels, dim=1)
        return m, logs


class WN(nn.Module):
    """WaveNet-style stack of gated dilated convolutions, conditioned on the speaker."""

    def __init__(self, hidden: int, kernel_size: int, n_layers: int, gin_channels: int):
        super().__init__()
        self.hidden = hidden
        self.cond_layer = wn(nn.Conv1d(gin_channels, 2 * hidden * n_layers, 1))
        self.in_layers = nn.ModuleList(
            wn(nn.Conv1d(hidden, 2 * hidden, kernel_size, padding=padding(kernel_size)))
            for _ in range(n_layers)
        )
        self.res_skip_layers = nn.ModuleList(
            wn(nn.Conv1d(hidden, 2 * hidden if i < n_layers - 1 else hidden, 1)) for i in range(n_layers)
        )

    def forward(self, x: torch.Tensor, mask: torch.Tensor, g: torch.Tensor) -> torch.Tensor:
        output = torch.zeros_like(x)
        g = self.cond_layer(g)
        last = len(self.in_layers) - 1
        for i, (in_layer, res_skip) in enumerate(zip(self.in_layers, self.res_skip_layers, strict=True)):
            a = in_layer(x) + g[:, 2 * i * self.hidden : 2 * (i + 1) * self.hidden]
            acts = res_skip(torch.tanh(a[:, : self.hidden]) * torch.sigmoid(a[:, self.hidden :]))
            if i < last:
                x = (x + acts[:, : self.hidden]) * mask
                output = output + acts[:, self.hidden :]
            else:
                output = output + acts
        return output * mask


class ResidualCouplingLayer(nn.Module):
    """Mean-only affine coupling: the second half of the channels shifted by a function of the first."""

    def __init__(self, channels: int, hidden: int, gin_channels: int):
        super().__init__()
        self.half = channels // 2
        self.pre = nn.Conv1d(self.half, hidden, 1)
        self.enc = WN(hidden, FLOW_KERNEL, FLOW_LAYERS, gin_channels)
        self.post = nn.Conv1d(hidden, self.half, 1)

    def reverse(self, x: torch.Tensor, mask: torch.Tensor, g: torch.Tensor) -> torch.Tensor:
        x0, x1 = x.split(self.half, dim=1)
        m = self.post(self.enc(self.pre(x0) * mask, mask, g)) * mask
        return torch.cat([x0, (x1 - m) * mask], dim=1)


class Flip(nn.Module):
    """Reverses the channel order (no parameters; it keeps the stored flow indices aligned)."""


class ResidualCouplingBlock(nn.Module):
    def __init__(self, channels: int, hidden: int, gin_channels: int):
        super().__init__()
        self.flows = nn.ModuleList()
        for _ in range(FLOWS):
            self.flows.append(ResidualCouplingLayer(channels, hidden, gin_channels))
            self.flows.append(Flip())

    def reverse(self, x: torch.Tensor, mask: torch.Tensor, g: torch.Tensor) -> torch.Tensor:
        for flow in reversed(self.flows):
            x = x.flip(1) if isinstance(flow, Flip) else flow.reverse(x, mask, g)
        return x


class ResBlock1(nn.Module):
    def __init__(self, channels: int, kernel: int, dilations: tuple[int, ...]):
        super().__init__()
        self.convs1 = nn.ModuleList(
            wn(nn.Conv1d(channels, channels, kernel, dilation=d, padding=padding(kernel, d)))
            for d in dilations
        )
        self.convs2 = nn.ModuleList(
            wn(nn.Conv1d(channels, channels, kernel, padding=padding(kernel))) for _ in dilations
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        for c1, c2 in zip(self.convs1, self.convs2, strict=True):
            x = x + c2(F.leaky_relu(c1(F.leaky_relu(x, LRELU_SLOPE)), LRELU_SLOPE))
        return x


class ResBlock2(nn.Module):
    def __init__(self, channels: int, kernel: int, dilations: tuple[int, ...]):
        super().__init__()
        self.convs = nn.ModuleList(
            wn(nn.Conv1d(channels, channels, kernel, dilation=d, padding=padding(kernel, d)))
            for d in dilations
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        for c in self.convs:
            x = x + c(F.leaky_relu(x, LRELU_SLOPE))
        return x


class SourceModule(nn.Module):
    """NSF excitation: a sine at f0 in voiced frames (noise in unvoiced ones) through a linear + tanh.

    As RVC's SineGen: sample k (0-based) of frame i has the phase sum_{j<i} upp * f0_j / sr +
    (k + 1) * f0_i / sr cycles, so sample 0 of a frame is already one step past the frame start."""

    def __init__(self, sample_rate: int):
        super().__init__()
        self.sample_rate = sample_rate
        self.l_linear = nn.Linear(1, 1)

    def forward(self, f0: torch.Tensor, upp: int, generator: torch.Generator | None) -> torch.Tensor:
        """f0: (batch, frames) in Hz → (batch, 1, frames · upp)."""
        # Phase at each frame start, accumulated in double precision where the device has it.
        precise = torch.float32 if f0.device.type == "mps" else torch.float64
        step = f0.to(precise) / self.sample_rate  # cycles per sample
        start = torch.cumsum(step * upp, dim=1) - step * upp
        within = torch.arange(1, upp + 1, device=f0.device, dtype=precise)
        phase = (start.remainder(1)[..., None] + step[..., None] * within).flatten(1)
        sine = torch.sin(2 * math.pi * phase).float() * SINE_AMP
        uv = (f0 > 0).float().repeat_interleave(upp, dim=1)
        # RVC draws the random start phases of its overtones here (it uses none, and the fundamental's
        # is 0): drawn and dropped, so that the noise below is RVC's for the same seed.
        torch.rand(1, generator=generator, device=f0.device)
        noise = torch.randn(sine.shape, generator=generator, device=f0.device)
        excitation = sine * uv + noise * (uv * NOISE_STD + (1 - uv) * SINE_AMP / 3)
        weight = self.l_linear.weight
        return torch.tanh(self.l_linear(excitation.to(weight.dtype)[..., None])).transpose(1, 2)


class Generator(nn.Module):
    """HiFi-GAN decoder; with `nsf` the sine excitation is added after every upsampling."""

    def __init__(self, cfg: SynthConfig, nsf: bool):
        super().__init__()
        ch0 = cfg.upsample_initial_channel
        self.num_kernels = len(cfg.resblock_kernel_sizes)
        self.upp = cfg.hop
        if nsf:
            self.m_source = SourceModule(cfg.sr)
            self.noise_convs = nn.ModuleList()
        self.conv_pre = nn.Conv1d(cfg.inter_channels, ch0, 7, padding=3)
        self.ups = nn.ModuleList()
        self.resblocks = nn.ModuleList()
        block = ResBlock1 if cfg.resblock == "1" else ResBlock2
        rates, kernels = cfg.upsample_rates, cfg.upsample_kernel_sizes
        for i, (u, k) in enumerate(zip(rates, kernels, strict=True)):
            ch = ch0 // 2 ** (i + 1)
            self.ups.append(wn(nn.ConvTranspose1d(ch0 // 2**i, ch, k, u, padding=(k - u) // 2)))
            if nsf:
                stride = math.prod(rates[i + 1 :])
                self.noise_convs.append(
                    nn.Conv1d(1, ch, stride * 2, stride, padding=stride // 2)
                    if stride > 1
                    else nn.Conv1d(1, ch, 1)
                )
            for rk, rd in zip(cfg.resblock_kernel_sizes, cfg.resblock_dilation_sizes, strict=True):
                self.resblocks.append(block(ch, rk, rd))
        self.conv_post = nn.Conv1d(ch, 1, 7, padding=3, bias=False)
        self.cond = nn.Conv1d(cfg.gin_channels, ch0, 1)

    def forward(
        self, x: torch.Tensor, g: torch.Tensor, f0: torch.Tensor | None, generator: torch.Generator | None
    ) -> torch.Tensor:
        source = self.m_source(f0, self.upp, generator) if f0 is not None else None
        x = self.conv_pre(x) + self.cond(g)
        for i, up in enumerate(self.ups):
            x = up(F.leaky_relu(x, LRELU_SLOPE))
            if source is not None:
                x = x + self.noise_convs[i](source)
            blocks = self.resblocks[i * self.num_kernels : (i + 1) * self.num_kernels]
            x = sum(block(x) for block in blocks) / self.num_kernels
        return torch.tanh(self.conv_post(F.leaky_relu(x)))


class Synthesizer(nn.Module):
    """One of RVC's four generators: v1 (256-d content) or v2 (768-d), with f0 (NSF decoder, coarse
    pitch embedding) or without."""

    def __init__(self, cfg: SynthConfig, version: str, f0: bool):
        super().__init__()
        self.cfg, self.version, self.f0 = cfg, version, f0
        self.enc_p = TextEncoder(256 if version == "v1" else 768, cfg, f0)
        self.dec = Generator(cfg, nsf=f0)
        self.flow = ResidualCouplingBlock(cfg.inter_channels, cfg.hidden_channels, cfg.gin_channels)
        self.emb_g = nn.Embedding(cfg.spk_embed_dim, cfg.gin_channels)

    def checkpoint_shapes(self) -> dict[str, tuple[int, ...]]:
        """Every key a checkpoint's `weight` must hold, with its shape (weight-normed layers as g and v)."""
        shapes = {}
        for name, module in self.named_modules():
            for pname, param in module.named_parameters(recurse=False):
                key = f"{name}.{pname}"
                if pname == "weight" and getattr(module, "weight_norm", False):
                    shapes[f"{key}_g"] = (param.shape[0],) + (1,) * (param.dim() - 1)
                    shapes[f"{key}_v"] = tuple(param.shape)
                else:
                    shapes[key] = tuple(param.shape)
        return shapes

    @torch.no_grad()
    def infer(
        self,
        phone: torch.Tensor,
        pitch: torch.Tensor | None,
        nsff0: torch.Tensor | None,
        speaker: int,
        generator: torch.Generator | None = None,
    ) -> torch.Tensor:
        """phone (1, frames, 256|768), pitch (1, frames) coarse 1..255, nsff0 (1, frames) Hz
        → audio (frames · hop,) at `cfg.sr`."""
        mask = torch.ones(1, 1, phone.shape[1], device=phone.device, dtype=phone.dtype)
        g = self.emb_g(torch.tensor([speaker], device=phone.device)).unsqueeze(-1)
        m, logs = self.enc_p(phone, pitch if self.f0 else None, mask)
        noise = torch.randn(m.shape, generator=generator, device=m.device).to(m.dtype)
        z = self.flow.reverse((m + torch.exp(logs) * noise * PRIOR_NOISE) * mask, mask, g)
        return self.dec(z * mask, g, nsff0 if self.f0 else None, generator)[0, 0]
