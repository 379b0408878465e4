"""What an embedding model can honestly answer in a chat: classification and extractive
summaries. Pure functions over an ``embed`` callable (texts -> unit vectors).

- **Classification**: a message line ``Labels: a, b, c`` (any role, case-insensitive) asks
  which label the rest of the user's text is closest to; the answer is that label, with every
  label's cosine similarity reported beside it.
- **Extractive summary** (everything else): the user's text is split into sentences; the ones
  closest to the text's mean embedding are kept, in their original order, up to
  ``sentences`` (or fewer, to fit ``max_tokens`` words). Nothing is generated: every sentence
  of the answer is in the question.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np

__all__ = ["Reply", "answer_chat", "classify", "sentences", "summarise"]

Embed = Callable[[list[str]], np.ndarray]
_LABELS = re.compile(r"^\s*labels\s*:\s*(.+?)\s*$", re.IGNORECASE | re.MULTILINE)
_SENTENCE_END = re.compile(r"(?<=[.!?])\s+(?=\S)")


@dataclass(frozen=True)
class Reply:
    text: str
    task: str
    scores: dict[str, float] = field(default_factory=dict)


def sentences(text: str) -> list[str]:
    parts = [p.strip() for line in text.splitlines() for p in _SENTENCE_END.split(line)]
    return [p for p in parts if p]


def classify(text: str, labels: list[str], embed: Embed) -> Reply:
    vectors = embed([text, *labels])
    scores = vectors[1:] @ vectors[0]
    best = int(np.argmax(scores))
    return Reply(
        text=labels[best],
        task="classification",
        scores={label: round(float(s), 4) for label, s in zip(labels, scores, strict=True)},
    )


def summarise(text: str, embed: Embed, *, sentences_max: int, max_words: int | None) -> Reply:
    found = sentences(text)
    if len(found) <= 1:
        return Reply(text=text.strip(), task="extractive_summary")
    vectors = embed(found)
    centre = vectors.mean(axis=0)
    ranked = np.argsort(-(vectors @ centre), kind="stable")
    chosen: list[int] = []
    words = 0
    for index in ranked[:sentences_max]:
        length = len(found[int(index)].split())
        if max_words is not None and chosen and words + length > max_words:
            break
        chosen.append(int(index))
        words += length
    return Reply(text=" ".join(found[i] for i in sorted(chosen)), task="extractive_summary")


def answer_chat(
    messages: list[dict[str, object]], embed: Embed, *, sentences_max: int, max_words: int | None
) -> Reply:
    texts = [str(m.get("content") or "") for m in messages]
    labels: list[str] = []
    for text in texts:
        match = _LABELS.search(text)
        if match:
            labels = [lab.strip() for lab in match.group(1).split(",") if lab.strip()]
    users = [str(m.get("content") or "") for m in messages if m.get("role") == "user"]
    subject = _LABELS.sub("", users[-1] if users else texts[-1]).strip()
    if len(labels) >= 2 and subject:
        return classify(subject, labels, embed)
    return summarise(subject, embed, sentences_max=sentences_max, max_words=max_words)
