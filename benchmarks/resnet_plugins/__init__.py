"""Plugins of the GPU benchmark: random 32x32 images and a CIFAR-style ResNet-18."""
