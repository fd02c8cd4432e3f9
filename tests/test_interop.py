"""Transcripts from where users keep them: Parquet (ours and Hugging Face chat), inspect_ai logs,
and ``latentcode export`` back to Parquet."""

import json

import pytest

from latentcode.cli import main
from latentcode.formats import file_format
from latentcode.transcripts import Transcript, TranscriptError, read_transcripts, write_transcripts

pa = pytest.importorskip("pyarrow", reason="pyarrow is a core dependency")
pq = pytest.importorskip("pyarrow.parquet")


def _scored():
    return [
        Transcript(id="a", prompt="Say hi.", text="Hi there!", label=0, source="clean",
                   meta={"n_tokens": 3, "nested": {"k": [1, 2]}}, scores={"tail": 0.25}),
        Transcript(id="b", prompt="Say bye.", text="Bye, caf\u00e9 friend.", label=1,
                   payload="0101", source="huffman", meta={}, scores={"tail": 1.5, "tfidf": 0.9},
                   extra={"split": "test"}),
        Transcript(id="c", prompt="", text="No label here.", meta={"x": None}),
    ]


def test_export_writes_parquet_that_reads_back_into_the_same_transcripts(tmp_path, capsys):
    write_transcripts(tmp_path / "scored.jsonl", _scored())
    out = tmp_path / "scored.parquet"
    assert main(["export", str(tmp_path / "scored.jsonl"), "--out", str(out)]) == 0
    assert "scores.tail, scores.tfidf" in capsys.readouterr().out
    table = pq.read_table(out)
    assert table.column_names == ["id", "prompt", "text", "label", "payload", "source", "meta",
                                  "extra", "scores.tail", "scores.tfidf"]
    df = table.to_pandas()  # what a pandas user gets: one float column per detector
    assert df["scores.tail"].tolist()[:2] == [0.25, 1.5]
    assert df["scores.tail"].isna().tolist() == [False, False, True]
    assert df["scores.tfidf"].isna().tolist() == [True, False, True]
    back = read_transcripts(out)
    assert [t.to_dict() for t in back] == [t.to_dict() for t in _scored()]
    assert not list(tmp_path.glob(".*tmp"))  # nothing half-written left beside it


def test_hugging_face_chat_parquet_is_read_with_the_chat_mapping(tmp_path):
    rows = [{"messages": [{"role": "system", "content": "Be brief."},
                          {"role": "user", "content": "Name a colour."},
                          {"role": "assistant", "content": "Teal."}], "label": 1},
            {"messages": [{"role": "user", "content": "Count to two."},
                          {"role": "assistant", "content": "One, two."}], "label": 0}]
    path = tmp_path / "chat.parquet"
    pq.write_table(pa.Table.from_pylist(rows), path)
    got = read_transcripts(path)
    assert [(t.id, t.prompt, t.text, t.label) for t in got] == [
        ("chat-1", "Name a colour.", "Teal.", 1), ("chat-2", "Count to two.", "One, two.", 0)]
    assert got[0].meta["context"][0] == {"role": "system", "content": "Be brief."}


def test_a_chat_parquet_dataset_is_scored_and_reported(tmp_path):
    """A labelled chat dataset saved as Parquet goes through detect and report like JSONL."""
    def rows(label, word, n, offset):
        return [{"id": f"r{offset + i}", "label": label,
                 "messages": [{"role": "user", "content": f"Question {offset + i}?"},
                              {"role": "assistant",
                               "content": f"Answer {i} {word} " + "plain words " * (i % 3)}]}
                for i in range(n)]

    train, test = tmp_path / "train.parquet", tmp_path / "test.parquet"
    pq.write_table(pa.Table.from_pylist(rows(0, "calm", 20, 0) + rows(1, "zebra", 20, 100)), train)
    pq.write_table(pa.Table.from_pylist(rows(0, "calm", 10, 200) + rows(1, "zebra", 10, 300)), test)
    out = tmp_path / "scored.parquet"
    assert main(["detect", str(test), "--detectors", "tfidf", "--train", str(train),
                 "--out", str(tmp_path / "scored.jsonl")]) == 0
    assert main(["export", str(tmp_path / "scored.jsonl"), "--out", str(out)]) == 0
    df = pq.read_table(out).to_pandas()
    assert df.groupby("label")["scores.tfidf"].mean()[1] > df.groupby("label")["scores.tfidf"].mean()[0]
    assert main(["report", str(out), "--out", str(tmp_path / "report"), "--n-bootstrap", "50"]) == 0
    assert "tfidf" in (tmp_path / "report" / "metrics.json").read_text()


