#!/usr/bin/env python3
"""The offline wheelhouse (docs/gpu.md): the files a machine without network needs to install this project's stack,
beyond what that machine is expected to have already (torch, torchvision, timm and the packages of
EXPECTED_ON_TARGET), with a manifest the target checks before it installs anything.

    python tools/wheelhouse.py make DIR [--python-version 3.12] [--glibc 2.35] [--add REQ ...] [--limit-mib 64]
    python tools/wheelhouse.py manifest DIR [--python-version 3.12] [--limit-mib 64]   # (re)write MANIFEST.txt only
    python tools/wheelhouse.py verify DIR             # every file of DIR/MANIFEST.txt there, sizes and sha256 equal
    python tools/wheelhouse.py check-target DIR       # this Python is the one DIR was made for and has what DIR expects
    python tools/wheelhouse.py install-list DIR       # the wheels to `pip install --no-deps` (not the build tools)
    python tools/wheelhouse.py tool DIR NAME          # the path of a build tool's wheel (setuptools, pip)

`make` (tools/make_wheelhouse.sh) needs pip and the network; the other commands run on the target with nothing but
the standard library (`check-target` also compares versions with `packaging` when it is there), so a bare Python can
verify a wheelhouse before anything is installed. This file is deliberately not part of the cosub_seg package: the
package imports torch and MMEngine, which the target may not have yet.

What `make` collects: the requirements of this project (pyproject.toml, with the `test` extra), of mmcv 2.1.0 (its
sdist's requires.txt) and of every wheel collected, recursively, for the target's Python and platform, skipping
what the target has. Versions follow constraints.txt where it pins them. mmcv travels as its sdist (PyPI has no mmcv
2.x wheel; tools/install_mmcv.sh builds it on the target); setuptools < 81 travels as a build tool (mmcv 2.1.0's
setup.py imports pkg_resources, which setuptools 81 removed) and pip as a bootstrap for a Python without pip;
neither is installed by tools/install_offline.sh unless needed (pip) or at all (setuptools: put on PYTHONPATH for
the builds only). The project itself travels as source.
"""
import argparse
import email.parser
import hashlib
import os
import re
import subprocess
import sys
import tarfile
import zipfile

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
MANIFEST = 'MANIFEST.txt'
LIMIT_MIB = 64                      # what can be carried to the GPU machine, the manifest included
TARGET_PYTHON = '3.12'              # the GPU machine's Python (3.12.3)
TARGET_GLIBC = '2.35'               # binary wheels up to manylinux_2_35 (Ubuntu 22.04); the target has 2.39
MMCV = ('mmcv', '2.1.0')            # the sdist tools/install_mmcv.sh builds (mmseg 1.2.2 rejects mmcv >= 2.2)

# The target's own ML stack: never carried, whatever requires it.
PROVIDED = ('torch', 'torchvision', 'timm')
# What the GPU machine has besides (a Python 3.12 environment with CUDA torch, timm and these): never carried. Only
# those the stack requires are checked on the target (`# expects:` lines of the manifest).
EXPECTED_ON_TARGET = (
    'numpy', 'scipy', 'matplotlib', 'contourpy', 'cycler', 'fonttools', 'kiwisolver', 'pyparsing',
    'python-dateutil', 'opencv-python-headless', 'pillow', 'pyyaml', 'packaging', 'regex', 'rich', 'tensorboard',
    'scikit-learn', 'pytest', 'psutil', 'ninja', 'cmake', 'setuptools', 'wheel', 'tqdm', 'requests', 'tabulate',
    'einops', 'safetensors', 'huggingface-hub', 'onnx', 'onnxruntime',
)
# A requirement the target meets under another name: mmengine and mmcv declare opencv-python, which cannot be
# installed beside the target's opencv-python-headless (both own cv2/), and either provides cv2.
SUBSTITUTES = {
    'opencv-python': ('opencv-python-headless', 'opencv-python', 'opencv-contrib-python-headless',
                      'opencv-contrib-python'),
}
# Carried, but not installed as part of the stack: role 'tool'.
BUILD_TOOLS = ('setuptools<81', 'pip')


class WheelhouseError(Exception):
    """A refusal: printed as one line `error: ...`, exit status 1."""


def canonical(name):
    """PEP 503 normalised project name."""
    return re.sub(r'[-_.]+', '-', name).lower()


