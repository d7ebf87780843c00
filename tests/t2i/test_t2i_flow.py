"""The flow-matching conventions, checked against an oracle that knows the clean image: the loss's noising and
timestep scale agree with the sampler's, for velocity and x-prediction, with and without guidance."""

from types import SimpleNamespace

import pytest
import torch
from torch import nn

from rss_world.variants.sd3_base import MIN_SIGMA, flow_loss, flow_scheduler, sample, velocity


class Oracle(nn.Module):
    """Stands in for the SD3 transformer: reads σ from the timestep (``t = 1000 σ``) and answers exactly for ``x0``.

    For ``velocity`` it returns ``(x_t - x_0) / σ`` (= ``ε - x_0`` on the training path); for ``sample``, ``x_0``.
    Text is ignored, so guidance of any scale must leave the answer unchanged.
    """

    def __init__(self, x0: torch.Tensor, prediction: str) -> None:
        super().__init__()
        self.x0, self.prediction = x0, prediction
        self.config = SimpleNamespace(out_channels=x0.shape[1], sample_size=x0.shape[-1])

    def forward(self, hidden_states, timestep, encoder_hidden_states, pooled_projections):
        assert timestep.shape == (hidden_states.shape[0],) and encoder_hidden_states.shape[0] == timestep.shape[0]
        assert pooled_projections.shape[0] == timestep.shape[0]
        x0 = self.x0.repeat(hidden_states.shape[0] // self.x0.shape[0], 1, 1, 1)
        sigma = (timestep.float() / 1000)[:, None, None, None]
        out = x0 if self.prediction == "sample" else (hidden_states - x0) / sigma
        return SimpleNamespace(sample=out)


def clean_images(b: int = 3) -> torch.Tensor:
    torch.manual_seed(0)
    return torch.rand(b, 3, 8, 8) * 2 - 1  # (B, 3, 8, 8) in [-1, 1]


@pytest.mark.parametrize("prediction", ["velocity", "sample"])
def test_oracle_has_zero_loss(prediction):
    x0 = clean_images()
    text, pooled = torch.zeros(3, 2, 4), torch.zeros(3, 4)
    torch.manual_seed(1)
    loss = flow_loss(Oracle(x0, prediction), flow_scheduler(1.0), x0, text, pooled, "logit_normal", prediction)
    assert loss.item() < 1e-8  # a wrong timestep scale, noising direction or target sign gives O(1)


@pytest.mark.parametrize("prediction", ["velocity", "sample"])
@pytest.mark.parametrize("guidance", [1.0, 3.0])
def test_sampler_reaches_the_oracles_image(prediction, guidance):
    x0 = clean_images()
    text, pooled = torch.zeros(3, 2, 4), torch.zeros(3, 4)
    null = (torch.zeros(1, 2, 4), torch.zeros(1, 4))
    x = sample(Oracle(x0, prediction), text, pooled, shift=1.0, prediction=prediction, steps=5, guidance=guidance,
               null_embeds=null, generator=torch.Generator().manual_seed(0))
    assert torch.allclose(x, x0, atol=1e-4)  # Euler on an exact straight-line velocity lands on x0


def test_velocity_of_an_x_prediction():
    xt, x0, sigma = torch.ones(1, 1, 2, 2), torch.zeros(1, 1, 2, 2), torch.tensor(0.5)
    assert torch.allclose(velocity(x0, xt, sigma, "sample"), torch.full_like(xt, 2.0))
    assert torch.allclose(velocity(x0, xt, torch.tensor(0.0), "sample", MIN_SIGMA), torch.full_like(xt, 20.0))
    assert velocity(x0, xt, sigma, "velocity") is x0
    with pytest.raises(ValueError, match="prediction"):
        velocity(x0, xt, sigma, "epsilon")
