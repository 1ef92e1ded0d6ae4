import json
import os
import pickle

import pytest
import torch

from hmmrnn.config import ConfigError, ExperimentConfig
from hmmrnn.errors import UserError
from hmmrnn.io import ModelFileError
from hmmrnn.tree import discover, load_model, model_file_name, save_model
from tests.conftest import study_state, write_study_model


def test_discovers_study_layout_with_spaces(study_tree):
    entries = discover(study_tree)
    assert [e.rel for e in entries] == ["Fully_Connected/Seed 1", "Three/hidden_12/input_4/seed_0"]
    assert all(e.status == "ok" for e in entries)
    assert entries[1].sizes == (4, 12, 3)


def test_load_from_folder_and_file(study_tree):
    folder = study_tree / "Three" / "hidden_12" / "input_4" / "seed_0"
    a = load_model(folder)
    b = load_model(next((folder / "models").glob("*.pth")))
    assert a.model_file == b.model_file and a.folder == folder
    assert a.model.hidden_size == 12 and a.config.states == 3


def test_evolution_checkpoints_listed(study_tree):
    folder = study_tree / "Three" / "hidden_12" / "input_4" / "seed_0"
    evo = folder / "models" / "evolution"
    evo.mkdir()
    for n in (10, 2, 1):
        torch.save(study_state(), evo / f"model_epoch_{n}.pth")
    entry = [e for e in discover(study_tree) if e.path == folder][0]
    assert [n for n, _ in entry.evolution] == [1, 2, 10]
    # best model is picked from models/, never from evolution/
    assert entry.model_file.parent.name == "models"


class Evil:
    def __reduce__(self):
        return (os.system, ("echo pwned > /tmp/hmmrnn_pwned",))


