"""kancompress: make trained Kolmogorov-Arnold Networks small (MetaCluster, arXiv 2510.19105)."""

__version__ = "0.1.0"
