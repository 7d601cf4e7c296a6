"""Many L2-regularised multinomial logistic regressions at once, in torch.

One call fits J problems at each of L layers (L·J problems in all): problem
(ℓ, j) sees the activations ``X[ℓ]`` of all N prompts but only the rows where
``targets[j] >= 0`` (its training fold, with its own — possibly permuted —
labels), standardised with the mean and standard deviation of those rows
(``StandardScaler``: population std, a zero std becomes 1). In standardised
coordinates x̃ it minimises scikit-learn's ``LogisticRegression`` objective
(lbfgs, multinomial, fit_intercept, penalty l2)

    F(W, b) = Σ_{i ∈ train} −log softmax(x̃_i W + b)_{y_i} + ½ λ ‖W‖²,   λ = 1/C,

with the intercept b unpenalised. scikit-learn fits two classes with one binomial
weight vector w and penalty ½λ‖w‖²; the symmetric two-class softmax optimum has
W = [−w/2, w/2], whose penalty is ¼λ‖w‖², so λ is doubled when C = 2 to give the
same decision function.

Standardisation is folded into the weights, so every problem of a layer shares
one pass over ``X[ℓ]``: logits = X A + c with A = W / s and c = b − m·A, and the
gradient in standardised coordinates is ∂F/∂W = (Xᵀ G − m (1ᵀG)) / s + λ W, where
G = (softmax − onehot) on training rows and 0 elsewhere.

The optimiser is L-BFGS, vectorised over problems (each keeps its own history,
step length, scaling γ and stopping flag), with a fixed preconditioner as the
initial inverse Hessian: H₀ = γ · blockdiag((κ X̃ᵀX̃ + λ I)⁻¹, 1/(κ_b n)), where
X̃ᵀX̃ is the layer's Gram matrix of globally standardised activations rescaled to
the mean training-fold size, κ, κ_b curvature constants, and γ = sᵀy / yᵀH₀y
from the latest pair. Preconditioning undoes the correlations between
residual-stream features; on strongly anisotropic activations it cuts the
iteration count about tenfold. Steps come from a non-monotone Armijo
backtracking search; as the logits are linear in θ, a trial step costs only
elementwise work (Z + t·Zp), so one iteration is two passes over ``X[ℓ]``
(direction logits, gradient) plus one product with (κ X̃ᵀX̃ + λ I)⁻¹. The
objective is strictly convex, so every curvature pair has sᵀy > 0. A problem
stops when ‖∇F‖_∞ / n_train ≤ ``tol`` — scikit-learn's ``gtol`` on its loss,
which is F/n — and finished layers leave the batch.

Few prompts (4N ≤ d, e.g. a 4-case tier: 48 prompts in 576 dimensions). The
optimum lies in each problem's row space: the data term sees W only through
x̃ᵢ·W for training rows and the penalty drops any component orthogonal to them,
so W = D⁻¹ V b with V (d, N) an orthonormal basis holding the rows of ``X[ℓ]``
and D = diag(s) the problem's scales. Whitening the penalty (Q = Vᵀ D⁻² V = R Rᵀ,
β = Rᵀ b) gives the same objective in N coordinates per problem, with features
Φ = (X − m) D⁻² V R⁻ᵀ and penalty ½λ‖β‖², which the same L-BFGS solves with the
exact preconditioner (κ ΦᵀΦ + λ I)⁻¹ of each problem's training rows. An iteration
then costs O(N²) per class instead of O(d² + N d), and the exact preconditioner
needs about a quarter of the iterations of the shared one on real 4-case tiers
(40 instead of 90-200 for race; 100-190 instead of 140-290 for race × gender).
The coefficients are mapped back (W = D⁻¹ V R⁻ᵀ β), so :class:`SoftmaxFit` is the
same either way; ``reduce_rows`` forces or forbids this path.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

import numpy as np
import torch
from einops import einsum

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class SoftmaxFit:
    """Fitted weights for L layers × J problems, in each problem's standardised space."""

    coef: torch.Tensor  # (L, J, C, d), like scikit-learn's coef_ per problem
    intercept: torch.Tensor  # (L, J, C)
    mean: torch.Tensor  # (L, J, d) training-fold means of the (pre-standardised) X
    scale: torch.Tensor  # (L, J, d) training-fold standard deviations
    n_iter: np.ndarray  # (L,) iterations used per layer
    n_iter_problem: np.ndarray  # (L, J) iteration at which each problem stopped
    converged: np.ndarray  # (L, J) bool: ‖∇F‖_∞ / n_train ≤ tol

    def decision_function(self, X: torch.Tensor) -> torch.Tensor:
        """Logits of every row of ``X`` (L, N, d) under every problem: ``(L, N, J, C)``."""
        A = self.coef / self.scale[:, :, None]  # back from the standardised space
        c = self.intercept - (A * self.mean[:, :, None]).sum(-1)
        return einsum(X, A, "l n d, l j c d -> l n j c") + c[:, None]


