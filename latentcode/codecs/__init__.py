"""Reference steganography codecs with a shared key and an exact decoder.

Each codec is one module; :data:`CODECS` maps names to classes so that a config, the CLI or a
report can rebuild a codec from its name and parameters.
"""

from .arithmetic import Arithmetic
from .base import Codec, CodecError, DecodeResult, token_table
from .bins import Bins
from .discop import Discop
from .huffman import Huffman
from .meteor import Meteor
from .null import NullCodec
from .sparsamp import SparSamp
from .style import Style

CODECS: dict[str, type[Codec]] = {cls.name: cls for cls in (Huffman, Arithmetic, Meteor, Discop, SparSamp)}
# ``null``: the codecs' sampling pipeline with nothing hidden (label 0), the matched control for
# distortion measurements and detectors; kept out of CODECS because it has no decoder.
CONTROLS: dict[str, type[Codec]] = {NullCodec.name: NullCodec}
# variants made for the detectors' generalisation benchmark (``latentcode.generalization``):
# they decode, but every token of a bin carries bits, so on text the tokenizer reads in more
# than one way the receiver's search backtracks far more than the reference codecs' does;
# ``style`` hides bits in the register and format of the whole text, read by likelihood
VARIANTS: dict[str, type[Codec]] = {Bins.name: Bins, Style.name: Style}


def make_codec(name: str, **params) -> Codec:
    cls = CODECS.get(name) or CONTROLS.get(name) or VARIANTS.get(name)
    if cls is None:
        raise CodecError(f"unknown codec {name!r}; choose from {', '.join(sorted(CODECS | CONTROLS | VARIANTS))}")
    return cls(**params)


__all__ = ["CODECS", "CONTROLS", "VARIANTS", "Codec", "CodecError", "DecodeResult", "NullCodec", "make_codec", "token_table"]
