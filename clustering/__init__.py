"""Clustering of feature stores (to come).

Hierarchical clustering, DBSCAN and HDBSCAN, ground-truth metrics (homogeneity, completeness,
V-measure, ARI), cluster attributes (size, diameter, centroid, separation), plots and galleries,
with memory that does not grow as N^2 in float64.
"""

__all__: list[str] = []
