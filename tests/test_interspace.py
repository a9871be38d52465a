"""The filter-basis convolution (thesis 5.4): composition, gradients (eqs. 5.9/5.10), Algorithm 5.2,
the initialisations of Algorithm 5.1, SP = IP at step 0, Theorem 5.3.1, and the model plumbing."""
from __future__ import annotations

import copy
import math
from types import SimpleNamespace

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from sparse_exp.layers.bases import mean_abs_cosine, onb_basis, random_dictionary
from sparse_exp.layers.interspace import FilterBasisConv2d, fb_layers, to_interspace
from sparse_exp.models import MODELS, declare, initialise, prunable_parameters
from sparse_exp.sparsity.enforce import MaskEnforcer
from sparse_exp.sparsity.mask import Mask
from sparse_exp.training.optim import build_optimizer


def sharing(name="fine", nc=1, dict_size=None, basis_weight_decay=False):
    return SimpleNamespace(name=name, nc=nc, dict_size=dict_size, basis_weight_decay=basis_weight_decay)


class Tiny(nn.Module):
    """Two KxK convs (one strided and padded) and a classifier: small enough for explicit loops."""

    def __init__(self, c_in=2, c_mid=3, c_out=4, k=3, classes=5, side=7):
        super().__init__()
        self.conv1 = nn.Conv2d(c_in, c_mid, k, stride=2, padding=1)
        self.conv2 = nn.Conv2d(c_mid, c_out, k, bias=False)
        side = (side + 2 - k) // 2 + 1 - k + 1
        self.fc = nn.Linear(c_out * side * side, classes)

    def forward(self, x):
        return self.fc(torch.flatten(F.relu(self.conv2(F.relu(self.conv1(x)))), 1))


def tiny(**kw) -> nn.Module:
    return declare(Tiny(**kw), medium_groups={"conv1": 0, "conv2": 0}, classifier_name="fc")


def ip_tiny(scheme="fine", init="standard", weights="kaiming_normal", seed=0, dict_size=None, nc=1, **kw):
    model = to_interspace(tiny(**kw), sharing(scheme, nc=nc, dict_size=dict_size), init)
    initialise(model, weights, seed)
    return model


# --- composition and gradients -------------------------------------------------------------
def test_converted_layer_computes_the_convolution_it_replaced():
    sp = tiny()
    initialise(sp, "kaiming_normal", 3)
    x = torch.randn(2, 2, 7, 7)
    expected = sp(x)
    ip = to_interspace(sp, sharing("in_nc", nc=1), "standard")
    assert isinstance(ip.conv1, FilterBasisConv2d) and ip.conv1.num_bases == 2
    torch.testing.assert_close(ip(x), expected, rtol=0, atol=0)


def _correlate(grad_y: torch.Tensor, v: torch.Tensor, k: int) -> torch.Tensor:
    """(grad_y * v)_(a,b) = sum_(x,y) grad_y[x,y] v[x+a, y+b] by explicit loops (eq. 5.8, no padding)."""
    d1, d2 = grad_y.shape
    out = torch.zeros(k, k, dtype=grad_y.dtype)
    for a in range(k):
        for b in range(k):
            for x in range(d1):
                for y in range(d2):
                    out[a, b] += grad_y[x, y] * v[x + a, y + b]
    return out


