"""The register table: one source for gateware, host and docs."""

import shutil
import subprocess

import pytest
from amaranth.lib import data

from hetnic.protocol import MS_RSS_DEFAULT_KEY, Rule
from hetnic.regs import REGISTERS, RULE_STRIDE, RULE_WORDS, RegisterMap


def test_rule_window_follows_the_rule_layout():
    assert RULE_WORDS == -(-data.Layout.cast(Rule).size // 32)
    assert RULE_WORDS * 4 <= RULE_STRIDE


@pytest.mark.parametrize("params", [
    {}, {"n_rules": 64, "reta_size": 2048, "queues": 256, "tx_queues": 64},
    {"n_rules": 1, "reta_size": 2, "queues": 1, "tx_queues": 1}])
def test_no_overlap_and_word_aligned(params):
    regmap = RegisterMap(**params)
    owner = {}
    for reg in regmap.present():
        for i in range(regmap.count(reg)):
            for w in range(reg.words):
                addr = regmap.addr(reg.name, i, w)
                assert addr not in owner, f"{reg.name} overlaps {owner.get(addr)}"
                owner[addr] = reg.name
    assert all(a % 4 == 0 for a in owner)
    assert max(owner) < 1 << 16, "the CSR window is 16 bits"


def test_bad_parameters_are_refused():
    with pytest.raises(ValueError, match="reta_size must be a power of two"):
        RegisterMap(reta_size=500)
    with pytest.raises(ValueError, match="queues must be an integer from 1 to 256"):
        RegisterMap(queues=300)
    with pytest.raises(ValueError, match="unknown register map parameter"):
        RegisterMap(colour="blue")


def test_addresses_and_resets():
    regmap = RegisterMap()
    assert regmap.addr("RULE", 2, 3) == regmap["RULE"].offset + 2 * RULE_STRIDE + 12
    with pytest.raises(IndexError):
        regmap.addr("RETA", 512)
    key = b"".join(regmap.reset_value("RSS_KEY", k).to_bytes(4, "big") for k in range(10))
    assert key == MS_RSS_DEFAULT_KEY
    assert regmap.ro_value("PARAMS1") == 512 | 64 << 16


def test_exports_name_every_register():
    regmap = RegisterMap(tx_queues=2)
    md, js, h = regmap.to_markdown(), regmap.to_json(), regmap.to_c_header()
    for reg in regmap.present():
        assert f"| {reg.name} |" in md
        assert f'"name": "{reg.name}"' in js
        assert f"#define HETNIC_{reg.name} 0x{reg.offset:04x}u" in h


@pytest.mark.skipif(shutil.which("cc") is None, reason="no C compiler")
def test_c_header_compiles(tmp_path):
    (tmp_path / "hetnic_regs.h").write_text(RegisterMap().to_c_header())
    (tmp_path / "t.c").write_text('#include "hetnic_regs.h"\n'
                                  "int main(void) { return HETNIC_ID != 0 ? 0 : 1; }\n")
    subprocess.run(["cc", "-Wall", "-Werror", "-fsyntax-only", str(tmp_path / "t.c")],
                   check=True, cwd=tmp_path)
