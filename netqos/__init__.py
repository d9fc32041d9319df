"""netqos: network telemetry and QoS monitoring. This package holds the command line,
the settings model and the service wiring; the rooms are collector/, api/, probes/, alerts/."""

from importlib.metadata import PackageNotFoundError, version

try:
    # One source for the version: pyproject.toml, as the installed distribution's metadata says it.
    __version__ = version("netqos")
except PackageNotFoundError:  # a source tree that was never installed (`pip install -e .` installs it)
    __version__ = "0+unknown"
