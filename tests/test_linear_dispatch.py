"""lowprec.linear is one entry point for int8, bfloat16 and int4 packed weights."""

import numpy as np
import pytest

import lowprec


def test_linear_forwards_bf16_and_int4_weights_to_their_products():
    rng = np.random.default_rng(5)
    w = rng.standard_normal((24, 64), dtype=np.float32)
    x = rng.standard_normal((3, 64), dtype=np.float32)
    for pw in (lowprec.pack_weights_bf16(w), lowprec.pack_weights_int4(w, group_size=32)):
        np.testing.assert_array_equal(lowprec.linear(x, pw), pw.linear(x))
        with pytest.raises(ValueError, match="int8 weights only"):
            lowprec.linear(x, pw, relu=True)


def test_linear_forwards_int8_activations_to_int4_weights_only():
    rng = np.random.default_rng(6)
    w = rng.standard_normal((24, 64), dtype=np.float32)
    x = rng.standard_normal((3, 64), dtype=np.float32)
    p4 = lowprec.pack_weights_int4(w, group_size=32)
    np.testing.assert_array_equal(lowprec.linear(x, p4, activations="int8"),
                                  p4.linear(x, activations="int8"))
    for pw in (lowprec.pack_weights_bf16(w), lowprec.pack_weights(w)):
        lowprec.linear(x, pw)  # (the int8 weight's fast path is taken from the 2nd call on)
        with pytest.raises(ValueError, match="int4 weights only"):
            lowprec.linear(x, pw, activations="int8")
