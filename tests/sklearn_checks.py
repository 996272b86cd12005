"""scikit-learn's estimator checks for estimators that take images.

``check_estimator`` runs only ``check_estimator_cloneable`` for an estimator
tagged ``input_tags.two_d_array=False``, so the checks below are called one
by one. Every other check scikit-learn has for a transformer or a classifier
is listed in ``SKIPPED`` with the reason, and ``test_every_check_is_run_or_
explained`` (in the estimators' test files) fails when a new scikit-learn
release adds a check that is in neither list.
"""

from __future__ import annotations

import functools

from sklearn.utils.estimator_checks import (
    check_do_not_raise_errors_in_init_or_set_params,
    check_estimator_cloneable,
    check_estimator_repr,
    check_estimator_tags_renamed,
    check_get_params_invariance,
    check_mixin_order,
    check_no_attributes_set_in_init,
    check_param_validation,
    check_parameters_default_constructible,
    check_set_params,
    check_valid_tag_types,
)

# The checks that need no data: parameters, clone, repr, tags.
RUN = [
    check_estimator_cloneable,
    check_estimator_repr,
    check_no_attributes_set_in_init,
    check_get_params_invariance,
    check_set_params,
    check_parameters_default_constructible,
    # Every parameter has a constraint, and a bad one fails fit with scikit-learn's message
    # (fit checks the parameters before it reads X, so a table is as good as images here).
    check_param_validation,
    check_do_not_raise_errors_in_init_or_set_params,
    check_mixin_order,
    check_estimator_tags_renamed,
    check_valid_tag_types,
]

_TABLE = "fits on a random 2-D numeric table, which is not an image container"
_SPARSE = "feeds sparse matrices; images are dense"

