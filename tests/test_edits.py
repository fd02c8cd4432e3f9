"""Post-hoc text edits (latentcode.edits) and the vocabulary-bins codec: each code reads back."""

import numpy as np
import pytest

from latentcode.codecs import make_codec
from latentcode.edits import EDITS, make_edit
from latentcode.transcripts import Transcript

CLEAN = Transcript(id="c-1", prompt="Tell me about rivers.",
                   text="Rivers are big and often quick. People use them to make a way "
                        "through the world, and also to get water. Maybe that is enough.",
                   label=0, meta={"n_tokens": 30})
KEY = b"edit key"


@pytest.mark.parametrize("name", sorted(EDITS))
def test_each_edit_reads_back_what_it_wrote_and_changes_the_text(name):
    edit = make_edit(name)
    slots = edit.slots(CLEAN.text)
    assert len(slots) >= 5, "the sample text offers each edit several places"
    payload = "1011001110001011"
    stego = edit.write(CLEAN, payload, KEY)
    expected = "".join(payload[i % len(payload)] for i in range(len(slots)))
    assert stego.meta["edit_bits"] == expected and stego.label == 1
    assert edit.read(stego, KEY) == expected
    assert stego.text != CLEAN.text
    # a wrong key reads noise, not the payload
    assert edit.read(stego, b"other") != expected
    # the visible words survive every edit but the thesaurus one
    if name != "synonym":
        strip = {ord("\u200b"): None}
        from latentcode.edits import HOMOGLYPHS
        back = {ord(v): k for k, v in HOMOGLYPHS.items()}
        assert " ".join(stego.text.translate(strip).translate(back).split()) == CLEAN.text


def test_the_synonym_edit_keeps_capitals_and_uses_only_its_pairs():
    edit = make_edit("synonym")
    stego = edit.write(CLEAN, "1" * 64, KEY)
    words = stego.text.split()
    assert words[0] == "Rivers" and words[-4] in ("Maybe", "Perhaps")
    assert len(words) == len(CLEAN.text.split())


def test_unknown_edit_is_refused_with_the_choices():
    with pytest.raises(ValueError, match="whitespace"):
        make_edit("emoji")


def test_bins_embeds_on_every_kth_step_only_and_records_its_distortion(tiny):
    tiny.model.double()
    try:
        every1 = make_codec("bins", bits=2).encode(tiny, ["Say something."], ["1" * 200], KEY,
                                                   max_new_tokens=20)[0]
        every3 = make_codec("bins", bits=2, every=3).encode(tiny, ["Say something."], ["1" * 200],
                                                            KEY, max_new_tokens=20)[0]
    finally:
        tiny.model.float()
    assert every1.meta["bits_embedded"] == 40  # two bits on each of 20 steps
    assert every3.meta["bits_embedded"] == 2 * len(range(0, 20, 3))
    assert every1.meta["kl_nats"] > 0 and every3.meta["kl_nats"] < every1.meta["kl_nats"]


def test_bins_split_the_vocabulary_by_key_evenly():
    from latentcode.codecs.bins import bin_of_tokens

    a, b = bin_of_tokens(b"k1", 49152, 3), bin_of_tokens(b"k2", 49152, 3)
    counts = np.bincount(a, minlength=8)
    assert counts.min() > 49152 / 8 * 0.9 and np.mean(a == b) < 0.2


def test_bins_restricted_to_sentence_starts_embed_only_after_a_sentence_ends(tiny):
    from latentcode.codecs.state import RowState

    codec = make_codec("bins", bits=4, where="sentence")
    p = np.full(4096, 1 / 4096)
    assert codec._masses(p, RowState(KEY, "n")) is not None  # the text's first token
    assert codec._masses(p, RowState(KEY, "n", extra={"end": b"."})) is not None
    assert codec._masses(p, RowState(KEY, "n", extra={"end": b"\n"})) is not None
    assert codec._masses(p, RowState(KEY, "n", extra={"end": b"a"})) is None
    assert codec._after(b"end. ", RowState(KEY, "n")) == {"end": b"."}
    assert codec._after(b"  ", RowState(KEY, "n", extra={"end": b"?"})) == {"end": b"?"}
    tiny.model.double()
    try:
        t = codec.encode(tiny, ["Say something."], ["1" * 200], KEY, max_new_tokens=20)[0]
    finally:
        tiny.model.float()
    assert t.meta["bits_embedded"] % 4 == 0 and 4 <= t.meta["bits_embedded"] < 4 * 20


def test_bins_read_back_from_each_token_the_bits_the_sender_wrote_into_it():
    """Sender and receiver agree token by token: the receiver's option for the token the sender
    chose carries exactly the channel bits the sender read."""
    from latentcode.codecs.bins import bin_of_tokens
    from latentcode.codecs.framing import ChannelBits
    from latentcode.codecs.state import RowState

    class OneToken:  # a token table whose text at the cursor is one known token
        def __init__(self, token):
            self.token = token
            self.bytes = {token: b"x"}

        def prefixes_of(self, text, cursor):
            return [self.token]

    codec = make_codec("bins", bits=3)
    p = np.random.default_rng(0).dirichlet(np.ones(4096))
    for step in range(20):
        sender = RowState(KEY, "n", channel=ChannelBits("1100101" * 9, KEY, "n"), frame_len=63,
                          sent=3 * step, step=step)
        wrote = sender.channel.take(3 * step, 3)
        token = codec._choose(p, sender)
        assert int(bin_of_tokens(KEY, 4096, 3)[token]) == int("".join(map(str, wrote)), 2)
        (option,) = codec.decode_step(p, RowState(KEY, "n", receiving=True, step=step),
                                      OneToken(token), b"x", 0)
        assert option[0] == token and option[1] == wrote
