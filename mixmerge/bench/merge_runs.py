"""The merge section: two default-size "fine-tuned" models, merged by `mixmerge.merging.pipeline.merge`
and by the `mergekit-yaml` CLI on the YAML mixmerge wrote next to its merge."""

from __future__ import annotations

import shutil
import sys
import time
from pathlib import Path
from typing import Any

from mixmerge.provenance import parent_entry, write_provenance

NOISE = 1e-3  # small enough to keep the models sensible, large enough that TIES has signs to elect


def make_finetuned_copy(base: Path, dest: Path, seed: int) -> Path:
    """A copy of `base` with seeded noise on every weight and a provenance naming `base` as its parent
    (what `mixmerge.train` writes), so the objective recipe finds the common base for TIES & co."""
    import torch
    from safetensors.torch import load_file, save_file

    dest.mkdir(parents=True, exist_ok=True)
    generator = torch.Generator().manual_seed(seed)
    for file in sorted(base.iterdir()):
        if file.suffix == ".safetensors":
            tensors = load_file(file)
            noisy = {
                name: (
                    t
                    + NOISE
                    * torch.randn(t.shape, generator=generator, dtype=torch.float32).to(t.dtype)
                ).contiguous()
                for name, t in tensors.items()
            }
            save_file(noisy, dest / file.name, metadata={"format": "pt"})
        elif file.is_file() and file.name != "mixmerge.json":
            shutil.copy2(file, dest / file.name)
    write_provenance(
        dest, "train", name=dest.name, objective="sft", parent=parent_entry(base.name, base)
    )
    return dest


def run_mixmerge(spec: dict[str, Any]) -> dict[str, Any]:
    """`merge(cfg)` on the composed `merge` config; returns the time inside the function and the YAML."""
    from omegaconf import OmegaConf

    from mixmerge.config import compose_config
    from mixmerge.merging.pipeline import MERGEKIT_CONFIG_FILE, merge

    work = Path(spec["work_dir"])
    overrides = [
        f"merge={spec['method']}",
        "recipe=objective",
        f"recipe.general={spec['general']}",
        f"recipe.safety={spec['safety']}",
        f"output_name=bench-{spec['method']}",
        f"seed={spec['seed']}",
    ]
    cfg = compose_config("merge", overrides, work)
    start = time.perf_counter()
    summary = merge(cfg)
    seconds = time.perf_counter() - start
    return {
        "function_s": seconds,
        "yaml": str(Path(summary["output_dir"]) / MERGEKIT_CONFIG_FILE),
        "options": OmegaConf.to_container(cfg.mergekit_options, resolve=True),
    }


def mergekit_cli(yaml_file: str, out_dir: Path, options: dict[str, Any], seed: int) -> list[str]:
    """The `mergekit-yaml` command for the same YAML with the same MergeOptions mixmerge used."""
    exe = shutil.which("mergekit-yaml") or str(Path(sys.executable).with_name("mergekit-yaml"))
    argv = [exe, yaml_file, str(out_dir), "--random-seed", str(seed)]
    for key, value in options.items():
        flag = key.replace("_", "-")
        if isinstance(value, bool):
            argv.append(f"--{flag}" if value else f"--no-{flag}")
        elif value is not None:
            argv += [f"--{flag}", str(value)]
    return argv
