"""Multi-task gradient combination: CAGrad (Liu et al., NeurIPS 2021, "Conflict-Averse Gradient Descent").

Given task gradients ``g_1..g_K`` (flattened over the trained parameters), with the average
``g0 = mean_i g_i``, CAGrad looks for the update ``d`` maximising the worst task's local
improvement ``min_i <g_i, d>`` within a ball ``||d - g0|| <= c ||g0||``. Its dual is a
K-dimensional problem over the simplex:

    min_{w in simplex}  F(w) = <g_w, g0> + sqrt(phi) ||g_w||,    g_w = sum_i w_i g_i,  phi = c^2 ||g0||^2

and the update is ``d = g0 + sqrt(phi) / ||g_w|| * g_w``. Everything needed is the K x K Gram
matrix ``G = [<g_i, g_j>]``: ``<g_w, g0> = w^T G u`` (u = 1/K), ``||g_w||^2 = w^T G w``.

Solver (written here, no scipy): projected gradient descent on the simplex in float64 with an
Armijo backtracking line search and a Barzilai-Borwein initial step, run to a 1e-13 step
tolerance (K is the number of tasks, so this is microseconds of work).

Scaling choice: ``rescale=True`` (default) divides ``d`` by ``1 + c^2``, as the authors'
reference implementation does by default, so that the step size is comparable across ``c``
(for one task, ``d = (1 + c) g`` before rescaling). ``c = 0`` gives the plain average gradient
either way (rescaling by 1): the gradient of the mean of the task losses, 1/K times the gradient
of their plain sum. With Adam (as in :mod:`ivif_fusion.training.rsc`) the global scale
matters little (an Adam step is unchanged when every gradient is scaled by one constant, up to
its eps, so c = 0 trains as plain summing of the task losses would); with SGD it is the
effective learning rate.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence

import torch


def project_simplex(v: torch.Tensor) -> torch.Tensor:
    """Euclidean projection of a vector onto the probability simplex {w >= 0, sum w = 1}.

    Sort-based algorithm: find the threshold ``tau`` with ``sum max(v - tau, 0) = 1``.

    >>> project_simplex(torch.tensor([2.0, 0.0])).tolist()
    [1.0, 0.0]
    """
    if v.ndim != 1 or v.numel() == 0:
        raise ValueError(f"project_simplex: expected a non-empty vector, got shape {tuple(v.shape)}")
    u, _ = torch.sort(v, descending=True)
    css = torch.cumsum(u, 0) - 1.0
    idx = torch.arange(1, v.numel() + 1, dtype=v.dtype, device=v.device)
    rho = int(torch.nonzero(u - css / idx > 0).max())
    tau = css[rho] / (rho + 1)
    return (v - tau).clamp_min(0.0)


def dual_objective(w: torch.Tensor, gram: torch.Tensor, c: float) -> torch.Tensor:
    """F(w) = w^T G u + c ||g0|| sqrt(w^T G w), the CAGrad dual (u = uniform weights)."""
    k = gram.shape[0]
    u = torch.full((k,), 1.0 / k, dtype=gram.dtype, device=gram.device)
    s = c * torch.sqrt((u @ gram @ u).clamp_min(0.0))
    return w @ gram @ u + s * torch.sqrt((w @ gram @ w).clamp_min(0.0))


def cagrad_weights(gram: torch.Tensor, c: float = 0.5, *, max_iter: int = 5000, tol: float = 1e-13) -> torch.Tensor:
    """Minimiser ``w`` (K,) of the CAGrad dual over the simplex, from the Gram matrix (K, K)."""
    if gram.ndim != 2 or gram.shape[0] != gram.shape[1]:
        raise ValueError(f"cagrad_weights: expected a square Gram matrix, got shape {tuple(gram.shape)}")
    g = gram.detach().to(torch.float64)
    k = g.shape[0]
    u = torch.full((k,), 1.0 / k, dtype=torch.float64)
    if k == 1:
        return u
    s = c * torch.sqrt((u @ g @ u).clamp_min(0.0))

    def f(w: torch.Tensor) -> torch.Tensor:
        return w @ g @ u + s * torch.sqrt((w @ g @ w).clamp_min(0.0))

    def grad(w: torch.Tensor) -> torch.Tensor:
        n = torch.sqrt((w @ g @ w).clamp_min(1e-300))
        return g @ u + s * (g @ w) / n

    scale = float(torch.diagonal(g).max().clamp_min(1e-300))
    w, step = u.clone(), 1.0 / scale
    fw, gw = f(w), grad(w)
    for _ in range(max_iter):
        while True:  # Armijo backtracking along the projection arc
            w_new = project_simplex(w - step * gw)
            f_new = f(w_new)
            if f_new <= fw + gw @ (w_new - w) + (w_new - w).square().sum() / (2 * step) or step < 1e-30:
                break
            step *= 0.5
        dw = w_new - w
        g_new = grad(w_new)
        if dw.abs().max() < tol:
            w = w_new
            break
        dg = g_new - gw
        curv = float(dw @ dg)
        step = float(dw @ dw) / curv if curv > 0 else step * 2.0  # Barzilai-Borwein
        w, fw, gw = w_new, f_new, g_new
    return w


def cagrad_combination(grads: torch.Tensor, c: float = 0.5,
                       rescale: bool = True) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """The CAGrad update of task gradients (K, P) with what produced it: ``(d, w, coef)``.

    ``d`` (P,): ``g0 + c ||g0|| / ||g_w|| * g_w``, divided by ``1 + c^2`` when ``rescale`` (see module
    docstring), in float64. ``w`` (K,): the dual weights from :func:`cagrad_weights`. ``coef`` (K,):
    the weight of each task gradient in the update, ``d = sum_i coef_i g_i``, i.e.
    ``coef = (1/K + c ||g0|| / ||g_w|| * w) / (1 + c^2)``.

    ``c = 0``: ``d = g0``, the plain average of the task gradients (the gradient of the mean of the
    task losses, 1/K times that of their sum), with nothing to rescale; the dual term is multiplied
    by c and vanishes, so the dual is not solved and ``w`` is reported as uniform (1/K).
    """
    if grads.ndim != 2 or grads.shape[0] == 0:
        raise ValueError(f"cagrad: expected gradients of shape (K, P), got {tuple(grads.shape)}")
    if c < 0:
        raise ValueError(f"cagrad: c must be >= 0, got {c}")
    g = grads.detach().to(torch.float64)
    k = g.shape[0]
    g0 = g.mean(0)
    u = torch.full((k,), 1.0 / k, dtype=torch.float64, device=g.device)
    w, coef = u.clone(), u.clone()
    d = g0
    if c != 0:
        w = cagrad_weights(g @ g.t(), c).to(g.device)
        gw = w @ g
        gw_norm = gw.norm()
        if gw_norm > 1e-300:
            lam = c * g0.norm() / gw_norm
            d = g0 + lam * gw
            coef = u + lam * w
    if rescale:
        d = d / (1.0 + c * c)
        coef = coef / (1.0 + c * c)
    return d, w, coef


def cagrad(grads: torch.Tensor, c: float = 0.5, rescale: bool = True) -> torch.Tensor:
    """CAGrad update direction (P,) from task gradients (K, P), in the gradients' dtype (computed in
    float64); see :func:`cagrad_combination` (``c = 0``: the plain average)."""
    return cagrad_combination(grads, c, rescale)[0].to(grads.dtype)


# ---------------------------------------------------------------------- parameters <-> vectors


def task_gradients(losses: Sequence[torch.Tensor], params: Sequence[torch.Tensor]) -> torch.Tensor:
    """(K, P) matrix: row k is d losses[k] / d params, flattened (zeros where a loss does not reach a parameter)."""
    rows = []
    for i, loss in enumerate(losses):
        gs = torch.autograd.grad(loss, params, retain_graph=i < len(losses) - 1, allow_unused=True)
        rows.append(flatten([torch.zeros_like(p) if g is None else g for p, g in zip(params, gs)]))
    return torch.stack(rows)


def flatten(tensors: Iterable[torch.Tensor]) -> torch.Tensor:
    """Concatenate tensors into one flat vector."""
    return torch.cat([t.reshape(-1) for t in tensors])


def write_grads(params: Sequence[torch.Tensor], vec: torch.Tensor) -> None:
    """Set ``p.grad`` of each parameter from consecutive slices of ``vec`` (inverse of :func:`flatten`)."""
    total = sum(p.numel() for p in params)
    if vec.numel() != total:
        raise ValueError(f"write_grads: vector has {vec.numel()} values, parameters need {total}")
    i = 0
    for p in params:
        n = p.numel()
        p.grad = vec[i:i + n].view_as(p).to(p.dtype).clone()
        i += n


class CAGrad:
    """Applies CAGrad to a set of parameters: ``backward(losses)`` fills their ``.grad``.

    Use in place of ``sum(losses).backward()``, then call the optimizer's ``step()``.
    """

    def __init__(self, params: Iterable[torch.Tensor], c: float = 0.5, rescale: bool = True) -> None:
        self.params = [p for p in params if p.requires_grad]
        if not self.params:
            raise ValueError("CAGrad: no trainable parameters")
        self.c, self.rescale = c, rescale

    def backward(self, losses: Sequence[torch.Tensor]) -> dict:
        """Per-task gradients -> CAGrad direction -> ``.grad``. Returns facts for logging.

        ``grad_norm``: ||d||; ``min_task_cos``: the smallest cosine between two task gradients (< 0:
        the tasks conflict; 1.0 with one task); per task (lists in loss order): ``task_grad_norms``
        ||g_i||, ``weights`` the dual weights w_i, ``coefs`` the weight of g_i in d, and ``update_cos``
        cos(g_i, d) (> 0: to first order a small step along d lowers task i's loss).
        """
        grads = task_gradients(list(losses), self.params)
        d, w, coef = cagrad_combination(grads, self.c, self.rescale)
        write_grads(self.params, d.to(grads.dtype))
        g = grads.double()
        gram = g @ g.t()
        norms = torch.sqrt(torch.diagonal(gram))
        cos = gram / (norms[:, None] * norms[None, :]).clamp_min(1e-300)
        k = len(losses)
        min_cos = float(cos[~torch.eye(k, dtype=torch.bool)].min()) if k > 1 else 1.0
        update_cos = (g @ d) / (norms * d.norm()).clamp_min(1e-300)
        return {"grad_norm": float(d.norm()), "min_task_cos": min_cos, "task_grad_norms": norms.tolist(),
                "weights": w.tolist(), "coefs": coef.tolist(), "update_cos": update_cos.tolist()}
