"""udalib: unsupervised domain adaptation for semantic segmentation, the library behind udabook."""

__version__ = "0.1.0"
