"""Lightning checkpoint -> the full LightningModule state, whether the checkpoint is one file or a
DeepSpeed folder of ZeRO shards (consolidated to fp32 with DeepSpeed's zero_to_fp32 utilities)."""

from __future__ import annotations

import pickle
from pathlib import Path
from typing import Any

import torch

from mixmerge.errors import MixmergeError

# What DeepSpeed keeps in its model-states file besides the client (Lightning) state; the same
# list Lightning's convert_zero_checkpoint_to_fp32_state_dict drops.
DEEPSPEED_KEYS = (
    "module",
    "optimizer",
    "lr_scheduler",
    "csr_tensor_module_names",
    "skipped_steps",
    "global_steps",
    "dp_world_size",
    "mp_world_size",
)
EXTRA_STATE = "_extra_state"  # torch.nn.Module's key for get_extra_state()
# Model-states file of rank 0: ZeRO stages 0-2, then stage 3.
MODEL_STATE_FILES = ("mp_rank_00_model_states.pt", "zero_pp_rank_0_mp_rank_00_model_states.pt")


def is_deepspeed_checkpoint(path: str | Path) -> bool:
    return Path(path).is_dir() and (Path(path) / "latest").is_file()


def model_state_file(path: Path) -> Path:
    """Rank 0's model-states file of a DeepSpeed checkpoint folder (it holds the client state)."""
    tag_dir = path / (path / "latest").read_text().strip()
    found = next((tag_dir / name for name in MODEL_STATE_FILES if (tag_dir / name).is_file()), None)
    if found is None:
        raise MixmergeError(
            f"{path}: DeepSpeed checkpoint without a rank-0 model-states file in {tag_dir}"
        )
    return found


def read_run_record_state(path: str | Path) -> Any:
    """A checkpoint's top-level state (rank 0's for a DeepSpeed folder), tensors memory-mapped."""
    path = Path(path)
    file = model_state_file(path) if path.is_dir() else path
    return torch.load(file, map_location="cpu", weights_only=False, mmap=True)


def read_run_record(path: str | Path) -> dict[str, Any]:
    """The run a checkpoint belongs to (its `mixmerge` entry), without reading its tensors."""
    return read_run_record_state(path).get("mixmerge") or {}


def read_checkpoint(path: str | Path) -> dict[str, Any]:
    """The checkpoint as one dict on the CPU, with the whole model in `state_dict`.

    Like Lightning's `convert_zero_checkpoint_to_fp32_state_dict`, without writing the result to
    disk first (it is about 4 bytes per parameter).
    """
    path = Path(path)
    if path.is_file():
        try:
            return torch.load(path, map_location="cpu", weights_only=False)
        except (RuntimeError, EOFError, pickle.UnpicklingError) as err:
            raise MixmergeError(
                f"{path}: not a readable checkpoint ({str(err).splitlines()[0]})"
            ) from err
    if not is_deepspeed_checkpoint(path):
        raise MixmergeError(
            f"{path}: not a checkpoint (expected a .ckpt file, or a DeepSpeed folder with a 'latest' file)"
        )
    from deepspeed.utils.zero_to_fp32 import get_fp32_state_dict_from_zero_checkpoint

    client_state = torch.load(model_state_file(path), map_location="cpu", weights_only=False)
    checkpoint = {k: v for k, v in client_state.items() if k not in DEEPSPEED_KEYS}
    state_dict = get_fp32_state_dict_from_zero_checkpoint(str(path))
    # Checkpoints from Lightning < 2.1 prefix every key with its wrapper's `_forward_module.`.
    state_dict = {k.removeprefix("_forward_module."): v for k, v in state_dict.items()}
    # The consolidation yields parameters and buffers; the module's extra state (its loss
    # history) is in rank 0's own copy of the module state.
    extra = (client_state.get("module") or {}).get(EXTRA_STATE)
    if extra is not None:
        state_dict[EXTRA_STATE] = extra
    checkpoint["state_dict"] = state_dict
    return checkpoint


def load_module_state(module: Any, checkpoint: dict[str, Any]) -> Any:
    """Build `module`'s model (unsharded, on the CPU) and load a checkpoint's weights into it.

    The keys are the LightningModule's (`model.…`), so loading into the module rather than into
    the bare Hugging Face model is what strips Lightning's prefix; LoRA adapters load into the same
    PEFT wrapping the run had, ready to be merged on export.
    """
    module.configure_model()
    missing, unexpected = module.load_state_dict(checkpoint["state_dict"], strict=False)
    # Only the extra state (loss history) may be absent: every weight must be there.
    if unexpected or set(missing) - {EXTRA_STATE}:
        raise MixmergeError(
            f"checkpoint does not match the model it names: missing {sorted(missing)[:5]}, unexpected {sorted(unexpected)[:5]}"
        )
    return module
