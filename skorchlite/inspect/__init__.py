"""Looking inside a network: feature maps, Grad-CAM, class visualisation and
adversarial examples.

Every function takes the model as a backbone name (explaining its ImageNet
classes), a fitted :class:`~skorchlite.FineTuneClassifier`, or a fitted
pipeline of :class:`~skorchlite.PretrainedFeatureExtractor` with a linear
classifier, and images as paths, PIL images or arrays. Images are decoded,
resized and centre-cropped as the model's preprocessing says; gradients and
perturbations live in [0, 1] pixel space, with the model's mean/std
normalisation inside the graph. PNGs are drawn as by :mod:`skorchlite.report`
(matplotlib needed only for them).
"""

from __future__ import annotations

from .activations import feature_maps
from .adversarial import AdversarialExample, adversarial_accuracy, adversarial_example
from .explainable import Explainable, resolve_model
from .gradcam import GradCAMResult, grad_cam
from .synthesis import ClassVisualization, class_visualization, total_variation

__all__ = [
    "AdversarialExample",
    "ClassVisualization",
    "Explainable",
    "GradCAMResult",
    "adversarial_accuracy",
    "adversarial_example",
    "class_visualization",
    "feature_maps",
    "grad_cam",
    "resolve_model",
    "total_variation",
]
