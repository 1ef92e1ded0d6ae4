"""Hidden Markov Models: the data the RNNs learn to emulate.

An HMM here has M latent states, K observable outputs, a start distribution, an M x M transition
matrix and an M x K emission matrix. Builders reproduce the study's families (ANALYSES.md section 1);
sampling is vectorised over sequences so that 30,000 sequences take milliseconds.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from hmmrnn.errors import UserError

ROW_TOL = 1e-6

TRANSITION_METHODS = ("target_prob", "stay_prob", "fully", "custom")
EMISSION_METHODS = ("linear", "gaussian", "triangular", "custom")


class HMMSpecError(UserError):
    """A transition/emission matrix or builder argument that cannot define an HMM."""


def _check_stochastic(name: str, matrix: np.ndarray, rows: int | None, cols: int | None) -> None:
    if matrix.ndim != 2:
        raise HMMSpecError(f"{name} must be a 2-D matrix, got shape {matrix.shape}")
    if rows is not None and matrix.shape[0] != rows:
        raise HMMSpecError(f"{name} must have {rows} rows, got shape {matrix.shape}")
    if cols is not None and matrix.shape[1] != cols:
        raise HMMSpecError(f"{name} must have {cols} columns, got shape {matrix.shape}")
    if not np.all(np.isfinite(matrix)):
        raise HMMSpecError(f"{name} has non-finite entries")
    if np.any(matrix < 0):
        raise HMMSpecError(f"{name} has negative entries (min {matrix.min():g})")
    sums = matrix.sum(axis=-1)
    bad = np.flatnonzero(np.abs(sums - 1.0) > ROW_TOL)
    if bad.size:
        raise HMMSpecError(
            f"{name} rows must sum to 1 (within {ROW_TOL:g}); row {bad[0]} sums to {sums[bad[0]]:.8g}"
        )


def _check_states(states: int) -> None:
    if isinstance(states, bool) or not isinstance(states, (int, np.integer)) or states < 1:
        raise HMMSpecError(f"number of states must be an integer >= 1, got {states!r}")


def _check_outputs(outputs: int) -> None:
    if isinstance(outputs, bool) or not isinstance(outputs, (int, np.integer)) or outputs < 2:
        raise HMMSpecError(f"number of outputs must be an integer >= 2, got {outputs!r}")


def _check_prob(name: str, p: float) -> None:
    if not (0.0 <= float(p) <= 1.0):
        raise HMMSpecError(f"{name} must lie in [0, 1], got {p!r}")


# --- transition builders -------------------------------------------------------------------------


def _chain(states: int, stay_edge: float, move: float, stay_middle: float) -> np.ndarray:
    """Linear chain: each state moves only to its neighbours."""
    t = np.zeros((states, states))
    idx = np.arange(states - 1)
    t[idx, idx + 1] = move
    t[idx + 1, idx] = move
    np.fill_diagonal(t, stay_middle)
    t[0, 0] = stay_edge
    t[-1, -1] = stay_edge
    return t


def transition_target_prob(states: int, target_prob: float = 0.05) -> np.ndarray:
    """The study's main family: q = target_prob ** (1/(M-1)), so crossing the chain is ~target_prob."""
    _check_states(states)
    _check_prob("target_prob", target_prob)
    if states == 1:
        return np.ones((1, 1))
    q = float(target_prob) ** (1.0 / (states - 1))
    if states > 2 and q > 0.5:
        raise HMMSpecError(f"target_prob={target_prob} gives q={q:.3f} > 0.5 for {states} states")
    return _chain(states, 1.0 - q, q, 1.0 - 2.0 * q)


def transition_stay_prob(states: int, stay_prob: float = 0.95) -> np.ndarray:
    """Linear chain with a fixed stay probability; the rest split evenly over the neighbours."""
    _check_states(states)
    _check_prob("stay_prob", stay_prob)
    if states == 1:
        return np.ones((1, 1))
    rest = 1.0 - float(stay_prob)
    t = _chain(states, stay_prob, rest / 2.0, stay_prob)
    t[0, 1] = rest
    t[-1, -2] = rest
    return t


