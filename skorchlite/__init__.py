"""skorchlite: transfer learning for images that speaks scikit-learn."""

__version__ = "0.1.0"