@pytest.mark.parametrize("dict_size", [9, 5])
def test_gradients_match_eqs_5_9_and_5_10(dict_size):
    torch.manual_seed(0)
    model = to_interspace(_single_conv(), sharing("fine", dict_size=dict_size), "random")
    initialise(model, "kaiming_normal", 0)
    model = model.double()
    layer = model.conv
    with torch.no_grad():
        layer.basis.normal_()  # a generic basis/dictionary
    v = torch.randn(1, 2, 6, 6, dtype=torch.float64)
    g = torch.randn(1, 3, 4, 4, dtype=torch.float64)  # dL/dY
    (model.conv(v) * g).sum().backward()
    basis = layer.basis[0]
    grad_beta = torch.zeros_like(layer.coeff)
    grad_basis = torch.zeros_like(basis)
    for o in range(3):
        for i in range(2):
            grad_phi = _correlate(g[0, o], v[0, i], 3)  # eq. 5.8
            for n in range(dict_size):
                grad_beta[o, i, n] = (basis[n] * grad_phi).sum()  # eq. 5.9, first form
                grad_basis[n] += layer.coeff[o, i, n].detach() * grad_phi  # eq. 5.10
            # eq. 5.9, second form: <dL/dW_o, F(n) * V_i>
            for n in range(dict_size):
                z = F.conv2d(v[:, i : i + 1], basis[n].detach().view(1, 1, 3, 3))
                assert torch.isclose((g[0, o] * z[0, 0]).sum(), grad_beta[o, i, n])
    torch.testing.assert_close(layer.coeff.grad, grad_beta)
    torch.testing.assert_close(model.fb_bases["conv"].grad[0], grad_basis)


class _Single(nn.Module):
    def __init__(self):
        super().__init__()
        self.conv = nn.Conv2d(2, 3, 3, bias=False)
        self.fc = nn.Linear(1, 1)

    def forward(self, x):
        return self.conv(x)


def _single_conv() -> nn.Module:
    return declare(_Single(), medium_groups={"conv": 0}, classifier_name="fc")


@pytest.mark.parametrize("scheme,nc", [("coarse", 1), ("in_nc", 2), ("out_nc", 3), ("fine", 1)])
def test_basis_first_algorithm_5_2_equals_the_composed_convolution(scheme, nc):
    model = ip_tiny(scheme, "onb", nc=nc, c_in=4, c_mid=5).double()
    x = torch.randn(3, 4, 7, 7, dtype=torch.float64)
    for _, layer in fb_layers(model):
        mask = torch.rand_like(layer.coeff) < 0.4
        beta = layer.coeff.detach() * mask
        composed = F.conv2d(x, layer.spatial_weight(beta), layer.bias, layer.stride, layer.padding)
        torch.testing.assert_close(layer.forward_basis_first(x, beta), composed)
        x = F.relu(layer(x))


# --- initialisations (Algorithm 5.1, IP Algs. A1-A3) ---------------------------------------
def test_onb_is_orthonormal_and_random_dictionary_has_the_rescaled_moments():
    gen = torch.Generator().manual_seed(0)
    q = onb_basis(3, gen).reshape(9, 9).double()
    torch.testing.assert_close(q @ q.T, torch.eye(9, dtype=torch.float64), atol=1e-6, rtol=0)
    for n in (4, 9, 14):
        d = random_dictionary(n, 3, gen).double()
        torch.testing.assert_close(d.mean(0), torch.full((3, 3), 1 / n, dtype=torch.float64), atol=1e-6, rtol=0)
        var = d.var(0, unbiased=False)
        torch.testing.assert_close(var, torch.full((3, 3), 1 / n - 1 / n**2, dtype=torch.float64), atol=1e-6, rtol=0)


@pytest.mark.parametrize("init,dict_size", [("standard", None), ("onb", None), ("random", None), ("random", 5), ("random", 14)])
def test_spatial_filters_are_kaiming_normal_under_every_initialisation(init, dict_size):
    """Alg. 5.1: W has mean 0 and std sqrt(2 / (c_in K^2)) (eq. A.67) whatever F is."""
    model = to_interspace(_wide(), sharing("coarse", dict_size=dict_size), init)
    initialise(model, "kaiming_normal", 1)
    w = model.conv.spatial_weight().detach()
    std = math.sqrt(2 / (64 * 9))
    assert abs(w.mean().item()) < 0.02 * std
    assert w.std().item() == pytest.approx(std, rel=0.03)
    if init == "onb":  # beta = A^T phi: W is exactly the drawn spatial tensor, beta has the same law
        assert model.conv.coeff.std().item() == pytest.approx(std, rel=0.03)


