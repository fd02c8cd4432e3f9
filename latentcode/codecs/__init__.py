"""Reference steganography codecs with a shared key and an exact decoder.

Each codec is one module; :data:`CODECS` maps names to classes so that a config, the CLI or a
report can rebuild a codec from its name and parameters.
"""

from .arithmetic import Arithmetic
from .base import Codec, CodecError, DecodeResult, token_table
from .discop import Discop
from .huffman import Huffman
from .meteor import Meteor
from .null import NullCodec
from .sparsamp import SparSamp

CODECS: dict[str, type[Codec]] = {cls.name: cls for cls in (Huffman, Arithmetic, Meteor, Discop, SparSamp)}
# ``null``: the codecs' sampling pipeline with nothing hidden, the control for distortion
# measurements; kept out of CODECS because it has no decoder.


def make_codec(name: str, **params) -> Codec:
    if name not in CODECS:
        raise CodecError(f"unknown codec {name!r}; choose from {', '.join(sorted(CODECS))}")
    return CODECS[name](**params)


__all__ = ["CODECS", "Codec", "CodecError", "DecodeResult", "NullCodec", "make_codec", "token_table"]