def test_parquet_problems_name_file_row_and_field(tmp_path):
    rows = [{"messages": [{"role": "user", "content": "Hi"},
                          {"role": "assistant", "content": "Hello"}], "meta": "{}"},
            {"messages": [{"role": "user", "content": "Only a question"}], "meta": "{}"},
            {"messages": [{"role": "user", "content": "x"},
                          {"role": "assistant", "content": "y"}], "meta": "{not json"}]
    path = tmp_path / "bad.parquet"
    pq.write_table(pa.Table.from_pylist(rows), path)
    with pytest.raises(TranscriptError) as err:
        read_transcripts(path)
    text = str(err.value)
    assert f"{path}:2: messages: has no assistant message" in text
    assert f"{path}:3: meta: is text but not JSON" in text
    (tmp_path / "junk.parquet").write_bytes(b"not parquet at all")
    with pytest.raises(TranscriptError, match="not a readable Parquet file"):
        read_transcripts(tmp_path / "junk.parquet")


def _inspect_log(tmp_path, texts, metadata):
    """A real inspect_ai evaluation on its mock model, written where the test says."""
    from inspect_ai import Task, eval
    from inspect_ai.dataset import Sample
    from inspect_ai.model import ModelOutput, ModelUsage, get_model
    from inspect_ai.solver import generate

    def output(text):
        out = ModelOutput.from_content(model="mockllm/model", content=text)
        # usage given: the mock model would otherwise count tokens with a downloaded tokenizer
        out.usage = ModelUsage(input_tokens=4, output_tokens=4, total_tokens=8)
        return out

    model = get_model("mockllm/model", custom_outputs=[output(t) for t in texts])
    task = Task(name="hide-bits",
                dataset=[Sample(id=f"q{i}", input=f"Question {i}?", metadata=m)
                         for i, m in enumerate(metadata)],
                solver=generate())
    [log] = eval(task, model=model, log_dir=str(tmp_path / "logs"), display="none",
                 max_samples=1)
    assert log.status == "success"
    return log.location


def test_inspect_log_reads_scores_and_reports(tmp_path):
    pytest.importorskip("inspect_ai", reason="latentcode[inspect] is installed by make")
    texts = ["The first answer.", "A second, longer answer here.", "Third."]
    location = _inspect_log(tmp_path, texts, [{"label": 0}, {"label": 1, "payload": "01"},
                                              {"label": 0, "topic": "misc"}])
    assert file_format(location) == "inspect"
    got = read_transcripts(location)
    assert sorted((t.id, t.prompt, t.text, t.label, t.payload) for t in got) == [
        ("q0", "Question 0?", texts[0], 0, None), ("q1", "Question 1?", texts[1], 1, "01"),
        ("q2", "Question 2?", texts[2], 0, None)]
    q2 = next(t for t in got if t.id == "q2")
    assert q2.source == "hide-bits" and q2.meta["topic"] == "misc"
    assert q2.meta["inspect"]["model"] == "mockllm/model"
    # the CLI scores it and reports on it like any transcript file
    scored = tmp_path / "scored.jsonl"
    assert main(["detect", location, "--detectors", "tfidf", "--train", location,
                 "--allow-overlap", "--out", str(scored)]) == 0
    assert all("tfidf" in t.scores for t in read_transcripts(scored))
    assert main(["report", str(scored), "--out", str(tmp_path / "report"),
                 "--n-bootstrap", "50"]) == 0
    metrics = json.loads((tmp_path / "report" / "metrics.json").read_text())
    assert "tfidf" in json.dumps(metrics)


def test_inspect_sample_without_an_answer_is_a_located_error(tmp_path):
    pytest.importorskip("inspect_ai")
    location = _inspect_log(tmp_path, ["Fine.", "   "], [{}, {}])
    with pytest.raises(TranscriptError) as err:
        read_transcripts(location)
    assert f"{location}:2: messages: sample 'q1' (epoch 1) has no assistant text" in str(err.value)


def test_a_missing_extra_is_named(tmp_path, monkeypatch, capsys):
    import builtins

    real_import = builtins.__import__

    def no_inspect(name, *args, **kwargs):
        if name == "ray" or name.startswith(("inspect_ai", "ray.")):
            raise ImportError(f"No module named {name!r}")
        return real_import(name, *args, **kwargs)

    log = tmp_path / "run.eval"
    log.write_bytes(b"PK")
    write_transcripts(tmp_path / "t.jsonl", _scored())
    monkeypatch.setattr(builtins, "__import__", no_inspect)
    assert main(["validate", str(log)]) == 2
    assert "latentcode[inspect]" in capsys.readouterr().err
    assert main(["detect", str(tmp_path / "t.jsonl"), "--detectors", "tfidf", "--train",
                 str(tmp_path / "t.jsonl"), "--engine", "ray", "--out",
                 str(tmp_path / "o.jsonl")]) == 2
    assert "latentcode[scale]" in capsys.readouterr().err
    assert not (tmp_path / "o.jsonl").exists()