def _break(kind, folder):
    pth = next((folder / "models").glob("*.pth"))
    if kind == "truncated":
        data = pth.read_bytes()
        pth.write_bytes(data[: len(data) // 2])
    elif kind == "not torch":
        pth.write_text("hello")
    elif kind == "wrong shapes":
        s = study_state()
        s["rnn.weight_hh_l0"] = torch.zeros(12, 5)
        torch.save(s, pth)
    elif kind == "inconsistent":
        s = study_state()
        s["fc.weight"] = torch.zeros(3, 9)
        torch.save(s, pth)
    elif kind == "nan":
        s = study_state()
        s["rnn.weight_ih_l0"][0, 0] = float("nan")
        torch.save(s, pth)
    elif kind == "bad config":
        (folder / "config.json").write_text(json.dumps({"states": "three"}))
    elif kind == "binary config":
        (folder / "config.json").write_bytes(b"\xff\xfe{}")
    elif kind == "pickle":
        with open(pth, "wb") as fh:
            pickle.dump(Evil(), fh)
    elif kind == "torch pickle":
        torch.save({"model": Evil()}, pth)


@pytest.mark.parametrize(
    "kind,reason",
    [
        ("truncated", "not a readable torch file"),
        ("not torch", "not a readable torch file"),
        ("wrong shapes", "inconsistent shapes"),
        ("inconsistent", "inconsistent shapes"),
        ("nan", "NaN"),
        ("bad config", "states must be an integer"),
        ("binary config", "not a UTF-8 text file"),
        ("pickle", "refused"),
        ("torch pickle", "refused"),
    ],
)
def test_broken_entries_are_listed_not_fatal(study_tree, kind, reason):
    if os.path.exists("/tmp/hmmrnn_pwned"):
        os.unlink("/tmp/hmmrnn_pwned")
    bad = study_tree / "Three" / "hidden_12" / "input_4" / "seed_0"
    _break(kind, bad)
    entries = {e.rel: e for e in discover(study_tree)}
    assert entries["Fully_Connected/Seed 1"].status == "ok"
    broken = entries["Three/hidden_12/input_4/seed_0"]
    assert broken.status == "broken"
    assert reason in broken.reason
    assert not os.path.exists("/tmp/hmmrnn_pwned"), "a pickle executed code"
    with pytest.raises((ModelFileError, ConfigError)):
        load_model(bad)


def test_a_folder_without_config_that_names_no_hmm_is_broken(tmp_path):
    pth = write_study_model(tmp_path / "lab" / "run1")
    (tmp_path / "lab" / "run1" / "config.json").unlink()
    pth.rename(pth.with_name("weights.pth"))
    (entry,) = discover(tmp_path)
    assert (
        entry.status == "broken" and "neither the weights' file name nor the folder" in entry.reason
    )
    with pytest.raises(ConfigError, match="which HMM"):
        load_model(tmp_path / "lab" / "run1")


def test_no_weights_and_mismatch_warning(tmp_path):
    write_study_model(tmp_path / "a")
    (tmp_path / "b").mkdir()
    (tmp_path / "b" / "config.json").write_text(json.dumps({"states": 2}))
    cfg = ExperimentConfig.from_dict({"hidden_size": 99, "input_size": 4}).to_dict()
    write_study_model(tmp_path / "c", config=cfg)
    entries = {e.rel: e for e in discover(tmp_path)}
    assert entries["b"].status == "broken" and "no .pth" in entries["b"].reason
    assert entries["c"].status == "ok"
    assert any("hidden_size=99" in w for w in entries["c"].warnings)


def test_save_round_trip(tmp_path):
    loaded = load_model(write_study_model(tmp_path / "src"))
    cfg = loaded.config.replace(num_seq=3000)
    path = save_model(tmp_path / "dst", loaded.model, cfg, lr=0.003, loss=9.87)
    assert path.name == "3HMM_3Outputs_linear_3kData_0.003lr_9.9Loss.pth"
    assert path.name == model_file_name(cfg, 0.003, 9.87)
    again = load_model(tmp_path / "dst")
    for k, v in loaded.model.state_dict().items():
        assert torch.equal(again.model.state_dict()[k], v)
    assert again.config.num_seq == 3000
    assert not list((tmp_path / "dst").rglob("*.tmp"))


def test_missing_path_and_root(tmp_path):
    with pytest.raises(ModelFileError, match="no such file"):
        load_model(tmp_path / "nothing")
    with pytest.raises(UserError, match="not a folder"):
        discover(tmp_path / "nothing")


# --- reading weights without torch (listing a tree) ----------------------------------------------


def _saved(path, obj):
    path.parent.mkdir(parents=True, exist_ok=True)
    torch.save(obj, path)
    return path


@pytest.mark.parametrize(
    "make",
    [
        lambda: study_state(),
        lambda: {**study_state(), "rnn.bias_ih_l0": torch.randn(12), "fc.bias": torch.randn(3)},
        lambda: {"model": study_state(), "optimizer": {"step": 3, "lr": [0.1]}, "epoch": 4},
        lambda: {k: torch.nn.Parameter(v) for k, v in study_state().items()},
        lambda: {k: v.double().t().contiguous().t() for k, v in study_state().items()},
    ],
    ids=["study", "biased", "checkpoint", "parameters", "float64-strided"],
)
def test_plain_reader_sees_what_torch_loads(tmp_path, make):
    import numpy as np

    from hmmrnn.weights import read_plain

    path = _saved(tmp_path / "w.pth", make())
    ours, theirs = read_plain(path), torch.load(path, weights_only=True)
    if "model" in theirs:
        ours, theirs = ours["model"], theirs["model"]
    assert set(ours) == set(theirs)
    for key, value in theirs.items():
        np.testing.assert_array_equal(ours[key], value.detach().numpy())


def test_files_the_plain_reader_declines_still_get_torchs_answer(tmp_path):
    from hmmrnn.tree import state_shape
    from hmmrnn.weights import NotPlain, read_plain

    legacy = tmp_path / "legacy.pth"
    torch.save(study_state(), legacy, _use_new_zipfile_serialization=False)
    with pytest.raises(NotPlain):
        read_plain(legacy)
    assert state_shape(legacy).hidden == 12  # torch reads the old format
    bf16 = _saved(tmp_path / "bf16.pth", {k: v.bfloat16() for k, v in study_state().items()})
    with pytest.raises(NotPlain):
        read_plain(bf16)
    assert state_shape(bf16).inputs == 4
    nan = study_state()
    nan["fc.weight"][0, 0] = float("nan")
    with pytest.raises(ModelFileError, match="fc.weight contains NaN"):
        state_shape(_saved(tmp_path / "nan.pth", nan))


def test_the_stored_member_reader_reads_what_zipfile_reads(tmp_path, monkeypatch):
    """torch's archives are read member by member from the bytes; every member equals what
    zipfile reads, and archives of other kinds are left to zipfile (which then reads them)."""
    import zipfile

    from hmmrnn.weights import _stored_entries, read_plain

    state = {**study_state(), "fc.bias": torch.randn(3)}
    path = _saved(tmp_path / "w.pth", state)
    data = path.read_bytes()
    entries = _stored_entries(data)
    with zipfile.ZipFile(path) as archive:
        assert list(entries) == archive.namelist()
        for name in archive.namelist():
            assert bytes(entries[name][0]) == archive.read(name), name
    # the same archive deflated, or with a comment past the end record's reach: zipfile's turn
    deflated = tmp_path / "deflated.pth"
    with zipfile.ZipFile(path) as src, zipfile.ZipFile(deflated, "w", zipfile.ZIP_DEFLATED) as z:
        for name in src.namelist():
            z.writestr(name, src.read(name))
    assert _stored_entries(deflated.read_bytes()) is None
    for key, value in state.items():
        assert (read_plain(deflated)[key] == value.numpy()).all()
    # truncated or nonsense bytes are declined, never misread
    for broken in (data[: len(data) // 2], data[:-10], data[:-200] + data[-22:], data + b"x", b""):
        assert _stored_entries(broken) is None
    assert _stored_entries(b"PK\x05\x06" + bytes(18)) == {}  # an empty archive, as zipfile says
    # torch's zip64 end record must agree with the plain one (zipfile trusts the zip64 one)
    import struct

    z64 = data.rindex(b"PK\x06\x06")
    for field in (32, 40, 48):  # entry count, directory size, directory offset
        damaged = bytearray(data)
        struct.pack_into("<Q", damaged, z64 + field, 7)
        assert _stored_entries(bytes(damaged)) is None, field
    # two members of one name: which one counts is torch's call, not ours
    twice = tmp_path / "twice.pth"
    with zipfile.ZipFile(path) as src, zipfile.ZipFile(twice, "w") as z, pytest.warns(UserWarning):
        for name in src.namelist():
            z.writestr(name, src.read(name))
        pkl = next(n for n in src.namelist() if n.endswith("data.pkl"))
        z.writestr(pkl, src.read(pkl))
    assert _stored_entries(twice.read_bytes()) is None
    # a file too large to read whole goes to zipfile member by member, with the same answer
    from hmmrnn import weights

    monkeypatch.setattr(weights, "_READ_WHOLE", 0)
    for key, value in state.items():
        assert (read_plain(path)[key] == value.numpy()).all()


def test_a_damaged_member_is_not_read_as_weights(tmp_path):
    """A flipped byte inside a tensor fails the member's CRC: the reader declines the file and
    torch's answer stands, as with zipfile before."""
    import zipfile

    from hmmrnn.weights import NotPlain, read_plain

    path = _saved(tmp_path / "w.pth", study_state())
    with zipfile.ZipFile(path) as archive:
        info = next(i for i in archive.infolist() if "/data/" in i.filename)
    data = bytearray(path.read_bytes())
    start = info.header_offset + 30 + len(info.filename.encode()) + len(info.extra)
    data[start + 5] ^= 0xFF
    path.write_bytes(bytes(data))
    with pytest.raises(NotPlain, match="CRC"):
        read_plain(path)


def test_listing_a_tree_does_not_import_torch(study_tree):
    import subprocess
    import sys

    code = (
        "import sys; from hmmrnn import api; es = api.discover(sys.argv[1]); "
        "assert all(e.status == 'ok' for e in es), [(e.rel, e.reason) for e in es]; "
        "print(len(es), 'torch' in sys.modules)"
    )
    out = subprocess.run([sys.executable, "-c", code, str(study_tree)], capture_output=True,
                         text=True, check=True).stdout.split()  # fmt: skip
    assert out == ["2", "False"]


def test_a_zip_whose_pickle_names_code_is_refused_not_run(tmp_path):
    import zipfile

    from hmmrnn.tree import state_shape
    from hmmrnn.weights import NotPlain, read_plain

    class Calls:
        def __reduce__(self):
            return (os.getcwd, ())

    path = tmp_path / "hostile.pth"
    with zipfile.ZipFile(path, "w") as z:
        z.writestr("archive/data.pkl", pickle.dumps({"rnn.weight_ih_l0": Calls()}, protocol=2))
        z.writestr("archive/version", "3\n")
    with pytest.raises(NotPlain, match="getcwd"):
        read_plain(path)
    with pytest.raises(ModelFileError):
        state_shape(path)


def test_metrics_lines_parse_as_json_loads_reads_them_one_by_one():
    """The direct scanner is a shortcut, not a second parser: every line gives what json.loads
    gives it, and the lines json.loads refuses (or that hold no object) are skipped."""
    import json

    from hmmrnn.io import parse_records

    lines = [
        '{"epoch": 1, "val_loss": 8.6, "floor": 5.5}',
        '{"epoch": 2, "val_loss": NaN, "seconds": Infinity}',
        '  {"epoch": 3}',
        '{"epoch": 4}   ',
        '{"epoch": 5}, {"epoch": 6}',
        '{"epoch": 7',
        '{"a": [1, 2]}x',
        '{"dup": 1, "dup": 2}',
        '{"nested": {"deep": [[[]]]}}',
        "[" * 100_000 + "]" * 100_000,
        "{" + '"k": {' * 100_000,
        "[1, 2]",
        "",
        "3",
        b'{"epoch": 8}',
        '{"s": "caf\\u00e9 \\"quoted\\""}',
    ]

    def loads(line):
        try:
            value = json.loads(line)
        except (ValueError, RecursionError):
            return None
        return value if isinstance(value, dict) else None

    assert parse_records(lines) == [v for v in map(loads, lines) if v is not None]
    assert [r.get("epoch") for r in parse_records(lines)][:4] == [1, 2, 3, 4]


def test_an_undecodable_member_name_is_a_broken_file_not_a_crash(tmp_path):
    import zipfile

    from hmmrnn.tree import state_shape
    from hmmrnn.weights import NotPlain, read_plain

    path = tmp_path / "w.pth"
    with zipfile.ZipFile(path, "w") as z:  # a non-ASCII name: zipfile flags it UTF-8
        z.writestr("archive/data.pkl", pickle.dumps({}, protocol=2))
        z.writestr("archive/é", b"x")
    path.write_bytes(path.read_bytes().replace("é".encode(), b"\xff\xfe"))
    with pytest.raises(NotPlain, match="UnicodeDecodeError"):
        read_plain(path)
    with pytest.raises(ModelFileError):
        state_shape(path)
