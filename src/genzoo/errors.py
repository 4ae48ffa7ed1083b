"""The errors genzoo reports to its users, each with the exit code the CLI ends with.

A ``GenzooError`` is a problem with what was asked for or with the world (data, files, disk, a run
that diverged): the CLI prints its message as one line on stderr and exits with its ``exit_code``, and
nothing is lost (a previous checkpoint stays intact). Any other exception is a bug in genzoo and shows
its traceback. The codes (also in the README):

    0    success
    1    a bug in genzoo (an unexpected exception: a traceback)
    2    usage: bad arguments or options, unknown names, options that mean nothing together
    3    data: a dataset is missing, corrupt or cannot be downloaded
    4    checkpoint: a file that is not a genzoo checkpoint, forged or corrupt metadata, a run directory
         that holds another model, a resume with other training options
    5    training failed: a non-finite loss or gradient, or a model that diverged; the last good
         checkpoint is kept
    6    write failure: a full disk, a read-only place, a path of the wrong kind
    7    the run directory is in use by another genzoo process
    130  interrupted by SIGINT (Ctrl-C), after saving a checkpoint; 143 by SIGTERM
"""

from __future__ import annotations


class GenzooError(Exception):
    """A user-facing error: one line, an exit code."""

    exit_code = 1


class UsageError(GenzooError, ValueError):
    """Bad arguments, options or names."""

    exit_code = 2


class DataError(GenzooError, RuntimeError):
    """A dataset cannot be loaded: missing, corrupt or unverifiable files. The message says what to do."""

    exit_code = 3


class CheckpointError(GenzooError, ValueError):
    """A file is not a readable genzoo checkpoint, or does not belong to this run."""

    exit_code = 4


class TrainingError(GenzooError, RuntimeError):
    """Training cannot go on (non-finite values, divergence); nothing was saved after the last good step."""

    exit_code = 5


class WriteError(GenzooError, OSError):
    """A file could not be written; the previous file at that path, if any, is untouched."""

    exit_code = 6


class RunLockedError(GenzooError, RuntimeError):
    """Another process holds the run directory."""

    exit_code = 7


SIGNAL_EXIT_CODES = {"SIGINT": 130, "SIGTERM": 143}
