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


def run_cluster(config, specs, encoded, sample, estimators, progress, plot):
    """Cluster every model's vectors with every estimator, print the table; the JSON report."""
    n_clusters = len(sample.names)
    rows, maps, found = [], {}, {}
    for spec in specs:
        X, base = _vectors(spec, encoded, sample.texts, config.seed)
        for estimator in estimators:
            progress.note(f"clustering {spec.label} with {estimator} ...")
            scores = score_clustering(estimator, X, sample.y, n_clusters, random_state=config.seed)
            found[spec.label, estimator] = (X, scores.pop("labels"))
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
    readable = _describe_best(rows, found, sample, estimators[0], config.seed, config.choose_k)
    if plot is not None:
        plot_cluster_maps(
            maps,
            sample.y,
            sample.names and np.array(sample.names),
            plot,
            f"{short_source(sample.source)}: 2-D PCA maps, colour = true label",
        )
        print(f"\n2-D maps written to {plot}")
    return {"task": "cluster", "results": [jsonable(row) for row in rows], **readable}


def _describe_best(rows, found, sample, estimator, seed, criterion="silhouette"):
    """Print what the best model's clusters are about, and the choice of k; for JSON."""
    from .. import choose_n_clusters, describe_clusters

    candidates = [r for r in rows if r["estimator"] == estimator]
    best = max(candidates, key=lambda r: (r["ari"], -candidates.index(r)))
    X, labels = found[best["model"], estimator]
    description = describe_clusters(sample.texts, labels, X, n_terms=8, n_docs=2)
    print(
        f"\nClusters of {best['model']} ({estimator}, the best ARI): top terms by class-based "
        "TF-IDF, then the documents nearest each cluster's centre."
    )
    print(description.to_text(max_chars=90))
    n_docs = len(sample.texts)
    top = min(max(10, len(sample.names) + 3), n_docs - 1)
    choice = None
    if top >= 2:
        try:
            choice = choose_n_clusters(X, range(2, top + 1), criterion=criterion, random_state=seed)
        except ValueError as err:  # vectors without clusters: the results above stand
            print(f"\nChoosing the number of clusters without the labels: skipped ({err})")
    if choice is not None:
        how = "mean cosine silhouette, higher is better separated"
        if criterion == "stability":
            how += "; stability: ARI between the clusterings of two subsamples, which chooses"
        print(
            f"\nChoosing the number of clusters without the labels ({best['model']}, KMeans): "
            f"{how}; * marks the best ({len(sample.names)} true classes)."
        )
        print(choice.to_text())
    clusters = [
        {
            "label": c.label,
            "size": c.size,
            "terms": [term for term, _ in c.terms],
            "documents": [index for index, _ in c.documents],
        }
        for c in description
    ]
    report = {"clusters": {"model": best["model"], "estimator": estimator, "clusters": clusters}}
    if choice is not None:
        report["choose_k"] = {
            "model": best["model"],
            "n_clusters": choice.n_clusters,
            "criterion": choice.criterion,
            "silhouettes": dict(zip(choice.candidates, choice.silhouettes)),
        }
        if choice.stabilities is not None:
            report["choose_k"]["stabilities"] = dict(zip(choice.candidates, choice.stabilities))
    return report


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
