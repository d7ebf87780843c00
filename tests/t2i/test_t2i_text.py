"""The text encoder: the closed vocabulary, tokenizing, output shapes, determinism and padding."""

import pytest
import torch

from rss_world.compbench import all_prompts
from rss_world.t2i import TextEncoder, TextEncoderConfig, tokenize, vocabulary
from rss_world.t2i.text import max_words


def test_vocabulary_covers_every_prompt():
    vocab = set(vocabulary())
    assert vocabulary()[:2] == ("<pad>", "<null>")
    assert all(set(p.text.split()) <= vocab for p in all_prompts())
    assert max_words() <= TextEncoderConfig().max_len


def test_tokenize_pads_and_marks_the_empty_prompt():
    ids = tokenize(["a red circle", ""], 8)
    assert ids.shape == (2, 8) and ids.dtype == torch.long
    assert (ids[0, 3:] == 0).all() and (ids[0, :3] > 1).all()
    assert ids[1, 0] == 1 and (ids[1, 1:] == 0).all()


@pytest.mark.parametrize("texts, match", [(["a purple circle"], "vocabulary"), (["a " * 9], "words"),
                                          ("a circle", "list")])
def test_tokenize_refuses_bad_prompts(texts, match):
    with pytest.raises(ValueError, match=match):
        tokenize(texts, 8)


def test_config_checks():
    with pytest.raises(ValueError, match="divisible"):
        TextEncoder(TextEncoderConfig(width=10, heads=4))
    with pytest.raises(ValueError, match="longest prompt"):
        TextEncoder(TextEncoderConfig(max_len=3))


def test_shapes_determinism_and_padding():
    torch.manual_seed(0)
    enc = TextEncoder(TextEncoderConfig(width=32, layers=2, heads=4, out_dim=24, pooled_dim=12)).eval()
    texts = ["a red circle and a blue square", "two triangles", ""]
    states, pooled = enc.encode(texts)
    assert states.shape == (3, 8, 24) and pooled.shape == (3, 12)
    again = enc.encode(texts)
    assert torch.equal(states, again[0]) and torch.equal(pooled, again[1])
    assert (states[1, 2:] == 0).all() and (states[1, :2] != 0).any()  # pads are zeros
    alone = enc.encode(["two triangles"])  # a prompt's encoding does not depend on the rest of the batch
    torch.testing.assert_close(alone[0][0], states[1])
    torch.testing.assert_close(alone[1][0], pooled[1])
    assert not torch.allclose(pooled[0], pooled[1])
    with pytest.raises(ValueError, match="at least one token"):
        enc(torch.zeros(1, 8, dtype=torch.long))
