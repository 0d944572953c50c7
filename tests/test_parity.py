"""dcgan_spec rebuilds the reference DCGANs exactly: layers, parameter counts and outputs.

The 32×32 reference is typed in from the seed document (``DCGANGenerator`` /
``DCGANDiscriminator``); the 64×64 one is the classic PyTorch DCGAN tutorial's.
"""

from __future__ import annotations

import pytest
import torch
from torch import nn

from ganarch import dcgan_spec

# --- the seed's modules, exactly as in the seed document -------------------------------------


class DCGANGenerator(nn.Module):
    def __init__(self):
        super().__init__()
        self.net = nn.Sequential(
            nn.ConvTranspose2d(100, 512, 4, 1, 0, bias=False),
            nn.BatchNorm2d(512),
            nn.ReLU(True),
            nn.ConvTranspose2d(512, 256, 4, 2, 1, bias=False),
            nn.BatchNorm2d(256),
            nn.ReLU(True),
            nn.ConvTranspose2d(256, 128, 4, 2, 1, bias=False),
            nn.BatchNorm2d(128),
            nn.ReLU(True),
            nn.ConvTranspose2d(128, 3, 4, 2, 1, bias=False),
            nn.Tanh(),
        )

    def forward(self, x):
        return self.net(x)


class DCGANDiscriminator(nn.Module):
    def __init__(self):
        super().__init__()
        self.net = nn.Sequential(
            nn.Conv2d(3, 128, 4, 2, 1, bias=False),
            nn.LeakyReLU(0.2, inplace=True),
            nn.Conv2d(128, 256, 4, 2, 1, bias=False),
            nn.BatchNorm2d(256),
            nn.LeakyReLU(0.2, inplace=True),
            nn.Conv2d(256, 512, 4, 2, 1, bias=False),
            nn.BatchNorm2d(512),
            nn.LeakyReLU(0.2, inplace=True),
            nn.Conv2d(512, 1, 4, 1, 0, bias=False),
            nn.Sigmoid(),
        )

    def forward(self, x):
        return self.net(x)


# --- the classic 64×64 DCGAN (PyTorch tutorial: ngf = ndf = 64, nz = 100) ----------------------


class TutorialGenerator(nn.Module):
    def __init__(self, nz=100, ngf=64, nc=3):
        super().__init__()
        self.main = nn.Sequential(
            nn.ConvTranspose2d(nz, ngf * 8, 4, 1, 0, bias=False),
            nn.BatchNorm2d(ngf * 8),
            nn.ReLU(True),
            nn.ConvTranspose2d(ngf * 8, ngf * 4, 4, 2, 1, bias=False),
            nn.BatchNorm2d(ngf * 4),
            nn.ReLU(True),
            nn.ConvTranspose2d(ngf * 4, ngf * 2, 4, 2, 1, bias=False),
            nn.BatchNorm2d(ngf * 2),
            nn.ReLU(True),
            nn.ConvTranspose2d(ngf * 2, ngf, 4, 2, 1, bias=False),
            nn.BatchNorm2d(ngf),
            nn.ReLU(True),
            nn.ConvTranspose2d(ngf, nc, 4, 2, 1, bias=False),
            nn.Tanh(),
        )

    def forward(self, x):
        return self.main(x)


class TutorialDiscriminator(nn.Module):
    def __init__(self, ndf=64, nc=3):
        super().__init__()
        self.main = nn.Sequential(
            nn.Conv2d(nc, ndf, 4, 2, 1, bias=False),
            nn.LeakyReLU(0.2, inplace=True),
            nn.Conv2d(ndf, ndf * 2, 4, 2, 1, bias=False),
            nn.BatchNorm2d(ndf * 2),
            nn.LeakyReLU(0.2, inplace=True),
            nn.Conv2d(ndf * 2, ndf * 4, 4, 2, 1, bias=False),
            nn.BatchNorm2d(ndf * 4),
            nn.LeakyReLU(0.2, inplace=True),
            nn.Conv2d(ndf * 4, ndf * 8, 4, 2, 1, bias=False),
            nn.BatchNorm2d(ndf * 8),
            nn.LeakyReLU(0.2, inplace=True),
            nn.Conv2d(ndf * 8, 1, 4, 1, 0, bias=False),
            nn.Sigmoid(),
        )

    def forward(self, x):
        return self.main(x)


# --- helpers ---------------------------------------------------------------------------------


def _leaves(module: nn.Module) -> list[nn.Module]:
    return [m for m in module.modules() if not list(m.children())]


def _n_params(module: nn.Module) -> int:
    return sum(p.numel() for p in module.parameters())


def _describe(m: nn.Module) -> tuple:
    """Type plus the hyperparameters that decide the computation."""
    keys = ("in_channels", "out_channels", "kernel_size", "stride", "padding", "bias")
    conf = tuple((k, getattr(m, k)) for k in keys if hasattr(m, k) and k != "bias")
    if isinstance(m, nn.modules.conv._ConvNd):
        conf += (("bias", m.bias is not None),)
    if isinstance(m, nn.LeakyReLU):
        conf += (("slope", m.negative_slope),)
    if isinstance(m, nn.BatchNorm2d):
        conf += (("features", m.num_features), ("eps", m.eps), ("momentum", m.momentum))
    return (type(m), *conf)


