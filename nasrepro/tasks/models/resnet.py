"""The CIFAR ResNets of He et al. (CVPR 2016), Section 4.2: the hand-designed CIFAR-10 baseline.

The network is a 3x3 stem with 16 filters, then three stages of `n` basic blocks with 16, 32 and 64
filters on 32x32, 16x16 and 8x8 feature maps, global average pooling and a linear classifier: depth
6n + 2 (n = 3 gives ResNet-20, 0.27M parameters). Shortcuts are "option A" (Section 3.3): identity,
and where the shape changes, stride-2 subsampling plus zero-padding of the new channels, so the
shortcuts add no parameters -- the variant the paper's CIFAR table uses.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from nasrepro.errors import UsageError


class PadShortcut(nn.Module):
    """Option A shortcut: take every other pixel and zero-pad the channel dimension (no parameters)."""

    def __init__(self, in_channels: int, out_channels: int, stride: int) -> None:
        super().__init__()
        self.stride = stride
        self.extra = out_channels - in_channels

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = x[:, :, :: self.stride, :: self.stride]
        if self.extra:
            half = self.extra // 2
            x = F.pad(x, (0, 0, 0, 0, half, self.extra - half))
        return x


class BasicBlock(nn.Module):
    """Two 3x3 conv-BN layers with a ReLU between and after the residual addition (Fig. 2, left)."""

    def __init__(self, in_channels: int, out_channels: int, stride: int) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(in_channels, out_channels, 3, stride, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(out_channels)
        self.conv2 = nn.Conv2d(out_channels, out_channels, 3, 1, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(out_channels)
        if stride != 1 or in_channels != out_channels:
            self.shortcut: nn.Module = PadShortcut(in_channels, out_channels, stride)
        else:
            self.shortcut = nn.Identity()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = F.relu(self.bn1(self.conv1(x)))
        out = self.bn2(self.conv2(out))
        return F.relu(out + self.shortcut(x))


class CifarResNet(nn.Module):
    """ResNet-(6n+2) for 32x32 inputs; `forward(images) -> logits`."""

    def __init__(
        self, depth: int = 20, num_classes: int = 10, widths: tuple[int, int, int] = (16, 32, 64)
    ) -> None:
        super().__init__()
        if depth < 8 or (depth - 2) % 6:
            raise UsageError(
                f"CIFAR ResNet depth must be 6n+2 with n >= 1 (20, 32, 44, 56, 110), got {depth}"
            )
        blocks = (depth - 2) // 6
        self.depth = depth
        self.stem = nn.Sequential(
            nn.Conv2d(3, widths[0], 3, 1, 1, bias=False), nn.BatchNorm2d(widths[0]), nn.ReLU(inplace=True)
        )
        layers: list[nn.Module] = []
        in_channels = widths[0]
        for stage, width in enumerate(widths):
            for index in range(blocks):
                stride = 2 if stage > 0 and index == 0 else 1
                layers.append(BasicBlock(in_channels, width, stride))
                in_channels = width
        self.layers = nn.Sequential(*layers)
        self.classifier = nn.Linear(in_channels, num_classes)
        self._init_weights()

    def _init_weights(self) -> None:
        """He initialisation of the convolutions (the paper cites its own [13], Section 3.4)."""
        for module in self.modules():
            if isinstance(module, nn.Conv2d):
                nn.init.kaiming_normal_(module.weight, mode="fan_out", nonlinearity="relu")
            elif isinstance(module, nn.BatchNorm2d):
                nn.init.ones_(module.weight)
                nn.init.zeros_(module.bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.layers(self.stem(x))
        x = torch.flatten(F.adaptive_avg_pool2d(x, 1), 1)
        return self.classifier(x)


def resnet20(num_classes: int = 10) -> CifarResNet:
    """ResNet-20 (He et al. 2016, Table 6: 0.27M parameters, 8.75% CIFAR-10 test error)."""
    return CifarResNet(20, num_classes)