def transition_fully(states: int, stay_prob: float = 0.95) -> np.ndarray:
    """Fully connected: stay with stay_prob, the rest spread evenly over all other states."""
    _check_states(states)
    _check_prob("stay_prob", stay_prob)
    if states == 1:
        return np.ones((1, 1))
    t = np.full((states, states), (1.0 - float(stay_prob)) / (states - 1))
    np.fill_diagonal(t, stay_prob)
    return t


# --- emission builders ---------------------------------------------------------------------------


def emission_linear(states: int, outputs: int = 3) -> np.ndarray:
    """State i (alpha = i/(M-1)) emits the outer symbols in proportion (1-alpha, alpha), 1% middle."""
    _check_states(states)
    if outputs != 3:
        raise HMMSpecError(f"emission 'linear' is defined for 3 outputs, got {outputs}")
    alpha = np.arange(states) / max(states - 1, 1)
    return np.stack([0.99 * (1.0 - alpha), np.full(states, 0.01), 0.99 * alpha], axis=1)


def emission_gaussian(states: int, outputs: int = 3) -> np.ndarray:
    """Each state emits a Gaussian bump centred at its position spread over the outputs."""
    _check_states(states)
    _check_outputs(outputs)
    centres = np.arange(states) / max(states - 1, 1) * (outputs - 1)
    d = np.abs(np.arange(outputs)[None, :] - centres[:, None])
    e = np.exp(-0.2 * (d / (0.1 * (outputs - 1))) ** 2)
    return e / e.sum(axis=1, keepdims=True)


def emission_triangular(states: int, outputs: int = 3) -> np.ndarray:
    """3 states, 3 outputs: each state emits its own symbol with 0.98."""
    if states != 3 or outputs != 3:
        raise HMMSpecError(
            f"emission 'triangular' needs 3 states and 3 outputs, got {states} and {outputs}"
        )
    e = np.full((3, 3), 0.01)
    np.fill_diagonal(e, 0.98)
    return e


CYCLIC_TRANSITION = np.array(
    [
        [0.95, 0.025, 0, 0.025],
        [0.025, 0.95, 0.025, 0],
        [0, 0.025, 0.95, 0.025],
        [0.025, 0, 0.025, 0.95],
    ]
)
CYCLIC_EMISSION = np.array([[0.9, 0.1, 0], [0.1, 0.9, 0], [0, 0.1, 0.9], [0, 0.9, 0.1]])


# --- the model -----------------------------------------------------------------------------------


@dataclass(frozen=True)
class HMMSample:
    """Sampled sequences: integer outputs and latent states, both (N, L)."""

    outputs: np.ndarray
    states: np.ndarray

    def one_hot(self, num_outputs: int, dtype=np.float32) -> np.ndarray:
        return np.eye(num_outputs, dtype=dtype)[self.outputs]


