"""Secret files: owner-only from the first byte, refused when others can read them."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from orderhealth.private_files import PrivateFileError, read_private, write_private
from orderhealth.superset_cmd import _secret


def test_written_owner_only_and_never_replaced(tmp_path: Path) -> None:
    path = tmp_path / "keys" / "secret"
    write_private(path, b"s3cret")
    assert os.stat(path).st_mode & 0o777 == 0o600
    assert read_private(path, "secret") == b"s3cret"
    with pytest.raises(FileExistsError):
        write_private(path, b"other")
    path.chmod(0o640)
    with pytest.raises(PrivateFileError, match=f"chmod 600 {path}"):
        read_private(path, "secret")
    with pytest.raises(PrivateFileError, match="No such file"):
        read_private(tmp_path / "missing", "secret")


def test_superset_secret_key_from_environment_file_or_generated(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("SUPERSET_SECRET_KEY", raising=False)
    monkeypatch.delenv("SUPERSET_SECRET_KEY_FILE", raising=False)
    key, generated = _secret(tmp_path / "home")
    assert generated and len(key) > 40
    assert os.stat(tmp_path / "home" / "secret_key").st_mode & 0o777 == 0o600
    assert _secret(tmp_path / "home") == (key, False)
    named = tmp_path / "superset.key"
    write_private(named, b"from-a-file\n")
    monkeypatch.setenv("SUPERSET_SECRET_KEY_FILE", str(named))
    assert _secret(tmp_path / "home") == ("from-a-file", False)
    named.chmod(0o644)
    with pytest.raises(PrivateFileError):
        _secret(tmp_path / "home")
    monkeypatch.setenv("SUPERSET_SECRET_KEY", "from-the-environment")
    assert _secret(tmp_path / "home") == ("from-the-environment", False)
