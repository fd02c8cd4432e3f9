"""Reference steganography codecs with a shared key and an exact decoder.

Each codec is one module; :data:`CODECS` maps names to classes so that a config, the CLI or a
report can rebuild a codec from its name and parameters.
"""

from .base import Codec, CodecError, DecodeResult, token_table
from .discop import Discop

CODECS: dict[str, type[Codec]] = {cls.name: cls for cls in (Discop,)}


def make_codec(name: str, **params) -> Codec:
    if name not in CODECS:
        raise CodecError(f"unknown codec {name!r}; choose from {', '.join(sorted(CODECS))}")
    return CODECS[name](**params)


__all__ = ["CODECS", "Codec", "CodecError", "DecodeResult", "make_codec", "token_table"]
