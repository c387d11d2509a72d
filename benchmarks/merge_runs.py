"""The merge section: two default-size "fine-tuned" models, merged by the `python -m mixmerge.merge`
CLI and by the `mergekit-yaml` CLI on the YAML mixmerge wrote next to its merge, each a whole
process as a user runs it."""

from __future__ import annotations

import shutil
import sys
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


def mixmerge_cli(method: str, general: Path, safety: Path, folder: Path, seed: int) -> list[str]:
    """The `python -m mixmerge.merge` command a user runs for this merge (Hydra run folder and
    model folder under `folder`)."""
    return [
        sys.executable,
        "-m",
        "mixmerge.merge",
        f"merge={method}",
        "recipe=objective",
        f"recipe.general={general}",
        f"recipe.safety={safety}",
        f"output_name=bench-{method}",
        f"seed={seed}",
        "logger=none",
        f"paths.models_dir={folder / 'models'}",
        f"hydra.run.dir={folder / 'run'}",
    ]


def merged_run(folder: Path, method: str) -> dict[str, Any]:
    """What the mixmerge merge wrote: its mergekit YAML, the MergeOptions it used and the time
    spent inside mergekit (from the model's provenance)."""
    from mixmerge.merging.pipeline import MERGEKIT_CONFIG_FILE
    from mixmerge.provenance import read_provenance

    out = folder / "models" / f"bench-{method}"
    provenance = read_provenance(out)
    return {
        "yaml": str(out / MERGEKIT_CONFIG_FILE),
        "options": provenance["config"]["mergekit_options"],
        "merge_s": provenance["merge_seconds"],
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
