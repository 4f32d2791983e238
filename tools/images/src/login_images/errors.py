"""The builder's exceptions: one base class, so that the CLI turns each into a one-line message and an
exit code instead of a traceback."""

from __future__ import annotations


class ImageError(Exception):
    """Anything the builder reports to its user."""


class SpecError(ImageError):
    """A Dockerfile or spec the builder cannot translate (unsupported instruction, unknown base, ...)."""


class PreflightError(ImageError):
    """This machine cannot build: not root, a command missing, no overlay filesystem."""


class BuildError(ImageError):
    """A build step failed: the message names the step and ends with the tail of its log."""


class ArchiveError(ImageError):
    """An OCI archive that is not what it claims: a digest, size or diff_id does not match."""


class ContainerdError(ImageError):
    """containerd did not answer, or refused an import."""
