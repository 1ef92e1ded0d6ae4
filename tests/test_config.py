import json

import pytest

from hmmrnn.config import ConfigError, ExperimentConfig

# A config.json exactly as the study wrote it (its key set, its value types).
STUDY_CONFIG = {
    "states": 3, "outputs": 3, "stay_prob": 0.95, "target_prob": 0.05,
    "transition_method": "target_prob", "emission_method": "linear",
    "custom_transition_matrix": None, "custom_emission_matrix": None,
    "num_seq": 30000, "seq_len": 30, "input_size": 100, "hidden_size": 150,
    "num_layers": 1, "biased": False, "batch_size": 4096, "epochs": 500,
    "learning_rates": [0.001], "tau": 1.0, "grad_clip": 0.9, "init": None,
    "weight_decay": 0.0, "pretrained_model_path": None,
}  # fmt: skip


def test_study_config_loads_unchanged(tmp_path):
    p = tmp_path / "config.json"
    p.write_text(json.dumps(STUDY_CONFIG))
    cfg = ExperimentConfig.load(p)
    assert cfg.hidden_size == 150 and cfg.learning_rates == [0.001]
    assert cfg.unknown_keys == []
    out = cfg.to_dict()
    for k, v in STUDY_CONFIG.items():
        assert out[k] == v


def test_unknown_keys_kept_and_reported(tmp_path):
    data = dict(STUDY_CONFIG, lab_note="x", dropout=0.1)
    cfg = ExperimentConfig.from_dict(data)
    assert cfg.unknown_keys == ["dropout", "lab_note"]
    cfg.save(tmp_path / "c.json")
    again = json.loads((tmp_path / "c.json").read_text())
    assert again["lab_note"] == "x" and again["dropout"] == 0.1


def test_missing_keys_take_defaults():
    cfg = ExperimentConfig.from_dict({"states": 2, "hidden_size": 20})
    assert cfg.batch_size == 4096 and cfg.seed == 0 and cfg.loss == "sinkhorn"


@pytest.mark.parametrize(
    "key,value,match",
    [
        ("hidden_size", "big", "hidden_size must be an integer"),
        ("hidden_size", 0, "hidden_size must be >= 1"),
        ("hidden_size", 1.5, "hidden_size must be an integer"),
        ("learning_rates", [0.0], "learning_rates must be positive"),
        ("learning_rates", ["a"], "learning_rates must be a list"),
        ("biased", [True, "x"], "biased must be true, false or"),
        ("num_layers", 2, "num_layers must be 1"),
        ("transition_method", "ring", "unknown transition_method"),
        ("emission_method", "triangular", "triangular"),
        ("loss", "mse", "loss must be one of"),
        ("tau", -1, "tau must be > 0"),
        ("aux_weight", float("inf"), "aux_weight must be a finite number"),
        ("blur", float("nan"), "blur must be a finite number"),
        ("custom_transition_matrix", [1, 2], "2-D"),
        ("biased", "no", "biased must be true, false or"),
        ("seed", -1, "seed must be >= 0"),
        ("cost_precision", "float8", "cost_precision must be one of"),
    ],
)
def test_bad_values_name_the_key(key, value, match):
    with pytest.raises(ConfigError, match=match):
        ExperimentConfig.from_dict(dict(STUDY_CONFIG, states=4, **{key: value}))


def test_bad_files(tmp_path):
    with pytest.raises(ConfigError, match="cannot read"):
        ExperimentConfig.load(tmp_path / "none.json")
    (tmp_path / "bad.json").write_text("{not json")
    with pytest.raises(ConfigError, match="not valid JSON"):
        ExperimentConfig.load(tmp_path / "bad.json")
    (tmp_path / "list.json").write_text("[1, 2]")
    with pytest.raises(ConfigError, match="JSON object"):
        ExperimentConfig.load(tmp_path / "list.json")


def test_presets_build_their_hmm():
    for name in ("Two", "Three", "Four", "Five", "Fully", "Cyclic"):
        cfg = ExperimentConfig.from_preset(name, hidden_size=10)
        hmm = cfg.build_hmm()
        assert hmm.num_states == cfg.states and hmm.num_outputs == 3
    assert ExperimentConfig.from_preset("Cyclic").build_hmm().transition[0, 3] == 0.025


def test_replace_revalidates():
    cfg = ExperimentConfig.from_preset("Two")
    assert cfg.replace(hidden_size=7).hidden_size == 7
    with pytest.raises(ConfigError):
        cfg.replace(seq_len=0)


@pytest.mark.parametrize(
    "matrix", [[0.5, 0.5], [[[1.0]]], "ab", [[1, 0], [0.3]], [[0.9, 0.2], [0.5, 0.5]]]
)
def test_a_bad_custom_matrix_set_from_python_is_a_config_error(matrix):
    """Validation is cached per distinct HMM; a matrix that is not rows of numbers (only the
    Python API can make one: files are coerced first) still gets a ConfigError, not a crash."""
    for _ in range(2):  # the second answer comes from the cache where there is one
        with pytest.raises(ConfigError, match="HMM settings are invalid"):
            ExperimentConfig(states=2, custom_transition_matrix=matrix).validate()


def test_validation_cached_per_hmm_still_tells_configs_apart():
    good = [[0.9, 0.1], [0.2, 0.8]]
    ExperimentConfig(states=2, custom_transition_matrix=good).validate()
    bad = [[0.9, 0.2], [0.2, 0.8]]
    with pytest.raises(ConfigError, match="custom_transition_matrix"):
        ExperimentConfig(states=2, custom_transition_matrix=bad).validate()
    with pytest.raises(ConfigError, match="HMM settings"):
        ExperimentConfig(states=3, custom_transition_matrix=good).validate()
