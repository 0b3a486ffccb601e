"""Front or back from the image: a frozen ImageNet-pretrained encoder and a logistic regression.

Keypoints cannot tell a back view of a left/right-symmetric object from its mirrored front view
(the 2D module reads one as the other, and a mirrored chair is the same chair); the image can, a
little: the rear of a backrest does not look like a seat. :class:`FrontBackAppearance` learns that
from images whose views are known (e.g. the 2D-annotated images, their views estimated from their
annotated keypoints), with nothing of the 2D module trained: the pretrained EfficientNet-Lite0
encoder (:mod:`interp3d.models.efficientnet`) is frozen, and its pooled features feed a
class-balanced, strongly regularised logistic regression, so the ~5 % back views of a
Keypoint-5-like set count as much as the fronts. One frame's answer is weak; a video's frames
together decide which side an orbit is on (:func:`interp3d.video_fit.fit_video`'s ``view_log_probs``).
"""

from __future__ import annotations

import math

import torch
from torch import Tensor, nn
from torch.nn import functional as F

from .efficientnet import IMAGENET_MEAN, IMAGENET_STD, lite0_encoder

__all__ = ["FrontBackAppearance"]


class FrontBackAppearance(nn.Module):
    """``log_probs(images)``: ``(B, 2)`` log probabilities of the front (azimuth 0) and back (pi)
    halves of the view circle: the two bins of :mod:`interp3d.viewpoint`.

    Features: the image resized to ``input_size``, the encoder's stride-32 features average-pooled
    to a ``grid x grid`` layout (where things are in the image matters: a seat below a backrest) and
    its stride-16 features pooled globally, standardised on the training images."""

    def __init__(self, input_size: int = 224, grid: int = 2, pretrained: bool = True):
        super().__init__()
        if input_size % 32 or grid < 1:
            raise ValueError(f"input_size must be a multiple of 32 and grid >= 1, got {input_size} and {grid}")
        self.input_size, self.grid = input_size, grid
        encoder = lite0_encoder(pretrained)
        self.encoder = encoder.eval().requires_grad_(False)
        self.register_buffer("mean", torch.tensor(IMAGENET_MEAN).view(1, 3, 1, 1), persistent=False)
        self.register_buffer("std", torch.tensor(IMAGENET_STD).view(1, 3, 1, 1), persistent=False)
        dim = encoder.tap_channels[-1] * grid * grid + encoder.tap_channels[-2]
        self.register_buffer("feature_mean", torch.zeros(dim))
        self.register_buffer("feature_sd", torch.ones(dim))
        self.classifier = nn.Linear(dim, 1)

    def train(self, mode: bool = True):
        super().train(mode)
        self.encoder.eval()  # frozen, batch statistics included
        return self

    @torch.no_grad()
    def features(self, images: Tensor, batch_size: int = 64) -> Tensor:
        """``(B, D)`` raw features of ``(B, 3, S, S)`` images (uint8, or float in [0, 1])."""
        device = self.feature_mean.device
        out = []
        for chunk in images.split(batch_size):
            x = chunk.to(device).float()
            if chunk.dtype == torch.uint8:
                x = x / 255.0
            if x.shape[-1] != self.input_size or x.shape[-2] != self.input_size:
                x = F.interpolate(x, size=(self.input_size, self.input_size), mode="bilinear", align_corners=False, antialias=True)
            taps = self.encoder.features((x - self.mean) / self.std)
            out.append(torch.cat((F.adaptive_avg_pool2d(taps[-1], self.grid).flatten(1), taps[-2].mean(dim=(-2, -1))), dim=1))
        return torch.cat(out) if out else torch.zeros(0, self.feature_mean.numel(), device=device)

    def fit(self, images: Tensor, azimuth: Tensor, weight_decay: float = 1.0, iterations: int = 500, lr: float = 1e-2, seed: int = 0) -> dict:
        """Learn front (``cos(azimuth) >= 0``) against back from ``images`` and their azimuths (radians;
        NaN: unknown, left out), each also mirrored (a mirror keeps the side). Full-batch Adam on the
        class-balanced logistic loss plus ``weight_decay``; deterministic under ``seed``. Returns
        counts and the training accuracy per side."""
        known = torch.isfinite(azimuth)
        back = torch.cos(azimuth[known]) < 0
        if int(back.sum()) == 0 or int((~back).sum()) == 0:
            raise ValueError(f"front/back appearance needs images of both sides, got {int((~back).sum())} front and {int(back.sum())} back")
        images = images[known]
        x = torch.cat((self.features(images), self.features(images.flip(-1))))
        y = torch.cat((back, back)).float().to(x.device)
        self.feature_mean.copy_(x.mean(0))
        self.feature_sd.copy_(x.std(0).clamp_min(1e-6))
        x = (x - self.feature_mean) / self.feature_sd
        generator = torch.Generator().manual_seed(seed)
        bound = 1.0 / math.sqrt(x.shape[1])
        with torch.no_grad():
            self.classifier.weight.copy_(torch.empty_like(self.classifier.weight, device="cpu").uniform_(-bound, bound, generator=generator))
            self.classifier.bias.zero_()
        optimiser = torch.optim.Adam(self.classifier.parameters(), lr=lr, weight_decay=weight_decay)
        balance = (1 - y.mean()) / y.mean()
        with torch.enable_grad():
            for _ in range(iterations):
                optimiser.zero_grad()
                F.binary_cross_entropy_with_logits(self.classifier(x).squeeze(-1), y, pos_weight=balance).backward()
                optimiser.step()
        with torch.no_grad():
            said_back = self.classifier(x).squeeze(-1) > 0
        is_back = y > 0.5
        return {"images": int(known.sum()), "back_share": float(back.float().mean()),
                "train_accuracy_front": float((~said_back[~is_back]).float().mean() * 100), "train_accuracy_back": float(said_back[is_back].float().mean() * 100)}

    @torch.no_grad()
    def log_probs(self, images: Tensor) -> Tensor:
        """``(B, 2)``: log p(front), log p(back) of each image."""
        logit = self.classifier((self.features(images) - self.feature_mean) / self.feature_sd).squeeze(-1)
        return F.log_softmax(torch.stack((torch.zeros_like(logit), logit), dim=-1), dim=-1)
