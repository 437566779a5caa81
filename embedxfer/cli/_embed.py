"""``embedxfer embed``: encode a file's documents into a .npy matrix or a Parquet table."""

import os
import time
from pathlib import Path

import numpy as np

from .._cache import resolve_cache
from ..datasets import load_csv, load_text_lines
from ..datasets._files import check_file, file_kind
from ..text._weighting import WEIGHTINGS
from . import _embed_cluster
from ._config import EmbedConfig
from ._encode import WarningTally, build_embedder, encode_chunks, fitted_chunks
from ._errors import CLIError
from ._images import cmd_embed_images, is_image_folder
from ._model_names import embedding_spec
from ._options import add_batch_size_option, add_kind_option, pooling_help, positive_int
from ._output import check_output_path, open_writer, output_kind, require_writer
from ._progress import Progress, format_rate, report_warnings


def add_parser(sub, parents):
    """Add the ``embed`` subcommand to the subparsers ``sub``."""
    p = sub.add_parser(
        "embed",
        parents=parents,
        help="embed a text, CSV, JSONL or Parquet file",
        description="Embed documents into a .npy matrix or a Parquet table (one row per "
        "document, in input order). INPUT is a text file (one document a line, '-' for "
        "stdin), or a CSV, TSV, JSON Lines or Parquet file with a text column.",
    )
    _add_input_options(p)
    _add_run_options(p)
    _embed_cluster.add_options(p)
    _add_safety_options(p)
    p.set_defaults(func=cmd_embed, config=EmbedConfig)


def _add_input_options(p):
    p.add_argument(
        "input",
        metavar="INPUT",
        help="documents (text lines, CSV, TSV, JSONL, Parquet), or a folder of "
        "images (-m efficientnet-lite0 or a timm name; row order in OUT.paths.txt)",
    )
    p.add_argument(
        "-o",
        "--output",
        required=True,
        metavar="OUT",
        help="output file: .npy (float32 matrix) or .parquet (a 'row' column, then one "
        "column per feature; the model's name in the file's metadata)",
    )
    p.add_argument(
        "-m",
        "--model",
        required=True,
        metavar="M",
        help="word vectors (glove-6B-50d, a gensim-data name, a vector file) or a "
        "sentence model (all-MiniLM-L6-v2, a Hugging Face id or folder)",
    )
    add_kind_option(p, "embedder type; 'auto' decides from the model name (default)")
    p.add_argument("--pooling", help=pooling_help())
    p.add_argument(
        "--weighting",
        choices=WEIGHTINGS,
        help="word vectors only: weight words by TF-IDF, SIF or uSIF (learned "
        "from INPUT itself, without labels)",
    )
    p.add_argument("--normalize", action="store_true", help="scale every vector to unit length")
    p.add_argument(
        "--column",
        metavar="C",
        help="text column of a CSV/TSV/Parquet file or field of a JSONL file (default: text)",
    )


def _add_run_options(p):
    add_batch_size_option(p)
    p.add_argument(
        "--chunk-size",
        type=positive_int,
        default=1024,
        metavar="N",
        help="at most this many documents encoded, written and cached at a time; "
        "chunks start at one batch and grow to about half a second each (default: 1024)",
    )
    p.add_argument(
        "--cache",
        metavar="DIR",
        help="embedding cache folder: finished chunks are kept there, so an "
        "interrupted run resumes and a repeated one is instant",
    )
    p.add_argument(
        "--device",
        help="cpu, cuda, mps or auto (default: auto for sentence models, cpu for word vectors)",
    )


def _add_safety_options(p):
    p.add_argument(
        "--force", action="store_true", help="overwrite OUT when it exists (never INPUT itself)"
    )
    p.add_argument(
        "--allow-pickle",
        action="store_true",
        help="allow a gensim native .kv / .model vector file: it is a pickle, "
        "which can run code when loaded, so only for files you trust",
    )


