"""Stable, readable names for merged models, e.g. `merge-objective-ties-w0.3`.

`${mixmerge.weight_suffix:…}` (registered in mixmerge.config) is an OmegaConf resolver so that `output_name` is
derived in the config itself (and shows in `--cfg job`, W&B and the run directory).
"""

from __future__ import annotations

from typing import Any

from omegaconf import ListConfig


def format_number(value: Any) -> str:
    """0 → '0', 0.30 → '0.3', 1.0 → '1'; anything that is not a number is kept as written."""
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return str(value).replace(" ", "")
    return f"{float(value):g}"


def weight_suffix(weight: Any) -> str:
    """'-w0.3' for a weight, '-w0-0.5-1' for a per-layer gradient or per-model list, '' for none."""
    if weight is None:
        return ""
    if isinstance(weight, (list, tuple, ListConfig)):
        return "-w" + "-".join(format_number(v) for v in weight)
    return "-w" + format_number(weight)
