"""The paper's training objectives, one small function per equation.

- :func:`acnn_seg_loss` — Eq. (1): CE + lambda1 * ||f(softmax(phi(x))) - f(y)||^2
  (+ lambda2/2 ||w||^2 through the optimiser: :func:`decay_groups`);
- :func:`acnn_sr_loss` — Eq. (2): Huber + lambda1 * ||p(Phi(x)) - p(y)||^2;
- :func:`autoencoder_loss` — denoising AE: CE of the reconstruction of a
  label map with swapped labels (p = 0.1) and Gaussian input noise;
- :func:`code_loss` — the T-L predictor's L2 distance to the AE's codes.

The prior networks (encoder ``f``, predictor ``p``) are frozen by the caller
(:func:`freeze`); the encoder is fed probabilities, never logits. If
``balance`` rescales the prior to the range of the data term, the ratio is
detached: a ratio that carries gradient would turn the prior's gradient into a
copy of the data term's.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn


def one_hot(labels: torch.Tensor, num_classes: int) -> torch.Tensor:
    """(B, X, Y, Z) integer labels -> (B, C, X, Y, Z) float one-hot."""
    return F.one_hot(labels.long(), num_classes).movedim(-1, 1).float()


def swap_labels(labels: torch.Tensor, p: float, num_classes: int, generator=None) -> torch.Tensor:
    """Replace each voxel's label, with probability ``p``, by a different random label."""
    if p <= 0:
        return labels
    swap = torch.rand(labels.shape, generator=generator, device=labels.device) < p
    shift = torch.randint(1, num_classes, labels.shape, generator=generator, device=labels.device)
    return torch.where(swap, (labels + shift) % num_classes, labels)


def freeze(module: nn.Module) -> nn.Module:
    """No gradient to the module's parameters, batch norm in inference mode."""
    module.eval()
    for p in module.parameters():
        p.requires_grad_(False)
    return module


def _balanced(data_term: torch.Tensor, prior: torch.Tensor, lambda1: float, balance: bool) -> torch.Tensor:
    if balance:
        return lambda1 * (data_term / prior.clamp_min(1e-8)).detach() * prior
    return lambda1 * prior


def shape_prior_loss(encoder, logits: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    """||f(softmax(logits)) - f(onehot(labels))||^2, summed over the code, averaged over the batch."""
    probs = torch.softmax(logits, dim=1)
    with torch.no_grad():
        target_code = encoder(one_hot(labels, logits.shape[1]))
    return ((encoder(probs) - target_code) ** 2).sum(1).mean()


def soft_dice_loss(logits: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    """1 - mean soft Dice over the foreground classes (MONAI's DiceLoss): for small structures in a large
    field of view, where CE alone learns to answer "background"."""
    from monai.losses import DiceLoss

    return DiceLoss(include_background=False, to_onehot_y=True, softmax=True)(logits, labels[:, None].long())


def acnn_seg_loss(logits: torch.Tensor, labels: torch.Tensor, encoder=None, lambda1: float = 0.01,
                  balance: bool = False, dice: bool = False) -> dict:
    """Eq. (1) without the weight decay (the optimiser's job). ``encoder=None``: plain CE (3D-Seg).
    ``dice``: the data term is CE + soft Dice (real data; the paper uses CE alone)."""
    ce = F.cross_entropy(logits, labels.long())
    data = ce + soft_dice_loss(logits, labels) if dice else ce
    if encoder is None:
        return {"loss": data, "ce": ce}
    prior = shape_prior_loss(encoder, logits, labels)
    return {"loss": data + _balanced(data, prior, lambda1, balance), "ce": ce, "prior": prior}


def acnn_sr_loss(prediction: torch.Tensor, target: torch.Tensor, predictor=None, lambda1: float = 0.01,
                 balance: bool = False) -> dict:
    """Eq. (2) without the weight decay. ``predictor=None``: plain Huber (SR)."""
    huber = F.smooth_l1_loss(prediction, target)
    if predictor is None:
        return {"loss": huber, "huber": huber}
    with torch.no_grad():
        target_code = predictor(target)
    prior = ((predictor(prediction) - target_code) ** 2).sum(1).mean()
    return {"loss": huber + _balanced(huber, prior, lambda1, balance), "huber": huber, "prior": prior}


def autoencoder_loss(autoencoder, labels: torch.Tensor, num_classes: int, swap_p: float = 0.1,
                     noise_std: float = 0.05, generator=None, dice: bool = False) -> dict:
    """Denoising AE: reconstruct the clean labels from swapped labels plus Gaussian noise.
    ``dice``: CE + soft Dice, as for segmentation on real data."""
    noisy = one_hot(swap_labels(labels, swap_p, num_classes, generator), num_classes)
    if noise_std > 0:
        noisy = noisy + noise_std * torch.randn(noisy.shape, generator=generator, device=noisy.device)
    logits = autoencoder(noisy)
    ce = F.cross_entropy(logits, labels.long())
    return {"loss": ce + soft_dice_loss(logits, labels) if dice else ce, "ce": ce}


def code_loss(predicted: torch.Tensor, codes: torch.Tensor) -> torch.Tensor:
    """The T-L predictor's squared L2 distance to the AE's codes, averaged over the batch."""
    return ((predicted - codes) ** 2).sum(1).mean()


def decay_groups(model: nn.Module, weight_decay: float) -> list[dict]:
    """Optimiser parameter groups: weight decay (lambda2) on convolution/linear weights only.

    With SGD or Adam, decay ``lambda2`` on ``w`` is the gradient of ``lambda2/2 ||w||^2``.
    """
    decay, no_decay = [], []
    for name, p in model.named_parameters():
        if not p.requires_grad:
            continue
        (decay if p.ndim > 1 else no_decay).append(p)
    return [{"params": decay, "weight_decay": weight_decay}, {"params": no_decay, "weight_decay": 0.0}]
