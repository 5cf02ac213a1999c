"""GroupSum: class scores from output bits."""

from __future__ import annotations

from collections.abc import Sequence

from torch import Tensor, nn

from bitlogic.nn._export import HeadPart


class GroupSum(nn.Module):
    """Splits the last layer's outputs into ``k`` equal consecutive groups and returns each group's sum / ``tau``.

    In ``eval()`` the inputs are bits, so a score is a count divided by ``tau``: exactly
    ``Network.scores(x) / tau`` of the compiled network. ``tau`` sets the softmax temperature while training.
    """

    def __init__(self, k: int, tau: float = 1.0) -> None:
        super().__init__()
        if k < 1:
            raise ValueError(f"GroupSum: k must be >= 1, got {k}")
        if not tau > 0:
            raise ValueError(f"GroupSum: tau must be > 0, got {tau}")
        self.k, self.tau = k, float(tau)

    def forward(self, x: Tensor) -> Tensor:
        if x.dim() != 2 or x.shape[1] % self.k:
            raise ValueError(f"GroupSum: expected input [batch, a multiple of {self.k}], got {list(x.shape)}")
        # Summed through the feature-major view: the fused gate kernels return [batch, N] as a transposed view of a
        # contiguous [N, batch] tensor, and this way their gradient comes back in that layout without a copy.
        # (Splitting one dimension is a view whatever the strides; sums of 0/1 values are exact in any order.)
        return x.t().view(self.k, -1, x.shape[0]).sum(1).t() / self.tau

    def export_part(self, following: Sequence[nn.Module]) -> HeadPart:
        """The network's head: ``k`` classes, scores divided by ``tau``."""
        return HeadPart(self.k, self.tau)

    def extra_repr(self) -> str:
        return f"k={self.k}, tau={self.tau}"


__all__ = ["GroupSum"]
