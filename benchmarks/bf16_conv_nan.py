"""How often PyTorch's CPU bfloat16 weight gradient of a 3x3x3 convolution is not finite, by feature-map size.

    python benchmarks/bf16_conv_nan.py [--repeats 1000]

The deepest convolution of the sub-pixel net (96 -> 96 channels, kernel 3, padding 1, batch 4, 4 slices,
channels-last as ``ACNNCore.networks.LAYOUT`` puts it) on finite inputs, its backward pass repeated on the same
tensors, in bfloat16 under ``torch.autocast`` and in float32; printed: the repeats whose weight gradient holds a
NaN or an infinity. On the 2-core AMD EPYC machine (torch 2.13, oneDNN's ``jit_bf16`` backward-weights kernel) a
2 x 2 in-plane map, smaller than the kernel, gives a few per cent; larger maps and float32 none. This is why
training leaves out a step with a non-finite gradient (``ACNNCore/training.py``) and why the test suite's coarse
grid (2 x 2 at the deepest scale) met it in bf16.
"""

from __future__ import annotations

import argparse

import torch

from ACNNCore.networks import LAYOUT


def non_finite(size: int, dtype: torch.dtype, repeats: int) -> int:
    generator = torch.Generator().manual_seed(0)
    weight = 0.05 * torch.randn(96, 96, 3, 3, 3, generator=generator)
    x = torch.relu(torch.randn(4, 96, size, size, 4, generator=generator)).contiguous(memory_format=LAYOUT)
    grad = 1e-3 * torch.randn(4, 96, size, size, 4, generator=generator).contiguous(memory_format=LAYOUT)
    bad = 0
    for _ in range(repeats):
        w = weight.clone().contiguous(memory_format=LAYOUT).requires_grad_(True)
        with torch.autocast("cpu", dtype=torch.bfloat16, enabled=dtype == torch.bfloat16):
            y = torch.nn.functional.conv3d(x.clone().requires_grad_(True), w, padding=1)
        y.backward(grad.to(y.dtype))
        bad += not bool(torch.isfinite(w.grad).all())
    return bad


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=1000)
    args = parser.parse_args(argv)
    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads; weight gradients not finite, "
          f"of {args.repeats} backward passes")
    print(f"{'in-plane map':>12}  {'bfloat16':>8}  {'float32':>7}")
    for size in (2, 3, 4, 8):
        print(f"{f'{size} x {size}':>12}  {non_finite(size, torch.bfloat16, args.repeats):>8}  "
              f"{non_finite(size, torch.float32, args.repeats):>7}")


if __name__ == "__main__":
    main()
