"""cosub_seg/datasets/digits.py: the digits preparation is deterministic and stratified, and
``tools/prepare_data.py digits`` writes the layout (the digits, then the digit scenes)."""
import hashlib
import os
import os.path as osp

import cv2

from cosub_seg.datasets.digits import load_digit_split, write_digits


def tree_digest(root):
    digest = hashlib.sha256()
    for dirpath, _, files in sorted(os.walk(root)):
        for name in sorted(files):
            path = osp.join(dirpath, name)
            digest.update(osp.relpath(path, root).encode())
            with open(path, 'rb') as f:
                digest.update(f.read())
    return digest.hexdigest()


def test_prepare_digits_is_deterministic_and_stratified(tmp_path, digits_root):
    again = tmp_path / 'digits'
    counts = write_digits(str(again))
    assert counts == dict(train=1437, val=360)
    assert tree_digest(digits_root) == tree_digest(str(again))
    split = load_digit_split()
    assert not set(split['train']) & set(split['val'])
    assert len(split['train']) + len(split['val']) == 1797
    # Stratified: each class's share of val is its share of the whole, within one image.
    labels = split['labels']
    for c in range(10):
        expected = (labels == c).sum() * 360 / 1797
        assert abs((labels[split['val']] == c).sum() - expected) <= 1


def test_prepare_digits_cli_writes_the_layout(tmp_path, python):
    import subprocess
    out = tmp_path / 'd'
    proc = subprocess.run([python, 'tools/prepare_data.py', 'digits', '--out', str(out)], check=True,
                          cwd=osp.dirname(osp.dirname(__file__)), capture_output=True, text=True)
    assert '] 1797/1797, ' in proc.stdout and '] 1000/1000, ' in proc.stdout  # progress bars: digits, then scenes
    img = cv2.imread(str(out / 'train' / '0' / '0000.png'))
    assert img.shape == (32, 32, 3)
    with open(out / 'meta' / 'val.txt') as f:
        first = f.readline().split()
    assert osp.isfile(out / 'val' / first[0]) and first[0].split('/')[0] == first[1]
