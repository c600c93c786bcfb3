"""Errors in what a user gave (a file, a config key or value, the data), and how the tools report them.

Every check of this package that a user can fix raises a :class:`UserError`. Each subclass is also the built-in
exception a caller would expect (``MissingFileError`` is a ``FileNotFoundError``, ``ConfigError`` a
``ValueError``...), so ``except FileNotFoundError`` keeps working. The command-line tools (:func:`cli_main`) print a
user error as one line, ``<kind>: <message>``, without the traceback, and exit with status 1; ``--debug`` (or
``COSUB_DEBUG=1``) shows the traceback instead. Any other exception is a bug, or a library's, and keeps its
traceback.

MMEngine's registry rebuilds an error raised while building a module as ``type(err)('class `X` in path.py: ...')``,
and torch's data loader rebuilds an error of a worker process with the worker's traceback in the message; both
keep the class, so a user error stays one, and :func:`one_line` takes those additions off again.
"""
import functools
import os
import re
import sys

DEBUG_FLAG = '--debug'
DEBUG_HELP = 'show the full traceback of an error in the input (by default: one line saying what to fix)'


class UserError(Exception):
    """Base of the errors a user fixes in the input: the message names the file, key or value and says what to do."""


class ConfigError(UserError, ValueError):
    """A config value that cannot work (or config values that contradict each other)."""


class ConfigKeyError(UserError, KeyError):
    """A config key that is missing or unknown (printed without ``KeyError``'s quotes)."""

    def __str__(self) -> str:
        return str(self.args[0]) if self.args else ''


class ConfigTypeError(UserError, TypeError):
    """A config value of the wrong kind (a module argument it does not take, a file holding something else)."""


class DataError(UserError, ValueError):
    """Data that cannot be used: an empty folder, an unreadable image, an annotation that does not fit."""


class MissingFileError(UserError, FileNotFoundError):
    """A file or folder the config or the command line names does not exist."""


class MissingPackageError(UserError, ModuleNotFoundError):
    """An optional package an option needs is not installed."""


class UnsafeCheckpointError(UserError, RuntimeError):
    """A checkpoint that could run code when loaded, and is refused."""


class TrainingStopped(UserError, FloatingPointError):
    """Training stopped on a numerical fault; the message says which checkpoint to resume from and how."""


_REGISTRY_PREFIX = re.compile(r'class `[^`]+` in [\w/.\-]+\.py: ')


def one_line(err: BaseException) -> str:
    """``<kind>: <message>`` on one line, where kind is the built-in exception the error is (``FileNotFoundError``,
    ``ValueError``...). A data-loader worker's traceback and MMEngine's ``class `X` in path.py:`` prefixes are left
    out."""
    message = str(err)
    if 'Original Traceback (most recent call last)' in message:
        # torch's ExceptionWrapper: "Caught X in DataLoader worker process 0.\nOriginal Traceback...\n<module>.X: msg"
        last = [line for line in message.splitlines() if line.strip()][-1]
        message = re.sub(r'^[\w.]+: ', '', last.strip(), count=1)
    message = _REGISTRY_PREFIX.sub('', message)
    message = ' '.join(message.split())
    kind = next((cls.__name__ for cls in type(err).__mro__ if cls.__module__ == 'builtins'
                 and issubclass(cls, Exception) and cls is not Exception), type(err).__name__)
    return f'{kind}: {message}'


def cli_main(main):
    """Wraps a tool's ``main(argv=None)``: a :class:`UserError` is printed as one line on stderr and the process
    exits with status 1, unless ``--debug`` is among the arguments (or ``COSUB_DEBUG=1``), which shows the
    traceback. The tool's parser must accept ``--debug`` (see :data:`DEBUG_HELP`)."""

    @functools.wraps(main)
    def wrapper(argv=None):
        args = sys.argv[1:] if argv is None else list(argv)
        debug = DEBUG_FLAG in args or os.environ.get('COSUB_DEBUG', '') not in ('', '0')
        try:
            return main(argv)
        except UserError as err:
            if debug:
                raise
            sys.stdout.flush()
            print(one_line(err), file=sys.stderr, flush=True)
            raise SystemExit(1) from None

    return wrapper


__all__ = ['UserError', 'ConfigError', 'ConfigKeyError', 'ConfigTypeError', 'DataError', 'MissingFileError',
           'MissingPackageError', 'UnsafeCheckpointError', 'TrainingStopped', 'one_line', 'cli_main', 'DEBUG_FLAG',
           'DEBUG_HELP']
