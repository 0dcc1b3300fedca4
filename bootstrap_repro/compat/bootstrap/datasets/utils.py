"""``bootstrap.datasets.utils``: the seed's image transform (needs torchvision, imported on use)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

__all__ = ["default_image_tf"]


def default_image_tf(scale_size: Any, crop_size: Any, mean: Sequence[float] = (0.485, 0.456, 0.406),
                     std: Sequence[float] = (0.229, 0.224, 0.225), test: bool = False) -> Any:
    """Resize, random (train) or center (test) crop, to tensor, normalize (ImageNet mean/std by default)."""
    try:
        import torchvision.transforms as transforms
    except ImportError:
        raise ImportError("bootstrap.datasets.utils.default_image_tf needs torchvision: pip install torchvision") from None
    crop = transforms.CenterCrop(crop_size) if test else transforms.RandomCrop(crop_size)
    return transforms.Compose([transforms.Resize(scale_size), crop, transforms.ToTensor(),
                               transforms.Normalize(mean=list(mean), std=list(std))])