class _Wide(nn.Module):
    def __init__(self):
        super().__init__()
        self.conv = nn.Conv2d(64, 128, 3, padding=1)
        self.fc = nn.Linear(1, 1)


def _wide() -> nn.Module:
    return declare(_Wide(), medium_groups={"conv": 0}, classifier_name="fc")


def test_shared_basis_is_initialised_once_and_onb_reproduces_the_spatial_draw():
    """Coarse + onb: one basis drawn by the first layer from its own stream (seed, "basis", key),
    every layer's W equals the SP layer drawn from the shared generator (the basis takes none of it)."""
    a = ip_tiny("coarse", "onb", seed=4)
    b = ip_tiny("coarse", "onb", seed=4)
    assert list(a.fb_bases.keys()) == ["k3"]
    torch.testing.assert_close(a.fb_bases["k3"], b.fb_bases["k3"], rtol=0, atol=0)
    from sparse_exp.seeding import derive_seed

    basis = onb_basis(3, torch.Generator().manual_seed(derive_seed(4, "basis", "k3")))
    gen = torch.Generator().manual_seed(4)
    torch.testing.assert_close(a.fb_bases["k3"][0], basis, rtol=0, atol=0)
    from sparse_exp.models.init import kaiming_normal

    for name in ("conv1", "conv2"):
        layer = getattr(a, name)
        phi = torch.empty(layer.out_channels, layer.in_channels, 3, 3)
        kaiming_normal(phi, gen)
        torch.testing.assert_close(layer.spatial_weight().detach(), phi, atol=1e-6, rtol=0)


def test_dictionaries_need_the_random_initialisation():
    from sparse_exp.errors import ConfigError

    with pytest.raises(ConfigError, match="init=random"):
        to_interspace(tiny(), sharing("fine", dict_size=5), "standard")


# --- SP = IP at step 0 ------------------------------------------------------------------------
def _batches(n=2, seed=0):
    gen = torch.Generator().manual_seed(seed)
    return [(torch.randn(8, 3, 32, 32, generator=gen), torch.randint(0, 10, (8,), generator=gen)) for _ in range(n)]


def _snip_mask(model, batches, q):
    """SNIP (eq. A.55/A.57) with the lead's score module, global top-k."""
    from sparse_exp.sparsity.scores import compute_scores
    from sparse_exp.sparsity.select import global_mask, kept_count

    session = SimpleNamespace(
        model=model, params=prunable_parameters(model), cfg=SimpleNamespace(seed=0),
        data=SimpleNamespace(num_classes=10, input_shape=(3, 32, 32)),
        score_batches=lambda n, classes=None, batch_size=None, stream="score": batches,
    )
    cfg = SimpleNamespace(score_batches=len(batches), score_batch_size=None, score_classes=None, score_bn_mode="train")
    scores = compute_scores(session, "snip", cfg)
    D = sum(s.numel() for s in scores.values())
    return scores, global_mask(scores, kept_count(q, D))


def test_standard_initialisation_gives_the_sp_network_and_the_sp_snip_mask():
    sp = MODELS.get("vgg16").build(10, (3, 32, 32))
    initialise(sp, "kaiming_normal", 11)
    ip = to_interspace(MODELS.get("vgg16").build(10, (3, 32, 32)), sharing("medium"), "standard")
    initialise(ip, "kaiming_normal", 11)
    x = torch.randn(4, 3, 32, 32)
    sp.eval(), ip.eval()
    torch.testing.assert_close(ip(x), sp(x), rtol=0, atol=0)
    batches = _batches()
    s_sp, m_sp = _snip_mask(sp, batches, 0.95)
    s_ip, m_ip = _snip_mask(ip, batches, 0.95)
    for (n_sp, a), (n_ip, b) in zip(s_sp.items(), s_ip.items()):
        assert n_sp.rsplit(".", 1)[0] == n_ip.rsplit(".", 1)[0]
        torch.testing.assert_close(b.reshape(a.shape), a, rtol=1e-6, atol=0)
    assert torch.equal(m_sp.flat(), m_ip.flat())


