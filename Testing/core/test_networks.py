"""Network shapes and structure (paper Fig. 2, Tables IV and V) and parameter counts."""

import pytest
import torch
from torch import nn

from ACNNCore.networks import FCN2D, SRCNN, ConvAutoencoder, Predictor, SubPixelNet, UNet3D, count_parameters


@torch.no_grad()
def test_subpixel_net_maps_the_lr_stack_to_the_hr_grid():
    x = torch.randn(2, 1, 32, 48, 4)
    assert SubPixelNet(out_channels=3, factor=5).eval()(x).shape == (2, 3, 32, 48, 20)
    assert SubPixelNet(out_channels=2, factor=3).eval()(x).shape == (2, 2, 32, 48, 12)
    sr = SubPixelNet(out_channels=1, factor=5, residual=True).eval()
    assert sr(x).shape == (2, 1, 32, 48, 20)


@torch.no_grad()
def test_subpixel_net_at_full_resolution_with_a_fifth_scale():
    """first_stride=1 with five scales (Resources/Models/acdc-fullres.yaml): the same output grid, the
    same depth of context, and a clear error for an in-plane size its strides cannot take."""
    net = SubPixelNet(out_channels=4, factor=1, first_stride=1, features=(4, 8, 8, 8, 8), skip_features=4,
                      fused_features=6, hr_head=True).eval()
    assert net.multiple == 16 and SubPixelNet().multiple == 16
    assert net(torch.randn(1, 1, 32, 48, 3)).shape == (1, 4, 32, 48, 3)
    with pytest.raises(ValueError, match="divisible by 16"):
        net(torch.randn(1, 1, 40, 48, 3))
    assert SubPixelNet(first_stride=2, features=(4, 8, 8, 8, 8)).multiple == 32


@torch.no_grad()
def test_subpixel_shuffle_is_a_transposed_convolution():
    """The (2, 2, K) up-sampling is a transposed convolution whose kernel equals its stride."""
    net = SubPixelNet(features=(4, 8, 8, 8), skip_features=4, fused_features=6, out_channels=3, factor=5).eval()
    h = torch.randn(1, 6, 8, 8, 3)
    deconv = nn.ConvTranspose3d(6, 3, (2, 2, 5), (2, 2, 5), bias=False)
    deconv.weight.data = net.up.weight.view(3, 2, 2, 5, 6).permute(4, 0, 1, 2, 3).contiguous()
    net.up.bias.zero_()
    torch.testing.assert_close(net.shuffle(net.up(h)), deconv(h))


def test_autoencoder_follows_table_v():
    ae = ConvAutoencoder(grid_shape=(96, 96, 60), num_classes=3, code_size=64)
    convs = [m for m in ae.encoder_convs.modules() if isinstance(m, nn.Conv3d)]
    assert [c.out_channels for c in convs] == [16, 16, 32, 32, 64, 64, 1]
    assert [c.stride for c in convs][::2] == [(2, 2, 1), (2, 2, 2), (2, 2, 2), (3, 3, 3)]
    assert ae.sizes[-1] == (4, 4, 5) and ae.bottleneck == 80  # the paper's 120x120x60 grid gives 5x5x5
    assert isinstance(ae.to_code, nn.Linear) and ae.to_code.out_features == 64
    # batch norm after every convolution but the last
    assert isinstance(ae.out, nn.Conv3d) and ae.out.out_channels == 3
    with torch.no_grad():
        x = torch.softmax(torch.randn(2, 3, 96, 96, 60), 1)
        code = ae.eval().encode(x)
        assert code.shape == (2, 64)
        assert (code < 0).any()  # no non-linearity on the code
        assert ae.decode(code).shape == (2, 3, 96, 96, 60)


def test_autoencoder_on_any_grid():
    ae = ConvAutoencoder(grid_shape=(32, 32, 20)).eval()
    with torch.no_grad():
        assert ae(torch.randn(1, 3, 32, 32, 20)).shape == (1, 3, 32, 32, 20)
    with pytest.raises(ValueError, match="expects a"):
        ae.encode(torch.randn(1, 3, 32, 32, 24))


def test_predictor_follows_table_iv():
    p = Predictor(grid_shape=(32, 32, 20))
    convs = [m for m in p.convs.modules() if isinstance(m, nn.Conv3d)]
    assert [c.out_channels for c in convs] == [32, 32, 64, 64, 128, 128, 256, 1]
    assert [c.stride for c in convs] == [(1, 1, 1), (1, 1, 1), (2, 2, 2), (1, 1, 1), (2, 2, 2), (1, 1, 1),
                                         (2, 2, 2), (1, 1, 1)]
    assert p.eval()(torch.randn(2, 1, 32, 32, 20)).shape == (2, 64)


@torch.no_grad()
def test_baselines_output_the_hr_grid():
    x = torch.randn(1, 1, 32, 32, 4)
    assert FCN2D(factor=5).eval()(x).shape == (1, 3, 32, 32, 20)
    assert UNet3D(factor=5).eval()(x).shape == (1, 3, 32, 32, 20)
    assert SRCNN(factor=5).eval()(x).shape == (1, 1, 32, 32, 20)


@torch.no_grad()
def test_fcn2d_sees_as_many_neighbouring_slices_as_its_context():
    """Slice by slice, a change to slice 2 reaches only output slice 2; with context 1 also slices 1 and 3."""
    x = torch.randn(1, 1, 32, 32, 5)
    y = x.clone()
    y[..., 2] += 1.0
    for context, reached in ((0, [2]), (1, [1, 2, 3])):
        net = FCN2D(factor=1, context=context).eval()
        changed = (net(x) - net(y)).abs().amax(dim=(0, 1, 2, 3)) > 1e-6
        assert torch.nonzero(changed).flatten().tolist() == reached, context
    assert FCN2D(factor=5, context=2).eval()(x).shape == (1, 3, 32, 32, 25)  # reaching past both ends of the stack


def test_segmentation_models_have_comparable_parameter_counts():
    """As in the paper's Table I, the segmentation networks are compared at similar capacity."""
    counts = {"3D-Seg": count_parameters(SubPixelNet(hr_head=True)), "3D-UNet": count_parameters(UNet3D()),
              "2D-FCN": count_parameters(FCN2D())}
    print("trainable parameters:", counts)
    ref = counts["3D-Seg"]
    assert all(abs(n - ref) / ref < 0.1 for n in counts.values()), counts


def test_segmenting_does_not_import_monai():
    """MONAI (seconds to import) comes in only with the baselines built on it: `acnn segment`, the Slicer
    modules' logic and the studio start without it (a real ACDC image segmented in about 3 s instead of 6)."""
    import subprocess
    import sys

    code = ("import sys, ACNNCore.cli, ACNNCore.inference; from ACNNCore.networks import build_network; "
            "build_network('SubPixelNet'); print('monai' in sys.modules); "
            "build_network('UNet3D'); print('monai' in sys.modules)")
    run = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert run.stdout.split() == ["False", "True"], run.stderr
