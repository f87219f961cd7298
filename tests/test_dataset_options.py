"""``dataset_options.<field>=...`` passes builder recipe fields from the command line (a small SAC budget
for a quick try); an unknown field is a one-line error."""

import pytest


def _compose(*overrides):
    from hydra import compose, initialize

    import experiments.run  # noqa: F401  (registers the configs)

    with initialize(version_base="1.3", config_path=None):
        return compose(config_name="config", overrides=list(overrides))


def test_dataset_options_pass_the_override_check():
    from experiments.run import _force_dict_keys, check_overrides

    argv = _force_dict_keys(["algo=iql", "env=pendulum", "dataset=medium", "dataset_options.train_steps=300",
                             "dataset_options.hidden_sizes=[16,16]"])
    assert argv[-2:] == ["++dataset_options.train_steps=300", "++dataset_options.hidden_sizes=[16,16]"]
    assert check_overrides(argv) is None


def test_dataset_options_reach_the_builder_and_unknown_ones_are_one_line(tmp_path):
    from experiments.dataset_builder import DatasetRecipeError
    from experiments.run import _one_line_error, resolve_dataset

    cfg = _compose("algo=iql", "env=pendulum", "dataset=medium", f"data_dir={tmp_path}",
                   "++dataset_options.bogus=1")
    with pytest.raises(DatasetRecipeError) as err:
        resolve_dataset(cfg, "pendulum", {}, log=lambda _: None)
    message = _one_line_error(err.value)
    assert "\n" not in message and "unknown dataset option(s) ['bogus']" in message


def test_a_builder_kind_without_options_reaches_the_builder(tmp_path, monkeypatch):
    """The common case: ``dataset=medium`` and no dataset_options (an empty node, which is falsy)."""
    from experiments import dataset_builder
    from experiments.run import resolve_dataset

    seen = {}

    def fake_build(env, kind, size, **kwargs):
        seen.update(env=env, kind=kind, size=size, **kwargs)
        return tmp_path / "built.hdf5"

    monkeypatch.setattr(dataset_builder, "get_or_build_dataset", fake_build)
    cfg = _compose("algo=iql", "env=pendulum", "dataset=medium", "dataset_size=1234", f"data_dir={tmp_path}")
    assert resolve_dataset(cfg, "pendulum", {}, log=lambda _: None) == str(tmp_path / "built.hdf5")
    assert seen["kind"] == "medium" and seen["size"] == 1234 and seen["env"] == "pendulum"
