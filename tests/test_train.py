"""SFT end to end on the tiny model, in process: loss goes down and a loadable folder is written."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from transformers import AutoModelForCausalLM, AutoTokenizer

from mixmerge.errors import MixmergeError
from mixmerge.provenance import read_provenance
from mixmerge.training.pipeline import train

FAST = [
    "trainer.max_steps=40",
    "objective.optimizer.lr=3e-3",
    "data.batch_size=8",
    "data.max_examples_per_language=24",
    "languages=en_fr_es",
]


def test_sft_lowers_loss_and_writes_a_loadable_model(train_cfg):
    cfg = train_cfg(*FAST)
    metrics = train(cfg)
    assert metrics["steps"] == 40
    assert metrics["loss_last"] < metrics["loss_first"] * 0.8
    assert metrics["probe_loss_after"] < metrics["probe_loss_before"] * 0.8

    out = Path(cfg.paths.models_dir) / cfg.output_name
    assert out.name == "tiny-random-sft-mix15-en_fr_es"
    model = AutoModelForCausalLM.from_pretrained(out)
    tokenizer = AutoTokenizer.from_pretrained(out)
    assert tokenizer.chat_template
    ids = tokenizer("Bonjour", return_tensors="pt").input_ids
    assert torch.isfinite(model(ids).logits).all()

    manifest = json.loads((Path(cfg.paths.output_dir) / "mixture.json").read_text())
    assert manifest["languages"] == ["en", "fr", "es"]
    assert set(manifest["counts"]) == {"en", "fr", "es"}
    assert manifest["seed"] == 42
    prov = read_provenance(out)
    assert prov["kind"] == "train" and prov["objective"] == "sft"
    assert prov["mixture"]["total"] == manifest["total"]
    assert prov["parent"]["reference"] == "tiny-random"
    assert prov["metrics"]["loss_last"] == pytest.approx(metrics["loss_last"])
    assert not list(out.parent.glob(".tmp-*"))


def test_lora_is_merged_into_a_plain_folder(train_cfg):
    cfg = train_cfg(*FAST, "peft=lora", "trainer.max_steps=3")
    train(cfg)
    out = Path(cfg.paths.models_dir) / cfg.output_name
    assert (out / "model.safetensors").is_file() and not (out / "adapter_config.json").exists()
    assert AutoModelForCausalLM.from_pretrained(out).config.model_type == "llama"
    # The adapters really were trained and merged: the trunk's linear weights moved, the
    # embedding (not a LoRA target) did not. A run that dropped the adapters would change nothing.
    from safetensors.torch import load_file

    base = load_file(Path(cfg.paths.cache_dir) / "models" / "tiny-random" / "model.safetensors")
    trained = load_file(out / "model.safetensors")
    moved = {k for k in base if not torch.equal(base[k], trained[k])}
    assert "model.layers.0.self_attn.q_proj.weight" in moved
    assert "model.layers.1.mlp.down_proj.weight" in moved
    assert "model.embed_tokens.weight" not in moved


def test_finished_model_is_not_overwritten(train_cfg):
    cfg = train_cfg(*FAST, "trainer.max_steps=1")
    out = Path(cfg.paths.models_dir) / cfg.output_name
    out.mkdir(parents=True)
    (out / "config.json").write_text("{}")
    with pytest.raises(MixmergeError, match="already holds a finished model"):
        train(cfg)
    assert (out / "config.json").read_text() == "{}"


def test_missing_init_from_model(train_cfg, tmp_path):
    cfg = train_cfg("model.init_from=" + str(tmp_path / "nope"))
    with pytest.raises(MixmergeError, match=r"model.init_from=.*nope: no such model"):
        train(cfg)


class GradNorm(__import__("lightning").Callback):
    """Records the gradient norm the optimizer stepped with (after Lightning's clipping)."""

    def __init__(self) -> None:
        self.norms: list[float] = []

    def on_train_batch_end(self, trainer, module, outputs, batch, batch_idx) -> None:
        grads = [p.grad for p in module.parameters() if p.grad is not None]
        self.norms.append(float(torch.linalg.vector_norm(torch.stack([g.norm() for g in grads]))))


@pytest.mark.parametrize("precision", ["bf16-mixed", "16-mixed"])
def test_gradients_are_clipped_with_the_fused_optimizer(cache_dir, precision):
    """Lightning refuses to clip for fused optimizers under mixed precision; mixmerge unscales
    (fp16, with a real GradScaler) and clips, and the step sees gradients of at most the clip norm."""
    import lightning as L
    from lightning.pytorch.plugins.precision import MixedPrecision
    from omegaconf import OmegaConf

    from mixmerge.data.datamodule import SFTCollator, encode_records
    from mixmerge.modeling import ensure_tiny_random, load_tokenizer
    from mixmerge.training.resumable import ResumableDataModule
    from mixmerge.training.sft import SFTModule

    arch = OmegaConf.load(Path(__file__).parents[1] / "conf/model/tiny_random.yaml").architecture
    path = ensure_tiny_random(cache_dir / "clip-tiny", arch, seed=0)
    tokenizer = load_tokenizer(str(path))
    records = [{"prompt": f"Q{i}?", "chosen": "An answer. " * (i + 1)} for i in range(8)]
    examples, _ = encode_records(records, tokenizer, "sft", max_length=256)
    data = ResumableDataModule(examples, SFTCollator(tokenizer.pad_token_id), 4, seed=0)
    module = SFTModule(str(path), optimizer=lambda params: torch.optim.AdamW(params, fused=True))
    scaler = torch.amp.GradScaler("cpu", init_scale=2.0**8) if precision == "16-mixed" else None
    norms = GradNorm()
    trainer = L.Trainer(
        accelerator="cpu",
        plugins=[MixedPrecision(precision, "cpu", scaler=scaler)],
        gradient_clip_val=0.05,
        max_steps=2,
        logger=False,
        enable_checkpointing=False,
        enable_progress_bar=False,
        callbacks=[norms],
    )
    trainer.fit(module, datamodule=data)
    assert len(norms.norms) == 2
    assert all(0 < n <= 0.05 * 1.001 for n in norms.norms), norms.norms
