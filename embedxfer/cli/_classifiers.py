"""Downstream classifiers on embeddings: cross-validation, baselines, learning curves.

Pretrained embedders learn nothing from labels, so each corpus is encoded once
per embedder and the classifier is cross-validated on the vectors; TF-IDF,
which learns its vocabulary and IDF from the documents, is refitted inside
every fold.
"""

import time

import numpy as np

CLASSIFIERS = ("logreg", "linearsvc", "knn")

# Regularisation strengths tried for each classifier on dense (standardised)
# embeddings and on TF-IDF; the middle value is used when a training set is
# too small to hold out a validation part.
C_GRIDS = {
    ("logreg", False): (0.01, 0.1, 1.0),
    ("logreg", True): (1.0, 10.0, 100.0),
    ("linearsvc", False): (0.001, 0.01, 0.1),
    ("linearsvc", True): (0.1, 1.0, 10.0),
}
_MIN_TUNE_CLASS = 8  # documents of the rarest class needed to hold out a validation part


def make_classifier(name, kind, *, y=None, random_state=0):
    """The downstream classifier ``name`` for vectors of ``kind`` (a Pipeline).

    Dense embeddings are standardised (logistic regression, linear SVM) or
    scaled to unit length (k-NN); TF-IDF is fitted inside the pipeline. The
    linear models' ``C`` is chosen from :data:`C_GRIDS` on a stratified 25%
    hold-out of the training data, so that every embedder gets the
    regularisation that suits it; when ``y`` (the training labels) has fewer
    than 8 documents in some class, the grid's middle value is used.
    """
    from sklearn.feature_extraction.text import TfidfVectorizer
    from sklearn.linear_model import LogisticRegression
    from sklearn.model_selection import GridSearchCV, StratifiedShuffleSplit
    from sklearn.neighbors import KNeighborsClassifier
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import Normalizer, StandardScaler
    from sklearn.svm import LinearSVC

    tfidf = kind == "tfidf"
    grid = C_GRIDS.get((name, tfidf))
    if name == "logreg":
        head = LogisticRegression(C=grid[1], max_iter=3000)
    elif name == "linearsvc":
        head = LinearSVC(C=grid[1], random_state=random_state)
    elif name == "knn":
        head = KNeighborsClassifier(n_neighbors=5, metric="cosine", algorithm="brute")
    else:
        raise ValueError(f"unknown classifier {name!r}; expected one of {', '.join(CLASSIFIERS)}.")
    if tfidf:
        prep = [TfidfVectorizer(sublinear_tf=True)]
    else:
        prep = [Normalizer() if name == "knn" else StandardScaler()]
    pipe = make_pipeline(*prep, head)
    if grid is None or y is None or np.unique(y, return_counts=True)[1].min() < _MIN_TUNE_CLASS:
        return pipe
    holdout = StratifiedShuffleSplit(n_splits=1, test_size=0.25, random_state=random_state)
    return GridSearchCV(
        pipe, {f"{pipe.steps[-1][0]}__C": list(grid)}, cv=holdout, scoring="accuracy"
    )


def describe_classifier(name):
    """One line saying what the downstream classifier is, for reports."""
    if name == "knn":
        return "5-nearest neighbours, cosine distance"
    model = {"logreg": "LogisticRegression", "linearsvc": "LinearSVC"}[name]
    dense = "/".join(f"{c:g}" for c in C_GRIDS[(name, False)])
    sparse = "/".join(f"{c:g}" for c in C_GRIDS[(name, True)])
    return (
        f"{model} on standardised embeddings (C in {dense}) or TF-IDF (C in {sparse}), C "
        "picked on a 25% hold-out of each training set"
    )


def check_cv(y, cv):
    """Validate ``cv`` folds against the class sizes; return the splitter."""
    from sklearn.model_selection import StratifiedKFold

    classes, counts = np.unique(y, return_counts=True)
    if len(classes) < 2:
        raise ValueError(f"the labels hold a single class ({classes[0]!r}); need at least two.")
    if not isinstance(cv, int) or cv < 2:
        raise ValueError(f"--cv {cv!r}: expected an integer >= 2.")
    smallest = int(counts.min())
    if smallest < cv:
        raise ValueError(
            f"class {classes[counts.argmin()]!r} has only {smallest} documents, fewer than the "
            f"{cv} folds; use --cv {max(smallest, 2)} or more documents."
        )
    return StratifiedKFold(n_splits=cv, shuffle=True, random_state=0)


