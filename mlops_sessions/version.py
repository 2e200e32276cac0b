"""The package's version and where its files are, for modules that must not import the
package root (``mlops_sessions/__init__.py`` reaches the front ends)."""

from __future__ import annotations

from pathlib import Path

__version__ = "0.1.0"

# The installed package directory: images copy it into their build context.
PACKAGE_DIR = Path(__file__).resolve().parent
