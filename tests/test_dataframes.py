"""Every dataframe library's inputs and outputs: pandas, polars and pyarrow.

The input checks themselves are in tests/test_validation.py; tests/test_common.py
feeds every public estimator polars and pyarrow columns. Here: embedders inside
``ColumnTransformer`` on each library's frames, and ``set_output`` to each.
"""

import numpy as np
import pandas as pd
import polars as pl
import pytest
from sklearn.compose import ColumnTransformer

from embedxfer import WordVectorEmbedder

TEXTS = ["a good film", "a dull and long film", "great acting", "the plot was awful"]
LENGTHS = [float(len(t)) for t in TEXTS]


def _frame(library):
    columns = {"text": TEXTS, "length": LENGTHS}
    return pl.DataFrame(columns) if library == "polars" else pd.DataFrame(columns)


def _column_transformer(embedder):
    return ColumnTransformer(
        [("words", embedder, "text"), ("length", "passthrough", ["length"])],
        verbose_feature_names_out=False,
    )


@pytest.mark.parametrize("library", ["pandas", "polars"])
@pytest.mark.parametrize("output", ["default", "pandas", "polars"])
def test_column_transformer_on_each_frame_with_each_output(glove, library, output):
    embedder = WordVectorEmbedder(vectors=glove)
    expected = np.column_stack([WordVectorEmbedder(vectors=glove).fit_transform(TEXTS), LENGTHS])
    transformer = _column_transformer(embedder).set_output(transform=output)
    result = transformer.fit_transform(_frame(library))
    kind = {"default": np.ndarray, "pandas": pd.DataFrame, "polars": pl.DataFrame}[output]
    assert isinstance(result, kind)
    names = list(transformer.get_feature_names_out())
    assert names[-1] == "length" and len(names) == expected.shape[1]
    if output != "default":
        assert list(result.columns) == names
    np.testing.assert_allclose(np.asarray(result, dtype=np.float64), expected, rtol=1e-6)


def test_polars_output_of_an_embedder(glove):
    embedder = WordVectorEmbedder(vectors=glove).set_output(transform="polars")
    frame = embedder.fit(pl.Series(TEXTS)).transform(pl.DataFrame({"text": TEXTS}))
    assert isinstance(frame, pl.DataFrame)
    assert frame.columns == list(embedder.get_feature_names_out())
    np.testing.assert_allclose(
        frame.to_numpy(), WordVectorEmbedder(vectors=glove).fit_transform(TEXTS), rtol=1e-6
    )


def test_sentence_embedder_in_a_column_transformer_on_polars():
    pytest.importorskip("torch")
    from embedxfer import SentenceEmbedder

    embedder = SentenceEmbedder(device="cpu", max_length=32)
    transformer = _column_transformer(embedder).set_output(transform="polars")
    result = transformer.fit_transform(_frame("polars"))
    assert isinstance(result, pl.DataFrame) and result.shape == (len(TEXTS), 385)
    expected = SentenceEmbedder(device="cpu", max_length=32).fit().transform(TEXTS)
    np.testing.assert_allclose(result.to_numpy()[:, :-1], expected, rtol=1e-5, atol=1e-6)