def cmd_embed(config):
    """``embedxfer embed``: encode a file's documents into .npy or Parquet."""
    if _embed_cluster.wanted(config):
        return _embed_cluster.cmd_embed_on_cluster(config)
    out = Path(config.output)
    out_kind = output_kind(out)
    check_output_path(out, config.input, force=config.force)
    if is_image_folder(config.input):
        return cmd_embed_images(config, out, out_kind)
    require_writer(out_kind)
    texts = _read_documents(config.input, config.column)
    if not texts:
        raise CLIError(f"{config.input} holds no documents.")
    spec = embedding_spec(config, "; pick word vectors or a sentence model.")
    cache = _open_cache(config.cache)
    progress = Progress(spec.label, quiet=config.quiet)
    embedder = build_embedder(
        spec,
        batch_size=config.batch_size,
        device=config.device,
        cache=config.cache,
        normalize=config.normalize,
        allow_pickle=config.allow_pickle,
    )
    tally = WarningTally()
    started = time.perf_counter()
    hits_before = cache.stats()["hits"] if cache is not None else 0
    vectors = None
    with tally.record():
        if embedder._fit_encodes:
            # Fitting encodes every document already: keep those vectors.
            vectors = np.asarray(embedder.fit_transform(texts), dtype=np.float32)
        else:
            embedder.fit(texts)
    done = "fitted and encoded" if vectors is not None else "loaded"
    progress.note(
        f"embedding {len(texts)} documents with {spec.label} ({spec.kind}, "
        f"{embedder.n_features_out_} dimensions), {done} in "
        f"{time.perf_counter() - started:.1f}s"
    )
    return _write_vectors(
        config,
        embedder,
        texts,
        open_writer(out, out_kind, embedder, len(texts), spec.label),
        cache,
        tally,
        progress,
        hits_before,
        vectors=vectors,
        started=started if vectors is not None else None,
    )


def _write_vectors(
    config, embedder, texts, writer, cache, tally, progress, hits_before, vectors=None, started=None
):
    """Encode ``texts`` chunk by chunk into ``writer``; report what was written.

    ``vectors`` encoded by ``fit_transform`` since ``started`` are written as they are;
    ``hits_before`` counts the cache's hits before the fit.
    """
    n = len(texts)
    n_empty = 0
    started = time.perf_counter() if started is None else started
    try:
        if vectors is not None:
            chunks = fitted_chunks(vectors, chunk_size=config.chunk_size)
        else:
            chunks = encode_chunks(embedder, texts, chunk_size=config.chunk_size, tally=tally)
        for start, stop, block in chunks:
            writer.write(start, stop, block)
            n_empty += int(np.count_nonzero(~block.any(axis=1)))
            progress(stop, n, time.perf_counter() - started)
        writer.commit()
    except BaseException:
        writer.abort()
        if cache is not None:
            progress.note(
                f"finished chunks are kept in the cache {config.cache}; run the same "
                "command again to resume."
            )
        raise
    elapsed = time.perf_counter() - started
    report_warnings({"n_empty": n_empty, "warnings": tally.summary()}, progress, progress.label, n)
    reused = ""
    if cache is not None:
        hits = cache.stats()["hits"] - hits_before
        reused = f"; {hits} of {n} from the cache {config.cache}"
    progress.note(
        f"wrote {writer.path}: {n} x {embedder.n_features_out_} float32 in {elapsed:.1f}s "
        f"({format_rate(n / elapsed if elapsed else float('inf'))} docs/s){reused}"
    )
    return 0


def _read_documents(source, column):
    if source == "-":
        if column is not None:
            raise CLIError("--column applies to table files; stdin is read as one document a line.")
        return load_text_lines("-")
    path = check_file(source)
    if file_kind(path) == "text":
        if column is not None:
            raise CLIError(
                f"--column applies to CSV, TSV, JSONL and Parquet input; {path} is "
                "read as one document a line."
            )
        return load_text_lines(path)
    return load_csv(path, text_column=column or "text", label_column=None).data


def _open_cache(folder):
    if folder is None:
        return None
    return resolve_cache(os.fspath(folder))
