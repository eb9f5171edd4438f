"""The registry: `include:` inheritance of method YAMLs."""

import pytest

from benchmark import registry
from benchmark.errors import BenchmarkError


@pytest.fixture
def method_dir(tmp_path, monkeypatch):
    """An empty configs/methods/ the registry reads instead of the repository's."""
    monkeypatch.setattr(registry, "METHOD_CONFIG_DIR", tmp_path)
    return tmp_path


PARENT = """\
adapter: "baselines.popularity:Popularity"
loss: ce
extra: {a: 1, b: 2}
profiles:
  smoke: {hidden: 16, epochs: 2}
  paper: {epochs: 500}
"""


def test_include_child_states_only_what_differs(method_dir):
    (method_dir / "parent.yaml").write_text(PARENT)
    (method_dir / "child.yaml").write_text(
        "include: parent\nloss: bce\nextra: {a: 9}\nprofiles:\n  smoke: {epochs: 3}\n"
        "  default: {lr: 0.5}\n")
    assert registry.spec("child").target == "baselines.popularity:Popularity"  # inherited
    assert registry.method_yaml("child") == {
        "loss": "bce",  # a top-level key replaces the parent's ...
        "extra": {"a": 9},  # ... wholesale, even a mapping
        "profiles": {
            "smoke": {"hidden": 16, "epochs": 3},  # profiles merge per profile, child wins
            "paper": {"epochs": 500},
            "default": {"lr": 0.5},
        },
    }
    assert "include" not in registry.method_yaml("child")


def test_include_resolves_recursively(method_dir):
    (method_dir / "parent.yaml").write_text(PARENT)
    (method_dir / "child.yaml").write_text("include: parent\nprofiles: {smoke: {epochs: 3}}\n")
    (method_dir / "grandchild.yaml").write_text("include: child\nloss: bpr\n")
    data = registry.method_yaml("grandchild")
    assert data["loss"] == "bpr"
    assert data["profiles"]["smoke"] == {"hidden": 16, "epochs": 3}


def test_include_cycle_names_the_files(method_dir):
    (method_dir / "a.yaml").write_text("include: b\n")
    (method_dir / "b.yaml").write_text("include: a\nadapter: \"x:Y\"\n")
    with pytest.raises(BenchmarkError, match=r"cycle: .*a\.yaml -> .*b\.yaml -> .*a\.yaml"):
        registry.available()


def test_include_of_an_unknown_method_and_a_yaml_without_adapter_fail(method_dir):
    (method_dir / "child.yaml").write_text("include: nowhere\n")
    with pytest.raises(BenchmarkError, match="child.yaml: `include: nowhere` names no method"):
        registry.available()
    (method_dir / "child.yaml").write_text("loss: bce\n")
    with pytest.raises(BenchmarkError, match="child.yaml: needs `adapter:"):
        registry.available()



def test_shipped_variants_are_their_parent_plus_one_key():
    assert registry.method_yaml("sasrec_id_bce") == {**registry.method_yaml("sasrec_id"),
                                                     "loss": "bce"}
    # Same pretraining keys under every profile: the two share one pretraining checkpoint.
    assert registry.method_yaml("recformer_zeroshot") == {**registry.method_yaml("recformer"),
                                                          "finetune": False}