@pytest.mark.parametrize("weights", ["kaiming_normal", "xavier_normal", "kaiming_uniform"])
def test_standard_basis_makes_ip_equal_sp_for_every_spatial_scheme(weights):
    """init=xavier_normal (basis standard) or any other weight scheme: the IP network is the SP one."""
    sp = tiny()
    initialise(sp, weights, 5)
    ip = ip_tiny("medium", "standard", weights=weights, seed=5)
    x = torch.randn(3, 2, 7, 7)
    torch.testing.assert_close(ip(x), sp(x), rtol=0, atol=0)


def test_after_training_ip_filters_are_spatially_dense_where_sp_filters_are_sparse():
    torch.manual_seed(0)
    gen = torch.Generator().manual_seed(1)
    data = [(torch.randn(16, 1, 28, 28, generator=gen), torch.randint(0, 10, (16,), generator=gen)) for _ in range(4)]
    results = {}
    for scheme in ("none", "fine"):
        model = MODELS.get("lenet5").build(10, (1, 28, 28))
        to_interspace(model, sharing(scheme), "standard")
        initialise(model, "kaiming_normal", 2)
        params = prunable_parameters(model)
        mask = Mask({n: torch.rand(p.shape, generator=torch.Generator().manual_seed(7)) < 0.2 for n, p in params.items()})
        enforcer = MaskEnforcer(params, mask, "prune", 5e-4)
        opt = build_optimizer(model, enforcer, SimpleNamespace(weight_decay=5e-4, lr=0.01, momentum=0.9, nesterov=False))
        enforcer.apply_(opt)
        for step in range(30):
            x, y = data[step % 4]
            opt.zero_grad()
            F.cross_entropy(model(x), y).backward()
            enforcer.prepare_gradients()
            opt.step()
        conv2 = model.conv2
        w = conv2.spatial_weight() if scheme != "none" else conv2.weight
        results[scheme] = (float((w != 0).float().mean()), float(mask.masks[f"conv2.{'coeff' if scheme != 'none' else 'weight'}"].float().mean()))
    sp_density, sp_mask = results["none"]
    ip_density, ip_mask = results["fine"]
    assert sp_density == pytest.approx(sp_mask) and sp_density < 0.25  # SP: zeros exactly where pruned
    assert ip_density > 0.99  # IP: the trained basis spreads every kept coefficient over the K x K filter


# --- Theorem 5.3.1 ------------------------------------------------------------------------
def test_theorem_5_3_1_basis_and_coefficients_on_the_magnitude_support_beat_magnitude_pruning():
    """For Gaussian R (D1 = K^2 = 9 rows, D2 filters), alternating least squares over the basis T and
    the coefficients S on the fixed magnitude support reaches a smaller error than magnitude pruning."""
    gen = torch.Generator().manual_seed(0)
    d1, d2 = 9, 200
    r = torch.randn(d1, d2, generator=gen, dtype=torch.float64)
    d = int(0.3 * d1 * d2)
    support = torch.zeros(d1 * d2, dtype=torch.bool)
    support[r.abs().flatten().topk(d).indices] = True
    support = support.view(d1, d2)
    rho_id = torch.linalg.norm(r - r * support)  # eq. 5.1 with S = top-d(R)
    t, s = torch.eye(d1, dtype=torch.float64), r * support
    errors = []
    for _ in range(10):
        for j in range(d2):  # coefficients: least squares on the support of column j
            idx = support[:, j].nonzero().flatten()
            s[:, j] = 0
            if len(idx):
                s[idx, j] = torch.linalg.lstsq(t[:, idx], r[:, j : j + 1]).solution.flatten()
        t = torch.linalg.lstsq(s.T, r.T).solution.T  # basis: least squares for fixed S
        errors.append(float(torch.linalg.norm(r - t @ s)))
    assert (s[~support] == 0).all()
    assert all(b <= a + 1e-9 for a, b in zip(errors, errors[1:]))  # alternating minimisation never gets worse
    assert errors[-1] < 0.99 * float(rho_id)  # strictly better than magnitude pruning (Thm. 5.3.1 part 2)


