import io
import json

import pytest

from edge_agent.errors import TraceError
from edge_agent.trace import NumberMasker, TraceReader, TraceWriter, read_trace


def test_writer_writes_the_contract_format() -> None:
    out = io.StringIO()
    TraceWriter(out).write({"Event": "Hangup", "Cause": "16"}, received_at=1795685370.977443)
    assert json.loads(out.getvalue()) == {"Event": "Hangup", "Cause": "16", "_ts": 1795685370.977443}


def test_reader_skips_bad_lines_and_reports_them() -> None:
    lines = ['{"Event": "Hangup", "_ts": 12.5}\n', "not json\n", "[1, 2]\n", "\n", '{"Event": "X", "N": 3}\n']
    reader = TraceReader(iter(lines), source="t.jsonl")
    assert list(reader) == [{"Event": "Hangup", "_ts": "12.5"}, {"Event": "X", "N": "3"}]
    assert reader.errors == ["t.jsonl:2: not JSON (Expecting value)", "t.jsonl:3: not a JSON object"]


def test_read_trace_missing_file_is_a_trace_error(tmp_path: object) -> None:
    with pytest.raises(TraceError, match="cannot read trace"):
        read_trace("/nonexistent/trace.jsonl")


def test_masking_is_consistent_and_keeps_ids() -> None:
    masker = NumberMasker(salt=b"fixed")
    message = {
        "Event": "Newchannel",
        "Channel": "PJSIP/carrier-00000010",
        "CallerIDNum": "+79261234567",
        "Exten": "74951234567",
        "Uniqueid": "pbx-1795685370.0",
        "Linkedid": "1795685370.12",
        "AppData": "/spool/in-74951234567-79261234567-20261126-pbx-1795685370.0.wav",
        "CallerIDName": "101",
    }
    masked = masker.mask_message(message)
    assert masked["Uniqueid"] == message["Uniqueid"] and masked["Linkedid"] == message["Linkedid"]
    assert masked["Channel"] == message["Channel"] and masked["CallerIDName"] == "101"
    assert masked["CallerIDNum"] != message["CallerIDNum"]
    assert masked["CallerIDNum"].startswith("+7926") and len(masked["CallerIDNum"]) == len("+79261234567")
    assert masked["Exten"] != "74951234567" and masked["Exten"] in masked["AppData"]
    assert "pbx-1795685370.0.wav" in masked["AppData"]
    assert masker.mask_message(message) == masked  # same number, same stand-in


def test_different_salts_give_different_masks() -> None:
    assert NumberMasker(b"a").mask_number("79261234567") != NumberMasker(b"b").mask_number("79261234567")
