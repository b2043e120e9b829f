"""CAGrad: closed-form checks on two conflicting quadratics, c = 0, simplex projection, parameter plumbing."""

import math

import pytest
import torch

from ivif_fusion.cagrad import (CAGrad, cagrad, cagrad_weights, dual_objective, flatten, project_simplex,
                             task_gradients, write_grads)

C = 0.5


def closed_form_w(g1: torch.Tensor, g2: torch.Tensor, c: float) -> float:
    """Minimiser over w in [0, 1] of F(w) = <g_w, g0> + s ||g_w||, g_w = w g1 + (1 - w) g2, s = c ||g0||.

    With a = g1 - g2, b = g2: F'(w) = <a, g0> + s (<a, b> + w |a|^2) / ||b + w a||. Setting
    q = <a, b> + w |a|^2 gives ||b + w a||^2 = (q^2 + D) / |a|^2 with D = |a|^2 |b|^2 - <a, b>^2, so
    F' = 0 <=> q |a| / sqrt(q^2 + D) = r with r = -<a, g0> / s, i.e. q = sign(r) |r| sqrt(D / (|a|^2 - r^2))
    when |r| < |a|. F is convex, so the stationary point clipped to [0, 1] is the minimiser; when
    |r| >= |a|, F' has one sign and the minimiser is an end point.
    """
    g1, g2 = g1.double(), g2.double()
    g0 = (g1 + g2) / 2
    s = c * g0.norm()
    a, b = g1 - g2, g2
    aa, ab, bb = a @ a, a @ b, b @ b
    r = -(a @ g0) / s
    if abs(r) >= math.sqrt(aa):
        return 1.0 if r > 0 else 0.0
    d = aa * bb - ab * ab
    q = torch.sign(r) * abs(r) * torch.sqrt(d / (aa - r * r))
    return float(((q - ab) / aa).clamp(0, 1))


def closed_form_update(g1: torch.Tensor, g2: torch.Tensor, c: float) -> torch.Tensor:
    w = closed_form_w(g1, g2, c)
    g0 = (g1.double() + g2.double()) / 2
    gw = w * g1.double() + (1 - w) * g2.double()
    return g0 + c * g0.norm() / gw.norm() * gw


def quadratic_grads(x: torch.Tensor, a: torch.Tensor, b: torch.Tensor, h1: torch.Tensor, h2: torch.Tensor):
    """Gradients at x of L1 = 1/2 (x-a)^T H1 (x-a) and L2 = 1/2 (x-b)^T H2 (x-b)."""
    return h1 @ (x - a), h2 @ (x - b)


def test_symmetric_conflict_hand_value():
    # g1 = (1, t), g2 = (-1, t): by symmetry w = 1/2, g_w = g0 = (0, t), so d = (1 + c) g0.
    t = 0.3
    g = torch.tensor([[1.0, t], [-1.0, t]], dtype=torch.float64)
    w = cagrad_weights(g @ g.t(), C)
    torch.testing.assert_close(w, torch.tensor([0.5, 0.5], dtype=torch.float64), atol=1e-9, rtol=0)
    d = cagrad(g, C, rescale=False)
    torch.testing.assert_close(d, torch.tensor([0.0, t * (1 + C)], dtype=torch.float64), atol=1e-9, rtol=0)
    torch.testing.assert_close(cagrad(g, C, rescale=True), d / (1 + C * C), atol=1e-9, rtol=0)


@pytest.mark.parametrize("seed", range(6))
def test_two_conflicting_quadratics_match_closed_form(seed):
    gen = torch.Generator().manual_seed(seed)
    p = 5
    a, b = torch.randn(p, generator=gen, dtype=torch.float64), torch.randn(p, generator=gen, dtype=torch.float64)
    m1, m2 = torch.randn(p, p, generator=gen, dtype=torch.float64), torch.randn(p, p, generator=gen, dtype=torch.float64)
    h1, h2 = m1 @ m1.t() + 0.5 * torch.eye(p, dtype=torch.float64), m2 @ m2.t() + 0.5 * torch.eye(p, dtype=torch.float64)
    x = (a + b) / 2 + 0.1 * torch.randn(p, generator=gen, dtype=torch.float64)
    g1, g2 = quadratic_grads(x, a, b, h1, h2)
    assert g1 @ g2 < 0, "the two tasks must conflict for this test to mean something"
    d = cagrad(torch.stack([g1, g2]), C, rescale=False)
    torch.testing.assert_close(d, closed_form_update(g1, g2, C), atol=1e-6, rtol=0)
    w = cagrad_weights(torch.stack([g1, g2]) @ torch.stack([g1, g2]).t(), C)
    assert abs(float(w[0]) - closed_form_w(g1, g2, C)) < 1e-6


def test_boundary_solution_matches_closed_form():
    # A tiny second gradient that points against the first: the dual puts all weight on it (w = 0).
    g1 = torch.tensor([1.0, 0.0], dtype=torch.float64)
    g2 = torch.tensor([-0.05, 0.01], dtype=torch.float64)
    w_cf = closed_form_w(g1, g2, C)
    assert w_cf in (0.0, 1.0)
    d = cagrad(torch.stack([g1, g2]), C, rescale=False)
    torch.testing.assert_close(d, closed_form_update(g1, g2, C), atol=1e-6, rtol=0)