# --- plumbing: state_dict, deepcopy, device moves, weight decay, probes ---------------------
def test_state_dict_deepcopy_and_weight_decay_flags_keep_the_sharing():
    model = ip_tiny("coarse", "random", seed=0)
    names = [n for n, _ in model.named_parameters()]
    assert names.count("fb_bases.k3") == 1 and not any(n.endswith("basis") for n in names)
    clone = copy.deepcopy(model)
    assert clone.conv1.basis is clone.conv2.basis is clone.fb_bases["k3"]
    assert clone.conv1.basis is not model.conv1.basis
    assert clone.fb_bases["k3"]._sx_no_decay is True  # bases without weight decay (appendix B.3)
    other = ip_tiny("coarse", "random", seed=5)
    other.load_state_dict(model.state_dict())
    x = torch.randn(2, 2, 7, 7)
    torch.testing.assert_close(other(x), model(x), rtol=0, atol=0)
    assert other.conv2.basis is other.fb_bases["k3"]
    moved = model.to(torch.float64)
    assert moved.conv1.basis.dtype == torch.float64 and moved.conv1.basis is moved.fb_bases["k3"]
    decayed = to_interspace(tiny(), sharing("coarse", basis_weight_decay=True), "standard")
    enforcer = MaskEnforcer(prunable_parameters(decayed), Mask.ones(prunable_parameters(decayed)), "dense", 1e-4)
    opt = build_optimizer(decayed, enforcer, SimpleNamespace(weight_decay=1e-4, lr=0.1, momentum=0.9, nesterov=False))
    group = next(g for g in opt.param_groups if any(p is decayed.fb_bases["k3"] for p in g["params"]))
    assert group["weight_decay"] == 1e-4


def test_basis_similarity_eq_a1_hand_values():
    """Eq. A.1: 2 / (K²(K² - 1)) times the sum over pairs j < k of |<g_j, g_k>| / (||g_j|| ||g_k||), here for
    K = 2 and four elements worked out by hand: the pairs give 1/√2, 0, 1/2, 0, 0, 1/2."""
    a = torch.tensor([[1.0, 0.0], [0.0, 0.0]])
    b = torch.tensor([[1.0, 1.0], [0.0, 0.0]])
    c = torch.tensor([[0.0, 0.0], [0.0, -2.0]])
    d = torch.tensor([[1.0, -1.0], [1.0, 1.0]])
    basis = torch.stack([torch.stack([a, b, c, d]), torch.eye(4).reshape(4, 2, 2)])  # G = 2: hand example, ONB
    sim = mean_abs_cosine(basis)
    assert sim.shape == (2,)
    assert float(sim[0]) == pytest.approx((1 + 1 / math.sqrt(2)) / 6, rel=1e-12)
    assert float(sim[1]) == 0.0  # an orthonormal basis: no two elements alike
    scaled = basis * torch.tensor([3.0, -0.5, 2.0, 7.0]).reshape(1, 4, 1, 1)  # |cos| ignores scale and sign
    torch.testing.assert_close(mean_abs_cosine(scaled), sim)
    same = torch.ones(1, 3, 3, 3)  # all elements equal: similarity 1
    assert float(mean_abs_cosine(same)[0]) == pytest.approx(1.0, rel=1e-12)


