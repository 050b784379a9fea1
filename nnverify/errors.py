"""The error tree for user-facing failures; the CLI maps each class to an exit code.

Library code raises only ``NnverifyError`` subclasses for problems a user can fix (bad files, missing
backends); anything else escaping ``verify()`` is a bug.
"""

from __future__ import annotations

from enum import IntEnum


class ExitCode(IntEnum):
    """Process exit codes of the ``nnverify`` command (documented in the README)."""

    OK = 0  # a verdict was printed
    BUG = 1  # an unexpected exception (traceback)
    USAGE = 2  # bad command line (click)
    BAD_INPUT = 3  # bad model, property or witness file
    ENVIRONMENT = 4  # backend not installed, licence limit, environment problem
    WITNESS_REJECTED = 5  # ``nnverify witness``: the witness does not replay
    OUTPUT_FAILED = 6  # the verdict was printed, but an output file (results, witness, image) could not be written
    INTERRUPTED = 130  # Ctrl-C (128 + SIGINT), as ``bench run``; 143 for SIGTERM there


class NnverifyError(Exception):
    """Base class of every error the user can act on."""

    exit_code: ExitCode = ExitCode.BAD_INPUT


class InputFileError(NnverifyError):
    """A file is missing or unreadable."""


class ModelError(NnverifyError):
    """The ONNX model cannot be loaded or is outside what nnverify supports."""


class UnsupportedOpsError(ModelError):
    """The model uses ONNX operators without an nnverify implementation (all of them are listed)."""


class SourceError(NnverifyError):
    """An error at a position in a text file: rendered as ``file:line:col: message``."""

    def __init__(self, message: str, path: str, line: int, col: int) -> None:
        self.message = message
        self.path = path
        self.line = line
        self.col = col
        super().__init__(f"{path}:{line}:{col}: {message}")


class PropertyError(SourceError):
    """A VNN-LIB property is malformed or does not fit the network."""


class WitnessFormatError(SourceError):
    """A counterexample (witness) file is malformed."""


class UnboundedError(NnverifyError):
    """A bound pass met an op with no finite bound on its input interval (``1 / y`` where ``y``'s bounds hold 0);
    ``verify()`` answers ``unknown`` with this message as its note instead of a bound."""


class BackendUnavailableError(NnverifyError):
    """The requested solver backend is not installed or cannot start."""

    exit_code = ExitCode.ENVIRONMENT


class BackendError(NnverifyError):
    """The backend refused the problem (e.g. a size-limited licence)."""

    exit_code = ExitCode.ENVIRONMENT


class MissingExtraError(NnverifyError):
    """An optional part (``pip install 'nnverify[bench]'`` and the like) is not installed (``nnverify.extras``)."""

    exit_code = ExitCode.ENVIRONMENT


class OutputFileError(NnverifyError):
    """An output file (``--results-file``, ``--counterexample``, ``--image``, ``export -o``) cannot be written."""

    exit_code = ExitCode.OUTPUT_FAILED
