"""Config precedence: dataclass < YAML < YAML profile block < --set; bad keys and types fail."""

from dataclasses import dataclass, field

import pytest

from benchmark.config import (
    build_config,
    method_layers,
    parse_overrides,
    require_divisible,
    require_positive,
    require_range,
)
from benchmark.errors import BenchmarkError


@dataclass
class Cfg:
    lr: float = 0.1
    epochs: int = 3
    name: str = "x"
    grid: list[int] = field(default_factory=lambda: [1])
    limit: int | None = None


YAML = {"lr": 0.5, "epochs": 10, "profiles": {"smoke": {"epochs": 1}, "default": {"epochs": 20}}}


def test_precedence():
    layers = method_layers("m", YAML, "smoke", {"name": "cli", "other.lr": 9.0})
    cfg = build_config(Cfg, layers)
    assert (cfg.lr, cfg.epochs, cfg.name) == (0.5, 1, "cli")
    cfg = build_config(Cfg, method_layers("m", YAML, "default", {"m.epochs": 7}))
    assert cfg.epochs == 7
    assert build_config(Cfg, method_layers("m", YAML, "paper", {})).epochs == 10


def test_dataset_block_sits_between_the_yaml_and_the_profile_block():
    yaml_data = {**YAML, "datasets": {"amazon": {"lr": 0.05, "epochs": 99, "name": "amz"}}}
    cfg = build_config(Cfg, method_layers("m", yaml_data, "paper", {}, "amazon"))
    assert (cfg.lr, cfg.epochs, cfg.name) == (0.05, 99, "amz")  # dataset block over the YAML
    cfg = build_config(Cfg, method_layers("m", yaml_data, "smoke", {"name": "cli"}, "amazon"))
    assert (cfg.lr, cfg.epochs, cfg.name) == (0.05, 1, "cli")  # profile block and --set win
    # another dataset, or none, does not see the block
    assert build_config(Cfg, method_layers("m", yaml_data, "paper", {}, "ml-100k")).lr == 0.5
    assert build_config(Cfg, method_layers("m", yaml_data, "paper", {})).lr == 0.5
    with pytest.raises(BenchmarkError, match="`datasets:` must map"):
        method_layers("m", {"datasets": ["amazon"]}, "smoke", {}, "amazon")


def test_unknown_key_and_wrong_type_are_errors():
    with pytest.raises(BenchmarkError, match="unknown config key 'lrr'.*known keys: epochs"):
        build_config(Cfg, [("--set", {"lrr": 1})])
    with pytest.raises(BenchmarkError, match="'epochs'='ten': expected an integer"):
        build_config(Cfg, [("--set", {"epochs": "ten"})])
    with pytest.raises(BenchmarkError, match="expected a list"):
        build_config(Cfg, [("--set", {"grid": 3})])
    with pytest.raises(BenchmarkError, match="profiles"):
        method_layers("m", {"profiles": {"fast": {}}}, "smoke", {})


def test_values_are_parsed_as_yaml_never_evaluated():
    parsed = parse_overrides(["lr=1e-3", "grid=[1, 2]", "limit=null", "name=__import__('os')"])
    assert parsed == {"lr": 1e-3, "grid": [1, 2], "limit": None, "name": "__import__('os')"}
    cfg = build_config(Cfg, [("--set", {"lr": 1, "grid": [1, 2], "limit": None})])
    assert cfg.lr == 1.0 and isinstance(cfg.lr, float) and cfg.limit is None
    with pytest.raises(BenchmarkError, match="key=value"):
        parse_overrides(["lr"])


@dataclass
class Checked:
    hidden: int = 64
    heads: int = 2
    lr: float = 1e-3
    rate: float | None = None

    def __post_init__(self):
        require_divisible("hidden", self.hidden, "heads", self.heads)
        require_positive("lr", self.lr)
        require_range("rate", self.rate, 0, 0.5, low_open=True, optional=True)


def test_a_config_refuses_its_own_bad_values_naming_key_value_and_layers():
    yaml_layer = ("configs/methods/m.yaml", {"hidden": 30})
    with pytest.raises(BenchmarkError) as info:
        build_config(Checked, [yaml_layer, ("--set", {"heads": 4})])
    # both layers that made the conflict are named
    assert str(info.value) == ("configs/methods/m.yaml and --set: config key 'hidden'=30: "
                               "must be divisible by heads (4)")
    with pytest.raises(BenchmarkError) as info:
        build_config(Checked, [("--set", {"lr": float("inf")})])
    assert str(info.value) == "--set: config key 'lr'=inf: must be a finite number"
    with pytest.raises(BenchmarkError) as info:
        build_config(Checked, [("--set", {"lr": 0})])
    assert str(info.value) == "--set: config key 'lr'=0.0: must be > 0"
    with pytest.raises(BenchmarkError) as info:
        build_config(Checked, [("--set", {"rate": 0.0})])
    assert str(info.value) == "--set: config key 'rate'=0.0: must be in (0, 0.5] (or null)"
    assert build_config(Checked, [("--set", {"rate": 0.5})]).rate == 0.5
    assert build_config(Checked, [("--set", {"rate": None})]).rate is None
    with pytest.raises(BenchmarkError) as info:  # no layer set it: the defaults are at fault
        build_config(BadDefaults, [])
    assert str(info.value) == "BadDefaults defaults: config key 'heads'=0: must be >= 1"


@dataclass
class BadDefaults(Checked):
    heads: int = 0

    def __post_init__(self):
        require_range("heads", self.heads, 1)


def test_gpu_profile_resolves_every_method_offline():
    """The gpu profile runs offline: every method's config resolves on both datasets and names
    only packaged backbones (the paper profile's hub ids would need a download)."""
    from dataclasses import asdict

    from benchmark import registry
    from benchmark.runner import resolve_config
    from benchmark.settings import (
        GPU_RESULTS_DIR,
        RUNS_DIR,
        harness_settings,
        reference_results_dir,
        results_dir_for,
    )

    settings = harness_settings("gpu")
    assert settings.datasets == ["ml-100k", "amazon-scientific"]
    for method in registry.available():
        for dataset in settings.datasets:
            _, config = resolve_config(method, "gpu", {}, dataset)
            for key, value in asdict(config).items():
                if key in ("backbone", "text_encoder", "encoder") and isinstance(value, str):
                    assert value.startswith("packaged:"), f"{method}.{key} = {value!r}"
    assert reference_results_dir("gpu", GPU_RESULTS_DIR.parent / ".cache") == GPU_RESULTS_DIR
    # a run writes beside the reference, never into it unless --results-dir names it
    assert results_dir_for("gpu", None, GPU_RESULTS_DIR.parent / ".cache") == RUNS_DIR / "gpu"