def _copy_tensors(source: nn.Module, target: nn.Module) -> int:
    """Copy every parameter and buffer of ``source`` into ``target`` in layer order.

    Each source tensor is used exactly once and every target tensor is written once.
    """
    pairs = []
    for src, dst in zip(_leaves(source), _leaves(target), strict=True):
        s = [*src.named_parameters(recurse=False), *src.named_buffers(recurse=False)]
        d = [*dst.named_parameters(recurse=False), *dst.named_buffers(recurse=False)]
        assert [n for n, _ in s] == [n for n, _ in d], (src, dst)
        pairs += [(a, b) for (_, a), (_, b) in zip(s, d, strict=True)]
    assert (
        len({id(a) for a, _ in pairs}) == len(pairs) == len(list(source.state_dict().values()))
    ), "every source tensor used exactly once"
    assert len({id(b) for _, b in pairs}) == len(list(target.state_dict().values()))
    with torch.no_grad():
        for a, b in pairs:
            assert a.shape == b.shape and a.dtype == b.dtype
            b.copy_(a)
    return len(pairs)


def _randomise(module: nn.Module, seed: int) -> None:
    """Non-trivial weights and running statistics, so the comparison can fail."""
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for m in module.modules():
            if isinstance(m, nn.BatchNorm2d):
                m.weight.copy_(1 + 0.1 * torch.randn(m.weight.shape, generator=g))
                m.bias.copy_(0.1 * torch.randn(m.bias.shape, generator=g))
                m.running_mean.copy_(0.1 * torch.randn(m.running_mean.shape, generator=g))
                m.running_var.copy_(1 + torch.rand(m.running_var.shape, generator=g))
                m.num_batches_tracked.fill_(7)


def _assert_parity(ref_g, ref_d, spec, g_params: int, d_params: int) -> None:
    G, D = spec.build()
    assert _n_params(ref_g) == _n_params(G) == g_params
    assert _n_params(ref_d) == _n_params(D) == d_params
    assert [_describe(m) for m in _leaves(ref_g)] == [_describe(m) for m in _leaves(G)]
    assert [_describe(m) for m in _leaves(ref_d)] == [_describe(m) for m in _leaves(D)]

    torch.manual_seed(1)
    for ref in (ref_g, ref_d):
        for p in ref.parameters():
            nn.init.normal_(p, 0.0, 0.02)
    _randomise(ref_g, 2)
    _randomise(ref_d, 3)
    _copy_tensors(ref_g, G)
    _copy_tensors(ref_d, D)

    torch.manual_seed(4)
    z = torch.randn(8, spec.latent_dim, 1, 1)
    real = torch.rand(8, spec.channels, spec.image_size, spec.image_size) * 2 - 1
    for mode in ("train", "eval"):
        for net in (ref_g, ref_d, G, D):
            net.train(mode == "train")
        with torch.no_grad():
            fake_ref, fake = ref_g(z), G(z)
            assert torch.equal(fake_ref, fake), mode
            if mode == "eval":  # in train mode a second pass would move the running stats
                assert torch.equal(G(z.flatten(1)), fake_ref)
            for x in (real, fake_ref):
                assert torch.equal(ref_d(x).view(-1), D(x)), mode
    # running statistics moved identically in train mode
    for a, b in zip(ref_g.state_dict().values(), G.state_dict().values(), strict=True):
        assert torch.equal(a, b)
    for a, b in zip(ref_d.state_dict().values(), D.state_dict().values(), strict=True):
        assert torch.equal(a, b)


def test_seed_dcgan_32() -> None:
    spec = dcgan_spec(image_size=32, channels=3, latent_dim=100, width=128)
    _assert_parity(DCGANGenerator(), DCGANDiscriminator(), spec, 3_448_576, 2_637_312)


def test_classic_dcgan_64() -> None:
    spec = dcgan_spec(image_size=64, channels=3, latent_dim=100, width=64)
    _assert_parity(TutorialGenerator(), TutorialDiscriminator(), spec, 3_576_704, 2_765_568)


def test_plan_counts_match_built_modules() -> None:
    spec = dcgan_spec(image_size=32, channels=3, latent_dim=100, width=128)
    G, D = spec.build()
    assert G.plan.n_params == _n_params(G) == 3_448_576
    assert D.plan.n_params == _n_params(D) == 2_637_312


def test_paper_init() -> None:
    torch.manual_seed(0)
    G, _ = dcgan_spec(image_size=32, width=128).build()
    conv = G.layers[0].weight
    bn = G.layers[1]
    assert abs(conv.std().item() - 0.02) < 0.002 and abs(conv.mean().item()) < 0.002
    assert abs(bn.weight.mean().item() - 1) < 0.01 and torch.all(bn.bias == 0)


@pytest.mark.parametrize("channels", [1, 3])
@pytest.mark.parametrize("size", [16, 32, 64, 128])
def test_sizes_and_channels(size: int, channels: int) -> None:
    spec = dcgan_spec(image_size=size, channels=channels, latent_dim=16, width=8)
    G, D = spec.build()
    z = torch.randn(2, 16)
    images = G(z)
    assert images.shape == (2, channels, size, size)
    scores = D(images)
    assert scores.shape == (2,)
    scores.sum().backward()
    assert all(p.grad is not None for p in G.parameters())