def test_probe_reports_similarity_and_the_three_gradient_norms():
    from sparse_exp.measure.probes import InterspaceProbe

    model = ip_tiny("coarse", "random", seed=0)
    params = prunable_parameters(model)
    mask = Mask({n: torch.rand(p.shape, generator=torch.Generator().manual_seed(1)) < 0.5 for n, p in params.items()})
    enforcer = MaskEnforcer(params, mask, "prune", 5e-4)
    enforcer.apply_()
    probe = InterspaceProbe(model)
    x, y = torch.randn(4, 2, 7, 7), torch.randint(0, 5, (4,))
    F.cross_entropy(model(x), y).backward()
    coeff_loss_grads = {n: p.grad.clone() for n, p in params.items() if n.endswith("coeff")}
    enforcer.prepare_gradients()
    trainer = SimpleNamespace(enforcer=enforcer, lr=0.1, scaler=SimpleNamespace(is_enabled=lambda: False))
    out = probe(trainer)
    basis = model.fb_bases["k3"]
    assert out["fb/cos_sim/k3"] == pytest.approx(float(mean_abs_cosine(basis)[0]))
    expected_coeff = math.sqrt(sum(float((g * mask.masks[n]).pow(2).sum()) for n, g in coeff_loss_grads.items()))
    assert out["fb/grad_l2/coeff"] == pytest.approx(expected_coeff, rel=1e-5)
    assert out["fb/grad_l2/basis"] == pytest.approx(float(basis.grad.norm()), rel=1e-6)
    assert out["fb/grad_l2/spatial"] > 0 and out["fb/grad_l2_x_lr/basis"] == pytest.approx(0.1 * out["fb/grad_l2/basis"])


@pytest.mark.parametrize("rows", [1, 2, 3, 4])
@pytest.mark.parametrize("m, n", [(24, 9), (25, 9), (12, 5)])  # 25: not a multiple of rows > 1; 5: a dictionary
def test_composing_several_filters_per_row_keeps_weights_and_gradients(rows, m, n):
    """interspace._compose_rows (kron(I, F), for speed) against the plain product beta F that the
    layer computed before: W, dL/dbeta and dL/dF equal to float64 rounding."""
    from sparse_exp.layers.interspace import _compose_rows

    gen = torch.Generator().manual_seed(0)
    beta = torch.randn(m, n, generator=gen, dtype=torch.float64, requires_grad=True)
    basis = torch.randn(n, 9, generator=gen, dtype=torch.float64, requires_grad=True)
    g = torch.randn(m, 9, generator=gen, dtype=torch.float64)
    reference = beta @ basis
    ref_beta, ref_basis = torch.autograd.grad(reference, (beta, basis), g)
    w = _compose_rows(beta, basis, rows)
    got_beta, got_basis = torch.autograd.grad(w, (beta, basis), g)
    torch.testing.assert_close(w, reference, rtol=1e-12, atol=1e-12)
    torch.testing.assert_close(got_beta, ref_beta, rtol=1e-12, atol=1e-12)
    torch.testing.assert_close(got_basis, ref_basis, rtol=1e-12, atol=1e-12)


def test_shared_basis_gradients_in_a_model_equal_the_plain_composition(monkeypatch):
    """A VGG-16 block pair sharing one basis (medium): the loss gradient of every coefficient tensor and
    of the shared basis is the one of the plain (M, n) x (n, K^2) composition."""
    import sparse_exp.layers.interspace as interspace

    def grads(rows):
        monkeypatch.setattr(interspace, "COMPOSE_ROWS", rows)
        model = to_interspace(MODELS.get("vgg16").build(10, (3, 32, 32)), sharing("medium"), "onb")
        initialise(model, "kaiming_normal", 0)
        model = model.double().eval()  # BatchNorm's batch statistics would amplify rounding (cancellation)
        x = torch.randn(2, 3, 32, 32, generator=torch.Generator().manual_seed(1), dtype=torch.float64)
        model(x).square().sum().backward()
        return {k: p.grad.clone() for k, p in model.named_parameters() if p.grad is not None}

    plain, fast = grads(1), grads(2)
    assert any(k.startswith("fb_bases") for k in plain) and plain.keys() == fast.keys()
    for k in plain:
        torch.testing.assert_close(fast[k], plain[k], rtol=1e-9, atol=1e-12)
