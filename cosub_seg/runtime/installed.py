"""Importing this module calls :func:`cosub_seg.runtime.install`: configs do it through
``custom_imports=dict(imports=['cosub_seg', 'cosub_seg.runtime.installed'])``, so that MMEngine's and mmseg's own
tools run our configs with the same process-wide changes as our tools (see :mod:`cosub_seg.runtime.patches`)."""
from .patches import install

install()
