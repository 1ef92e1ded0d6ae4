"""The emulator: a ReLU RNN driven by Gaussian noise, read out through hard Gumbel-softmax.

h_t = ReLU(W_ih x_t + W_hh h_{t-1}), logits_t = W_out h_t, x_t ~ N(0, sigma^2 I). The first output is
read from h_1, i.e. after the first input (the research code read step 0 from h = 0, giving a uniformly
random first symbol). Parameter names match the study's state dicts (`rnn.weight_ih_l0`,
`rnn.weight_hh_l0`, `fc.weight`) so its saved models load unchanged.

The study's networks are bias-free, and several analyses rely on that (a bias-free ReLU map is
positively homogeneous, so h = 0 is a fixed point). Its config can nevertheless ask for biases
(`biased: [rnn_bias, fc_bias]`); such a model carries `rnn.bias_ih_l0`, `rnn.bias_hh_l0` and/or
`fc.bias`, loads, generates and evaluates like any other, and `has_bias` tells the analyses.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn

from hmmrnn.weights import (  # noqa: F401  (the state-dict layout, re-exported)
    FC_BIAS_KEY,
    RNN_BIAS_KEYS,
    STATE_KEYS,
    StateShape,
    check_state,
)


@dataclass
class RNNRun:
    """One batch of generated sequences: hidden (N, L, H), logits (N, L, K), outputs (N, L, K)."""

    hidden: torch.Tensor
    logits: torch.Tensor
    outputs: torch.Tensor

    @property
    def symbols(self) -> torch.Tensor:
        """Integer output per step, (N, L)."""
        return self.outputs.argmax(dim=-1)


def hard_gumbel_softmax(
    logits: torch.Tensor, tau: float = 1.0, generator: torch.Generator | None = None
) -> torch.Tensor:
    """One-hot samples of softmax(logits) whose gradient is that of the relaxed sample."""
    u = torch.rand(logits.shape, generator=generator, device=logits.device, dtype=logits.dtype)
    gumbel = -torch.log((-torch.log(u.clamp_min(1e-20))).clamp_min(1e-20))
    soft = torch.softmax((logits + gumbel) / tau, dim=-1)
    hard = torch.zeros_like(soft).scatter_(-1, soft.argmax(dim=-1, keepdim=True), 1.0)
    return hard - soft.detach() + soft


class HMMRNN(nn.Module):
    """Noise-driven RNN whose outputs should be statistically indistinguishable from an HMM's."""

    def __init__(
        self,
        input_size: int,
        hidden_size: int,
        output_size: int,
        tau: float = 1.0,
        *,
        rnn_bias: bool = False,
        fc_bias: bool = False,
    ):
        super().__init__()
        for name, value in (("input_size", input_size), ("hidden_size", hidden_size)):
            if value < 1:
                raise ValueError(f"{name} must be >= 1, got {value}")
        if output_size < 2:
            raise ValueError(f"output_size must be >= 2, got {output_size}")
        self.rnn = nn.RNN(
            input_size, hidden_size, nonlinearity="relu", bias=rnn_bias, batch_first=True
        )
        self.fc = nn.Linear(hidden_size, output_size, bias=fc_bias)
        self.tau = tau

    # --- sizes, read from the weights -----------------------------------------------------------

    @property
    def input_size(self) -> int:
        return self.rnn.weight_ih_l0.shape[1]

    @property
    def hidden_size(self) -> int:
        return self.rnn.weight_hh_l0.shape[0]

    @property
    def output_size(self) -> int:
        return self.fc.weight.shape[0]

    @property
    def device(self) -> torch.device:
        return self.fc.weight.device

    @property
    def w_ih(self) -> torch.Tensor:
        return self.rnn.weight_ih_l0

    @property
    def w_hh(self) -> torch.Tensor:
        return self.rnn.weight_hh_l0

    @property
    def w_out(self) -> torch.Tensor:
        return self.fc.weight

    @property
    def has_bias(self) -> bool:
        return self.rnn.bias or self.fc.bias is not None

    @property
    def b_rec(self) -> torch.Tensor | None:
        """The constant drive into each hidden unit (bias_ih + bias_hh), or None."""
        return self.rnn.bias_ih_l0 + self.rnn.bias_hh_l0 if self.rnn.bias else None

    @classmethod
    def from_state_dict(cls, state: dict, tau: float = 1.0) -> HMMRNN:
        """Build a model with the sizes the weights have; shapes are checked, never assumed."""
        shape = check_state(state)
        state = dict(state)
        if shape.rnn_bias:  # a state dict with one of the two recurrent biases: the other is zero
            for key in RNN_BIAS_KEYS:
                state.setdefault(key, torch.zeros(shape.hidden))
        model = cls(
            shape.inputs, shape.hidden, shape.outputs, tau=tau,
            rnn_bias=shape.rnn_bias, fc_bias=shape.fc_bias,
        )  # fmt: skip
        model.load_state_dict({k: v.float() for k, v in state.items()})
        return model

    # --- generation -----------------------------------------------------------------------------

    def sample_noise(
        self, n: int, length: int, std: float = 1.0, generator: torch.Generator | None = None
    ) -> torch.Tensor:
        return std * torch.randn(
            (n, length, self.input_size), generator=generator, device=self.device
        )

    def initial_state(
        self, n: int, mode: str = "zero", generator: torch.Generator | None = None
    ) -> torch.Tensor:
        if mode == "zero":
            return torch.zeros(n, self.hidden_size, device=self.device)
        if mode == "random":
            return torch.randn((n, self.hidden_size), generator=generator, device=self.device)
        raise ValueError(f"h0 mode must be 'zero' or 'random', got {mode!r}")

    def forward(
        self,
        noise: torch.Tensor,
        h0: torch.Tensor | None = None,
        generator: torch.Generator | None = None,
    ) -> RNNRun:
        """Run the fused RNN over (N, L, d) inputs and sample one-hot outputs at every step."""
        h0 = None if h0 is None else h0.unsqueeze(0)
        hidden, _ = self.rnn(noise, h0)
        logits = self.fc(hidden)
        outputs = hard_gumbel_softmax(logits, self.tau, generator)
        return RNNRun(hidden=hidden, logits=logits, outputs=outputs)

    @torch.no_grad()
    def generate(
        self,
        n: int,
        length: int,
        *,
        noise_std: float = 1.0,
        h0: str | torch.Tensor = "zero",
        generator: torch.Generator | None = None,
    ) -> RNNRun:
        """N x L sequences without gradients (evaluation, analyses)."""
        noise = self.sample_noise(n, length, noise_std, generator)
        start = h0 if isinstance(h0, torch.Tensor) else self.initial_state(n, h0, generator)
        return self(noise, start, generator)

    # --- one explicit step, for analyses --------------------------------------------------------

    def preactivation(
        self,
        h: torch.Tensor,
        x: torch.Tensor | None,
        rec_gain: torch.Tensor | None = None,
        input_gain: torch.Tensor | None = None,
    ) -> torch.Tensor:
        """W_hh h + W_ih x for a batch of states (..., H), with optional per-unit gains.

        The gains multiply the recurrent drive and the input drive *into* each unit (shape (H,) or
        broadcastable), which is how ablations and gain modulations act on chosen neurons.
        """
        rec = h @ self.w_hh.T
        if rec_gain is not None:
            rec = rec * rec_gain
        bias = self.b_rec
        if bias is not None:
            rec = rec + bias  # a constant drive: neither recurrent nor input, never gained
        if x is None:
            return rec
        inp = x @ self.w_ih.T
        if input_gain is not None:
            inp = inp * input_gain
        return rec + inp

    def step(
        self,
        h: torch.Tensor,
        x: torch.Tensor | None,
        rec_gain: torch.Tensor | None = None,
        input_gain: torch.Tensor | None = None,
    ) -> torch.Tensor:
        """h_{t+1} = ReLU(gain_rec * W_hh h + gain_in * W_ih x); x=None runs the autonomous map."""
        return torch.relu(self.preactivation(h, x, rec_gain, input_gain))

    def readout(self, h: torch.Tensor) -> torch.Tensor:
        return self.fc(h)
