"""Names that become paths stay inside their folders.

An OUTPUT name (train/merge `output_name`, a study's name, a checkpoint export's name) must be a
plain name: not empty, no path separator, not `.` or `..`, not absolute. It is joined to its root
(`paths.models_dir`, …) and the result must still lie directly under that root (a symlink that
points elsewhere is refused too). An INPUT reference (`model_ref`, `baseline`, `model.init_from`,
recipe models) is either a plain name, looked up under `paths.models_dir` only, or something the
user wrote as a path (`/abs`, `./rel`, `../up`, `~/x`, `a/b`), used as written.

Merged models get stable, readable names, e.g. `merge-objective-ties-w0.3`: the config derives
`output_name` itself through the `${mixmerge.weight_suffix:…}` resolver (registered in
mixmerge.config), so the name shows in `--cfg job`, W&B and the run directory.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from omegaconf import ListConfig

from mixmerge.errors import MixmergeError

SEPARATORS = tuple({"/", "\\", os.sep, *([os.altsep] if os.altsep else [])})


def plain_name_problem(value: Any) -> str | None:
    """Why `value` is not a plain folder name, or None when it is one."""
    if value is None or not isinstance(value, str | int | float) or isinstance(value, bool):
        return "expected a plain name (a string)"
    name = str(value)
    if name.strip() == "":
        return "expected a plain name, got an empty one"
    if any(sep in name for sep in SEPARATORS):
        return "expected a plain name without a path separator"
    if name in (".", ".."):
        return f"'{name}' is not a name"
    if "\0" in name:
        return "a name cannot contain a NUL byte"
    if name != name.strip():
        return "a name cannot begin or end with whitespace"
    return None


def check_plain_name(value: Any, key: str) -> str:
    """`value` as a plain name, or a MixmergeError naming `key`."""
    problem = plain_name_problem(value)
    if problem:
        raise MixmergeError(f"{key}={value}: {problem} (it becomes a folder name)")
    return str(value)


def output_path(root: str | Path, value: Any, key: str = "output_name") -> Path:
    """`root/value` for an output name, checked to stay inside `root`; nothing is created."""
    name = check_plain_name(value, key)
    root = Path(root)
    path = root / name
    resolved_root = root.expanduser().resolve()
    resolved = path.expanduser().resolve()
    if resolved.parent != resolved_root:
        raise MixmergeError(
            f"{key}={value}: {path} resolves to {resolved}, outside {resolved_root}"
        )
    return path


def looks_like_path(ref: str) -> bool:
    """True for a reference the user wrote as a path rather than a name under a root."""
    return (
        any(sep in ref for sep in SEPARATORS)
        or ref in (".", "..")
        or ref.startswith("~")
        or Path(ref).is_absolute()
    )


def reference_path(ref: str, root: str | Path) -> Path:
    """Where an input reference points: a path as written, or a plain name under `root`."""
    if looks_like_path(ref):
        return Path(ref).expanduser()
    return Path(root) / ref


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
