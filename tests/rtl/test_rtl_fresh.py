"""The committed ``rtl/`` folder is exactly what the gateware generates today."""

from pathlib import Path

import pytest

from hetnic.rtl import RTL_BUILDS, rtl_differences, rtl_files

RTL = Path(__file__).resolve().parents[2] / "rtl"


@pytest.fixture(scope="module")
def generated():
    """One generation of every file (tens of seconds), shared by the tests below."""
    return rtl_files()


def test_committed_rtl_is_current(generated):
    stale, extra = rtl_differences(RTL, generated)
    assert not stale, f"rtl/ is stale: {stale}; run 'hetnic verilog' and commit the result"
    assert not extra, f"rtl/ holds files the gateware no longer generates: {extra}"


def test_rtl_is_a_file_per_module(generated):
    """Each build is one file per module and a file list naming every one of them, top
    first; no file passes 1 MiB (one file of the NIC core was 2.2 MB)."""
    for stem in RTL_BUILDS:
        listed = generated[f"{stem}.f"].split()
        assert listed[0] == f"{stem}/{stem}.v"
        assert sorted(listed) == sorted(p for p in generated if p.startswith(stem + "/"))
        for path in listed:
            assert generated[path].count("\nmodule ") == 1, path
            assert generated[path].rstrip().endswith("endmodule"), path
    assert max(len(text) for text in generated.values()) < 1 << 20


def test_rtl_has_no_paths_or_locations(generated):
    """No absolute paths or source locations, which would change with the checkout."""
    for name, text in generated.items():
        assert "/work/" not in text and "/home/" not in text and "/tmp/" not in text, name
        assert "src =" not in text, f"{name} carries source locations"


@pytest.mark.slow
def test_rtl_is_byte_stable(generated):
    """Generating twice in one process gives the same bytes (a second generation costs tens
    of seconds; the default tier's freshness test already compares a new generation with
    the committed files of an earlier run)."""
    assert rtl_files() == generated