@dataclass(frozen=True)
class HMM:
    """A validated HMM. Rows of every matrix sum to 1."""

    transition: np.ndarray
    emission: np.ndarray
    start: np.ndarray = field(default=None)  # type: ignore[assignment]

    def __post_init__(self) -> None:
        t = np.asarray(self.transition, dtype=np.float64)
        e = np.asarray(self.emission, dtype=np.float64)
        _check_stochastic("transition matrix", t, None, None)
        if t.shape[0] != t.shape[1]:
            raise HMMSpecError(f"transition matrix must be square, got shape {t.shape}")
        _check_stochastic("emission matrix", e, t.shape[0], None)
        if e.shape[1] < 2:
            raise HMMSpecError(f"emission matrix needs >= 2 outputs, got {e.shape[1]}")
        s = np.full(t.shape[0], 1.0 / t.shape[0]) if self.start is None else np.asarray(self.start)
        _check_stochastic("start distribution", s.reshape(1, -1), 1, t.shape[0])
        object.__setattr__(self, "transition", t)
        object.__setattr__(self, "emission", e)
        object.__setattr__(self, "start", s.astype(np.float64))

    @property
    def num_states(self) -> int:
        return self.transition.shape[0]

    @property
    def num_outputs(self) -> int:
        return self.emission.shape[1]

    def stationary(self) -> np.ndarray:
        """The stationary distribution of the latent chain (M,): the left eigenvector of the
        transition matrix for eigenvalue 1 (for a reducible chain, the limit from `start`)."""
        vals, vecs = np.linalg.eig(self.transition.T)
        k = int(np.argmin(np.abs(vals - 1.0)))
        pi = np.abs(np.real(vecs[:, k]))
        if np.count_nonzero(np.isclose(vals, 1.0)) > 1:  # several closed classes: follow start
            pi = self.start @ np.linalg.matrix_power(self.transition, 4096)
        return pi / pi.sum()

    def output_shares(self) -> np.ndarray:
        """Long-run share of each output (K,): stationary distribution times the emissions."""
        return self.stationary() @ self.emission

    def _check_outputs_array(self, outputs) -> np.ndarray:
        x = np.asarray(outputs)
        if x.ndim != 2 or x.shape[1] < 1 or not np.issubdtype(x.dtype, np.integer):
            raise ValueError(f"outputs must be an (N, L) integer array, got {x.dtype} {x.shape}")
        if x.size and (x.min() < 0 or x.max() >= self.num_outputs):
            raise ValueError(f"outputs must lie in [0, {self.num_outputs})")
        return x

    def forward(self, outputs) -> tuple[np.ndarray, np.ndarray]:
        """Normalised forward messages alpha (N, L, M) and per-step scales c (N, L) with
        log P(o_1..o_L) = sum_t log c_t. Scaling each step keeps the recursion in range for any
        length (the log-domain result without exponentiating sums of logs); one matrix product
        per step, vectorised over sequences and states."""
        x = self._check_outputs_array(outputs)
        n, length = x.shape
        e = self.emission.T[x]  # (N, L, M): P(o_t | state)
        alpha = np.empty((n, length, self.num_states))
        scale = np.empty((n, length))
        a = self.start[None, :] * e[:, 0]
        for t in range(length):
            if t:
                a = (a @ self.transition) * e[:, t]
            c = a.sum(axis=1)
            scale[:, t] = c
            a = a / np.where(c > 0, c, 1.0)[:, None]
            alpha[:, t] = a
        return alpha, scale

    def log_likelihood(self, outputs) -> np.ndarray:
        """log P(o_1..o_L) of each sequence (N,) under this HMM (-inf when impossible)."""
        _, scale = self.forward(outputs)
        with np.errstate(divide="ignore"):
            return np.log(scale).sum(axis=1)

    def posteriors(self, outputs) -> np.ndarray:
        """P(state_t | o_1..o_L) for every sequence and step (N, L, M), by forward-backward."""
        x = self._check_outputs_array(outputs)
        alpha, scale = self.forward(x)
        e = self.emission.T[x]
        n, length, m = alpha.shape
        beta = np.ones((n, m))
        post = np.empty_like(alpha)
        safe = np.where(scale > 0, scale, 1.0)
        for t in range(length - 1, -1, -1):
            post[:, t] = alpha[:, t] * beta
            if t:
                beta = ((e[:, t] * beta) @ self.transition.T) / safe[:, t, None]
        total = post.sum(axis=2, keepdims=True)
        return post / np.where(total > 0, total, 1.0)

    def sample(self, n: int, length: int, rng: np.random.Generator) -> HMMSample:
        """Draw n sequences of `length` steps; vectorised over sequences, one numpy call per step."""
        if n < 0 or length < 1:
            raise ValueError(f"need n >= 0 and length >= 1, got n={n}, length={length}")
        cum_t = np.cumsum(self.transition, axis=1)
        cum_t[:, -1] = 1.0
        cum_e = np.cumsum(self.emission, axis=1)
        cum_e[:, -1] = 1.0
        u_state = rng.random((length, n))
        states = np.empty((length, n), dtype=np.int64)
        states[0] = np.searchsorted(np.cumsum(self.start), u_state[0], side="right")
        for t in range(1, length):
            states[t] = (u_state[t][:, None] >= cum_t[states[t - 1]]).sum(axis=1)
        states = np.minimum(states, self.num_states - 1).T
        u_out = rng.random((n, length, 1))
        outputs = (u_out >= cum_e[states]).sum(axis=2)
        outputs = np.minimum(outputs, self.num_outputs - 1)
        return HMMSample(outputs=np.ascontiguousarray(outputs), states=np.ascontiguousarray(states))