def test_closed_form_is_the_dual_minimum_on_a_grid():
    # Independent check of the hand derivation itself: no grid point beats it.
    g1 = torch.tensor([1.0, 0.4, -0.2], dtype=torch.float64)
    g2 = torch.tensor([-0.7, 0.5, 0.3], dtype=torch.float64)
    gram = torch.stack([g1, g2]) @ torch.stack([g1, g2]).t()
    w = closed_form_w(g1, g2, C)
    best = dual_objective(torch.tensor([w, 1 - w], dtype=torch.float64), gram, C)
    grid = torch.linspace(0, 1, 20001, dtype=torch.float64)
    vals = torch.stack([dual_objective(torch.stack([v, 1 - v]), gram, C) for v in grid[::50]])
    assert best <= vals.min() + 1e-12


def test_update_maximises_worst_task_improvement_in_the_ball():
    # Primal view: d = argmax_{||d - g0|| <= c||g0||} min_i <g_i, d>. Random ball points never do better.
    gen = torch.Generator().manual_seed(3)
    g = torch.randn(3, 6, generator=gen, dtype=torch.float64)
    d = cagrad(g, C, rescale=False)
    g0 = g.mean(0)
    radius = C * g0.norm()
    assert (d - g0).norm() <= radius + 1e-9
    best = (g @ d).min()
    for _ in range(2000):
        v = torch.randn(6, generator=gen, dtype=torch.float64)
        cand = g0 + radius * torch.rand(1, generator=gen, dtype=torch.float64) ** (1 / 6) * v / v.norm()
        assert (g @ cand).min() <= best + 1e-9


def test_c_zero_is_plain_average():
    g = torch.tensor([[1.0, 2.0, -3.0], [-4.0, 0.5, 1.0]])
    torch.testing.assert_close(cagrad(g, 0.0), g.mean(0))
    torch.testing.assert_close(cagrad(g, 0.0, rescale=False), g.mean(0))


def test_single_task_scales_gradient():
    g = torch.tensor([[3.0, -4.0]])
    torch.testing.assert_close(cagrad(g, C, rescale=False), g[0] * (1 + C))
    torch.testing.assert_close(cagrad(g, C, rescale=True), g[0] * (1 + C) / (1 + C * C))


def test_project_simplex_values():
    torch.testing.assert_close(project_simplex(torch.tensor([0.5, 0.2, 0.3])), torch.tensor([0.5, 0.2, 0.3]))
    torch.testing.assert_close(project_simplex(torch.tensor([1.0, 1.0])), torch.tensor([0.5, 0.5]))
    torch.testing.assert_close(project_simplex(torch.tensor([3.0, 0.0, -1.0])), torch.tensor([1.0, 0.0, 0.0]))
    torch.testing.assert_close(project_simplex(torch.tensor([0.9, 0.6, -2.0])), torch.tensor([0.65, 0.35, 0.0]))


def test_bad_inputs_raise():
    with pytest.raises(ValueError):
        cagrad(torch.zeros(3))
    with pytest.raises(ValueError):
        cagrad(torch.ones(2, 3), c=-1)
    with pytest.raises(ValueError):
        cagrad_weights(torch.ones(2, 3))


def test_gradient_flattening_and_write_back():
    torch.manual_seed(0)
    net = torch.nn.Sequential(torch.nn.Linear(3, 4), torch.nn.Tanh(), torch.nn.Linear(4, 2))
    params = list(net.parameters())
    x = torch.randn(5, 3)
    out = net(x)
    l1, l2 = out[:, 0].square().mean(), (out[:, 1] - 1).abs().mean()
    grads = task_gradients([l1, l2], params)
    assert grads.shape == (2, sum(p.numel() for p in params))
    ref1 = flatten(torch.autograd.grad(net(x)[:, 0].square().mean(), params))
    torch.testing.assert_close(grads[0], ref1)
    # c = 0 with CAGrad.backward leaves exactly the gradient of the mean loss in .grad
    opt = CAGrad(params, c=0.0)
    out = net(x)
    info = opt.backward([out[:, 0].square().mean(), (out[:, 1] - 1).abs().mean()])
    got = flatten([p.grad for p in params])
    net.zero_grad()
    out = net(x)
    ((out[:, 0].square().mean() + (out[:, 1] - 1).abs().mean()) / 2).backward()
    torch.testing.assert_close(got, flatten([p.grad for p in params]))
    assert -1.0 <= info["min_task_cos"] <= 1.0
    # a loss that does not reach a parameter contributes zeros there
    extra = torch.nn.Parameter(torch.ones(2))
    g = task_gradients([net(x).sum(), (extra * 2).sum()], params + [extra])
    assert torch.all(g[0, -2:] == 0) and torch.all(g[1, -2:] == 2)
    with pytest.raises(ValueError, match="values"):
        write_grads(params, torch.zeros(3))
