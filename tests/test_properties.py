"""Property-based tests: whatever text or file users and attackers bring, embedxfer
gives finite vectors of the right shape or a clear error, never a crash deep inside,
a NaN or an unbounded allocation."""

import gzip
import itertools
import tempfile
import tracemalloc
from pathlib import Path

import numpy as np
import pytest

hypothesis = pytest.importorskip("hypothesis")
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from embedxfer import WordVectorEmbedder, load_vectors
from embedxfer.datasets._files import split_lines
from embedxfer.exceptions import VectorFormatError

# Documents without a known word are expected here; their zero rows are checked.
pytestmark = pytest.mark.filterwarnings("ignore::embedxfer.text._word.EmptyDocumentWarning")

SETTINGS = settings(
    max_examples=40, deadline=None, derandomize=True, suppress_health_check=[HealthCheck.too_slow]
)
_COUNTER = itertools.count()

documents = st.one_of(
    st.text(),
    st.text(alphabet=st.sampled_from(list("the good film bad \x00\t\n\x0c\u2028é漢字😀'-.,"))),
    st.sampled_from(["", " ", "\x00", "the", "THE film", "n't", "🙂🙂"]),
)
odd_items = st.one_of(
    st.none(), st.integers(), st.floats(), st.binary(max_size=20), st.just(float("nan"))
)


@pytest.fixture(scope="module")
def embedders(small_glove):
    docs = ["the good film", "a bad film", "it was fine"]
    return {
        pattern: WordVectorEmbedder(small_glove, token_pattern=pattern, weighting="sif").fit(docs)
        for pattern in (WordVectorEmbedder().token_pattern, r"\S+", r"(?u)\b\w\w+\b")
    }


@SETTINGS
@given(docs=st.lists(documents, min_size=1, max_size=30))
def test_any_text_gives_finite_vectors_of_the_right_shape(embedders, docs):
    for embedder in embedders.values():
        X = embedder.transform(docs)
        assert X.shape == (len(docs), embedder.n_features_out_) and X.dtype == np.float32
        assert np.isfinite(X).all()
        # the same documents one at a time give the same rows: no leak across documents
        single = np.vstack([embedder.transform([d]) for d in docs[:5]])
        np.testing.assert_allclose(X[:5], single, rtol=1e-5, atol=1e-6)


@SETTINGS
@given(docs=st.lists(st.one_of(documents, odd_items), min_size=1, max_size=10))
def test_mixed_types_work_or_name_the_document(embedders, docs):
    embedder = embedders[r"\S+"]
    try:
        X = embedder.transform(docs)
    except (ValueError, TypeError) as err:
        assert "document " in str(err), err
    else:
        assert np.isfinite(X).all() and len(X) == len(docs)


def test_huge_documents(embedders):
    rng = np.random.default_rng(0)
    words = np.array(["the", "good", "film", "zzqx", "", "\u2028", "😀"])
    huge = " ".join(rng.choice(words, 400_000))
    X = embedders[r"\S+"].transform([huge, "film", huge[:1000]])
    assert np.isfinite(X).all() and X.shape[0] == 3


@SETTINGS
@given(text=st.text(alphabet=st.sampled_from(list("ab\n\r\x0c\x0b\x1c\u2028\u2029\x85"))))
def test_line_splitting_matches_newline_counts(text):
    lines = split_lines(text)
    assert len(lines) == text.count("\n") + (0 if text.endswith("\n") or not text else 1)
    assert all("\n" not in line for line in lines)


# ------------------------------------------------------------------------- vector files
def _loads_cleanly_or_fails_clearly(content, name):
    with tempfile.TemporaryDirectory() as folder:
        path = Path(folder) / f"{next(_COUNTER)}-{name}"
        path.write_bytes(content)
        tracemalloc.start()
        try:
            kv = load_vectors(str(path), cache_dir=Path(folder) / "cache")
        except (VectorFormatError, UnicodeDecodeError) as err:
            assert str(path.name) in str(err), err
            return None
        finally:
            peak = tracemalloc.get_traced_memory()[1]
            tracemalloc.stop()
            assert peak < 64 * 2**20 + 200 * len(content), peak
        assert np.isfinite(np.asarray(kv.vectors)).all()
        assert len(kv.index_to_key) == len(kv.vectors) > 0
        return kv


@pytest.fixture(scope="module")
def vector_files(small_glove, tmp_path_factory):
    """A real 200-word GloVe sample written in every format, as bytes."""
    from gensim.models import FastText, KeyedVectors

    folder = tmp_path_factory.mktemp("formats")
    kv = KeyedVectors(small_glove.vector_size)
    kv.add_vectors(small_glove.index_to_key[:200], np.asarray(small_glove.vectors[:200]))
    kv.save_word2vec_format(str(folder / "w.bin"), binary=True)
    kv.save_word2vec_format(str(folder / "w.txt"), binary=False)
    out = {
        "w.bin": (folder / "w.bin").read_bytes(),
        "w.txt": (folder / "w.txt").read_bytes(),
    }
    out["glove.txt"] = b"\n".join(out["w.txt"].split(b"\n")[1:])
    out["w.bin.gz"] = gzip.compress(out["w.bin"])
    out["glove.txt.gz"] = gzip.compress(out["glove.txt"])
    from gensim.models.fasttext import save_facebook_model

    ft = FastText(
        sentences=[["the", "good", "film"], ["a", "bad", "film"]] * 5,
        vector_size=8,
        min_count=1,
        epochs=1,
        bucket=500,
        seed=0,
        workers=1,
    )
    save_facebook_model(ft, str(folder / "ft.bin"))
    out["ft.bin"] = (folder / "ft.bin").read_bytes()
    return out


@SETTINGS
@given(data=st.data())
def test_truncated_files_in_every_format(vector_files, data):
    name = data.draw(st.sampled_from(sorted(vector_files)))
    content = vector_files[name]
    cut = data.draw(st.integers(min_value=0, max_value=len(content) - 1))
    kv = _loads_cleanly_or_fails_clearly(content[:cut], name)
    if kv is not None and name.startswith("w."):
        assert len(kv) == 200  # a header's promise is kept, or the file is refused


@SETTINGS
@given(
    content=st.one_of(
        st.binary(max_size=300),
        st.builds(
            lambda n, d, body: f"{n} {d}\n".encode() + body,
            st.integers(0, 10**12),
            st.integers(0, 10**6),
            st.binary(max_size=100),
        ),
        st.lists(st.text(alphabet="ab 0123456789.-eEinfa\t", max_size=40), max_size=8).map(
            lambda lines: "\n".join(lines).encode()
        ),
    ),
    name=st.sampled_from(["v.txt", "v.bin", "v.vec", "v.txt.gz", "glove.6B.50d.txt"]),
)
def test_random_files_load_cleanly_or_fail_clearly(content, name):
    if name.endswith(".gz"):
        content = gzip.compress(content)
    _loads_cleanly_or_fails_clearly(content, name)
