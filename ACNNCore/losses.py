"""The paper's training objectives, one small function per equation.

- :func:`acnn_seg_loss` — Eq. (1): CE + lambda1 * ||f(softmax(phi(x))) - f(y)||^2
  (+ lambda2/2 ||w||^2 through the optimiser: :func:`decay_groups`);
- :func:`acnn_sr_loss` — Eq. (2): Huber + lambda1 * ||p(Phi(x)) - p(y)||^2;
- :func:`autoencoder_loss` — denoising AE: CE of the reconstruction of a
  label map with swapped labels (p = 0.1) and Gaussian input noise;
- :func:`code_loss` — the T-L predictor's L2 distance to the AE's codes;
- :func:`contact_loss` — not the paper's: the share of the LV blood pool's
  outline that meets anything but LV where the expert's does not (an open
  myocardial ring, a stray island), a training-time version of the
  plausibility check's contact rule.

The prior networks (encoder ``f``, predictor ``p``) are frozen by the caller
(:func:`freeze`); the encoder is fed probabilities, never logits. If
``balance`` rescales the prior to the range of the data term, the ratio is
detached: a ratio that carries gradient would turn the prior's gradient into a
copy of the data term's.

Each loss is computed in float32, also from the bfloat16 outputs of a
mixed-precision forward pass (``TrainConfig.precision``).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from .labels import LV_BLOOD_POOL, LV_MYOCARDIUM


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


def shape_prior_loss(encoder, logits: torch.Tensor, labels: torch.Tensor, hard: bool = False) -> torch.Tensor:
    """||f(softmax(logits)) - f(onehot(labels))||^2, summed over the code, averaged over the batch.
    ``hard`` (not the paper's): the encoder sees the arg-max one-hot, the gradient flows through the
    probabilities (straight-through), so the term can be lowered only by changing the segmentation itself,
    not by soft probabilities that the AE never saw in training."""
    probs = torch.softmax(logits.float(), dim=1)
    if hard:
        probs = one_hot(probs.argmax(1), probs.shape[1]) + probs - probs.detach()
    with torch.no_grad():
        target_code = encoder(one_hot(labels, logits.shape[1]))
    return code_loss(encoder(probs), target_code)


def soft_dice_loss(logits: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    """1 - mean soft Dice over the foreground classes (MONAI's DiceLoss): for small structures in a large
    field of view, where CE alone learns to answer "background"."""
    from monai.losses import DiceLoss

    return DiceLoss(include_background=False, to_onehot_y=True, softmax=True)(logits, labels[:, None].long())


def _neighbour_max(t: torch.Tensor) -> torch.Tensor:
    """Per voxel, the largest value of its four in-plane neighbours (axes -3 and -2; slices along -1),
    the plausibility check's cross; outside the volume counts as 0."""
    p = F.pad(t, (0, 0, 1, 1, 1, 1))
    return torch.stack([p[..., :-2, 1:-1, :], p[..., 2:, 1:-1, :], p[..., 1:-1, :-2, :], p[..., 1:-1, 2:, :]]).amax(0)


def contact_loss(logits: torch.Tensor, labels: torch.Tensor, blood: int = LV_BLOOD_POOL,
                 myocardium: int = LV_MYOCARDIUM) -> torch.Tensor:
    """Expected LV blood pool with an in-plane neighbour that is neither blood pool nor myocardium
    (background, RV), counted only away from where the expert's blood pool has such a neighbour (the
    base, open to the atrium; within one voxel), per voxel of the expert blood pool's outline.
    0 for a closed ring; about the open share of the outline for a ring with a gap."""
    p = torch.softmax(logits, dim=1)
    blood_p = p[:, blood]
    contact = blood_p * _neighbour_max(1.0 - blood_p - p[:, myocardium])
    with torch.no_grad():
        bp = labels == blood
        lv = bp | (labels == myocardium)
        open_ = (bp & (_neighbour_max((~lv).float()) > 0)).float()
        allowed = torch.maximum(open_, _neighbour_max(open_)) > 0
        outline = (bp & (_neighbour_max((~bp).float()) > 0)).sum().clamp_min(1)
    return (contact * ~allowed).sum() / outline


def acnn_seg_loss(logits: torch.Tensor, labels: torch.Tensor, encoder=None, lambda1: float = 0.01,
                  balance: bool = False, dice: bool = False, contact: float | None = None,
                  hard_prior: bool = False) -> dict:
    """Eq. (1) without the weight decay (the optimiser's job). ``encoder=None``: plain CE (3D-Seg).
    ``dice``: the data term is CE + soft Dice (real data; the paper uses CE alone). ``contact``: the
    weight of :func:`contact_loss`, added to the data term (not the paper's; None: not computed, 0: computed
    and returned, not added). ``hard_prior``: the prior on the arg-max (:func:`shape_prior_loss`)."""
    logits = logits.float()
    ce = F.cross_entropy(logits, labels.long())
    data = ce + soft_dice_loss(logits, labels) if dice else ce
    terms = {"ce": ce}
    if contact is not None:
        terms["contact"] = contact_loss(logits, labels)
        data = data + contact * terms["contact"]
    if encoder is None:
        return {"loss": data, **terms}
    prior = shape_prior_loss(encoder, logits, labels, hard_prior)
    return {"loss": data + _balanced(data, prior, lambda1, balance), **terms, "prior": prior}


def acnn_sr_loss(prediction: torch.Tensor, target: torch.Tensor, predictor=None, lambda1: float = 0.01,
                 balance: bool = False) -> dict:
    """Eq. (2) without the weight decay. ``predictor=None``: plain Huber (SR)."""
    prediction = prediction.float()
    huber = F.smooth_l1_loss(prediction, target)
    if predictor is None:
        return {"loss": huber, "huber": huber}
    with torch.no_grad():
        target_code = predictor(target)
    prior = code_loss(predictor(prediction), target_code)
    return {"loss": huber + _balanced(huber, prior, lambda1, balance), "huber": huber, "prior": prior}


def autoencoder_loss(autoencoder, labels: torch.Tensor, num_classes: int, swap_p: float = 0.1,
                     noise_std: float = 0.05, generator=None, dice: bool = False,
                     contact: float | None = None) -> dict:
    """Denoising AE: reconstruct the clean labels from swapped labels plus Gaussian noise.
    ``dice``: CE + soft Dice, as for segmentation on real data. ``contact``: the weight of
    :func:`contact_loss` on the reconstruction, as in :func:`acnn_seg_loss` (not the paper's)."""
    noisy = one_hot(swap_labels(labels, swap_p, num_classes, generator), num_classes)
    if noise_std > 0:
        noisy = noisy + noise_std * torch.randn(noisy.shape, generator=generator, device=noisy.device)
    logits = autoencoder(noisy).float()
    ce = F.cross_entropy(logits, labels.long())
    terms = {"loss": ce + soft_dice_loss(logits, labels) if dice else ce, "ce": ce}
    if contact is not None:
        terms["contact"] = contact_loss(logits, labels)
        terms["loss"] = terms["loss"] + contact * terms["contact"]
    return terms


def code_loss(predicted: torch.Tensor, codes: torch.Tensor) -> torch.Tensor:
    """Squared L2 distance between codes, summed over the code, averaged over the batch, in float32: the
    T-L predictor's to the AE's codes, and the shape priors of Eq. (1) and (2)."""
    return ((predicted.float() - codes.float()) ** 2).sum(1).mean()


def decay_groups(model: nn.Module, weight_decay: float) -> list[dict]:
    """Optimiser parameter groups: weight decay (lambda2) on convolution/linear weights only.

    With SGD or Adam, decay ``lambda2`` on ``w`` is the gradient of ``lambda2/2 ||w||^2``.
    """
    decay, no_decay = [], []
    for p in model.parameters():
        if not p.requires_grad:
            continue
        (decay if p.ndim > 1 else no_decay).append(p)
    return [{"params": decay, "weight_decay": weight_decay}, {"params": no_decay, "weight_decay": 0.0}]
