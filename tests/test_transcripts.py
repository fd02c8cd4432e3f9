import json

import pytest

from latentcode.cli import main
from latentcode.jsonl import atomic_open
from latentcode.transcripts import Transcript, TranscriptError, read_transcripts, write_transcripts

GOOD = {"id": "a", "prompt": "Say hi.", "text": "Hi there!", "label": 1, "payload": "0110",
        "source": "arithmetic", "meta": {"bits": 4}, "scores": {"ppl": 1.5}}


def write_lines(path, lines):
    with open(path, "wb") as f:
        f.writelines((line if isinstance(line, bytes) else json.dumps(line).encode()) + b"\n" for line in lines)
    return path


def errors_of(path, **kw):
    with pytest.raises(TranscriptError) as info:
        read_transcripts(path, **kw)
    return info.value.errors


def test_round_trip_keeps_every_field_and_unknown_ones(tmp_path):
    extra = {**GOOD, "id": "b", "model_version": "v2"}
    src = write_lines(tmp_path / "in.jsonl", [GOOD, extra])
    ts = read_transcripts(src)
    assert ts[0] == Transcript(**{k: v for k, v in GOOD.items()})
    assert ts[1].extra == {"model_version": "v2"}
    write_transcripts(tmp_path / "out.jsonl", ts)
    back = [json.loads(line) for line in (tmp_path / "out.jsonl").read_text().splitlines()]
    assert back[0] == GOOD
    assert back[1]["model_version"] == "v2"


def test_optional_fields_default_and_ids_are_derived(tmp_path):
    src = write_lines(tmp_path / "plain.jsonl", [{"text": "only text"}, {"text": "more", "id": 7}])
    a, b = read_transcripts(src)
    assert (a.id, a.prompt, a.label, a.payload, a.scores) == ("plain-1", "", None, None, {})
    assert b.id == "7"


@pytest.mark.parametrize("record, field, fragment", [
    ({**GOOD, "payload": "01x1"}, "payload", "string of 0 and 1"),
    ({**GOOD, "payload": ""}, "payload", "string of 0 and 1"),
    ({**GOOD, "label": 2}, "label", "must be 0"),
    ({**GOOD, "label": True}, "label", "must be 0"),
    ({**GOOD, "label": "1"}, "label", "must be 0"),
    ({**GOOD, "text": ""}, "text", "empty"),
    ({**GOOD, "text": "   \n"}, "text", "empty"),
    ({**GOOD, "text": 5}, "text", "must be a string"),
    ({k: v for k, v in GOOD.items() if k != "text"}, "text", "missing"),
    ({**GOOD, "label": 0}, "payload", "label is 0"),
    ({**GOOD, "meta": [1]}, "meta", "must be an object"),
    ({**GOOD, "scores": {"x": "high"}}, "scores.x", "must be a number"),
    ({**GOOD, "id": ""}, "id", "non-empty"),
    ({**GOOD, "source": ""}, "source", "non-empty"),
])
def test_each_bad_field_is_located(tmp_path, record, field, fragment):
    src = write_lines(tmp_path / "bad.jsonl", [{**GOOD, "id": "ok"}, record])
    (err,) = errors_of(src)
    assert (err.file, err.line, err.field) == (str(src), 2, field)
    assert fragment in err.message
    assert str(err).startswith(f"{src}:2: {field}: ")


def test_non_finite_scores_are_refused(tmp_path):
    src = tmp_path / "nan.jsonl"
    src.write_text('{"id": "a", "text": "t", "scores": {"d": NaN}}\n'
                   '{"id": "b", "text": "t", "scores": {"d": Infinity}}\n')
    errs = errors_of(src)
    assert [(e.line, e.field) for e in errs] == [(1, "scores.d"), (2, "scores.d")]
    assert all("finite" in e.message for e in errs)


def test_duplicate_ids_within_and_across_files(tmp_path):
    one = write_lines(tmp_path / "one.jsonl", [GOOD, {**GOOD, "text": "again"}])
    errs = errors_of(one)
    assert [(e.line, e.field) for e in errs] == [(2, "id")]
    assert "first seen at" in errs[0].message and f"{one}:1" in errs[0].message
    two = write_lines(tmp_path / "two.jsonl", [{**GOOD, "id": "z"}])
    three = write_lines(tmp_path / "three.jsonl", [{**GOOD, "id": "z"}])
    (err,) = errors_of([two, three])
    assert err.file == str(three) and err.field == "id"


def test_every_error_is_reported_at_once(tmp_path):
    src = write_lines(tmp_path / "many.jsonl", [
        GOOD,
        b"{not json",
        {**GOOD, "id": "c", "label": 5, "payload": "2"},
        b"[1, 2]",
        b"",
        {**GOOD, "id": "d", "text": ""},
    ])
    errs = errors_of(src)
    assert [(e.line, e.field) for e in errs] == [
        (2, "(line)"), (3, "label"), (3, "payload"), (4, "(line)"), (6, "text")]
    message = str(TranscriptError(errs))
    assert message.startswith("5 problem(s) in transcripts")
    assert all(str(e) in message for e in errs)


