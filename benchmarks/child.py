"""`python -m benchmarks.child SPEC.json`: one framework's section in a process of its own, so
its peak memory is its own. Writes the section's figures to the spec's `out` file."""

from __future__ import annotations

import importlib
import json
import sys
from pathlib import Path

# task → (module, function); modules are imported only in the child that needs them, so each
# process loads just its own framework.
TASKS = {
    "sft.mixmerge": ("benchmarks.train_runs", "run_sft"),
    "sft.trl": ("benchmarks.trl_runs", "run_sft"),
    "dpo.mixmerge": ("benchmarks.train_runs", "run_dpo"),
    "dpo.trl": ("benchmarks.trl_runs", "run_dpo"),
    "generation": ("benchmarks.generation_runs", "run"),
    "util": ("benchmarks.utilisation", "run"),
}


def main(argv: list[str]) -> None:
    spec = json.loads(Path(argv[1]).read_text(encoding="utf-8"))
    import torch

    torch.set_num_threads(spec["threads"])
    module, function = TASKS[spec["task"]]
    result = getattr(importlib.import_module(module), function)(spec)
    Path(spec["out"]).write_text(json.dumps(result, indent=2), encoding="utf-8")


if __name__ == "__main__":
    main(sys.argv)
