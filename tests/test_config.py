"""Config precedence: dataclass < YAML < YAML profile block < --set; bad keys and types fail."""

from dataclasses import dataclass, field

import pytest

from benchmark.config import build_config, method_layers, parse_overrides
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
