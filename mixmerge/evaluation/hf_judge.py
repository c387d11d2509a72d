"""A judge that is any local causal LM (a trained model's name, or a Hugging Face folder)."""

from __future__ import annotations

from typing import Any

import torch

from mixmerge.data.formatting import prompt_text
from mixmerge.evaluation.generation import device
from mixmerge.evaluation.llm_judge import ChatJudge
from mixmerge.fingerprints import model_fingerprint
from mixmerge.model_files import check_model_folder
from mixmerge.modeling import load_causal_lm, load_tokenizer, resolve_model_ref


class HFLocalJudge(ChatJudge):
    """Asks a local model the same questions as the OpenAI-compatible judge and parses its reply.

    The model is loaded on first use. Attempt 0 decodes greedily; re-asks after an unparsable reply
    sample at `retry_temperature` (seeded by the attempt, so reruns are reproducible and cached).
    """

    def __init__(
        self,
        model: str,
        models_dir: str,
        name: str = "hf_local",
        cache_dir: str | None = None,
        dtype: str = "float32",
        max_new_tokens: int = 32,
        retry_temperature: float = 0.7,
        parse_retries: int = 2,
        trust_remote_code: bool = False,
    ) -> None:
        super().__init__(name, cache_dir, parse_retries, concurrency=1)
        self.path = str(resolve_model_ref(str(model), models_dir, key="judge.model"))
        check_model_folder(self.path, key="judge.model")  # before any generation, not at first use
        self.dtype = dtype
        self.max_new_tokens = int(max_new_tokens)
        self.retry_temperature = float(retry_temperature)
        self.trust_remote_code = trust_remote_code
        self._model: Any = None
        self._tokenizer: Any = None
        self._fingerprint: str | None = None

    def _identity(self) -> dict[str, Any]:
        if self._fingerprint is None:
            self._fingerprint = model_fingerprint(self.path)
        return {
            "kind": "hf_local",
            "model": self._fingerprint,
            "max_new_tokens": self.max_new_tokens,
        }

    def _load(self) -> None:
        if self._model is None:
            self._tokenizer = load_tokenizer(self.path, self.trust_remote_code)
            self._model = load_causal_lm(
                self.path, self.dtype, self.trust_remote_code, key="judge.model"
            )
            self._model.to(device()).eval()

    def _complete(self, messages: list[dict[str, str]], attempt: int) -> str | None:
        self._load()
        # Many chat templates reject a system turn; the instructions go first in the user turn instead.
        return self.complete_text(
            prompt_text(self._tokenizer, "\n\n".join(m["content"] for m in messages)), attempt
        )

    def complete_text(self, text: str, attempt: int) -> str | None:
        """The model's continuation of `text`, already in its prompt format (special tokens
        included: none are added)."""
        self._load()
        enc = self._tokenizer(text, return_tensors="pt", add_special_tokens=False).to(
            self._model.device
        )
        sampling = (
            {"do_sample": True, "temperature": self.retry_temperature}
            if attempt
            else {"do_sample": False}
        )
        torch.manual_seed(attempt)
        with torch.inference_mode():
            out = self._model.generate(
                **enc,
                max_new_tokens=self.max_new_tokens,
                pad_token_id=self._tokenizer.pad_token_id,
                **sampling,
            )
        return self._tokenizer.decode(
            out[0, enc["input_ids"].shape[1] :], skip_special_tokens=True
        ).strip()

    def chat_text(self, messages: list[dict[str, Any]]) -> str:
        """`messages` rendered by the model's own chat template, up to the assistant's turn (how
        guard models such as Llama Guard 3 and PolyGuard format their input)."""
        self._load()
        return self._tokenizer.apply_chat_template(
            messages, tokenize=False, add_generation_prompt=True
        )