def standardise_layers(h, dtype: torch.dtype) -> torch.Tensor:
    """Centre and scale each layer of ``h`` (L, N, d) by its own mean and std, in ``dtype``.

    The per-fold standardisation of the probes is applied on top of this; doing it
    first keeps float32 logits free of cancellation from large-offset features.
    Statistics are accumulated in float64; a constant feature becomes 0.
    """
    out = torch.empty(tuple(h.shape), dtype=dtype)
    np_dtype = np.float32 if dtype == torch.float32 else np.float64
    for ell in range(h.shape[0]):
        x = np.asarray(h[ell])
        mu = x.mean(0, dtype=np.float64)
        sd = np.sqrt(np.maximum((np.square(x, dtype=np.float64)).mean(0) - mu * mu, 0.0))
        sd = np.where(sd > 1e-6 * (1.0 + np.abs(mu)), sd, 1.0)
        out[ell] = torch.from_numpy(((x - mu) / sd).astype(np_dtype))
    return out


def fit_softmax_problems(
    X: torch.Tensor,
    targets: np.ndarray,
    n_classes: int,
    *,
    l2: float = 1.0,
    tol: float = 3e-5,
    max_iter: int = 1000,
    history: int = 10,
    curvature: float = 0.01,
    nonmonotone: int = 5,
    bias_curvature: float = 0.01,
    reduce_rows: bool | None = None,
) -> SoftmaxFit:
    """Fit every (layer, problem) pair; see the module docstring for the objective.

    ``X`` is (L, N, d) float32 or float64, best pre-standardised per layer
    (:func:`standardise_layers`); ``targets`` is (J, N) int, the class index in
    ``[0, n_classes)`` of each training row of problem j and −1 for rows that
    problem does not train on. ``curvature`` and ``bias_curvature`` are κ and κ_b
    of the preconditioner (0.01 is near the fewest iterations on both real
    SmolLM2-135M and synthetic activations; any value within a factor of ten
    reaches the same optimum, a little slower). ``nonmonotone`` is the memory of
    the line search's reference value. ``tol`` bounds ‖∇F‖_∞ / n_train like
    scikit-learn's ``tol``; the default 3e-5 (vs scikit-learn's 1e-4) leaves
    the solution as close to the exact optimum as scikit-learn's is at 1e-4,
    since the preconditioned path meets a given gradient bound farther from it
    along the flat directions of ill-conditioned activations. Parameters are
    held as θ of shape (L, J, C, d+1): the weights of class c in standardised
    coordinates, then the intercept. ``reduce_rows``: fit in row-space
    coordinates (see the module docstring); None: when 4N ≤ d.
    """
    L, N, d = X.shape
    targets = np.asarray(targets)
    J = targets.shape[0]
    C = int(n_classes)
    dtype = X.dtype
    if not l2 >= 0:
        raise ValueError(f"l2 must be >= 0, got {l2}")
    lam = float(l2) * (2.0 if C == 2 else 1.0)
    kappa = float(curvature)

    train_np = targets >= 0
    n_train = torch.as_tensor(train_np.sum(1), dtype=torch.float64)  # (J,)
    if bool((n_train == 0).any()):
        raise ValueError("every problem needs at least one training row")
    # Logits are laid out (La, C, J, N): reductions over the few classes then run
    # across long contiguous rows, which is far faster in torch than over a last
    # dimension of size C.
    onehot = torch.zeros(C, J, N, dtype=dtype)
    jj, ii = np.nonzero(train_np)
    onehot[targets[jj, ii], jj, ii] = 1.0
    wmask = torch.as_tensor(train_np, dtype=dtype)  # (J, N)
    y_idx = torch.as_tensor(np.maximum(targets, 0))[None]  # (1, J, N)

    # Per-problem standardisation statistics of the training rows (the data are
    # pre-standardised, so float32 sums are accurate), and the layer Gram matrices.
    Wt = wmask.T  # (N, J)
    s1 = torch.matmul(X.transpose(1, 2), Wt).to(torch.float64)  # (L, d, J)
    s2 = torch.matmul((X * X).transpose(1, 2), Wt).to(torch.float64)
    mean = (s1 / n_train).transpose(1, 2)  # (L, J, d)
    var = ((s2 / n_train).transpose(1, 2) - mean * mean).clamp_min(0.0)
    sd = var.sqrt()
    scale = torch.where(sd > 1e-6 * (1.0 + mean.abs()), sd, torch.ones_like(sd))
    del s1, s2, var, sd
    reduced = (reduce_rows if reduce_rows is not None else 4 * N <= d) and N < d
    bias_h0 = (1.0 / (bias_curvature * n_train)).to(dtype)[:, None]  # (J, 1)
    n_train_dt = n_train.to(dtype)
    if reduced:
        # Row-space coordinates (see the module docstring): per problem, r = N features
        # with an identity penalty; the per-problem preconditioner is exact for them.
        row_basis, row_chol, feats = _row_space_features(X, mean, scale)
        act = {"X": feats, "Minv": _problem_preconditioner(feats, wmask, kappa, lam).to(dtype)}
        d = N
    else:
        # Preconditioner (κ · Gram rescaled to the mean training size + λ I)⁻¹, via Cholesky.
        frac = float(n_train.mean()) / N
        M = torch.bmm(X.transpose(1, 2), X).mul_(kappa * frac)
        M.diagonal(dim1=1, dim2=2).add_(max(lam, 1e-3))  # kept definite when l2 = 0
        chol = torch.linalg.cholesky(M)
        eye = torch.eye(d, dtype=dtype).expand(L, d, d)
        linv = torch.linalg.solve_triangular(chol, eye, upper=False)
        Minv = torch.bmm(linv.transpose(1, 2), linv)
        del M, chol, linv, eye
        # Arrays of the active layers (compacted as layers finish).
        act = {
            "X": X,
            "Minv": Minv,
            "m": mean.to(dtype)[:, :, None],  # (L, J, 1, d)
            "inv_s": (1.0 / scale).to(dtype)[:, :, None],
        }

    def logits(theta: torch.Tensor) -> torch.Tensor:
        """Z = X A + c for the active layers, laid out (La, C, J, N); linear in θ."""
        La = theta.shape[0]
        if reduced:  # per-problem features, already centred: Z = Φ β + b
            Z = torch.matmul(theta[..., :d], act["X"].transpose(2, 3))  # (La, J, C, N)
            return Z.add_(theta[..., d, None]).transpose(1, 2).contiguous()
        A = theta[..., :d] * act["inv_s"]  # (La, J, C, d)
        c = theta[..., d] - (A * act["m"]).sum(-1)  # (La, J, C)
        Z = torch.bmm(A.transpose(1, 2).reshape(La, C * J, d), act["X"].transpose(1, 2))
        return Z.view(La, C, J, N).add_(c.transpose(1, 2)[..., None])

    def data_loss(Z: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """Σ_train −log softmax(Z)_y per problem (La, J) in float64, and exp(Z − max), Σexp."""
        La = Z.shape[0]
        zmax = Z.amax(1, keepdim=True)
        E = (Z - zmax).exp_()
        se = E.sum(1, keepdim=True)
        lse = (zmax + se.log()).squeeze(1)  # (La, J, N)
        zy = Z.gather(1, y_idx.expand(La, 1, J, N)).squeeze(1)
        return ((lse - zy) * wmask).double().sum(-1), E, se

    def gradient(theta: torch.Tensor, E: torch.Tensor, se: torch.Tensor) -> torch.Tensor:
        """∂F/∂θ (La, J, C, d+1) from the softmax terms of :func:`data_loss`."""
        La = theta.shape[0]
        G = E.div_(se).sub_(onehot).mul_(wmask)  # (La, C, J, N)
        gc = G.sum(-1).transpose(1, 2)  # (La, J, C)
        g = torch.empty_like(theta)
        if reduced:
            gA = torch.matmul(G.transpose(1, 2), act["X"])  # (La, J, C, N)
            g[..., :d] = gA + lam * theta[..., :d]
        else:
            W, m, inv_s = theta[..., :d], act["m"], act["inv_s"]
            gA = torch.bmm(G.view(La, C * J, N), act["X"]).view(La, C, J, d).transpose(1, 2)
            g[..., :d] = (gA - gc[..., None] * m) * inv_s + lam * W
        g[..., d] = gc
        return g

    def dot(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:  # per problem, float64
        La = a.shape[0]
        return torch.linalg.vecdot(a.view(La, J, -1), b.view(La, J, -1)).double()

    def wdot(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:  # over the weights only
        La = a.shape[0]
        return (a[..., :d] * b[..., :d]).reshape(La, J, -1).sum(-1).double()

    def h0(q: torch.Tensor) -> torch.Tensor:
        La = q.shape[0]
        r = torch.empty_like(q)
        if reduced:
            r[..., :d] = torch.matmul(q[..., :d], act["Minv"])
        else:
            r[..., :d] = torch.bmm(q[..., :d].reshape(La, J * C, d), act["Minv"]).view(La, J, C, d)
        r[..., d] = q[..., d] * bias_h0
        return r

    def bc(v: torch.Tensor) -> torch.Tensor:  # (La, J) -> (La, J, 1, 1) in dtype
        return v.to(dtype)[..., None, None]

    def bz(v: torch.Tensor) -> torch.Tensor:  # (La, J) -> (La, 1, J, 1), to scale logits
        return v.to(dtype)[:, None, :, None]

    def objective_terms(theta, Z):
        """F (La, J) in float64 and the softmax terms for :func:`gradient`."""
        data, E, se = data_loss(Z)
        return data + 0.5 * lam * wdot(theta, theta), E, se

    theta_out = torch.zeros(L, J, C, d + 1, dtype=dtype)
    n_iter = np.full(L, -1, dtype=np.int64)
    n_iter_problem = np.full((L, J), -1, dtype=np.int64)
    conv_out = np.zeros((L, J), dtype=bool)

    # L-BFGS state per problem. Besides the pairs (s_i, y_i) it keeps u_i = H0 y_i
    # and H0 g, so that H0 is applied once per iteration: the two-loop recursion
    # needs H0 q = H0 g − Σ α_i u_i, and u_k = H0 g_new − H0 g_old.
    idx = torch.arange(L)
    theta = torch.zeros(L, J, C, d + 1, dtype=dtype)
    Z = logits(theta)
    f, E, se = objective_terms(theta, Z)
    g = gradient(theta, E, se)
    hg = h0(g)
    done = torch.zeros(L, J, dtype=torch.bool)
    S: list[torch.Tensor] = []
    Y: list[torch.Tensor] = []
    U: list[torch.Tensor] = []
    R: list[torch.Tensor] = []
    gamma = torch.ones(L, J, dtype=torch.float64)
    F_hist = [f]
    c1 = 1e-4
    it = 0
    while True:
        gmax = g.abs().amax((2, 3)) / n_train_dt  # (La, J)
        conv = gmax <= tol
        first = (done | conv) & ~done
        if bool(first.any()):
            li, ji = torch.nonzero(first, as_tuple=True)
            n_iter_problem[idx[li].numpy(), ji.numpy()] = it
        done |= conv
        finished = done.all(1)
        newly = finished.numpy() & (n_iter[idx.numpy()] < 0)
        n_iter[idx.numpy()[newly]] = it
        # Drop finished layers from the batch once they are a quarter of it (each
        # drop copies the active activations, so not after every single layer).
        n_fin = int(finished.sum())
        if (n_fin and 4 * n_fin >= len(idx)) or n_fin == len(idx) or it >= max_iter:
            out = finished if it < max_iter else torch.ones_like(finished)
            sel = idx[out].numpy()
            theta_out[sel] = theta[out]
            n_iter[sel] = np.where(n_iter[sel] < 0, it, n_iter[sel])
            conv_out[sel] = conv[out].numpy()
            keep = ~out
            if not bool(keep.any()):
                break
            idx, theta, Z, f, g, hg, done, gamma = (
                v[keep] for v in (idx, theta, Z, f, g, hg, done, gamma)
            )
            act = {key: val[keep] for key, val in act.items()}
            S, Y, U, R = ([v[keep] for v in hist] for hist in (S, Y, U, R))
            F_hist = [v[keep] for v in F_hist]
        it += 1
        # Two-loop recursion with H0 = γ · preconditioner, all problems at once.
        q = g.clone()
        alphas = []
        p = hg.clone()
        for s, y, u, rho in zip(reversed(S), reversed(Y), reversed(U), reversed(R)):
            a = rho * dot(s, q)
            q.addcmul_(y, bc(a), value=-1.0)
            p.addcmul_(u, bc(a), value=-1.0)
            alphas.append(a)
        p.mul_(bc(gamma))
        for s, y, rho, a in zip(S, Y, R, reversed(alphas)):
            p.addcmul_(s, bc(a - rho * dot(y, p)))
        p.mul_(bc(-(~done).to(torch.float64)))
        gp = dot(g, p)
        bad = (gp >= 0) & ~done  # not a descent direction (rounding): restart from -H0 g
        if bool(bad.any()):
            p = torch.where(bc(bad.to(torch.float64)) > 0, -hg, p)
            gp = dot(g, p)
        # Line search. Logits are linear in θ, so Z(θ + t p) = Z + t Zp and the
        # penalty is a quadratic in t: each trial step costs elementwise work only.
        # Backtracking on the non-monotone Armijo condition (reference: the largest
        # objective of the last ``nonmonotone`` iterates; Grippo, Lampariello &
        # Lucidi 1986), with a relative slack of 1e-7 |f| for float32 rounding.
        Zp = logits(p)
        ww, wp, pp = wdot(theta, theta), wdot(theta, p), wdot(p, p)
        f_ref = torch.stack(F_hist).amax(0)
        t = torch.ones_like(f)
        t_acc = torch.zeros_like(f)
        accepted = done.clone()
        for n_eval in range(1, 31):
            ft = data_loss(Z + bz(t) * Zp)[0] + 0.5 * lam * (ww + 2.0 * t * wp + t * t * pp)
            ok = (ft <= f_ref + c1 * t * gp + 1e-7 * f.abs()) & ~accepted
            t_acc = torch.where(ok, t, t_acc)
            accepted |= ok
            if bool(accepted.all()):
                break
            denom = 2.0 * (ft - f - gp * t)  # quadratic interpolation, kept in [0.1 t, 0.5 t]
            t_q = torch.where(denom > 0, -gp * t * t / denom.clamp_min(1e-300), 0.5 * t)
            t = torch.where(accepted, t, torch.minimum(torch.maximum(t_q, 0.1 * t), 0.5 * t))
        stalled = ~accepted
        if bool(stalled.any()):
            done |= stalled
        if logger.isEnabledFor(logging.DEBUG):
            logger.debug(
                "softmax probes: iteration %d, %d layers active, %d problems running, "
                "%d trial steps, %d stalled",
                it, len(idx), int((~done).sum()), n_eval, int(stalled.sum()),
            )
        s_k = p.mul_(bc(t_acc))
        theta = theta + s_k
        Z = Z.add_(Zp.mul_(bz(t_acc)))
        f, E, se = objective_terms(theta, Z)
        g_new = gradient(theta, E, se)
        hg_new = h0(g_new)
        y_k, u_k = g_new - g, hg_new - hg
        g, hg = g_new, hg_new
        sy, yHy = dot(s_k, y_k), dot(y_k, u_k)
        valid = (sy > 0) & (yHy > 0)
        gamma = torch.where(valid, sy / yHy.clamp_min(1e-300), gamma)
        rho_k = torch.where(valid, 1.0 / sy.clamp_min(1e-300), 0.0)
        for hist, v in ((S, s_k), (Y, y_k), (U, u_k), (R, rho_k)):
            hist.append(v)
            if len(hist) > history:
                hist.pop(0)
        F_hist.append(f)
        if len(F_hist) > nonmonotone:
            F_hist.pop(0)

    if not conv_out.all():
        logger.warning(
            "softmax probes: %d of %d problems did not reach tol %g (max_iter %d)",
            int((~conv_out).sum()), conv_out.size, tol, max_iter,
        )
    coef = theta_out[..., :d]
    if reduced:  # back to the standardised space
        coef = _from_row_space(coef, row_basis, row_chol, scale).to(dtype)
    return SoftmaxFit(
        coef=coef.contiguous(),
        intercept=theta_out[..., d].contiguous(),
        mean=mean.to(dtype),
        scale=scale.to(dtype),
        n_iter=n_iter,
        n_iter_problem=np.where(n_iter_problem < 0, n_iter[:, None], n_iter_problem),
        converged=conv_out,
    )


def _row_space_features(
    X: torch.Tensor, mean: torch.Tensor, scale: torch.Tensor
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Each problem's coordinates in which the optimum lives: V (L, d, N), R (L, J, N, N), Φ (L, J, N, N).

    With V an orthonormal basis of a space holding the rows of ``X[ℓ]`` (QR of Xᵀ),
    D = diag(s_j) and Q = Vᵀ D⁻² V = R Rᵀ (Cholesky), the features are
    Φ = (X − m_j) D⁻² V R⁻ᵀ, so that x̃ᵢ·(B β) = Φᵢ·β and ‖B β‖ = ‖β‖ for the basis
    B = D⁻¹ V R⁻ᵀ (:func:`_from_row_space`). Computed in float64; Φ is returned in X's dtype.
    """
    L, N, d = X.shape
    J = mean.shape[1]
    X64 = X.double()
    V = torch.linalg.qr(X64.transpose(1, 2), mode="reduced").Q  # (L, d, N)
    R = torch.empty(L, J, N, N, dtype=torch.float64)
    feats = torch.empty(L, J, N, N, dtype=X.dtype)
    for j in range(J):
        inv_s = 1.0 / scale[:, j].double()  # (L, d)
        V2 = V * (inv_s * inv_s)[:, :, None]  # D⁻² V
        R[:, j] = torch.linalg.cholesky(torch.bmm(V.transpose(1, 2), V2))  # Q = R Rᵀ
        Y = torch.bmm(X64, V2) - torch.bmm(mean[:, j, None].double(), V2)  # (X − m) D⁻² V
        feats[:, j] = torch.linalg.solve_triangular(R[:, j].transpose(1, 2), Y, upper=True, left=False).to(X.dtype)
    return V, R, feats


def _from_row_space(beta: torch.Tensor, V: torch.Tensor, R: torch.Tensor, scale: torch.Tensor) -> torch.Tensor:
    """Coefficients in the standardised space, W = D⁻¹ V R⁻ᵀ β, from β (L, J, C, N): (L, J, C, d), float64."""
    L, J, C, N = beta.shape
    W = torch.empty(L, J, C, V.shape[1], dtype=torch.float64)
    for j in range(J):
        b = torch.linalg.solve_triangular(R[:, j].transpose(1, 2), beta[:, j].double().transpose(1, 2), upper=True)
        W[:, j] = torch.bmm(V, b).transpose(1, 2) / scale[:, j, None].double()
    return W


def _problem_preconditioner(feats: torch.Tensor, wmask: torch.Tensor, kappa: float, lam: float) -> torch.Tensor:
    """(κ Φᵀ diag(w_j) Φ + λ I)⁻¹ per problem from its own training rows: (L, J, r, r), float64."""
    f = feats.double()
    w = wmask.double()[None, :, :, None]  # (1, J, N, 1)
    M = torch.matmul(f.transpose(2, 3), f * w).mul_(kappa)
    M.diagonal(dim1=2, dim2=3).add_(max(lam, 1e-3))
    return torch.cholesky_inverse(torch.linalg.cholesky(M))
