"""The experiment config: one typed record for HMM, data, RNN and training, stored as config.json.

Key names are the study's (ANALYSES.md section 2) so that its configs load unchanged; our own
additions (seed, loss, noise_std, ...) take defaults when absent. Unknown keys are kept verbatim and
reported, never dropped, so that a round trip through hmmrnn loses nothing.
"""

from __future__ import annotations

import dataclasses
import functools
import json
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from hmmrnn.errors import UserError
from hmmrnn.hmm import (
    EMISSION_METHODS,
    HMM,
    TRANSITION_METHODS,
    build_emission,
    build_transition,
    get_preset,
)
from hmmrnn.io import atomic_write_text, read_json_file


class ConfigError(UserError):
    """A config value or file that cannot be used; the message names the key and the value."""


LOSS_METHODS = ("sinkhorn", "sinkhorn-pot")
H0_MODES = ("zero", "random")
COST_PRECISIONS = ("float32", "float16", "bfloat16")
# `init` values we act on; any other value (the study's configs carry their own) means the default.
INIT_MODES = ("default", "identity", "orthogonal")


def _key(default: Any, help: str, choices: tuple | None = None) -> Any:
    """A config key: its default, the help the CLI shows and the values it accepts."""
    meta = {"help": help, "choices": choices}
    if isinstance(default, list):
        return field(default_factory=lambda: list(default), metadata=meta)
    return field(default=default, metadata=meta)


def key_help(name: str) -> tuple[str, tuple | None, Any]:
    """(help, choices, default) of a config key."""
    f = next(f for f in dataclasses.fields(ExperimentConfig) if f.name == name)
    default = f.default_factory() if f.default_factory is not dataclasses.MISSING else f.default
    return f.metadata.get("help", ""), f.metadata.get("choices"), default