# Check -> why it is not run, and which of our tests covers the same rule on
# images where one applies.
SKIPPED = {
    "check_array_api_input": "array API namespaces (cupy, torch arrays as X); X is paths, PIL images or numpy",
    "check_complex_data": _TABLE + "; complex images are refused by check_images (test_images.py)",
    "check_dict_unchanged": _TABLE + "; tests check that fit/transform read no attribute-changing state",
    "check_dont_overwrite_parameters": _TABLE + "; test_init_loads_nothing_* and clone tests cover params",
    "check_dtype_object": _TABLE + "; object arrays of paths/images are tested in test_images.py",
    "check_estimator_sparse_array": _SPARSE,
    "check_estimator_sparse_matrix": _SPARSE,
    "check_estimator_sparse_tag": _SPARSE,
    "check_estimators_dtypes": _TABLE + "; image dtypes (uint8, float, 16-bit) are tested in test_images.py",
    "check_estimators_empty_data_messages": _TABLE + "; empty X is tested in test_images.py",
    "check_estimators_fit_returns_self": _TABLE + "; test_fit_returns_self_and_refit_is_idempotent",
    "check_estimators_nan_inf": _TABLE + "; NaN/inf pixels are tested in test_images.py",
    "check_estimators_overwrite_params": _TABLE + "; test_fit_returns_self_and_refit_is_idempotent",
    "check_estimators_pickle": _TABLE + "; test_pickle_* / test_joblib_round_trip_* on images",
    "check_estimators_unfitted": _TABLE + "; NotFittedError tests on images",
    "check_f_contiguous_array_estimator": _TABLE,
    "check_fit1d": _TABLE + "; a 1-D array is refused with a clear message (test_images.py)",
    "check_fit2d_1feature": _TABLE,
    "check_fit2d_1sample": _TABLE,
    "check_fit2d_predict1d": _TABLE,
    "check_fit_check_is_fitted": _TABLE + "; NotFittedError tests on images",
    "check_fit_idempotent": _TABLE + "; test_fit_returns_self_and_refit_is_idempotent",
    "check_fit_score_takes_y": _TABLE,
    "check_methods_sample_order_invariance": _TABLE + "; permutation tests on images",
    "check_methods_subset_invariance": _TABLE + "; batch-size invariance tests on images",
    "check_n_features_in": "n_features_in_ is a column count; images have no columns",
    "check_n_features_in_after_fitting": "n_features_in_ is a column count; images have no columns",
    "check_pipeline_consistency": _TABLE + "; Pipeline/GridSearchCV tests on images",
    "check_positive_only_tag_during_fit": _TABLE,
    "check_readonly_memmap_input": _TABLE + "; images are only read, never written",
    "check_transformer_data_not_an_array": _TABLE + "; lists, tuples, Series of images are tested",
    "check_transformer_general": _TABLE + "; shape/dtype/fit_transform tests on images",
    "check_transformer_n_iter": "not an iterative solver",
    "check_transformers_unfitted": _TABLE + "; test_transform_before_fit_raises",
    # Classifiers.
    "check_all_zero_sample_weights_error": _TABLE + "; zero sample weights are tested in test_finetune.py",
    "check_class_weight_classifiers": _TABLE + "; class_weight tests on images in test_finetune.py",
    "check_classifier_data_not_an_array": _TABLE,
    "check_classifiers_classes": _TABLE + "; label types (str, int) tested with hypothesis on images",
    "check_classifiers_one_label": _TABLE + "; test_a_single_class_is_refused",
    "check_classifiers_one_label_sample_weights": _TABLE + "; test_a_single_class_is_refused",
    "check_classifiers_regression_target": _TABLE,
    "check_classifiers_train": _TABLE + " and expects near-perfect training accuracy in a few epochs",
    "check_classifiers_multilabel_representation_invariance": _TABLE
    + "; test_finetune_multilabel.py: test_every_representation_of_y_fits_alike",
    "check_classifiers_multilabel_output_format_predict": _TABLE
    + "; test_finetune_multilabel.py: test_fit_predict_proba_predict_score",
    "check_classifiers_multilabel_output_format_predict_proba": _TABLE
    + "; test_finetune_multilabel.py: test_fit_predict_proba_predict_score",
    "check_classifiers_multilabel_output_format_decision_function": "has no decision_function",
    "check_decision_proba_consistency": "has no decision_function",
    "check_estimators_partial_fit_n_features": _TABLE,
    "check_non_transformer_estimators_n_iter": "n_iter_ is not an attribute; history_ records the epochs",
    "check_requires_y_none": _TABLE,
    "check_sample_weight_equivalence_on_dense_data": _TABLE + "; sample_weight tests on images",
    # scikit-learn 1.6 yields it for every estimator, later releases for those tagged sparse only.
    "check_sample_weight_equivalence_on_sparse_data": _SPARSE,
    "check_sample_weights_list": _TABLE,
    "check_sample_weights_not_an_array": _TABLE,
    "check_sample_weights_not_overwritten": _TABLE,
    "check_sample_weights_pandas_series": _TABLE,
    "check_sample_weights_shape": _TABLE,
    "check_supervised_y_2d": _TABLE,
    "check_supervised_y_no_nan": _TABLE,
}


def sklearn_check_names(estimator) -> set[str]:
    """Names of every check scikit-learn would run if ``estimator`` took tables.

    The private ``_yield_all_checks`` is the only list scikit-learn keeps;
    with our tags it yields nothing, so a subclass claims 2-D input.
    """
    from sklearn.utils.estimator_checks import _yield_all_checks

    class AsIfTabular(type(estimator)):
        def __sklearn_tags__(self):
            tags = super().__sklearn_tags__()
            tags.input_tags.two_d_array = True
            return tags

    AsIfTabular.__name__ = type(estimator).__name__
    checks = _yield_all_checks(AsIfTabular(**estimator.get_params()), legacy=True)
    return {(c.func if isinstance(c, functools.partial) else c).__name__ for c in checks}


def unexplained_checks(estimator) -> set[str]:
    """Checks scikit-learn has for ``estimator`` that are neither run nor in SKIPPED."""
    return sklearn_check_names(estimator) - {check.__name__ for check in RUN} - set(SKIPPED)
