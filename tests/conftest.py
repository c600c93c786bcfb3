import os
import sys

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


@pytest.fixture(scope='session')
def digits_root(tmp_path_factory):
    """The digits dataset written once per test session by the same code as `tools/prepare_data.py digits`."""
    from cosub_seg.datasets.digits import write_digits

    root = tmp_path_factory.mktemp('digits')
    write_digits(str(root))
    return str(root)


@pytest.fixture(scope='session')
def python():
    return sys.executable