@dataclass
class ExperimentConfig:
    """Everything needed to reproduce a run. Defaults are the study's (Three preset sizes)."""

    # HMM (study keys)
    states: int = _key(3, "latent states M of the HMM")
    outputs: int = _key(3, "observable outputs K")
    stay_prob: float = _key(0.95, "probability of staying (stay_prob and fully transitions)")
    target_prob: float = _key(0.05, "chain-end target probability (target_prob transitions)")
    transition_method: str = _key(
        "target_prob", "transition builder (a custom matrix wins)", TRANSITION_METHODS
    )
    emission_method: str = _key(
        "linear", "emission builder (a custom matrix wins)", EMISSION_METHODS
    )
    custom_transition_matrix: list | None = _key(None, "M x M transition matrix (JSON)")
    custom_emission_matrix: list | None = _key(None, "M x K emission matrix (JSON)")
    # data
    num_seq: int = _key(30000, "sequences sampled, split in thirds: train, validation, test")
    seq_len: int = _key(30, "steps per sequence")
    # RNN
    input_size: int = _key(100, "dimension d of the input noise")
    hidden_size: int = _key(150, "hidden units H")
    num_layers: int = _key(1, "recurrent layers (1: the study's single layer)")
    biased: Any = _key(False, "biases: true/false or the study's [rnn_bias, fc_bias]")
    # training
    batch_size: int = _key(4096, "sequences per batch")
    epochs: int = _key(500, "epochs per learning rate")
    learning_rates: list = _key([0.001], "learning rates tried in turn; the best is kept")
    tau: float = _key(1.0, "Gumbel-softmax temperature")
    grad_clip: float = _key(0.9, "gradient clipping by global norm (0: none)")
    init: Any = _key(None, "recurrent init: default, identity or orthogonal", INIT_MODES)
    init_gain: float = _key(1.0, "scale of the recurrent init")
    weight_decay: float = _key(0.0, "L2 penalty on the parameter norms")
    pretrained_model_path: str | None = _key(None, "weights to start from (relative to the run)")
    # hmmrnn additions
    preset: str | None = _key(None, "the study preset the config came from")
    seed: int = _key(0, "seed of the data, the init and the training noise")
    loss: str = _key("sinkhorn", "loss implementation", LOSS_METHODS)
    blur: float = _key(0.2, "Sinkhorn blur (epsilon = blur^2)")
    scaling: float = _key(0.5, "epsilon annealing factor per Sinkhorn step")
    aux_blur: float = _key(5.0, "blur of the optional coarse second loss term")
    aux_weight: float = _key(0.0, "weight of the coarse term (0: the study's loss)")
    cost_precision: str = _key(
        "float32",
        "precision of the loss's cost matrix (float16/bfloat16: tensor cores on a GPU; exact on "
        "one-hot sequences up to 2048/256 steps)",
        COST_PRECISIONS,
    )
    compile: bool = _key(
        False,
        "run the loss's log-sum-exps through torch.compile (fused kernels for a GPU; the first "
        "batch waits 10-60 s for the compiler, which needs a C++ compiler on the CPU)",
    )
    noise_std: float = _key(1.0, "std of the input noise")
    h0: str = _key("zero", "initial hidden state", H0_MODES)
    checkpoint_every: int = _key(
        0, "save models/evolution/model_epoch_N.pth every N epochs (0: none)"
    )
    betas: list = _key([0.9, 0.9], "Adam betas")
    # keys we do not know, kept for the round trip
    extra: dict = field(default_factory=dict)

    # --- construction ---------------------------------------------------------------------------

    @classmethod
    def from_preset(cls, name: str, **overrides: Any) -> ExperimentConfig:
        """Config of one of the study presets, with field overrides."""
        p = get_preset(name)
        base = dict(
            preset=p.name,
            states=p.states,
            transition_method=p.transition_method,
            emission_method=p.emission_method,
            seq_len=p.seq_len,
            epochs=p.epochs,
            grad_clip=p.grad_clip,
            custom_transition_matrix=p.custom_transition_matrix,
            custom_emission_matrix=p.custom_emission_matrix,
        )
        base.update(overrides)
        return cls.from_dict(base)

    @classmethod
    def from_dict(cls, data: dict) -> ExperimentConfig:
        """Typed, validated config from a JSON-like dict; unknown keys go to `extra`."""
        if not isinstance(data, dict):
            raise ConfigError(f"config must be a JSON object, got {type(data).__name__}")
        known = {f.name for f in dataclasses.fields(cls)} - {"extra"}
        values = {k: _coerce(k, v) for k, v in data.items() if k in known}
        extra = {k: v for k, v in data.items() if k not in known}
        cfg = cls(**values, extra=extra)
        cfg.validate()
        return cfg

    @classmethod
    def load(cls, path: str | Path) -> ExperimentConfig:
        path = Path(path)
        data = read_json_file(path, ConfigError)
        try:
            return cls.from_dict(data)
        except ConfigError as exc:
            raise ConfigError(f"{path}: {exc}") from exc

    # --- output ---------------------------------------------------------------------------------

    def to_dict(self) -> dict:
        out = {f.name: getattr(self, f.name) for f in dataclasses.fields(self) if f.name != "extra"}
        out.update(self.extra)
        return out

    def save(self, path: str | Path) -> None:
        atomic_write_text(Path(path), json.dumps(self.to_dict(), indent=2) + "\n")

    def replace(self, **changes: Any) -> ExperimentConfig:
        data = self.to_dict()
        data.update(changes)
        return ExperimentConfig.from_dict(data)

    @property
    def unknown_keys(self) -> list[str]:
        return sorted(self.extra)

    @property
    def rnn_bias(self) -> bool:
        return bool(self.biased[0] if isinstance(self.biased, list) else self.biased)

    @property
    def fc_bias(self) -> bool:
        if isinstance(self.biased, list):
            return bool(self.biased[-1])
        return bool(self.biased)

    # --- meaning --------------------------------------------------------------------------------

    def build_hmm(self) -> HMM:
        """The HMM this config describes. A custom matrix wins over the method, as in the study
        (its Cyclic preset says `target_prob` and carries a custom transition matrix)."""
        return _build_hmm(*self._raw_settings())

    def _hmm_problem(self) -> str | None:
        """Why this config's HMM settings build no HMM (None when they do), cached by settings:
        a sweep's 2,000 configs share a handful of HMMs, and listing a tree validates each."""

        def rows(matrix: Any) -> tuple | None:
            return None if matrix is None else tuple(map(tuple, matrix))

        raw = self._raw_settings()
        try:
            settings = (*raw[:6], rows(raw[6]), rows(raw[7]))
            hash(settings)
        except TypeError:  # a matrix not made of rows of numbers (set from Python, not a file)
            return _hmm_problem_of(*raw)
        return _cached_hmm_problem(settings)

    def _raw_settings(self) -> tuple:
        """What the HMM depends on, in _build_hmm's order."""
        return (
            self.transition_method, self.emission_method, self.states, self.outputs,
            self.target_prob, self.stay_prob,
            self.custom_transition_matrix, self.custom_emission_matrix,
        )  # fmt: skip

    def validate(self) -> None:
        """Check ranges and cross-field consistency; raise ConfigError naming the key."""
        _positive_int(self, "states", "outputs", "num_seq", "seq_len", "input_size", "hidden_size")
        _positive_int(self, "batch_size", "epochs")
        if self.outputs < 2:
            raise ConfigError(f"outputs must be >= 2, got {self.outputs}")
        if self.num_layers != 1:
            raise ConfigError(f"num_layers must be 1 (single-layer RNN), got {self.num_layers}")
        if self.seed < 0:
            raise ConfigError(f"seed must be >= 0, got {self.seed}")
        if self.num_seq < 3:
            raise ConfigError(f"num_seq must be >= 3 (train/val/test split), got {self.num_seq}")
        if not self.learning_rates or any(
            lr <= 0 or not math.isfinite(lr) for lr in self.learning_rates
        ):
            raise ConfigError(f"learning_rates must be positive numbers, got {self.learning_rates}")
        if not self.init_gain > 0:
            raise ConfigError(f"init_gain must be > 0, got {self.init_gain}")
        if self.aux_weight < 0:
            raise ConfigError(f"aux_weight must be >= 0, got {self.aux_weight}")
        for key in ("tau", "blur", "noise_std", "aux_blur"):
            if not getattr(self, key) > 0:
                raise ConfigError(f"{key} must be > 0, got {getattr(self, key)}")
        if not 0 < self.scaling < 1:
            raise ConfigError(f"scaling must be in (0, 1), got {self.scaling}")
        if self.grad_clip < 0 or self.weight_decay < 0 or self.checkpoint_every < 0:
            raise ConfigError("grad_clip, weight_decay and checkpoint_every must be >= 0")
        if self.loss not in LOSS_METHODS:
            raise ConfigError(f"loss must be one of {LOSS_METHODS}, got {self.loss!r}")
        if self.cost_precision not in COST_PRECISIONS:
            raise ConfigError(
                f"cost_precision must be one of {COST_PRECISIONS}, got {self.cost_precision!r}"
            )
        if self.h0 not in H0_MODES:
            raise ConfigError(f"h0 must be one of {H0_MODES}, got {self.h0!r}")
        if len(self.betas) != 2 or not all(0 <= b < 1 for b in self.betas):
            raise ConfigError(f"betas must be two numbers in [0, 1), got {self.betas}")
        problem = self._hmm_problem()
        if problem is not None:
            raise ConfigError(f"HMM settings are invalid: {problem}")


