"""The ACNN objectives: the shape prior changes gradients, is fed probabilities, stays frozen."""

import torch

from ACNNCore.losses import (acnn_seg_loss, acnn_sr_loss, autoencoder_loss, decay_groups, freeze, one_hot,
                             shape_prior_loss, swap_labels)
from ACNNCore.networks import ConvAutoencoder, Predictor, SubPixelNet

GRID = (16, 16, 10)


def _setup(seed=0):
    torch.manual_seed(seed)
    ae = freeze(ConvAutoencoder(grid_shape=GRID))
    labels = torch.zeros(2, *GRID, dtype=torch.long)
    labels[:, 4:12, 4:12, 2:8] = 2
    labels[:, 6:10, 6:10, 3:7] = 1
    logits = torch.randn(2, 3, *GRID, requires_grad=True)
    return ae, labels, logits


def test_shape_prior_gradient_differs_from_cross_entropy():
    ae, labels, logits = _setup()
    ce = acnn_seg_loss(logits, labels)["ce"]
    (g_ce,) = torch.autograd.grad(ce, logits)
    prior = shape_prior_loss(ae.encode, logits, labels)
    (g_prior,) = torch.autograd.grad(prior, logits)
    assert g_prior.abs().sum() > 0
    cos = torch.nn.functional.cosine_similarity(g_ce.flatten(), g_prior.flatten(), dim=0)
    assert abs(float(cos)) < 0.9, float(cos)
    # the total gradient is CE's plus lambda1 times the prior's
    total = acnn_seg_loss(logits, labels, ae.encode, lambda1=0.5)["loss"]
    (g_total,) = torch.autograd.grad(total, logits)
    torch.testing.assert_close(g_total, g_ce + 0.5 * g_prior, rtol=1e-4, atol=1e-7)


def test_balanced_prior_keeps_its_own_gradient():
    """A detached ratio rescales the prior's gradient; it must not become a copy of CE's."""
    ae, labels, logits = _setup()
    out = acnn_seg_loss(logits, labels, ae.encode, lambda1=1.0, balance=True)
    (g_total,) = torch.autograd.grad(out["loss"], logits)
    (g_ce,) = torch.autograd.grad(acnn_seg_loss(logits, labels)["loss"], logits)
    (g_prior,) = torch.autograd.grad(shape_prior_loss(ae.encode, logits, labels), logits)
    ratio = float((out["ce"] / out["prior"]).detach())
    torch.testing.assert_close(g_total, g_ce + ratio * g_prior, rtol=1e-3, atol=1e-6)
    # the prior's part of the gradient is not proportional to CE's gradient
    cos = torch.nn.functional.cosine_similarity((g_total - g_ce).flatten(), g_ce.flatten(), dim=0)
    assert abs(float(cos)) < 0.9


def test_hard_prior_encodes_the_arg_max_with_the_probabilities_gradient():
    """--hard-prior: the value is the code distance of the arg-max segmentation (what plausibility and the
    sensitivity benchmark see), the gradient reaches the logits through the softmax (straight-through)."""
    ae, labels, logits = _setup()
    hard = shape_prior_loss(ae.encode, logits, labels, hard=True)
    with torch.no_grad():
        target = ae.encode(one_hot(labels, 3))
        arg_max = ((ae.encode(one_hot(logits.argmax(1), 3)) - target) ** 2).sum(1).mean()
    torch.testing.assert_close(hard.detach(), arg_max)
    assert not torch.isclose(hard, shape_prior_loss(ae.encode, logits, labels))  # soft: another value
    (g,) = torch.autograd.grad(acnn_seg_loss(logits, labels, ae.encode, 1.0, hard_prior=True)["prior"], logits)
    assert torch.isfinite(g).all() and g.abs().sum() > 0


def test_encoder_sees_probabilities_and_stays_frozen():
    ae, labels, logits = _setup()
    seen = []
    ae.encoder_convs.register_forward_pre_hook(lambda m, inp: seen.append(inp[0].detach()))
    loss = acnn_seg_loss(logits, labels, ae.encode)["loss"]
    loss.backward()
    for x in seen:  # probabilities / one-hot: in [0, 1] and summing to 1 over classes
        assert x.min() >= 0 and x.max() <= 1
        torch.testing.assert_close(x.sum(1), torch.ones_like(x.sum(1)))
    assert all(p.grad is None for p in ae.parameters())
    assert not ae.training


def test_acnn_sr_prior_uses_the_frozen_predictor():
    torch.manual_seed(1)
    predictor = freeze(Predictor(grid_shape=GRID, features=(4, 4, 8, 8)))
    pred = torch.randn(2, 1, *GRID, requires_grad=True)
    target = torch.randn(2, 1, *GRID)
    out = acnn_sr_loss(pred, target, predictor, lambda1=0.01)
    assert set(out) == {"loss", "huber", "prior"}
    out["loss"].backward()
    assert pred.grad is not None and all(p.grad is None for p in predictor.parameters())


def test_label_swap_rate():
    labels = torch.zeros(200_000, dtype=torch.long)
    swapped = swap_labels(labels, 0.1, 3, torch.Generator().manual_seed(0))
    rate = float((swapped != labels).float().mean())
    assert abs(rate - 0.1) < 0.005
    assert set(swapped.unique().tolist()) == {0, 1, 2}


def test_autoencoder_loss_and_weight_decay_groups():
    ae = ConvAutoencoder(grid_shape=GRID)
    labels = torch.randint(0, 3, (2, *GRID))
    assert autoencoder_loss(ae, labels, 3)["loss"].item() > 0
    decay, no_decay = decay_groups(SubPixelNet(), 5e-6)
    assert decay["weight_decay"] == 5e-6 and no_decay["weight_decay"] == 0.0
    assert all(p.ndim > 1 for p in decay["params"]) and all(p.ndim == 1 for p in no_decay["params"])
    assert one_hot(labels, 3).shape == (2, 3, *GRID)


