"""Visualizing and understanding networks (notebooks 09 and 11).

Every function takes a model (and a layer and a class where it needs them), returns tensors,
and leaves the model as it found it: hooks removed, ``requires_grad`` and train/eval mode
restored, even when it raises (see :mod:`cvlib.explain.hooks`).
"""

from cvlib.explain.attention import attention_rollout, cls_attention, tokens_to_grid
from cvlib.explain.cam import cam, grad_cam, guided_grad_cam, upsample_map
from cvlib.explain.dissection import unit_concept_iou
from cvlib.explain.faithfulness import area_under_curve, deletion_curve, insertion_curve
from cvlib.explain.features import (
    first_layer_filters,
    layer_features,
    max_activating_patches,
    nearest_neighbours,
    neighbour_agreement,
    pca,
)
from cvlib.explain.gradients import guided_backprop, input_gradient, saliency, smoothgrad
from cvlib.explain.inversion import invert_features, total_variation
from cvlib.explain.occlusion import occlusion
from cvlib.explain.sanity import cascading_randomization, randomized_copy, rank_correlation
from cvlib.explain.scores import map_iou, pointing_game
from cvlib.explain.style import gram_matrix, style_transfer, synthesize_texture
from cvlib.explain.synthesis import class_visualization, deep_dream, fgsm, iterative_attack

__all__ = [
    "attention_rollout", "cls_attention", "tokens_to_grid", "cam", "grad_cam", "guided_grad_cam",
    "upsample_map", "first_layer_filters", "layer_features", "max_activating_patches",
    "nearest_neighbours", "pca", "guided_backprop", "input_gradient", "saliency", "smoothgrad",
    "occlusion", "map_iou", "pointing_game", "class_visualization", "deep_dream", "fgsm",
    "iterative_attack", "unit_concept_iou", "area_under_curve", "deletion_curve", "insertion_curve",
    "neighbour_agreement", "invert_features", "total_variation", "cascading_randomization",
    "randomized_copy", "rank_correlation", "gram_matrix", "style_transfer", "synthesize_texture",
]
