"""The file-event window of ``hetnic events``: one event as a rich panel with the item, the
instruction, the result, the counters before -> after and the configuration diff."""

from rich.console import Console

from hetnic.cli.events import panel


def test_event_panel_shows_everything():
    event = {"seq": 3, "item": "rules", "path": "/etc/hetnic/rules.toml",
             "time": "2026-12-06T20:00:00+00:00", "instruction": "apply-rules",
             "result": "done", "counters": {"rule_hits[3]": [0, 12]},
             "diff": ["--- before", "+++ after", "+rule[3] = dst_port=53  # dns"]}
    console = Console(record=True, width=100)
    console.print(panel(event))
    text = console.export_text()
    for part in ("#3 rules /etc/hetnic/rules.toml", "apply-rules -> done", "rule_hits[3]",
                 "12", "+rule[3] = dst_port=53  # dns"):
        assert part in text
    refused = {**event, "result": "refused", "error": "rule 0: bad port", "counters": {},
               "diff": []}
    console = Console(record=True, width=100)
    console.print(panel(refused))
    text = console.export_text()
    assert "apply-rules -> refused" in text and "rule 0: bad port" in text