def parse_filename(filename):
    """(name, version) of a wheel (PEP 427) or an sdist (`name-version.tar.gz`) file name."""
    if filename.endswith('.whl'):
        parts = filename[:-4].split('-')
        if len(parts) not in (5, 6):
            raise WheelhouseError(f'{filename} is not a wheel file name (name-version[-build]-python-abi-platform)')
        return canonical(parts[0]), parts[1]
    for ext in ('.tar.gz', '.zip'):
        if filename.endswith(ext):
            name, sep, version = filename[:-len(ext)].rpartition('-')
            if sep:
                return canonical(name), version
    raise WheelhouseError(f'{filename} is neither a wheel nor an sdist')


def sha256(path):
    digest = hashlib.sha256()
    with open(path, 'rb') as f:
        for block in iter(lambda: f.read(1 << 20), b''):
            digest.update(block)
    return digest.hexdigest()


def mib(size):
    return f'{size / 2**20:.1f} MiB'


# ---------------------------------------------------------------------------------------------- the manifest


def role_of(name, filename):
    if not filename.endswith('.whl'):
        return 'sdist'
    if name in {canonical(re.split(r'[<>=!~;\s]', tool)[0]) for tool in BUILD_TOOLS}:
        return 'tool'
    return 'install'


def write_manifest(directory, python_version=TARGET_PYTHON, limit_mib=LIMIT_MIB, expects=(), platform=''):
    """Writes DIRECTORY/MANIFEST.txt (file, name, version, sha256, bytes, role per line, after `# key: value` header
    lines) and returns (entries, total bytes, manifest included). Refuses, writing nothing, when the files and the
    manifest together exceed limit_mib MiB."""
    files = sorted(f for f in os.listdir(directory)
                   if f != MANIFEST and not f.startswith('.') and os.path.isfile(os.path.join(directory, f)))
    if not files:
        raise WheelhouseError(f'{directory} holds no wheel or sdist')
    entries = []
    for filename in files:
        name, version = parse_filename(filename)
        path = os.path.join(directory, filename)
        entries.append((filename, name, version, sha256(path), os.path.getsize(path), role_of(name, filename)))
    lines = ['# The offline wheelhouse of cosub_seg: written by tools/make_wheelhouse.sh (tools/wheelhouse.py),',
             '# checked by tools/install_offline.sh before it installs anything (docs/gpu.md).',
             f'# python: {python_version}']
    lines += [f'# platform: {platform}'] if platform else []
    lines += [f'# expects: {requirement}' for requirement in expects]
    lines.append('# file\tname\tversion\tsha256\tbytes\trole')
    lines += ['\t'.join(map(str, entry)) for entry in entries]
    files_total = sum(entry[4] for entry in entries)
    text = '\n'.join(lines) + f'\n# total: {files_total} bytes in {len(entries)} files\n'
    total = files_total + len(text.encode())
    if total > limit_mib * 2**20:
        raise WheelhouseError(f'the wheelhouse {directory} holds {mib(total)} ({total} bytes), over the '
                              f'{limit_mib} MiB that can be carried to the target: MANIFEST.txt not written')
    with open(os.path.join(directory, MANIFEST), 'w') as f:
        f.write(text)
    return entries, total


def read_manifest(directory):
    """(header dict of lists, entries) of DIRECTORY/MANIFEST.txt."""
    path = os.path.join(directory, MANIFEST)
    if not os.path.isfile(path):
        raise WheelhouseError(f'{path} not found: {directory} is not a wheelhouse made by tools/make_wheelhouse.sh '
                              '(or its making was refused)')
    header, entries = {}, []
    with open(path) as f:
        for number, line in enumerate(f, 1):
            line = line.rstrip('\n')
            if line.startswith('#'):
                key, sep, value = line[1:].partition(':')
                if sep and re.fullmatch(r' ?[a-z]+', key):
                    header.setdefault(key.strip(), []).append(value.strip())
                continue
            if not line.strip():
                continue
            fields = line.split('\t')
            if len(fields) != 6 or not fields[4].isdigit():
                raise WheelhouseError(f'{path} line {number} is not "file name version sha256 bytes role": {line!r}')
            entries.append((fields[0], fields[1], fields[2], fields[3], int(fields[4]), fields[5]))
    if not entries:
        raise WheelhouseError(f'{path} lists no file')
    return header, entries


def verify(directory):
    """Every file of the manifest is in DIRECTORY with its size and sha256. Returns the manifest; raises one
    WheelhouseError naming every missing or corrupt file."""
    header, entries = read_manifest(directory)
    problems = []
    for filename, _, _, digest, size, _ in entries:
        path = os.path.join(directory, filename)
        if not os.path.isfile(path):
            problems.append(f'{filename} is missing')
        elif os.path.getsize(path) != size:
            problems.append(f'{filename} is corrupt ({os.path.getsize(path)} bytes, MANIFEST.txt says {size})')
        elif sha256(path) != digest:
            problems.append(f'{filename} is corrupt (sha256 {sha256(path)}, MANIFEST.txt says {digest})')
    if problems:
        raise WheelhouseError(f'the wheelhouse {directory} is incomplete: {"; ".join(problems)}. Copy it again, or '
                              'remake it with tools/make_wheelhouse.sh')
    return header, entries