def _build_hmm(
    transition_method: str, emission_method: str, states: int, outputs: int,
    target_prob: float, stay_prob: float, custom_t: Any, custom_e: Any,
) -> HMM:  # fmt: skip
    t = build_transition(
        "custom" if custom_t is not None else transition_method,
        states,
        target_prob=target_prob,
        stay_prob=stay_prob,
        custom=custom_t,
    )
    e = build_emission(
        "custom" if custom_e is not None else emission_method, states, outputs, custom=custom_e
    )
    return HMM(t, e)


def _hmm_problem_of(*settings: Any) -> str | None:
    try:
        _build_hmm(*settings)
    except (ValueError, TypeError) as exc:
        return str(exc)
    return None


@functools.lru_cache(maxsize=256)
def _cached_hmm_problem(settings: tuple) -> str | None:
    return _hmm_problem_of(*settings)


_INT_KEYS = {
    "states", "outputs", "num_seq", "seq_len", "input_size", "hidden_size", "num_layers",
    "batch_size", "epochs", "seed", "checkpoint_every",
}  # fmt: skip
_FLOAT_KEYS = {
    "stay_prob", "target_prob", "tau", "grad_clip", "weight_decay", "blur", "scaling", "noise_std",
    "aux_blur", "aux_weight", "init_gain",
}  # fmt: skip
_STR_KEYS = {"transition_method", "emission_method", "loss", "h0", "cost_precision"}
_OPTIONAL_STR_KEYS = {"pretrained_model_path", "preset"}
_BOOL_KEYS = {"compile"}
_MATRIX_KEYS = {"custom_transition_matrix", "custom_emission_matrix"}


