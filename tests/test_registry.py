"""The registry: `include:` inheritance of method YAMLs, and the adapter contract at the door."""

import sys

import pytest

from benchmark import registry
from benchmark.adapter import AdapterBase
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


def test_include_merges_dataset_blocks_per_dataset(method_dir):
    (method_dir / "parent.yaml").write_text(
        PARENT + "datasets:\n  amazon-scientific: {dropout: 0.5, max_len: 20}\n")
    (method_dir / "child.yaml").write_text(
        "include: parent\ndatasets:\n  amazon-scientific: {max_len: 50}\n  ml-100k: {lr: 0.1}\n")
    assert registry.method_yaml("child")["datasets"] == {
        "amazon-scientific": {"dropout": 0.5, "max_len": 50}, "ml-100k": {"lr": 0.1}}
    (method_dir / "bad.yaml").write_text("include: parent\ndatasets: [x]\n")
    with pytest.raises(BenchmarkError, match="`datasets:` must map dataset names"):
        registry.method_yaml("bad")


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
    assert registry.method_yaml("recformer_pretrained") == {**registry.method_yaml("recformer"),
                                                            "finetune": False}


# ------------------------------------------------------------------------------ the contract


class Scorer(AdapterBase):
    """A minimal valid adapter: a Config dataclass (AdapterBase's), fit and score."""

    def fit(self, train, validate, ctx):
        pass

    def score(self, users):
        return None


class NoScore(AdapterBase):
    def fit(self, train, validate, ctx):
        pass


class RankingNoRank(Scorer):
    output = "ranking"


class BadOutput(Scorer):
    output = "logits"


class UnknownNeeds(Scorer):
    needs = frozenset({"item_text", "semantic_ids"})


class NeedsNotASet(Scorer):
    needs = "item_text"


class NoConfig:
    output = "scores"

    def fit(self, train, validate, ctx):
        pass

    def score(self, users):
        return None


class ConfigNotADataclass(Scorer):
    class Config:
        lr: float = 0.1


class NoFit(AdapterBase):
    def score(self, users):
        return None


@pytest.mark.parametrize("cls, problem", [
    (NoScore, "output 'scores' but no score() method"),
    (RankingNoRank, "output 'ranking' but no rank() method"),
    (BadOutput, "output 'logits' is not one of ['ranking', 'scores']"),
    (UnknownNeeds, "unknown needs ['semantic_ids']; the runner acts on ['item_text', "
                   "'transfer_corpus']"),
    (NeedsNotASet, "`needs` must be a frozenset of strings, got 'item_text'"),
    (NoConfig, "no `Config` dataclass (an empty `@dataclass class Config: pass` will do)"),
    (ConfigNotADataclass, "no `Config` dataclass (an empty `@dataclass class Config: pass` will do)"),
    (NoFit, "no fit() method"),
])
def test_a_broken_adapter_fails_at_registration(cls, problem):
    name = f"broken_{cls.__name__.lower()}"
    with pytest.raises(BenchmarkError) as info:
        registry.register(name)(cls)
    assert str(info.value) == f"method {name!r} ({__name__}:{cls.__qualname__}): {problem}"
    assert name not in registry.available()


class TransferWithoutKey(AdapterBase):
    needs = frozenset({"transfer_corpus"})

    def fit(self, train, validate, ctx):
        pass

    def score(self, users):
        return None


def test_a_transfer_need_without_a_transfer_from_key_fails_at_registration():
    with pytest.raises(BenchmarkError, match="needs 'transfer_corpus' but its Config has no "
                                             "`transfer_from` key"):
        registry.register("broken_transfer")(TransferWithoutKey)
    assert "broken_transfer" not in registry.available()


def test_recformer_transfer_is_recformer_without_finetuning_from_the_other_dataset():
    own = registry.method_yaml("recformer_transfer")
    parent = registry.method_yaml("recformer")
    assert own["finetune"] is False and own["transfer_from"] == "auto"
    assert {k: v for k, v in own.items() if k not in ("finetune", "transfer_from", "datasets")
            } == {k: v for k, v in parent.items() if k not in ("finetune", "datasets")}
    # Blocks keyed by the target give the source the pretraining recformer gives it.
    assert own["datasets"]["ml-100k"]["pretrain_epoch_pairs"] == (
        parent["datasets"]["amazon-scientific"]["pretrain_epoch_pairs"])
    assert own["datasets"]["amazon-scientific"]["pretrain_epoch_pairs"] == 0


def test_a_valid_adapter_registers(monkeypatch):
    monkeypatch.setattr(registry, "_CLASSES", dict(registry._CLASSES))  # leave no trace
    assert registry.register("contract_ok")(Scorer) is Scorer
    assert registry.adapter_class("contract_ok") is Scorer


def test_a_yaml_pointed_class_is_checked_when_looked_up(method_dir, monkeypatch):
    (method_dir / "elsewhere.py").write_text(
        "class Broken:\n    output = 'ranking'\n    needs = frozenset()\n"
        "    from dataclasses import make_dataclass\n    Config = make_dataclass('Config', [])\n"
        "    def fit(self, train, validate, ctx): pass\n")
    monkeypatch.syspath_prepend(str(method_dir))
    monkeypatch.delitem(sys.modules, "elsewhere", raising=False)
    (method_dir / "broken.yaml").write_text('adapter: "elsewhere:Broken"\n')
    with pytest.raises(BenchmarkError, match=r"^method 'broken' \(elsewhere:Broken\): "
                                              r"output 'ranking' but no rank\(\) method$"):
        registry.adapter_class("broken")


def test_every_shipped_method_meets_the_contract():
    for name in registry.available():
        cls = registry.adapter_class(name)  # raises BenchmarkError on a violation
        assert isinstance(cls, type), name


def test_a_renamed_method_is_found_by_its_old_name_with_a_note(capsys):
    assert registry.resolve_name("recformer_zeroshot") == "recformer_pretrained"
    assert "now called 'recformer_pretrained'" in capsys.readouterr().err
    assert registry.resolve_name("sasrec_id") == "sasrec_id"
