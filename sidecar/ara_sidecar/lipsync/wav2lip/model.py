"""The Wav2Lip generator (Prajwal et al., 2020), written from the published architecture.

Module and parameter names follow the official checkpoints (`face_encoder_blocks`,
`audio_encoder`, `face_decoder_blocks`, `output_block`; each block `conv_block.0` = the
convolution, `conv_block.1` = its BatchNorm), so their state dicts load unchanged.

Input: a mel window (B, 1, 80, 16) and a face (B, 6, 96, 96) = the BGR crop with its lower
half zeroed, then the unmasked reference crop, in [0, 1]. Output: the BGR face (B, 3, 96, 96).

For a still portrait the face-encoder features are the same for every frame, so
`StillFaceDecoder` runs only the audio encoder and the decoder: BatchNorm is folded into the
convolutions, and each decoder layer's response to the constant skip features (they enter
by channel concatenation, a linear map) is precomputed into a per-pixel bias. It can also
compute only the face's lower rows (`first_row`), those the paste-back blends in: each
upsampling stage then starts at the first input row those rows depend on.
"""

from __future__ import annotations

import torch
from torch import nn
from torch.nn import functional as F


class ConvBlock(nn.Module):
    """Convolution + BatchNorm (+ the input, when `residual`) + ReLU."""

    def __init__(
        self,
        cin: int,
        cout: int,
        kernel: int,
        stride: int | tuple[int, int],
        padding: int,
        residual: bool = False,
    ):
        super().__init__()
        self.conv_block = nn.Sequential(nn.Conv2d(cin, cout, kernel, stride, padding), nn.BatchNorm2d(cout))
        self.residual = residual

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.conv_block(x)
        return F.relu(out + x if self.residual else out)


