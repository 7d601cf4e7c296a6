"""int8 activations are quantized per token: a row's output does not depend on its batch-mates."""

from __future__ import annotations

import torch

from latent_bias_probe.extract.precision import Int8Linear


def test_int8_linear_rows_do_not_depend_on_the_batch():
    torch.manual_seed(0)
    linear = torch.nn.Linear(64, 32)
    q = Int8Linear.from_linear(linear, threshold=6.0)
    x = torch.randn(6, 64)
    x[0, 3] = 9.0  # an outlier in row 0 only: its column joins the float path of the batch
    x[4, 10] = -7.5
    together = q(x)
    for i in range(len(x)):
        alone = q(x[i : i + 1])
        # the int8 part is exact per row and each row adds its own outlier terms in column order
        assert torch.equal(alone[0], together[i]), f"row {i} differs with the batch"
    rows_without_outliers = [1, 2, 3, 5]
    for i in rows_without_outliers:
        assert torch.equal(q(x[i : i + 1])[0], q(x[rows_without_outliers])[rows_without_outliers.index(i)])


def test_int8_linear_outlier_path_equals_the_float_formula():
    """y = (q(x - x_o) W_q^T) s_x s_w + x_o (W_q s_w)^T + b, with x_o the entries above the threshold."""
    torch.manual_seed(1)
    linear = torch.nn.Linear(48, 20)
    q = Int8Linear.from_linear(linear, threshold=6.0)
    x = torch.randn(5, 48)
    x[0, 3], x[0, 40], x[2, 3], x[4, 7] = 9.0, -12.0, 30.0, 6.5
    is_out = x.abs() > 6.0
    x_o = torch.where(is_out, x, 0.0).double()
    inliers = torch.where(is_out, 0.0, x)
    s_x = inliers.abs().amax(1, keepdim=True) / 127.0
    xq = torch.round(inliers / s_x).clamp(-127, 127).double()
    w_q = q.weight_int8.double()
    s_w = q.weight_scale.double()
    expected = (xq @ w_q.t()) * s_x.double() * s_w + x_o @ (w_q * s_w[:, None]).t() + linear.bias.double()
    torch.testing.assert_close(q(x).double(), expected, rtol=1e-6, atol=1e-5)
