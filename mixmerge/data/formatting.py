"""Chat formatting: prompts through the tokenizer's chat template, prompt tokens masked out of the loss."""

from __future__ import annotations

from typing import Any

from mixmerge.errors import MixmergeError

IGNORE_INDEX = -100
MIN_RESPONSE_TOKENS = 4  # an example whose prompt leaves fewer than this is dropped (and counted)


def prompt_text(tokenizer: Any, prompt: str) -> str:
    """The chat-formatted prompt up to and including the assistant header."""
    return tokenizer.apply_chat_template(
        [{"role": "user", "content": prompt}], tokenize=False, add_generation_prompt=True
    )


def response_text(tokenizer: Any, prompt: str, response: str) -> str:
    """What the chat template appends after the prompt for this response (text and end token)."""
    head = prompt_text(tokenizer, prompt)
    full = tokenizer.apply_chat_template(
        [{"role": "user", "content": prompt}, {"role": "assistant", "content": response}],
        tokenize=False,
    )
    if not full.startswith(head):
        raise MixmergeError(
            "model tokenizer: the chat template does not render the prompt as a prefix of the "
            "conversation, so prompt tokens cannot be masked (use a tokenizer with a standard template)"
        )
    return full[len(head) :]


def _ids(tokenizer: Any, text: str) -> list[int]:
    return tokenizer(text, add_special_tokens=False)["input_ids"]


def encode_prompt(tokenizer: Any, prompt: str) -> list[int]:
    return _ids(tokenizer, prompt_text(tokenizer, prompt))


def encode_example(
    tokenizer: Any, record: dict[str, Any], objective: str, max_length: int
) -> dict[str, Any] | None:
    """Token ids for one record; None when the prompt alone nearly fills `max_length`.

    SFT: `input_ids` and `labels` (prompt positions = -100). DPO: `prompt_ids`, `chosen_ids`,
    `rejected_ids`, each response truncated so prompt + response fits `max_length`.
    """
    prompt_ids = encode_prompt(tokenizer, record["prompt"])
    budget = max_length - len(prompt_ids)
    if budget < MIN_RESPONSE_TOKENS:
        return None
    chosen = _ids(tokenizer, response_text(tokenizer, record["prompt"], record["chosen"]))[:budget]
    if objective == "sft":
        return {
            "input_ids": prompt_ids + chosen,
            "labels": [IGNORE_INDEX] * len(prompt_ids) + chosen,
        }
    rejected = _ids(tokenizer, response_text(tokenizer, record["prompt"], record["rejected"]))[
        :budget
    ]
    return {"prompt_ids": prompt_ids, "chosen_ids": chosen, "rejected_ids": rejected}
