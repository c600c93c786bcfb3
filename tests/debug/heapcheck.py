"""A pytest plugin for finding which test damages glibc's heap: after each test it collects garbage, then calls
``mallinfo2()``, which follows every free list of glibc's main arena, so a damaged list crashes right after the test
that damaged it instead of in some later allocation. The test's id goes to stderr first; ``-X faulthandler`` prints
the stack. How to use it (with the glibc settings that send every freed block to those lists):
docs/development.md, "A crash in the test session".

    PYTHONPATH=tests/debug GLIBC_TUNABLES=glibc.malloc.tcache_count=0:glibc.malloc.mxfast=0 \\
        .venv/bin/python -X faulthandler -m pytest -p heapcheck tests/...
"""
import ctypes
import gc
import os

import pytest


class _Mallinfo2(ctypes.Structure):
    _fields_ = [(name, ctypes.c_size_t) for name in ('arena', 'ordblks', 'smblks', 'hblks', 'hblkhd', 'usmblks',
                                                     'fsmblks', 'uordblks', 'fordblks', 'keepcost')]


_libc = ctypes.CDLL(None)
_libc.mallinfo2.restype = _Mallinfo2  # returned by value: the structure must be declared, not an array
_libc.mallinfo2.argtypes = []


def walk_heap(where: str) -> None:
    gc.collect()  # what the test left for the collector is freed now, inside the window
    os.write(2, f'\n[heapcheck] {where}\n'.encode())
    _libc.mallinfo2()


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_protocol(item, nextitem):
    yield
    walk_heap('after ' + item.nodeid)