class UpBlock(nn.Module):
    """Transposed convolution + BatchNorm + ReLU."""

    def __init__(self, cin: int, cout: int, kernel: int, stride: int, padding: int, output_padding: int = 0):
        super().__init__()
        self.conv_block = nn.Sequential(
            nn.ConvTranspose2d(cin, cout, kernel, stride, padding, output_padding), nn.BatchNorm2d(cout)
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.relu(self.conv_block(x))


def _stage(
    cin: int, cout: int, stride: int | tuple[int, int], residuals: int, kernel: int = 3, padding: int = 1
) -> list[nn.Module]:
    """A (strided) block followed by `residuals` residual 3×3 blocks at `cout` channels."""
    return [ConvBlock(cin, cout, kernel, stride, padding)] + [
        ConvBlock(cout, cout, 3, 1, 1, residual=True) for _ in range(residuals)
    ]


def _up(cin: int, cout: int, residuals: int) -> nn.Sequential:
    """×2 upsampling decoder block."""
    residual = [ConvBlock(cout, cout, 3, 1, 1, residual=True) for _ in range(residuals)]
    return nn.Sequential(UpBlock(cin, cout, 3, 2, 1, 1), *residual)


class Wav2LipGenerator(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.face_encoder_blocks = nn.ModuleList(
            [
                nn.Sequential(ConvBlock(6, 16, 7, 1, 3)),  # 96×96
                nn.Sequential(*_stage(16, 32, 2, 2)),  # 48×48
                nn.Sequential(*_stage(32, 64, 2, 3)),  # 24×24
                nn.Sequential(*_stage(64, 128, 2, 2)),  # 12×12
                nn.Sequential(*_stage(128, 256, 2, 2)),  # 6×6
                nn.Sequential(*_stage(256, 512, 2, 1)),  # 3×3
                nn.Sequential(ConvBlock(512, 512, 3, 1, 0), ConvBlock(512, 512, 1, 1, 0)),  # 1×1
            ]
        )
        self.audio_encoder = nn.Sequential(
            *_stage(1, 32, 1, 2),  # 80×16
            *_stage(32, 64, (3, 1), 2),  # 27×16
            *_stage(64, 128, 3, 2),  # 9×6
            *_stage(128, 256, (3, 2), 1),  # 3×3
            ConvBlock(256, 512, 3, 1, 0),  # 1×1
            ConvBlock(512, 512, 1, 1, 0),
        )
        self.face_decoder_blocks = nn.ModuleList(
            [
                nn.Sequential(ConvBlock(512, 512, 1, 1, 0)),  # 1×1
                nn.Sequential(
                    UpBlock(1024, 512, 3, 1, 0), ConvBlock(512, 512, 3, 1, 1, residual=True)
                ),  # 3×3
                _up(1024, 512, 2),  # 6×6
                _up(768, 384, 2),  # 12×12
                _up(512, 256, 2),  # 24×24
                _up(320, 128, 2),  # 48×48
                _up(160, 64, 2),  # 96×96
            ]
        )
        self.output_block = nn.Sequential(ConvBlock(80, 32, 3, 1, 1), nn.Conv2d(32, 3, 1, 1, 0), nn.Sigmoid())

    def encode_face(self, face: torch.Tensor) -> list[torch.Tensor]:
        """The face encoder's output of every block (the decoder's skip inputs), shallow first."""
        feats = []
        x = face
        for block in self.face_encoder_blocks:
            x = block(x)
            feats.append(x)
        return feats

    def decode(self, audio_embedding: torch.Tensor, feats: list[torch.Tensor]) -> torch.Tensor:
        """Decoder: each block's output is concatenated with the skip feature of its size."""
        x = audio_embedding
        for block, skip in zip(self.face_decoder_blocks, reversed(feats), strict=True):
            x = block(x)
            x = torch.cat((x, skip.expand(x.shape[0], -1, -1, -1)), dim=1)
        return self.output_block(x)

    def forward(self, mel: torch.Tensor, face: torch.Tensor) -> torch.Tensor:
        return self.decode(self.audio_encoder(mel), self.encode_face(face))


def _fold(
    conv: nn.Conv2d | nn.ConvTranspose2d,
    bn: nn.BatchNorm2d,
    in_channels: int | None = None,
    bias: bool = True,
) -> nn.Conv2d | nn.ConvTranspose2d:
    """`conv` followed by `bn` (eval mode) as one convolution over the first `in_channels` inputs
    (all by default); without `bias` the folded bias is left out (it goes into a bias map)."""
    scale = bn.weight / torch.sqrt(bn.running_var + bn.eps)
    transposed = isinstance(conv, nn.ConvTranspose2d)
    weight = conv.weight[:in_channels] if transposed else conv.weight[:, :in_channels]
    weight = weight * (scale[None, :, None, None] if transposed else scale[:, None, None, None])
    kind = nn.ConvTranspose2d if transposed else nn.Conv2d
    extra = {"output_padding": conv.output_padding} if transposed else {}
    cin = weight.shape[0] if transposed else weight.shape[1]
    folded = kind(cin, conv.out_channels, conv.kernel_size, conv.stride, conv.padding, bias=bias, **extra)
    folded.weight.data.copy_(weight)
    if bias:
        folded.bias.data.copy_((conv.bias - bn.running_mean) * scale + bn.bias)
    return folded.requires_grad_(False)


class _FoldedBlock(nn.Module):
    """A BatchNorm-folded `ConvBlock`/`UpBlock`; `with_map` adds a per-pixel bias input."""

    def __init__(self, block: ConvBlock | UpBlock, in_channels: int | None = None):
        super().__init__()
        conv, bn = block.conv_block
        self.with_map = in_channels is not None
        self.conv = _fold(conv, bn, in_channels, bias=not self.with_map)
        self.residual = getattr(block, "residual", False)

    def forward(self, x: torch.Tensor, bias_map: torch.Tensor | None = None) -> torch.Tensor:
        out = self.conv(x)
        if bias_map is not None:
            out = out + bias_map
        return F.relu(out + x if self.residual else out)


class StillFaceDecoder(nn.Module):
    """Per-frame part of `Wav2LipGenerator` for a fixed face: mel windows and the face's
    seven bias maps (`bias_maps`) in, faces out. Same function as the full forward, up to
    float rounding, for the output rows from `first_row` on: the output is (B, 3, 96 −
    first_row, 96). The bias maps are inputs so an exported graph depends on the weights only."""

    def __init__(self, model: Wav2LipGenerator, first_row: int = 0):
        super().__init__()
        self.audio = nn.ModuleList(_FoldedBlock(b) for b in model.audio_encoder)
        self.first = _FoldedBlock(model.face_decoder_blocks[0][0])
        self.up = nn.ModuleList()
        channels = 512  # of the decoder path; the rest of each head's input is skip features
        for head, *rest in model.face_decoder_blocks[1:]:
            self.up.append(nn.ModuleList([_FoldedBlock(head, channels), *(_FoldedBlock(b) for b in rest)]))
            channels = head.conv_block[0].out_channels
        self.out_head = _FoldedBlock(model.output_block[0], channels)
        self.out_conv = model.output_block[1]
        self.first_row = first_row
        self.crops = self._input_crops(first_row)

    def _input_crops(self, first_row: int) -> list[int]:
        """Per upsampling stage, the first input row its output needs so that the output block
        is exact from `first_row` on. A crop at row r makes the zero padding wrong for the
        rows just below it: one row more per 3×3 convolution that follows, which the
        needed-row count walks back through. A stride-2 head's output row 2r needs only
        input rows ≥ r, so the head itself adds nothing."""
        crops = [0] * len(self.up)
        needed = first_row - 1  # the output block's 3×3 head
        for i in reversed(range(len(self.up))):
            head = self.up[i][0].conv
            needed -= len(self.up[i]) - 1  # the stage's residual 3×3 blocks
            if head.stride[0] != 2 or needed <= 0:
                break
            crops[i] = needed // 2
            needed = crops[i]
        return crops

    def forward(self, mel: torch.Tensor, *bias_maps: torch.Tensor) -> torch.Tensor:
        x = mel
        for block in self.audio:
            x = block(x)
        x = self.first(x)
        top = 0  # the absolute row of x's first row at the current resolution
        for stage, bias_map, crop in zip(self.up, bias_maps[:-1], self.crops, strict=True):
            if crop:
                x, top = x[:, :, crop - top :], crop
            x = stage[0](x, bias_map[:, :, 2 * top :])
            top *= 2
            for block in stage[1:]:
                x = block(x)
        x = self.out_head(x, bias_maps[-1][:, :, top:])
        return torch.sigmoid(self.out_conv(x[:, :, self.first_row - top :]))


@torch.no_grad()
def bias_maps(model: Wav2LipGenerator, face: torch.Tensor) -> list[torch.Tensor]:
    """The constant part of each decoder head for one face (1, 6, 96, 96): the head's
    convolution + BatchNorm applied to zeros concatenated with the face's skip features."""
    feats = model.encode_face(face)
    heads = [stage[0].conv_block for stage in model.face_decoder_blocks[1:]]
    heads.append(model.output_block[0].conv_block)
    maps = []
    for head, skip in zip(heads, reversed(feats), strict=True):
        zeros = skip.new_zeros(1, head[0].in_channels - skip.shape[1], *skip.shape[2:])
        maps.append(head(torch.cat((zeros, skip), dim=1)))
    return maps
