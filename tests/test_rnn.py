import pytest
import torch

from hmmrnn.rnn import HMMRNN, hard_gumbel_softmax
from tests.conftest import study_state


def test_state_dict_keys_and_sizes_from_weights():
    m = HMMRNN.from_state_dict(study_state(input_size=5, hidden=7, outputs=4))
    assert set(m.state_dict()) == {"rnn.weight_ih_l0", "rnn.weight_hh_l0", "fc.weight"}
    assert (m.input_size, m.hidden_size, m.output_size) == (5, 7, 4)


@pytest.mark.parametrize(
    "mutate,match",
    [
        (lambda s: s.pop("fc.weight"), "lacks fc.weight"),
        (lambda s: s.__setitem__("fc.weight", torch.zeros(3, 5)), "inconsistent"),
        (lambda s: s.__setitem__("rnn.weight_hh_l0", torch.zeros(12, 11)), "inconsistent"),
        (lambda s: s["fc.weight"].__setitem__((0, 0), float("nan")), "NaN"),
        (lambda s: s.__setitem__("rnn.extra_l0", torch.zeros(12)), "unexpected keys"),
        (lambda s: s.__setitem__("rnn.bias_ih_l0", torch.zeros(11)), "vector of 12"),
        (lambda s: s.__setitem__("fc.bias", torch.full((3,), float("inf"))), "NaN or inf"),
    ],
)
def test_bad_state_dicts(mutate, match):
    s = study_state()
    mutate(s)
    with pytest.raises(ValueError, match=match):
        HMMRNN.from_state_dict(s)


def test_generate_matches_explicit_steps():
    """The fused nn.RNN path and the explicit step function compute the same dynamics."""
    m = HMMRNN.from_state_dict(study_state())
    g = torch.Generator().manual_seed(0)
    noise = m.sample_noise(6, 9, 1.0, g)
    run = m(noise, None, g)
    h = torch.zeros(6, m.hidden_size)
    for t in range(9):
        h = m.step(h, noise[:, t])
        torch.testing.assert_close(run.hidden[:, t], h)
    torch.testing.assert_close(run.logits, m.readout(run.hidden))
    assert run.outputs.shape == (6, 9, 3) and torch.all(run.outputs.sum(-1) == 1)


def test_gains_act_on_chosen_units():
    m = HMMRNN.from_state_dict(study_state())
    h = torch.rand(5, 12)
    x = torch.randn(5, 4)
    gain = torch.ones(12)
    gain[[2, 3]] = 0.0
    pre = m.preactivation(h, x, rec_gain=gain, input_gain=gain)
    assert torch.all(pre[:, [2, 3]] == 0)
    base = m.preactivation(h, x)
    torch.testing.assert_close(pre[:, :2], base[:, :2])
    only_rec = m.preactivation(h, x, rec_gain=gain)
    torch.testing.assert_close(only_rec[:, 2], (x @ m.w_ih.T)[:, 2])


def test_first_output_comes_after_first_input():
    """Step 0 is read from h_1, not from h_0 = 0 (which would be uniformly random)."""
    m = HMMRNN.from_state_dict(study_state())
    with torch.no_grad():
        m.fc.weight.zero_()
        m.fc.weight[1] = 100.0  # any active unit makes output 1 overwhelmingly likely
        m.rnn.weight_ih_l0.zero_()
        m.rnn.weight_ih_l0[:4] = torch.eye(4)  # every nonzero input activates some unit
        m.rnn.weight_ih_l0[4:8] = -torch.eye(4)
    run = m.generate(200, 1, noise_std=1.0, generator=torch.Generator().manual_seed(1))
    assert (run.symbols[:, 0] == 1).float().mean() > 0.97


def test_gumbel_straight_through_gradient():
    logits = torch.randn(4, 3, requires_grad=True)
    y = hard_gumbel_softmax(logits, 1.0, torch.Generator().manual_seed(0))
    assert torch.all(y.sum(-1) == 1)
    (y * torch.arange(3.0)).sum().backward()
    assert logits.grad is not None and logits.grad.abs().sum() > 0


def test_seeded_generation_is_reproducible():
    m = HMMRNN.from_state_dict(study_state())
    a = m.generate(10, 5, generator=torch.Generator().manual_seed(4)).symbols
    b = m.generate(10, 5, generator=torch.Generator().manual_seed(4)).symbols
    assert torch.equal(a, b)
