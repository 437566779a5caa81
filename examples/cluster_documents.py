"""Cluster documents by topic with pretrained embeddings, and draw a 2-D map.
==========================================================================

The recipe:

1. embed the documents (no labels needed) and scale every vector to unit
   length, so that Euclidean distance ranks pairs as cosine similarity does;
   ``HybridEmbedder`` puts a lexical view (LSA) and a semantic one side by
   side, each weighted equally, which clusters long documents best;
2. cluster with scikit-learn: KMeans or agglomerative (Ward) clustering when
   you know how many groups you want, HDBSCAN when you don't (it also leaves
   outliers unclustered as "noise"; density estimates need few dimensions,
   so it runs on the first 5 principal components);
3. when true topics are known, score the clusters against them with the
   adjusted Rand index (ARI) and normalised mutual information (NMI):
   1 is a perfect match, 0 is chance;
4. when the number of topics is unknown, choose it: ``choose_n_clusters``
   prints the silhouette of KMeans over a range of k;
5. read the clusters: ``describe_clusters`` lists each cluster's top terms
   (class-based TF-IDF) and the documents nearest its centre;
6. look at the documents on a 2-D map (t-SNE, or PCA for speed), coloured by
   true topic and by cluster, each cluster labelled with its top terms.

Data: the SMS Spam Collection shipped with embedxfer (2 groups: ham and
spam), or your own documents with known topics (``--csv articles.csv``, a file
with ``text`` and ``label`` columns), such as the BBC News articles (Greene &
Cunningham 2006, 5 topics).

    python examples/cluster_documents.py --out maps/      # 400 documents, ~1 minute on 2 cores
    python examples/cluster_documents.py --quick          # 150 documents, no transformer
"""

import argparse
import time
from pathlib import Path

import numpy as np
from sklearn.cluster import HDBSCAN, AgglomerativeClustering, KMeans
from sklearn.decomposition import PCA, TruncatedSVD
from sklearn.feature_extraction.text import TfidfVectorizer
from sklearn.manifold import TSNE
from sklearn.metrics import adjusted_rand_score, normalized_mutual_info_score
from sklearn.model_selection import train_test_split
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import Normalizer, normalize

from embedxfer import HybridEmbedder, WordVectorEmbedder, choose_n_clusters, describe_clusters

PROJECTIONS = {"tsne": "t-SNE", "pca": "PCA"}


def load_data(csv, n_docs, seed=0):
    """``(texts, topics, name)``: the documents of ``csv``, else the packaged SMS data."""
    if csv is not None:
        from embedxfer.datasets import load_csv

        data, name = load_csv(csv), str(csv)
        topics = np.asarray(data.target)
    else:
        from embedxfer.datasets import load_sms_spam

        data, name = load_sms_spam(), "SMS Spam Collection"
        topics = data.target_names[data.target]
    texts = np.asarray(data.data, dtype=object)
    if n_docs < len(texts):
        keep, _ = train_test_split(
            np.arange(len(texts)), train_size=n_docs, stratify=topics, random_state=seed
        )
        texts, topics = texts[keep], topics[keep]
    return list(texts), topics, name


def embedders(quick):
    """Named functions from texts to unit-length vectors."""
    out = {
        "GloVe 6B 50d, SIF": lambda texts: WordVectorEmbedder(
            "glove-6B-50d", weighting="sif", normalize=True
        ).fit_transform(texts),
        # The classic baseline: TF-IDF reduced to 100 dimensions (latent semantic analysis).
        "TF-IDF + SVD (LSA)": make_pipeline(
            TfidfVectorizer(sublinear_tf=True, min_df=2, stop_words="english"),
            TruncatedSVD(n_components=100, random_state=0),
            Normalizer(),
        ).fit_transform,
        # LSA and GloVe side by side, each block's rows scaled to the same norm.
        "Hybrid LSA + GloVe": HybridEmbedder(
            blocks=[
                (
                    "lsa",
                    make_pipeline(
                        TfidfVectorizer(sublinear_tf=True, stop_words="english"),
                        TruncatedSVD(n_components=100, random_state=0),
                    ),
                ),
                ("glove", WordVectorEmbedder("glove-6B-50d", weighting="sif")),
            ]
        ).fit_transform,
    }
    if not quick:
        try:
            from embedxfer import SentenceEmbedder
        except ImportError:
            print("(sentence-transformers not installed: skipping all-MiniLM-L6-v2)")
        else:
            # The first 128 word pieces of an article carry its topic, at half the cost of 256.
            out["all-MiniLM-L6-v2"] = lambda texts: SentenceEmbedder(
                model="all-MiniLM-L6-v2", normalize=True, max_length=128
            ).fit_transform(texts)
            # The default: LSA beside all-MiniLM-L6-v2 read whole (windows, max-pooled).
            out["Hybrid (default)"] = HybridEmbedder().fit_transform
    return out


