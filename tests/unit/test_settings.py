"""Health settings are validated up front with precise messages."""

from __future__ import annotations

from pathlib import Path

import pytest

from dataflows.settings import DEFAULT_CONFIG_PATH, HealthSettings, SettingsError


def test_packaged_defaults_load() -> None:
    settings = HealthSettings.load()
    assert [label for label, _ in settings.window_sizes] == ["1m", "1h", "1d"]
    assert settings.allowed_lateness_us == 15 * 60 * 1_000_000
    assert settings.dimensions[0] == "all"


@pytest.mark.parametrize(
    ("old", "new", "message"),
    [
        ('sizes = ["1m", "1h", "1d"]', 'sizes = ["7m"]', "must divide a day"),
        ('sizes = ["1m", "1h", "1d"]', 'sizes = ["1x"]', "not a duration"),
        ('sizes = ["1m", "1h", "1d"]', "sizes = []", "at least one window size"),
        ('allowed_lateness = "15m"', 'allowed_lateness = "soon"', "allowed_lateness"),
        ('enabled = ["all",', 'enabled = ["planet", "all",', "unknown dimensions ['planet']"),
        ("ROUTED = 4.0", "ROUTED = -4.0", "must be positive"),
    ],
)
def test_invalid_settings_are_rejected(tmp_path: Path, old: str, new: str, message: str) -> None:
    text = DEFAULT_CONFIG_PATH.read_text()
    assert old in text
    path = tmp_path / "health.toml"
    path.write_text(text.replace(old, new, 1))
    with pytest.raises(SettingsError, match=message.replace("[", r"\[").replace("]", r"\]")):
        HealthSettings.load(path)


def test_missing_file_is_a_clear_error(tmp_path: Path) -> None:
    with pytest.raises(SettingsError, match="does not exist"):
        HealthSettings.load(tmp_path / "nope.toml")