def stratified_subsample(y, n, random_state=0):
    """Sorted indices of a stratified random sample of ``n`` of the ``len(y)`` rows."""
    from sklearn.model_selection import StratifiedShuffleSplit

    y = np.asarray(y)
    if n is None or n >= len(y):
        return np.arange(len(y))
    try:
        splitter = StratifiedShuffleSplit(n_splits=1, train_size=n, random_state=random_state)
        index, _ = next(splitter.split(np.zeros(len(y)), y))
    except ValueError:  # a class too small to stratify: plain random sample
        index = np.random.default_rng(random_state).choice(len(y), size=n, replace=False)
    return np.sort(index)


def cross_validate_classifier(name, kind, X, y, splitter):
    """Cross-validated accuracy and macro-F1 of one classifier on ``X``.

    Returns a dict with ``accuracy``, ``accuracy_std``, ``f1_macro``,
    ``f1_macro_std`` and ``cv_s`` (wall-clock seconds).
    """
    from sklearn.model_selection import cross_validate

    started = time.perf_counter()
    scores = cross_validate(
        make_classifier(name, kind, y=_smallest_training_fold(y, splitter)),
        X,
        y,
        cv=splitter,
        scoring=("accuracy", "f1_macro"),
    )
    return {**_mean_scores(scores), "cv_s": time.perf_counter() - started}


def _smallest_training_fold(y, splitter):
    """Labels of the training fold with the fewest documents of its rarest class."""
    folds = [y[train] for train, _ in splitter.split(np.zeros(len(y)), y)]
    return min(folds, key=lambda labels: np.unique(labels, return_counts=True)[1].min())


def majority_baseline(y, splitter):
    """Scores of always predicting the most frequent training class."""
    from sklearn.dummy import DummyClassifier
    from sklearn.model_selection import cross_validate

    scores = cross_validate(
        DummyClassifier(strategy="most_frequent"),
        np.zeros((len(y), 1)),
        y,
        cv=splitter,
        scoring=("accuracy", "f1_macro"),
    )
    return _mean_scores(scores)


def _mean_scores(scores):
    """Mean and standard deviation over folds of ``cross_validate``'s test scores."""
    return {
        "accuracy": float(scores["test_accuracy"].mean()),
        "accuracy_std": float(scores["test_accuracy"].std()),
        "f1_macro": float(scores["test_f1_macro"].mean()),
        "f1_macro_std": float(scores["test_f1_macro"].std()),
    }


def learning_curve_sizes(n_train, n_classes, points=7):
    """Training-set sizes from a few per class up to ``n_train``, log-spaced."""
    low = min(max(20, 2 * n_classes), n_train)
    sizes = np.unique(np.geomspace(low, n_train, num=points).round().astype(int))
    return sizes


def learning_curve(name, kind, X, y, splitter, sizes, random_state=0):
    """Accuracy and macro-F1 on each test fold after training on stratified subsets.

    Each training fold is subsampled (stratified) to every size in
    ``sizes``; the model (with ``C`` picked on a hold-out of the subset when
    it is large enough, see :func:`make_classifier`) is scored on the whole
    test fold.

    Returns
    -------
    curve : dict
        ``sizes`` and per size the mean and std over folds of ``accuracy``
        and ``f1_macro``.
    """
    from sklearn.metrics import accuracy_score, f1_score

    acc = np.full((len(sizes), splitter.get_n_splits()), np.nan)
    f1 = np.full_like(acc, np.nan)
    for fold, (train, test) in enumerate(splitter.split(np.zeros(len(y)), y)):
        for i, size in enumerate(sizes):
            subset = train[stratified_subsample(y[train], int(size), random_state + fold)]
            if len(np.unique(y[subset])) < 2:
                continue
            model = make_classifier(name, kind, y=y[subset], random_state=random_state)
            fitted = model.fit(_rows(X, subset), y[subset])
            predicted = fitted.predict(_rows(X, test))
            acc[i, fold] = accuracy_score(y[test], predicted)
            f1[i, fold] = f1_score(y[test], predicted, average="macro")
    return {
        "sizes": np.asarray(sizes),
        "accuracy": np.nanmean(acc, axis=1),
        "accuracy_std": np.nanstd(acc, axis=1),
        "f1_macro": np.nanmean(f1, axis=1),
        "f1_macro_std": np.nanstd(f1, axis=1),
    }


def _rows(X, index):
    if isinstance(X, np.ndarray):
        return X[index]
    return [X[i] for i in index]