# ---------------------------------------------------------------------------------------------- on the target


def installed_version(names):
    """The version of the first of NAMES installed in this Python, or None."""
    from importlib import metadata
    for name in names:
        try:
            return name, metadata.version(name)
        except metadata.PackageNotFoundError:
            continue
    return None


def check_target(directory):
    """This Python is the one the wheelhouse was made for and has every package the manifest expects. Returns the
    warnings (an expected package at a version the stack's requirement excludes); raises for what blocks an
    install."""
    header, _ = verify(directory)
    made_for = header.get('python', ['?'])[0]
    here = f'{sys.version_info.major}.{sys.version_info.minor}'
    if made_for != here:
        raise WheelhouseError(f'the wheelhouse {directory} was made for Python {made_for}, this is Python {here} '
                              f'({sys.executable}): remake it with tools/make_wheelhouse.sh DIR '
                              f'--python-version {here}')
    missing, warnings = [], []
    for line in header.get('expects', []):
        names, _, specifier = line.partition(' ')
        found = installed_version(names.split('|'))
        if found is None:
            missing.append(' or '.join(names.split('|')[:2]))
            continue
        if specifier:
            try:
                from packaging.specifiers import SpecifierSet
                if not SpecifierSet(specifier).contains(found[1], prereleases=True):
                    warnings.append(f'{found[0]} {found[1]} is installed, the stack asks for {specifier}')
            except ImportError:
                pass
    if missing:
        raise WheelhouseError(f'{sys.executable} lacks {", ".join(missing)}, which the wheelhouse does not carry '
                              '(it expects them on the target): install them, or remake the wheelhouse with '
                              f'tools/make_wheelhouse.sh DIR --add {missing[0].split(" ")[0]} ...')
    return warnings


def install_list(directory):
    _, entries = read_manifest(directory)
    return [os.path.join(directory, entry[0]) for entry in entries if entry[5] == 'install']


def tool_path(directory, name):
    _, entries = read_manifest(directory)
    for filename, entry_name, *_ in entries:
        if entry_name == canonical(name) and filename.endswith('.whl'):
            return os.path.join(directory, filename)
    raise WheelhouseError(f'the wheelhouse {directory} carries no {name} wheel')


# ---------------------------------------------------------------------------------------------- making it


def marker_environment(python_version):
    """The target's PEP 508 marker values: CPython on x86_64 Linux."""
    return dict(python_version=python_version, python_full_version=f'{python_version}.0', os_name='posix',
                sys_platform='linux', platform_system='Linux', platform_machine='x86_64',
                platform_python_implementation='CPython', implementation_name='cpython', extra='')


def applies(requirement, python_version):
    return requirement.marker is None or requirement.marker.evaluate(marker_environment(python_version))


def on_target(name):
    """The names that satisfy NAME on the target, or None when the wheelhouse must carry it."""
    if name in PROVIDED or name in EXPECTED_ON_TARGET:
        return (name,)
    return SUBSTITUTES.get(name)


def wheel_metadata(path):
    """(name, version, Requires-Dist list) from a wheel's .dist-info/METADATA."""
    with zipfile.ZipFile(path) as archive:
        names = [n for n in archive.namelist() if re.fullmatch(r'[^/]+\.dist-info/METADATA', n)]
        if len(names) != 1:
            raise WheelhouseError(f'{path} has {len(names)} .dist-info/METADATA files, not 1')
        message = email.parser.Parser().parsestr(archive.read(names[0]).decode('utf-8'))
    return canonical(message['Name']), message['Version'], message.get_all('Requires-Dist') or []


def sdist_requirements(path):
    """The unconditional requirements (and those under a `[:marker]` section) of an sdist's egg-info requires.txt,
    as PEP 508 strings; extras are left out."""
    with tarfile.open(path) as archive:
        members = [m for m in archive.getmembers() if re.fullmatch(r'[^/]+/[^/]+\.egg-info/requires\.txt', m.name)]
        if not members:
            raise WheelhouseError(f'{path} has no egg-info/requires.txt')
        text = archive.extractfile(members[0]).read().decode('utf-8')
    requirements, marker = [], ''
    for line in text.splitlines():
        line = line.strip()
        if not line:
            continue
        if line.startswith('['):
            extra, _, section_marker = line[1:-1].partition(':')
            marker = None if extra else section_marker
            continue
        if marker is not None:
            requirements.append(f'{line}; {marker}' if marker else line)
    return requirements