def test_invalid_utf8_is_located(tmp_path):
    src = write_lines(tmp_path / "latin1.jsonl", [GOOD, '{"id": "x", "text": "caf\xe9"}'.encode("latin-1")])
    (err,) = errors_of(src)
    assert (err.line, err.field) == (2, "(line)") and "UTF-8" in err.message


def test_ten_megabyte_line_is_refused_without_losing_the_rest(tmp_path):
    huge = {"id": "huge", "text": "x" * (10 * 1024 * 1024)}
    src = write_lines(tmp_path / "huge.jsonl", [GOOD, huge, {**GOOD, "id": "after", "label": 9}])
    errs = errors_of(src)
    assert [(e.line, e.field) for e in errs] == [(2, "(line)"), (3, "label")]
    assert "over the limit" in errs[0].message and "10,485," in errs[0].message


def test_ten_megabyte_line_is_read_when_the_limit_allows(tmp_path):
    huge = {"id": "huge", "text": "x" * (10 * 1024 * 1024)}
    src = write_lines(tmp_path / "huge.jsonl", [GOOD, huge])
    assert len(read_transcripts(src, max_line_bytes=11 * 1024 * 1024)[1].text) == 10 * 1024 * 1024


def test_missing_and_empty_files(tmp_path):
    (err,) = errors_of(tmp_path / "absent.jsonl")
    assert err.field == "(file)" and "not found" in err.message
    (tmp_path / "empty.jsonl").write_text("\n\n")
    (err,) = errors_of(tmp_path / "empty.jsonl")
    assert "no transcripts" in err.message


def test_chat_form(tmp_path):
    chat = {"id": "c1", "label": 0, "messages": [
        {"role": "system", "content": "You are kind."},
        {"role": "user", "content": "Review a lamp."},
        {"role": "assistant", "content": "A fine lamp."}]}
    multi = {"messages": [
        {"role": "user", "content": "Hi"}, {"role": "assistant", "content": "Hello"},
        {"role": "user", "content": [{"type": "text", "text": "Tell a story."}]},
        {"role": "assistant", "content": [{"type": "text", "text": "Once upon a time."}]}]}
    src = write_lines(tmp_path / "chat.jsonl", [chat, multi])
    a, b = read_transcripts(src)
    assert (a.id, a.prompt, a.text, a.label) == ("c1", "Review a lamp.", "A fine lamp.", 0)
    assert a.meta["context"][0] == {"role": "system", "content": "You are kind."}
    assert (b.prompt, b.text) == ("Tell a story.", "Once upon a time.")
    assert len(b.meta["context"]) == 3


def test_bad_chat_form_is_located(tmp_path):
    src = write_lines(tmp_path / "chat.jsonl", [
        {"messages": [{"role": "user", "content": "only a question"}]},
        {"messages": [{"role": "user"}, {"role": "assistant", "content": "x"}]},
        {"messages": []},
    ])
    errs = errors_of(src)
    assert [(e.line, e.field) for e in errs] == [
        (1, "messages"), (2, "messages[0].content"), (3, "messages")]
    assert "no assistant message" in errs[0].message


def test_write_is_atomic(tmp_path):
    target = tmp_path / "out.jsonl"
    write_transcripts(target, [Transcript(id="old", text="old text")])
    before = target.read_bytes()
    with pytest.raises(RuntimeError), atomic_open(target) as f:
        f.write("partial line")
        raise RuntimeError("crash mid-write")
    assert target.read_bytes() == before
    assert [p.name for p in tmp_path.iterdir()] == ["out.jsonl"]


def test_writer_refuses_duplicates_and_constructor_validates(tmp_path):
    with pytest.raises(ValueError, match="duplicate"):
        write_transcripts(tmp_path / "x.jsonl", [Transcript("a", "t"), Transcript("a", "u")])
    assert not (tmp_path / "x.jsonl").exists()
    with pytest.raises(ValueError, match="payload"):
        Transcript(id="a", text="t", payload="abc")


def test_validate_command_lists_all_problems_and_exits_2(tmp_path, capsys):
    src = write_lines(tmp_path / "bad.jsonl", [GOOD, {**GOOD, "id": "b", "label": 3},
                                                {**GOOD, "id": "c", "payload": "x"}])
    assert main(["validate", str(src)]) == 2
    err = capsys.readouterr().err
    assert f"{src}:2: label:" in err and f"{src}:3: payload:" in err
    assert "nothing was written" in err


def test_validate_command_summarises_good_files(tmp_path, capsys):
    src = write_lines(tmp_path / "ok.jsonl", [GOOD, {**GOOD, "id": "b", "label": 0, "payload": None,
                                                      "source": "clean"}])
    assert main(["validate", str(src)]) == 0
    out = capsys.readouterr().out
    assert "2 transcripts OK" in out and "arithmetic" in out and "ppl (2)" in out
