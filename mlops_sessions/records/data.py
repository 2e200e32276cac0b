"""Cached copies of object-storage data inputs: ``data/<sha256>/<file name>``.

An ``s3://`` entry under ``data:`` in mlops.yaml is downloaded once into this
content-addressed cache (by :mod:`mlops_sessions.executors.s3_data`) and read from here by
every later run: the directory is the object's sha256, the file keeps the key's last
segment (``digits.csv.gz``), so code that looks at the suffix (pandas' compression
inference) sees what it would see with a local file. A copy is placed by rename after its
sha256 was checked, so a file here is complete; temporary files of a download live beside
it as ``.<name>.fetch-*`` and are never read.
"""

from __future__ import annotations

from pathlib import Path, PurePosixPath

FALLBACK_NAME = "object"


def data_dir(root: Path) -> Path:
    return root / "data"


def object_file(root: Path, sha256: str, uri: str) -> Path:
    """Where the checked copy of the object uri with this sha256 lives in the store."""
    return data_dir(root) / sha256 / file_name(uri)


def file_name(uri: str) -> str:
    """The file name a copy of uri gets: the key's last segment (never '', '.' or '..')."""
    name = PurePosixPath(uri.rstrip("/")).name if "/" in uri.removeprefix("s3://") else ""
    return name if name not in ("", ".", "..") and "\\" not in name else FALLBACK_NAME