def project_requirements(pyproject=os.path.join(ROOT, 'pyproject.toml'), extras=('test',)):
    import tomllib
    with open(pyproject, 'rb') as f:
        project = tomllib.load(f)['project']
    requirements = list(project['dependencies'])
    for extra in extras:
        requirements += project.get('optional-dependencies', {}).get(extra, [])
    return requirements


def collected(directory):
    """{name: (file, version, requirements)} of the wheels and sdists in DIRECTORY."""
    found = {}
    for filename in sorted(os.listdir(directory)):
        if filename == MANIFEST or filename.startswith('.'):
            continue
        path = os.path.join(directory, filename)
        if filename.endswith('.whl'):
            name, version, requires = wheel_metadata(path)
        else:
            (name, version), requires = parse_filename(filename), sdist_requirements(path)
        if name in found:
            raise WheelhouseError(f'{directory} holds two files of {name}: {found[name][0]} and {filename}')
        found[name] = (filename, version, requires)
    return found


def closure_problems(found, python_version, roots=()):
    """What the collected files (``collected()``) and ROOTS require for the target that neither the wheelhouse nor
    the target provides, or provides at a version the requirement excludes. Build tools are not checked."""
    from packaging.requirements import Requirement
    problems = []
    requirers = [('the stack', None, roots)] + [(n, v, r) for n, (_, v, r) in found.items()]
    for requirer, version, requirements in requirers:
        for text in requirements:
            requirement = Requirement(text)
            name = canonical(requirement.name)
            if not applies(requirement, python_version) or on_target(name):
                continue
            who = f'{requirer} {version}' if version else requirer
            if name not in found:
                problems.append(f'{who} needs {text}, which the wheelhouse lacks and the target is not expected '
                                'to have')
            elif not requirement.specifier.contains(found[name][1], prereleases=True):
                problems.append(f'{who} needs {text}, the wheelhouse has {name} {found[name][1]}')
    return problems


def expected_requirements(found, python_version, roots):
    """The `# expects:` lines: each requirement the target must meet, as 'name[|alternative...] specifier'."""
    from packaging.specifiers import SpecifierSet
    from packaging.requirements import Requirement
    expects = {}
    for text in list(roots) + [t for _, _, requires in found.values() for t in requires]:
        requirement = Requirement(text)
        name = canonical(requirement.name)
        if applies(requirement, python_version) and on_target(name):
            expects[name] = expects.get(name, SpecifierSet()) & requirement.specifier
    return [f'{"|".join(on_target(name))} {expects[name]}'.rstrip() for name in sorted(expects)]


def platforms(glibc):
    """manylinux tags for x86_64 up to glibc GLIBC (pip does not expand manylinux_2_X to older ones itself)."""
    major, minor = map(int, glibc.split('.'))
    tags = [f'manylinux_{major}_{m}_x86_64' for m in range(minor, 4, -1)]
    return tags + ['manylinux2014_x86_64', 'manylinux2010_x86_64', 'manylinux1_x86_64']


def pip_download(requirements, directory, python_version, glibc, binary=True):
    cmd = [sys.executable, '-m', 'pip', 'download', '--no-deps', '--disable-pip-version-check', '-d', directory,
           '--constraint', os.path.join(ROOT, 'constraints.txt')]
    if binary:
        abi = 'cp' + python_version.replace('.', '')
        cmd += ['--only-binary=:all:', '--python-version', python_version, '--implementation', 'cp', '--abi', abi]
        for tag in platforms(glibc):
            cmd += ['--platform', tag]
    else:
        # Fetching an sdist runs its setup.py for metadata; mmcv's imports torch, hence this Python's own packages.
        cmd += ['--no-binary', ':all:', '--no-build-isolation']
    what = f'Python {python_version}, manylinux x86_64, glibc <= {glibc}' if binary else 'sdist'
    print(f'pip download ({what}): {" ".join(requirements)}', flush=True)
    result = subprocess.run(cmd + list(requirements))
    if result.returncode != 0:
        raise WheelhouseError(f'pip download of {" ".join(requirements)} failed (status {result.returncode}): '
                              'making a wheelhouse needs the network (PyPI)')


