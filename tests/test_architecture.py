"""cosub_seg/ as a whole: the floor plan of ARCHITECTURE.md, checked from the code: which package may import which
(read with ``ast`` from the files, not by importing them), and that the inference package imports nothing of the
training stack at module level."""
import ast
import os
import os.path as osp

import pytest

ROOT = osp.dirname(osp.dirname(osp.abspath(__file__)))
PACKAGE = osp.join(ROOT, 'cosub_seg')

# Package (or top-level module) -> the packages of cosub_seg it must not import. See ARCHITECTURE.md.
RUNTIME_AND_UP = {'runtime', 'cli', 'convert', 'analysis', 'visualization'}
BELOW_INFERENCE = RUNTIME_AND_UP | {'inference'}
FORBIDDEN = {
    'cosub': {'models', 'datasets', 'evaluation', 'engine', 'checkpoint', 'registry'} | BELOW_INFERENCE,
    'models': BELOW_INFERENCE,
    'datasets': BELOW_INFERENCE | {'models', 'engine'},
    'evaluation': BELOW_INFERENCE | {'models', 'engine'},
    'engine': BELOW_INFERENCE,
    'checkpoint': BELOW_INFERENCE | {'models', 'datasets', 'evaluation', 'engine'},
    'runtime': {'cli'},
    # models and checkpoint only inside the functions of the torch backend (see the test below)
    'inference': RUNTIME_AND_UP | {'datasets', 'evaluation', 'engine', 'registry', 'cosub'},
}
# What the ONNX path must run without (pip install 'cosub_seg[infer]', no mmcv): imported by inference/ only inside
# functions (the torch backend, ONNX Runtime when a model is loaded).
TRAINING_STACK = {'torch', 'torchvision', 'timm', 'mmcv', 'mmseg', 'mmengine', 'onnxruntime'}
LEAVES = {'errors', 'known_warnings', 'progress', 'version', 'windows'}  # import nothing of cosub_seg but errors


def imported_parts(path: str, package: str):
    """(first component below ``cosub_seg``, line) of every module the file imports, relative imports resolved."""
    tree = ast.parse(open(path).read(), path)
    module = osp.relpath(path, ROOT)[:-3].split(os.sep)  # ['cosub_seg', 'models', 'classifier']
    own_package = module[:-1]  # the package a relative import starts from (a package's own for __init__.py)
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = own_package[:len(own_package) - (node.level - 1)]
                if node.module:
                    names = ['.'.join(base + [node.module])]
                else:  # from . import datasets, engine
                    names = ['.'.join(base + [alias.name]) for alias in node.names]
            else:
                names = [node.module]
        else:
            continue
        for name in names:
            parts = name.split('.')
            if parts[0] == 'cosub_seg' and len(parts) > 1:
                yield parts[1], node.lineno


def files_of(part: str):
    folder = osp.join(PACKAGE, part)
    if osp.isdir(folder):
        return sorted(osp.join(d, f) for d, _, fs in os.walk(folder) for f in fs if f.endswith('.py'))
    return [osp.join(PACKAGE, part + '.py')]


@pytest.mark.parametrize('part', sorted(FORBIDDEN))
def test_layers_import_only_downwards(part):
    offences = []
    for path in files_of(part):
        for target, line in imported_parts(path, part):
            if target in FORBIDDEN[part]:
                offences.append(f'{osp.relpath(path, ROOT)}:{line} imports cosub_seg.{target}')
    assert not offences, '\n'.join(offences)


def test_inference_imports_the_training_stack_only_inside_functions():
    offences = []
    for path in files_of('inference'):
        tree = ast.parse(open(path).read(), path)
        for node in tree.body:  # module level only; function bodies are imported when they run
            if isinstance(node, ast.Import):
                names = [alias.name for alias in node.names]
            elif isinstance(node, ast.ImportFrom):
                names = [node.module or ''] if not node.level else \
                    [f'cosub_seg.{node.module or alias.name}' for alias in node.names]
            else:
                continue
            for name in names:
                parts = name.split('.')
                if parts[0] in TRAINING_STACK or (parts[0] == 'cosub_seg' and len(parts) > 1
                                                  and parts[1] in {'models', 'checkpoint', 'registry'}):
                    offences.append(f'{osp.relpath(path, ROOT)}:{node.lineno} imports {name} at module level')
    assert not offences, '\n'.join(offences)


@pytest.mark.parametrize('leaf', sorted(LEAVES))
def test_leaf_modules_import_nothing_of_the_package_but_errors(leaf):
    targets = {target for target, _ in imported_parts(osp.join(PACKAGE, leaf + '.py'), leaf)}
    assert targets <= {'errors'}, targets


def test_the_checker_sees_relative_imports(tmp_path):
    """The checker itself, on the real files: models/classifier.py imports cosub_seg.cosub relatively."""
    parts = {target for target, _ in imported_parts(osp.join(PACKAGE, 'models', 'classifier.py'), 'models')}
    assert {'cosub', 'errors', 'registry'} <= parts
    init_parts = {target for target, _ in imported_parts(osp.join(PACKAGE, 'runtime', '__init__.py'), 'runtime')}
    assert 'runtime' in init_parts
