"""Making the sender's and the receiver's logits agree to the last bits.

Interval codecs (arithmetic, SparSamp, ...) need the receiver's next-token distribution to be
the sender's, bit for bit: the sender's rows sit in left-padded batches, the receiver reads one
row in chunks, and a probability that differs in its last bits moves a CDF boundary. Codecs
run the LM in float64, and :func:`exact_forward` removes the two places where a float64 model
still loses precision in a shape-dependent way:

- Hugging Face models cast to float32 inside RMSNorm (and some in softmax and rotary code), a
  habit for half-precision training. A float64 value near a float32 rounding boundary then
  rounds one way in a batch and the other way alone: a 1e-14 difference becomes 6e-8 and grows
  to ~1e-5 in the logits after 30 layers. Inside :func:`exact_forward` a cast from float64
  to float32 is a no-op.
- PyTorch sends an unpadded row to a fused attention kernel and a padded batch to the masked
  path; they differ by ~1e-6 in float64. Inside, attention always takes the reference
  ("math") kernel.

What remains are differences of ~1e-13 from other summation orders, which the logit grid of
:func:`latentcode.codecs.distributions.step_probs` absorbs.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

import torch
from torch.overrides import TorchFunctionMode


def _f64(x) -> bool:
    return isinstance(x, torch.Tensor) and x.dtype == torch.float64


class KeepFloat64(TorchFunctionMode):
    """Turn casts of float64 tensors to float32 into no-ops (``.to``, ``.float``, ``dtype=``)."""

    def __torch_function__(self, func, types, args=(), kwargs=None):
        kwargs = dict(kwargs or {})
        if args and _f64(args[0]):
            if func is torch.Tensor.float:
                return args[0]
            if kwargs.get("dtype") is torch.float32:
                kwargs["dtype"] = torch.float64
            if func is torch.Tensor.to:
                args = tuple(torch.float64 if a is torch.float32 else a for a in args)
        return func(*args, **kwargs)


@contextmanager
def exact_forward() -> Iterator[None]:
    """Model calls inside compute in float64 throughout, attention on the math kernel."""
    from torch.nn.attention import SDPBackend, sdpa_kernel

    with sdpa_kernel(SDPBackend.MATH), KeepFloat64():
        yield