def test_dice_term_rewards_the_small_structures():
    import torch

    from ACNNCore.losses import acnn_seg_loss, soft_dice_loss

    labels = torch.zeros(1, 16, 16, 4, dtype=torch.long)
    labels[0, 6:9, 6:9, 1:3] = 1  # a small structure in a large background
    background = torch.zeros(1, 2, 16, 16, 4)
    background[:, 0] = 3.0  # confident "background everywhere"
    right = torch.zeros(1, 2, 16, 16, 4)
    right[0, 0][labels[0] == 0] = 8.0
    right[0, 1][labels[0] == 1] = 8.0
    assert soft_dice_loss(background, labels) > 0.9 > 0.1 > soft_dice_loss(right, labels)
    plain, with_dice = acnn_seg_loss(background, labels), acnn_seg_loss(background, labels, dice=True)
    assert with_dice["loss"] > plain["loss"] + 0.9 and torch.isclose(with_dice["ce"], plain["ce"])


def test_autoencoder_dice_term_is_the_soft_dice_of_its_reconstruction():
    """AE with ``dice``: its CE plus the soft Dice of the same reconstruction (same noise drawn)."""
    from ACNNCore.losses import soft_dice_loss

    ae, labels, _ = _setup()
    ae.train()
    plain = autoencoder_loss(ae, labels, 3, generator=torch.Generator().manual_seed(1), noise_std=0.0, swap_p=0.0)
    both = autoencoder_loss(ae, labels, 3, generator=torch.Generator().manual_seed(1), noise_std=0.0, swap_p=0.0,
                            dice=True)
    expected = soft_dice_loss(ae(one_hot(labels, 3)), labels)
    assert torch.isclose(both["ce"], plain["ce"]) and torch.isclose(both["loss"], plain["loss"] + expected)


def _ring(shape=(32, 32, 4)):
    """LV blood pool (1) inside a myocardial ring (2); the first slice is a base, open to one side."""
    import numpy as np

    x, y = np.mgrid[: shape[0], : shape[1]]
    r = np.hypot(x - 16, y - 16)
    labels = np.zeros(shape, np.int64)
    labels[r < 10] = 2
    labels[r < 7] = 1
    labels[..., 0][(x > 16) & (abs(y - 16) < 2) & (r < 10)] = 1  # the base: blood pool through the ring
    return torch.tensor(labels)[None]


def _confident(labels, classes=4):
    return 20.0 * one_hot(labels, classes)


def test_contact_term_is_zero_for_a_closed_ring_and_counts_gaps_and_islands():
    """The expert map scores 0 (its open base included); a gap in the ring or a blood-pool island scores
    the share of the outline they add; the gradient at a gap raises the myocardium there."""
    from ACNNCore.losses import contact_loss

    labels = _ring()
    assert contact_loss(_confident(labels), labels) < 1e-6
    from scipy import ndimage

    bp = labels[0].numpy() == 1  # its outline: voxels with an in-plane neighbour outside it
    outline = int((bp & ~ndimage.binary_erosion(bp, ndimage.generate_binary_structure(2, 1)[..., None],
                                                 border_value=1)).sum())
    gap = labels.clone()
    gap[0, 23:26, 15:17, 2] = 0  # a two-voxel-wide gap through the ring in a mid slice
    assert torch.isclose(contact_loss(_confident(gap), labels), torch.tensor(2 / outline), atol=1e-4)
    island = labels.clone()
    island[0, 1, 1, 1] = 1
    assert contact_loss(_confident(island), labels) > 0.5 / outline

    logits = _confident(gap).requires_grad_(True)
    logits.data[0, :, 23, 15, 2] = 0.0  # the voxel of the gap next to the blood pool, undecided
    contact_loss(logits, labels).backward()
    grad = logits.grad[0, :, 23, 15, 2]
    assert grad[2] < 0 < grad[0]  # descent raises myocardium and lowers background at the gap


def test_seg_loss_adds_the_weighted_contact_term():
    labels = _ring()
    logits = torch.randn(1, 4, 32, 32, 4)
    plain = acnn_seg_loss(logits, labels, dice=True)
    logged = acnn_seg_loss(logits, labels, dice=True, contact=0.0)  # before it applies: logged, not added
    weighted = acnn_seg_loss(logits, labels, dice=True, contact=3.0)
    assert "contact" not in plain and weighted["contact"] > 0 and torch.isclose(logged["loss"], plain["loss"])
    assert torch.isclose(weighted["loss"], plain["loss"] + 3.0 * weighted["contact"])


def test_ae_loss_adds_the_weighted_contact_term_on_the_reconstruction():
    """The same term on what the AE decodes (no label swaps or noise here: the input is the expert's map)."""
    from ACNNCore.losses import contact_loss

    labels = _ring()
    gap = labels.clone()
    gap[0, 23:26, 15:17, 2] = 0
    decoded = _confident(gap)
    seen = []

    def autoencoder(x):  # decodes the ring with a gap, whatever it is given
        seen.append(x)
        return decoded

    plain = autoencoder_loss(autoencoder, labels, 4, swap_p=0.0, noise_std=0.0, dice=True)
    weighted = autoencoder_loss(autoencoder, labels, 4, swap_p=0.0, noise_std=0.0, dice=True, contact=3.0)
    torch.testing.assert_close(seen[0], one_hot(labels, 4))
    assert "contact" not in plain and torch.isclose(weighted["contact"], contact_loss(decoded, labels))
    assert weighted["contact"] > 0 and torch.isclose(weighted["loss"], plain["loss"] + 3.0 * weighted["contact"])
