"""``evaluate --task cluster``: cluster each model's vectors, score against the labels."""

import time

import numpy as np

from ._clusterers import lsa_vectors, score_clustering
from ._report import format_table, jsonable, plot_cluster_maps, short_source

_COLUMNS = [
    ("model", "model", "s"),
    ("kind", "kind", "s"),
    ("estimator", "clustering", "s"),
    ("dim", "dim", ",d"),
    ("encode_s", "encode s", ".1f"),
    ("cluster_s", "cluster s", ".1f"),
    ("n_found", "clusters", "d"),
    ("noise", "noise", ".0%"),
    ("ari", "ARI", ".3f"),
    ("nmi", "NMI", ".3f"),
    ("silhouette", "silhouette", ".3f"),
]


def run_cluster(args, specs, encoded, sample, estimators, progress, plot):
    """Cluster every model's vectors with every estimator, print the table; the JSON report."""
    n_clusters = len(sample.names)
    rows, maps = [], {}
    for spec in specs:
        X, base = _vectors(spec, encoded, sample.texts, args.seed)
        for estimator in estimators:
            progress.note(f"clustering {spec.label} with {estimator} ...")
            scores = score_clustering(estimator, X, sample.y, n_clusters, random_state=args.seed)
            scores.pop("labels")
            rows.append(
                {"model": spec.label, "kind": spec.kind, "estimator": estimator, **base, **scores}
            )
            if spec.label not in maps:
                maps[spec.label] = (
                    X,
                    f"{estimator}: ARI {scores['ari']:.2f}, NMI {scores['nmi']:.2f}",
                )
    print()
    print(format_table(rows, _COLUMNS))
    print()
    print(
        "ARI: adjusted Rand index, NMI: normalised mutual information (1 = the true "
        "labels, 0 = chance); silhouette: cosine, on the clustered documents."
    )
    if plot is not None:
        plot_cluster_maps(
            maps,
            sample.y,
            sample.names and np.array(sample.names),
            plot,
            f"{short_source(sample.source)}: 2-D PCA maps, colour = true label",
        )
        print(f"\n2-D maps written to {plot}")
    return {"task": "cluster", "results": [jsonable(row) for row in rows]}


def _vectors(spec, encoded, texts, seed):
    """The unit-length vectors clustered for ``spec`` (LSA for TF-IDF) and their costs."""
    from sklearn.preprocessing import normalize

    if spec.kind == "tfidf":
        started = time.perf_counter()
        X = lsa_vectors(texts, random_state=seed)
        return X, {"dim": X.shape[1], "encode_s": time.perf_counter() - started}
    result = encoded[spec.label]
    X = normalize(result["X"])
    return X, {"dim": X.shape[1], "encode_s": result["encode_s"]}