def _coerce(key: str, value: Any) -> Any:
    """Check one value's type; accept ints for floats and integral floats for ints."""
    if key in _INT_KEYS:
        if isinstance(value, bool) or not isinstance(value, (int, float)) or value != int(value):
            raise ConfigError(f"{key} must be an integer, got {value!r}")
        return int(value)
    if key in _FLOAT_KEYS:
        if (
            isinstance(value, bool)
            or not isinstance(value, (int, float))
            or not math.isfinite(value)
        ):
            raise ConfigError(f"{key} must be a finite number, got {value!r}")
        return float(value)
    if key in _STR_KEYS:
        if not isinstance(value, str):
            raise ConfigError(f"{key} must be a string, got {value!r}")
        return value
    if key in _BOOL_KEYS:
        if not isinstance(value, bool):
            raise ConfigError(f"{key} must be true or false, got {value!r}")
        return value
    if key in _OPTIONAL_STR_KEYS:
        if value is not None and not isinstance(value, str):
            raise ConfigError(f"{key} must be a string or null, got {value!r}")
        return value
    if key == "biased":
        ok = isinstance(value, bool) or (
            isinstance(value, list)
            and 1 <= len(value) <= 2
            and all(isinstance(v, bool) for v in value)
        )
        if not ok:
            raise ConfigError(
                f"biased must be true, false or [rnn_bias, fc_bias] (the study's form), got {value!r}"
            )
        return value
    if key in ("learning_rates", "betas"):
        return _number_list(key, value)
    if key in _MATRIX_KEYS:
        return _matrix(key, value)
    return value


def _number_list(key: str, value: Any) -> list[float]:
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        value = [value]
    if not isinstance(value, list) or not all(
        isinstance(v, (int, float)) and not isinstance(v, bool) for v in value
    ):
        raise ConfigError(f"{key} must be a list of numbers, got {value!r}")
    return [float(v) for v in value]


def _matrix(key: str, value: Any) -> list | None:
    if value is None:
        return None
    try:
        arr = np.asarray(value, dtype=np.float64)
    except (TypeError, ValueError) as exc:
        raise ConfigError(f"{key} must be a matrix of numbers, got {value!r}") from exc
    if arr.ndim != 2:
        raise ConfigError(f"{key} must be a 2-D matrix, got shape {arr.shape}")
    return arr.tolist()


def _positive_int(cfg: ExperimentConfig, *keys: str) -> None:
    for key in keys:
        if getattr(cfg, key) < 1:
            raise ConfigError(f"{key} must be >= 1, got {getattr(cfg, key)}")


LIST_TEXT_KEYS = ("learning_rates", "betas")
_STRUCTURED_KEYS = (*LIST_TEXT_KEYS, "custom_transition_matrix", "custom_emission_matrix")


def field_names() -> list[str]:
    """Every config key, in the record's order (`extra` is not a key)."""
    return [f.name for f in dataclasses.fields(ExperimentConfig) if f.name != "extra"]


def parse_value(key: str, text: str) -> Any:
    """A config value from text (a CLI flag, a TUI form field): JSON when it parses (numbers,
    lists, null, true), a comma list for learning_rates and betas, else the text itself. The
    config's own validation then checks the type and range and names the key."""
    text = str(text).strip()
    if key in LIST_TEXT_KEYS and "," in text and not text.startswith("["):
        text = "[" + text + "]"
    try:
        return json.loads(text)
    except ValueError:
        if key in _STRUCTURED_KEYS:
            raise ConfigError(f"{key}: cannot parse {text!r}") from None
        return text
