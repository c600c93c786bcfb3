"""cosub_seg/ as a whole: the floor plan of ARCHITECTURE.md, checked from the code: which package may import which
(read with ``ast`` from the files, not by importing them)."""
import ast
import os
import os.path as osp

import pytest

ROOT = osp.dirname(osp.dirname(osp.abspath(__file__)))
PACKAGE = osp.join(ROOT, 'cosub_seg')

# Package (or top-level module) -> the packages of cosub_seg it must not import. See ARCHITECTURE.md.
RUNTIME_AND_UP = {'runtime', 'cli', 'convert', 'analysis', 'visualization'}
FORBIDDEN = {
    'cosub': {'models', 'datasets', 'evaluation', 'engine', 'checkpoint', 'registry'} | RUNTIME_AND_UP,
    'models': RUNTIME_AND_UP,
    'datasets': RUNTIME_AND_UP | {'models', 'engine'},
    'evaluation': RUNTIME_AND_UP | {'models', 'engine'},
    'engine': RUNTIME_AND_UP,
    'checkpoint': RUNTIME_AND_UP | {'models', 'datasets', 'evaluation', 'engine'},
    'runtime': {'cli'},
}
LEAVES = {'errors', 'known_warnings', 'progress', 'version'}  # import nothing of cosub_seg but errors


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