def clear_for_make(directory):
    """Makes DIRECTORY empty if it is absent, empty, or a wheelhouse of ours (only files of its manifest)."""
    if not os.path.exists(directory):
        os.makedirs(directory)
        return
    present = set(os.listdir(directory))
    if not present:
        return
    listed = {MANIFEST}
    if MANIFEST in present:
        listed |= {entry[0] for entry in read_manifest(directory)[1]}
    foreign = sorted(present - listed)
    if foreign:
        raise WheelhouseError(f'{directory} holds files that are not in a MANIFEST.txt of a wheelhouse '
                              f'({", ".join(foreign[:3])}{"..." if len(foreign) > 3 else ""}): give an empty or '
                              'new folder')
    for filename in present:
        os.remove(os.path.join(directory, filename))


def make(directory, python_version=TARGET_PYTHON, glibc=TARGET_GLIBC, adds=(), limit_mib=LIMIT_MIB):
    clear_for_make(directory)
    pip_download([f'{MMCV[0]}=={MMCV[1]}'], directory, python_version, glibc, binary=False)
    roots = project_requirements() + list(adds)
    from packaging.requirements import Requirement
    wanted = list(roots)
    while True:
        found = collected(directory)
        wanted += [text for _, _, requires in found.values() for text in requires]
        missing = {}
        for text in wanted:
            requirement = Requirement(text)
            name = canonical(requirement.name)
            if applies(requirement, python_version) and not on_target(name) and name not in found:
                missing.setdefault(name, []).append(str(requirement.specifier))
        if not missing:
            break
        pip_download([name + ','.join(s for s in specs if s) for name, specs in sorted(missing.items())],
                     directory, python_version, glibc)
    problems = closure_problems(found, python_version, roots)
    if problems:
        raise WheelhouseError('the wheelhouse is not complete for the target: ' + '; '.join(problems))
    pip_download(list(BUILD_TOOLS), directory, python_version, glibc)
    entries, total = write_manifest(directory, python_version, limit_mib, expected_requirements(
        found, python_version, roots), f'manylinux x86_64, glibc <= {glibc}')
    for filename, _, _, _, size, role in entries:
        print(f'{filename:72s} {size / 1024:6.0f} KiB  {role}')
    print(f'total: {mib(total)} ({total} bytes, MANIFEST.txt included) in {len(entries)} files, for Python '
          f'{python_version} on manylinux x86_64 (glibc <= {glibc}); limit {limit_mib} MiB')


# ---------------------------------------------------------------------------------------------- command line


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split('\n\n')[0],
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    commands = parser.add_subparsers(dest='command', required=True)
    made = commands.add_parser('make', help='download the wheelhouse into DIR and write its MANIFEST.txt')
    made.add_argument('directory')
    made.add_argument('--python-version', default=TARGET_PYTHON, help='the target\'s major.minor (default %(default)s)')
    made.add_argument('--glibc', default=TARGET_GLIBC, help='newest manylinux glibc to accept (default %(default)s)')
    made.add_argument('--add', action='append', default=[], metavar='REQ',
                      help='also carry REQ (and what it needs), e.g. a package the target lacks')
    made.add_argument('--limit-mib', type=float, default=LIMIT_MIB)
    manifest = commands.add_parser('manifest', help='(re)write DIR/MANIFEST.txt from the files in DIR')
    manifest.add_argument('directory')
    manifest.add_argument('--python-version', default=TARGET_PYTHON)
    manifest.add_argument('--limit-mib', type=float, default=LIMIT_MIB)
    for name in ('verify', 'check-target', 'install-list'):
        commands.add_parser(name).add_argument('directory')
    tool = commands.add_parser('tool')
    tool.add_argument('directory')
    tool.add_argument('name')
    args = parser.parse_args(argv)
    try:
        if args.command == 'make':
            make(args.directory, args.python_version, args.glibc, args.add, args.limit_mib)
        elif args.command == 'manifest':
            entries, total = write_manifest(args.directory, args.python_version, args.limit_mib)
            print(f'total: {mib(total)} ({total} bytes, MANIFEST.txt included) in {len(entries)} files')
        elif args.command == 'verify':
            _, entries = verify(args.directory)
            print(f'wheelhouse {args.directory}: {len(entries)} files, all present and matching MANIFEST.txt')
        elif args.command == 'check-target':
            for warning in check_target(args.directory):
                print(f'warning: {warning}')
            print(f'{sys.executable} (Python {sys.version.split()[0]}) has what the wheelhouse expects')
        elif args.command == 'install-list':
            print('\n'.join(install_list(args.directory)))
        elif args.command == 'tool':
            print(tool_path(args.directory, args.name))
    except WheelhouseError as error:
        print(f'error: {error}', file=sys.stderr)
        return 1
    return 0


if __name__ == '__main__':
    sys.exit(main())
