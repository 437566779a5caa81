"""A text column beside numeric columns: ColumnTransformer on a DataFrame.
=======================================================================

Spam messages differ from ordinary ones in their wording and in their shape:
length, digits (phone numbers, prices), capitals, links. A ColumnTransformer
embeds the text column with pretrained GloVe vectors and scales the numeric
columns, and one LogisticRegression learns from both. Cross-validation
compares numeric features alone, text alone, and the two together.

Data: the SMS Spam Collection (5,574 messages), shipped with embedxfer.

    python examples/column_transformer.py           # all 5,574 messages, ~30 s on 2 cores
    python examples/column_transformer.py --quick   # 1,000 messages
"""

import argparse
import time

import numpy as np
from sklearn.compose import ColumnTransformer
from sklearn.linear_model import LogisticRegression
from sklearn.model_selection import StratifiedKFold, cross_validate
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler

from embedxfer import WordVectorEmbedder

NUMERIC = ["n_chars", "digit_share", "upper_share", "n_exclaim", "has_link", "has_currency"]


def load_frame():
    """The SMS messages as a DataFrame with ``text`` and ``label`` (0 ham, 1 spam)."""
    from embedxfer.datasets import load_sms_spam

    return load_sms_spam(as_frame=True).frame.rename(columns={"target": "label"})


def add_shape_features(frame):
    """Numeric columns computed from the text with vectorised pandas string methods."""
    text = frame["text"]
    n = text.str.len().clip(lower=1)
    return frame.assign(
        n_chars=np.log1p(text.str.len()),
        digit_share=text.str.count(r"\d") / n,
        upper_share=text.str.count(r"[A-Z]") / n,
        n_exclaim=text.str.count("!"),
        has_link=text.str.contains(r"https?://|www\.|\.com\b", case=False).astype(int),
        has_currency=text.str.contains(r"[£$€]|\bp(?:pm|/min)\b", case=False).astype(int),
    )


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--quick", action="store_true", help="1,000 messages only")
    args = parser.parse_args()

    frame = add_shape_features(load_frame())
    if args.quick:
        frame = frame.sample(1000, random_state=0)
    X, y = frame[["text", *NUMERIC]], frame["label"].to_numpy()
    print(f"{len(frame)} SMS messages, {y.mean():.1%} spam; numeric columns: {', '.join(NUMERIC)}")
    print(frame[["text", *NUMERIC]].head(3).to_string(max_colwidth=40), "\n")

    def model(text, numeric):
        parts = []
        if text:
            # A 1-D column name ("text", not ["text"]) hands the embedder a Series of strings.
            parts.append(("text", WordVectorEmbedder("glove-6B-50d", pooling="mean+max"), "text"))
        if numeric:
            parts.append(("numeric", StandardScaler(), NUMERIC))
        columns = ColumnTransformer(parts)
        return make_pipeline(columns, StandardScaler(), LogisticRegression(max_iter=3000))

    cv = StratifiedKFold(n_splits=5, shuffle=True, random_state=0)
    print(f"{'features':<24} {'accuracy':>15} {'spam F1':>15} {'time':>6}")
    for label, text, numeric in [
        ("numeric columns only", False, True),
        ("text (GloVe) only", True, False),
        ("text + numeric", True, True),
    ]:
        started = time.perf_counter()
        scores = cross_validate(model(text, numeric), X, y, cv=cv, scoring=("accuracy", "f1"))
        acc, f1 = scores["test_accuracy"], scores["test_f1"]
        print(
            f"{label:<24} {acc.mean():.3f} ± {acc.std():.3f} {f1.mean():.3f} ± {f1.std():.3f} "
            f"{time.perf_counter() - started:5.1f}s"
        )

    fitted = model(True, True).fit(X, y)
    names = fitted[0].get_feature_names_out()
    print(f"\n{len(names)} features into the classifier, e.g. {names[0]}, {names[-1]}")


if __name__ == "__main__":
    main()
