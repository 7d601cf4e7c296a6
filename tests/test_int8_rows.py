"""int8 activations are quantized per token: a row's output does not depend on its batch-mates."""

from __future__ import annotations

import torch

from extract.precision import Int8Linear


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
        # the int8 part is exact per row; only the float outlier sum may be ordered differently
        torch.testing.assert_close(alone[0], together[i], rtol=0, atol=1e-5)
    rows_without_outliers = [1, 2, 3, 5]
    for i in rows_without_outliers:
        assert torch.equal(q(x[i : i + 1])[0], q(x[rows_without_outliers])[rows_without_outliers.index(i)])