def clusterers(n_clusters, n_docs):
    return {
        "KMeans": KMeans(n_clusters=n_clusters, n_init=10, random_state=0),
        "Agglomerative (Ward)": AgglomerativeClustering(n_clusters=n_clusters, linkage="ward"),
        "HDBSCAN (5 PCs)": make_pipeline(
            PCA(n_components=5, random_state=0),
            Normalizer(),
            HDBSCAN(min_cluster_size=max(5, n_docs // (8 * n_clusters)), min_samples=5, copy=True),
        ),
    }


def draw_map(X, topics, clusters, names, title, path, method):
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    if method == "tsne":
        xy = TSNE(
            n_components=2,
            metric="cosine",
            init="pca",
            random_state=0,
            perplexity=min(30, len(X) // 4),
        ).fit_transform(X)
    else:
        xy = PCA(n_components=2, random_state=0).fit_transform(X)
    fig, axes = plt.subplots(1, 2, figsize=(11, 5), constrained_layout=True)
    cmap = plt.get_cmap("tab10")
    panels = ((axes[0], topics, "true topic"), (axes[1], clusters, "KMeans cluster"))
    for ax, labels, heading in panels:
        for i, value in enumerate(np.unique(labels)):
            mask = labels == value
            name = names.get(value, str(value)) if labels is clusters else str(value)
            ax.scatter(xy[mask, 0], xy[mask, 1], s=8, alpha=0.7, color=cmap(i % 10), label=name)
            if labels is clusters:  # the cluster's top terms at its centre on the map
                x, y = np.median(xy[mask], axis=0)
                ax.annotate(
                    name,
                    (x, y),
                    fontsize=8,
                    ha="center",
                    weight="bold",
                    bbox={"boxstyle": "round", "fc": "white", "alpha": 0.8},
                )
        ax.set_title(f"coloured by {heading}")
        ax.set_xticks([])
        ax.set_yticks([])
        ax.legend(fontsize=8, markerscale=2, loc="best")
    fig.suptitle(f"{title} ({PROJECTIONS[method]} map)")
    fig.savefig(path, dpi=120)
    plt.close(fig)


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--n-docs", type=int, default=400, help="documents to cluster")
    parser.add_argument("--quick", action="store_true", help="150 documents, GloVe and LSA only")
    parser.add_argument(
        "--map",
        choices=("tsne", "pca"),
        default=None,
        help="2-D projection (default: t-SNE, PCA with --quick)",
    )
    parser.add_argument(
        "--out",
        type=Path,
        default=Path.cwd(),
        help="folder for cluster_map.png (default: the current folder)",
    )
    parser.add_argument(
        "--csv",
        type=Path,
        default=None,
        help="your documents: a CSV file with text and label (topic) columns "
        "(default: the SMS Spam Collection shipped with embedxfer)",
    )
    args = parser.parse_args()
    n_docs = 150 if args.quick else args.n_docs
    method = args.map or ("pca" if args.quick else "tsne")

    texts, topics, name = load_data(args.csv, n_docs)
    n_clusters = len(np.unique(topics))
    counts = zip(*np.unique(topics, return_counts=True))
    print(
        f"{name}: {len(texts)} documents, {n_clusters} true topics: "
        + ", ".join(f"{topic} {count}" for topic, count in counts)
    )
    args.out.mkdir(parents=True, exist_ok=True)

    print(
        f"\n{'embedding':<20} {'clustering':<21} {'clusters':>8} {'noise':>6} {'ARI':>6} "
        f"{'NMI':>6} {'time':>6}"
    )
    best = None  # (ARI, label, vectors, KMeans clusters) of the best KMeans result
    for label, embed in embedders(args.quick).items():
        started = time.perf_counter()
        X = normalize(np.asarray(embed(texts), dtype=np.float32))
        print(
            f"{label:<20} {'(embedding)':<21} {'':>8} {'':>6} {'':>6} {'':>6} "
            f"{time.perf_counter() - started:>5.1f}s"
        )
        for method_name, model in clusterers(n_clusters, len(texts)).items():
            started = time.perf_counter()
            clusters = model.fit_predict(X)
            found = len(set(clusters) - {-1})
            ari = adjusted_rand_score(topics, clusters)
            print(
                f"{label:<20} {method_name:<21} {found:>8} {np.mean(clusters < 0):>6.0%} "
                f"{ari:>6.3f} {normalized_mutual_info_score(topics, clusters):>6.3f} "
                f"{time.perf_counter() - started:>5.1f}s"
            )
            if method_name == "KMeans" and (best is None or ari > best[0]):
                best = (ari, label, X, clusters)

    ari, label, X, clusters = best

    # Without the true topics, how many clusters? The silhouette of KMeans over k.
    choice = choose_n_clusters(X, range(2, min(10, len(texts) - 1) + 1))
    print(f"\nChoosing k without labels ({label}, KMeans; * = highest silhouette):")
    print(choice)

    # What is each KMeans cluster about?
    description = describe_clusters(texts, clusters, X, n_terms=8, n_docs=2)
    print(f"\nKMeans clusters of {label}:")
    print(description.to_text(max_chars=90))
    names = {c.label: " ".join(term for term, _ in c.terms[:3]) for c in description}

    path = args.out / "cluster_map.png"
    title = f"{name}: {label}, KMeans ARI {ari:.2f}"
    draw_map(X, topics, clusters, names, title, path, method)
    print(f"\n{PROJECTIONS[method]} map of the best embedding ({label}) written to {path}")


if __name__ == "__main__":
    main()
