"""Reading and choosing clusterings, whatever vectors they were made from.

``describe`` names each cluster by its top terms and nearest documents;
``choose_k`` compares numbers of clusters by silhouette or stability.
"""
