"""A compact 3-D ResNet18 (paper 001: DCE ROI volume, 96^3), since timm has none.

BasicBlock, layers [2, 2, 2, 2], widths 64-128-256-512, Conv3d throughout,
7^3 stem with stride 2 and a 3^3 max-pool, projection shortcuts (type "B") where
the shape changes, global average pooling -> 512 features. Parameter names
follow torchvision / MONAI ``resnet18`` (``conv1``, ``bn1``, ``layer1.0.conv1``,
``layerN.0.downsample.{0,1}``, ``fc``), so 3-D checkpoints in that layout (e.g.
MONAI ``resnet18(spatial_dims=3, n_input_channels=1, shortcut_type="B")``
weights, after stripping a ``module.`` prefix) load through
:func:`her2core.features.weights.apply_state_dict`.
"""
from __future__ import annotations

import torch
from torch import nn


class BasicBlock3d(nn.Module):
    expansion = 1

    def __init__(self, in_planes: int, planes: int, stride: int = 1):
        super().__init__()
        self.conv1 = nn.Conv3d(in_planes, planes, 3, stride=stride, padding=1, bias=False)
        self.bn1 = nn.BatchNorm3d(planes)
        self.relu = nn.ReLU(inplace=True)
        self.conv2 = nn.Conv3d(planes, planes, 3, stride=1, padding=1, bias=False)
        self.bn2 = nn.BatchNorm3d(planes)
        self.downsample = None
        if stride != 1 or in_planes != planes:
            self.downsample = nn.Sequential(
                nn.Conv3d(in_planes, planes, 1, stride=stride, bias=False),
                nn.BatchNorm3d(planes))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        identity = x if self.downsample is None else self.downsample(x)
        out = self.relu(self.bn1(self.conv1(x)))
        out = self.bn2(self.conv2(out))
        return self.relu(out + identity)


class ResNet3d(nn.Module):
    """3-D ResNet; ``forward`` returns pooled features (``num_classes=0``) or logits."""

    def __init__(self, layers=(2, 2, 2, 2), widths=(64, 128, 256, 512), in_chans: int = 1,
                 num_classes: int = 0):
        super().__init__()
        self.in_chans = in_chans
        self.conv1 = nn.Conv3d(in_chans, widths[0], 7, stride=2, padding=3, bias=False)
        self.bn1 = nn.BatchNorm3d(widths[0])
        self.relu = nn.ReLU(inplace=True)
        self.maxpool = nn.MaxPool3d(3, stride=2, padding=1)
        planes = widths[0]
        stages = []
        for i, (n, w) in enumerate(zip(layers, widths)):
            blocks = []
            for j in range(n):
                blocks.append(BasicBlock3d(planes, w, stride=2 if (i > 0 and j == 0) else 1))
                planes = w
            stages.append(nn.Sequential(*blocks))
        self.layer1, self.layer2, self.layer3, self.layer4 = stages
        self.avgpool = nn.AdaptiveAvgPool3d(1)
        self.num_features = planes
        self.fc = nn.Linear(planes, num_classes) if num_classes > 0 else nn.Identity()
        for m in self.modules():
            if isinstance(m, nn.Conv3d):
                nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")
            elif isinstance(m, nn.BatchNorm3d):
                nn.init.ones_(m.weight)
                nn.init.zeros_(m.bias)

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        x = self.maxpool(self.relu(self.bn1(self.conv1(x))))
        x = self.layer4(self.layer3(self.layer2(self.layer1(x))))
        return x

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = torch.flatten(self.avgpool(self.forward_features(x)), 1)
        return self.fc(x)


def resnet3d18(in_chans: int = 1, num_classes: int = 0) -> ResNet3d:
    """3-D ResNet18 (BasicBlock, [2, 2, 2, 2]); 512 features with num_classes=0."""
    return ResNet3d((2, 2, 2, 2), in_chans=in_chans, num_classes=num_classes)
