"""The committed ``rtl/`` folder is exactly what the gateware generates today."""

from pathlib import Path

from hetnic.rtl import rtl_files

RTL = Path(__file__).resolve().parents[2] / "rtl"


def test_committed_rtl_is_current():
    stale = []
    for name, text in rtl_files().items():
        path = RTL / name
        if not path.exists() or path.read_text() != text:
            stale.append(name)
    assert not stale, f"rtl/ is stale: {stale}; run 'hetnic verilog' and commit the result"
    extra = sorted({p.name for p in RTL.iterdir()} - set(rtl_files()))
    assert not extra, f"rtl/ holds files the gateware no longer generates: {extra}"


def test_rtl_is_byte_stable():
    """No absolute paths, dates or source locations: generating twice gives the same bytes."""
    a, b = rtl_files(), rtl_files()
    assert a == b
    for name, text in a.items():
        assert "/work/" not in text and "/home/" not in text and "/tmp/" not in text, name
        assert "src =" not in text, f"{name} carries source locations"
