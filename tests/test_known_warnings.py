"""cosub_seg/known_warnings.py: the library warnings we know are hidden; every other warning, and the same text in
another category, is shown."""
import warnings

from cosub_seg.known_warnings import KNOWN_WARNINGS, filter_known_warnings


def test_known_library_warnings_are_hidden_and_others_shown():
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter('always')
        filter_known_warnings()
        warnings.warn('pkg_resources is deprecated as an API. See https://setuptools.pypa.io', UserWarning)
        warnings.warn('``build_loss`` would be deprecated soon, please use ``mmseg.registry.MODELS.build()``')
        warnings.warn('Default ``avg_non_ignore`` is False, if you would like to ignore the certain label')
        warnings.warn('The draw is False, it means that the hook for visualization will not take effect.')
        warnings.warn('`reduce_zero_label` will be deprecated, if you would like to ignore the zero label')
        warnings.warn('something a user should see', UserWarning)
        warnings.warn('pkg_resources is deprecated as an API', DeprecationWarning)  # another category: shown
    assert [str(w.message) for w in caught] == ['something a user should see', 'pkg_resources is deprecated as an API']
    assert len(KNOWN_WARNINGS) == 5
