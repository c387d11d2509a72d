"""Preference losses of the DPO family as one pure function over per-sequence log-probabilities.

All variants share the implicit-reward logits  h = (log π(y_w) − log π(y_l)) − (log π_ref(y_w) − log π_ref(y_l)):

- sigmoid (DPO, Rafailov et al. 2023), with optional label smoothing (cDPO):
  −(1−ε)·log σ(βh) − ε·log σ(−βh)
- robust (Chowdhury et al. 2024), unbiased under label noise ε:
  (−(1−ε)·log σ(βh) + ε·log σ(−βh)) / (1 − 2ε)
- hinge (SLiC, Zhao et al. 2023): max(0, 1 − βh)
- ipo (Azar et al. 2023): (h − 1/(2β))²
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from mixmerge.errors import MixmergeError

LOSS_TYPES = ("sigmoid", "robust", "hinge", "ipo")


def check_preference_params(beta: float, loss_type: str, label_smoothing: float) -> None:
    """Reject parameter values the losses are undefined for, naming the config key."""
    if not isinstance(beta, (int, float)) or beta <= 0:
        raise MixmergeError(f"objective.beta={beta}: expected a number > 0")
    if loss_type not in LOSS_TYPES:
        raise MixmergeError(
            f"objective.loss_type={loss_type}: expected one of {', '.join(LOSS_TYPES)}"
        )
    if not 0 <= label_smoothing < 0.5:
        raise MixmergeError(
            f"objective.label_smoothing={label_smoothing}: expected a number in [0, 0.5)"
        )


def preference_loss(
    policy_chosen_logps: torch.Tensor,
    policy_rejected_logps: torch.Tensor,
    ref_chosen_logps: torch.Tensor,
    ref_rejected_logps: torch.Tensor,
    beta: float,
    loss_type: str = "sigmoid",
    label_smoothing: float = 0.0,
) -> torch.Tensor:
    """Per-pair losses (shape [batch]) for the chosen `loss_type`."""
    check_preference_params(beta, loss_type, label_smoothing)
    logits = (policy_chosen_logps - policy_rejected_logps) - (ref_chosen_logps - ref_rejected_logps)
    eps = label_smoothing
    if loss_type == "sigmoid":
        return -(1 - eps) * F.logsigmoid(beta * logits) - eps * F.logsigmoid(-beta * logits)
    if loss_type == "robust":
        return (-(1 - eps) * F.logsigmoid(beta * logits) + eps * F.logsigmoid(-beta * logits)) / (
            1 - 2 * eps
        )
    if loss_type == "hinge":
        return torch.relu(1 - beta * logits)
    return (logits - 1 / (2 * beta)) ** 2  # ipo


def implicit_rewards(
    policy_logps: torch.Tensor, ref_logps: torch.Tensor, beta: float
) -> torch.Tensor:
    """β · (log π − log π_ref): the reward DPO implicitly assigns to a response."""
    return beta * (policy_logps - ref_logps).detach()