def build_transition(
    method: str,
    states: int,
    *,
    target_prob: float = 0.05,
    stay_prob: float = 0.95,
    custom: np.ndarray | list | None = None,
) -> np.ndarray:
    """Dispatch on the config's `transition_method`."""
    if method == "target_prob":
        return transition_target_prob(states, target_prob)
    if method == "stay_prob":
        return transition_stay_prob(states, stay_prob)
    if method == "fully":
        return transition_fully(states, stay_prob)
    if method == "custom":
        if custom is None:
            raise HMMSpecError("transition_method 'custom' needs custom_transition_matrix")
        m = np.asarray(custom, dtype=np.float64)
        _check_stochastic("custom_transition_matrix", m, states, states)
        return m
    raise HMMSpecError(f"unknown transition_method {method!r}; choose one of {TRANSITION_METHODS}")


def build_emission(
    method: str, states: int, outputs: int, *, custom: np.ndarray | list | None = None
) -> np.ndarray:
    """Dispatch on the config's `emission_method`."""
    if method == "linear":
        return emission_linear(states, outputs)
    if method == "gaussian":
        return emission_gaussian(states, outputs)
    if method == "triangular":
        return emission_triangular(states, outputs)
    if method == "custom":
        if custom is None:
            raise HMMSpecError("emission_method 'custom' needs custom_emission_matrix")
        m = np.asarray(custom, dtype=np.float64)
        _check_stochastic("custom_emission_matrix", m, states, outputs)
        return m
    raise HMMSpecError(f"unknown emission_method {method!r}; choose one of {EMISSION_METHODS}")


@dataclass(frozen=True)
class Preset:
    """One of the study's HMM families with its training length and clipping."""

    name: str
    states: int
    transition_method: str
    emission_method: str
    seq_len: int
    epochs: int
    grad_clip: float
    custom_transition_matrix: list | None = None
    custom_emission_matrix: list | None = None
    folder: str = ""


PRESETS: dict[str, Preset] = {
    p.name: p
    for p in (
        Preset("Two", 2, "target_prob", "linear", 100, 500, 0.9, folder="Two"),
        Preset("Three", 3, "target_prob", "linear", 30, 500, 0.9, folder="Three"),
        Preset("Four", 4, "target_prob", "linear", 30, 500, 0.9, folder="Four"),
        Preset("Five", 5, "target_prob", "linear", 40, 500, 0.9, folder="Five"),
        Preset("Fully", 3, "fully", "triangular", 30, 1000, 0.3, folder="Fully_Connected"),
        Preset(
            "Cyclic",
            4,
            "custom",
            "custom",
            40,
            500,
            0.3,
            CYCLIC_TRANSITION.tolist(),
            CYCLIC_EMISSION.tolist(),
            folder="Cyclic",
        ),
    )
}


def get_preset(name: str) -> Preset:
    """Case-insensitive preset lookup with an error listing the choices."""
    for key, preset in PRESETS.items():
        if key.lower() == name.lower():
            return preset
    raise HMMSpecError(f"unknown preset {name!r}; choose one of {', '.join(PRESETS)}")
