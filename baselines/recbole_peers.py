"""RecBole 1.2.1's own SASRec, GRU4Rec and BERT4Rec as peers, scored by our evaluator.

How the data reaches RecBole (nothing from a validation or test target can):
- ``fit`` only receives ``train.sequences``. They are written as RecBole atomic files, one row
  per interaction, ``timestamp`` = position in the user's sequence (so the order is explicit and
  free of ties), plus a ``.item`` file listing every catalogue item (so items that never occur
  in training still get an id and a score). No missing values.
- RecBole's own leave-one-out runs with ``split: {LS: valid_only}``, order ``TO``: it holds out
  the LAST TRAINING item of each user as its validation target for early stopping (patience on
  NDCG@10, full ranking, history masked, like ours) and trains on the rest. This is the one
  deviation from our SASRec, which trains on every training item and stops on the harness's
  validation target: the peer sees one interaction fewer per user. It keeps the validation
  target out of RecBole entirely, at the price of that item; the subprocess asserts that
  RecBole's held-out targets are exactly the last training items, user by user.
- RecBole's data augmentation (every prefix -> next item) and trainer are used unchanged.

RecBole runs in a subprocess whose working directory is in the cache (it writes ``log/`` and
``saved/`` folders, reseeds every RNG and reconfigures logging). The subprocess saves the best
model; ``score`` loads it here and calls the model's ``full_sort_predict`` on our histories
(truncated to the last ``max_len`` items and right-padded, as RecBole's dataloader does; an
empty history is fed as one padding item), then maps RecBole's internal item ids back to ours.
"""

from __future__ import annotations

import dataclasses
import json
import os
import subprocess
import sys
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch

from baselines import recbole_compat
from benchmark.adapter import AdapterBase, RunContext, TrainData, UserBatch
from benchmark.cache import atomic_write_bytes, atomic_write_text, stable_hash
from benchmark.config import require_at_least, require_positive, require_probability
from benchmark.errors import BenchmarkError
from benchmark.models.training import get_or_train
from benchmark.registry import REPO_ROOT, register

VERSION = 1


@dataclass
class RecBolePeerConfig:
    """Settings matched with our SASRec (max_len 50, hidden 64, 2 layers, patience 10 on
    validation NDCG@10); ``recbole`` passes further RecBole keys verbatim (e.g. mask_ratio)."""

    max_len: int = 50
    hidden: int = 64
    n_layers: int = 2
    n_heads: int = 2
    inner_size: int = 256
    dropout: float = 0.2
    loss_type: str = "CE"
    lr: float = 1e-3
    train_batch_size: int = 256
    epochs: int = 200
    patience: int = 10
    eval_step: int = 1
    recbole: dict = field(default_factory=dict)

    def __post_init__(self) -> None:
        # hidden % n_heads is left to RecBole: GRU4Rec shares this config and has no heads.
        for key in ("max_len", "hidden", "n_layers", "n_heads", "inner_size",
                    "train_batch_size", "epochs", "patience", "eval_step"):
            require_at_least(key, getattr(self, key), 1)
        require_probability("dropout", self.dropout, below_one=True)
        require_positive("lr", self.lr)


def recbole_settings(model: str, cfg: RecBolePeerConfig) -> dict[str, Any]:
    """Our config -> the model's RecBole hyperparameter names."""
    if model in ("SASRec", "BERT4Rec"):
        arch = {"n_layers": cfg.n_layers, "n_heads": cfg.n_heads, "hidden_size": cfg.hidden,
                "inner_size": cfg.inner_size, "hidden_dropout_prob": cfg.dropout,
                "attn_dropout_prob": cfg.dropout}
    elif model == "GRU4Rec":
        arch = {"embedding_size": cfg.hidden, "hidden_size": cfg.hidden,
                "num_layers": cfg.n_layers, "dropout_prob": cfg.dropout}
    else:
        raise BenchmarkError(f"no RecBole peer {model!r}")
    return {**arch, "loss_type": cfg.loss_type, "MAX_ITEM_LIST_LENGTH": cfg.max_len,
            "learning_rate": cfg.lr, "train_batch_size": cfg.train_batch_size,
            "epochs": cfg.epochs, "stopping_step": cfg.patience, "eval_step": cfg.eval_step,
            **cfg.recbole}


def write_atomic_files(sequences: list[np.ndarray], n_items: int, folder: Path,
                       name: str = "peer") -> None:
    """``<name>.inter`` (user, item, timestamp = position) and ``<name>.item`` (every item)."""
    folder.mkdir(parents=True, exist_ok=True)
    rows = ["user_id:token\titem_id:token\ttimestamp:float"]
    for u, seq in enumerate(sequences):
        rows.extend(f"{u}\t{item}\t{t}" for t, item in enumerate(seq.tolist()))
    atomic_write_text(folder / f"{name}.inter", "\n".join(rows) + "\n")
    items = ["item_id:token", *map(str, range(n_items))]
    atomic_write_text(folder / f"{name}.item", "\n".join(items) + "\n")


def base_settings(workdir: Path, split_mode: str, seed: int, device: str) -> dict[str, Any]:
    """RecBole settings of the data and protocol, identical for every peer."""
    return {
        "data_path": str(workdir / "data"), "dataset": "peer", "checkpoint_dir": "saved",
        "USER_ID_FIELD": "user_id", "ITEM_ID_FIELD": "item_id", "TIME_FIELD": "timestamp",
        "load_col": {"inter": ["user_id", "item_id", "timestamp"], "item": ["item_id"]},
        "user_inter_num_interval": "[0,inf)", "item_inter_num_interval": "[0,inf)",
        "eval_args": {"split": {"LS": split_mode}, "order": "TO", "group_by": "user",
                      "mode": "full"},
        "train_neg_sample_args": None, "metrics": ["NDCG", "Hit"], "topk": [10],
        "valid_metric": "NDCG@10", "eval_batch_size": 256, "seed": seed,
        "reproducibility": True, "use_gpu": device == "cuda", "worker": 0,
        "log_wandb": False, "save_dataset": False, "save_dataloaders": False,
    }


class RecBolePeer(AdapterBase):
    """Shared adapter; subclasses name the RecBole model."""

    Config = RecBolePeerConfig
    model_name = ""
    needs = frozenset()
    output = "scores"

    def __init__(self, config: RecBolePeerConfig) -> None:
        super().__init__(config)
        self.model: torch.nn.Module | None = None
        self.internal_ids: np.ndarray | None = None
        self.info: dict[str, Any] = {}

    def fit(self, train: TrainData, validate: Callable[[], float], ctx: RunContext) -> None:
        import recbole

        key = stable_hash([ctx.train_hash, ctx.catalog_hash, self.model_name,
                           dataclasses.asdict(self.config), VERSION, ctx.seed,
                           recbole.__version__])
        recbole_compat.install()  # unpickling a RecBole model imports recbole
        saved, _ = get_or_train(ctx, "recbole_peer", key,
                                lambda: self._train(train, ctx, ctx.cache.root / "recbole" / key),
                                map_location=ctx.device, weights_only=False)
        self.model = saved["model"].eval()
        self.internal_ids = saved["internal_ids"]
        self.info = saved["info"]

    def _train(self, train: TrainData, ctx: RunContext, workdir: Path) -> dict[str, Any]:
        """Train in a RecBole subprocess (or take the model a finished one left in ``workdir``,
        counted at the training time that subprocess recorded); its validation curve (RecBole's
        own validation target, see the module docstring) goes into the run's training record."""
        result_path = workdir / "result.pt"
        left_by_earlier = result_path.exists()
        if not left_by_earlier:
            write_atomic_files(train.sequences, train.n_items, workdir / "data" / "peer")
            job = {"model": self.model_name, "mode": "train",
                   "settings": {**base_settings(workdir, "valid_only", ctx.seed, ctx.device),
                                **recbole_settings(self.model_name, self.config),
                                "show_progress": ctx.show_progress},
                   "threads": torch.get_num_threads()}
            run_recbole(workdir, job, show_progress=ctx.show_progress)
        saved = recbole_compat.load_checkpoint(result_path, ctx.device)
        info = saved["info"]
        if left_by_earlier:  # its training ran in an earlier process: count it at its cost
            ctx.restored_seconds += float(info.get("fit_seconds", 0.0))
        samples = info.get("samples_per_epoch", 0)
        for point in info["curve"]:  # one validation every eval_step epochs
            ctx.count_examples(samples * self.config.eval_step)
            # results from before the curve carried times hold bare floats
            value, seconds = ((point, None) if isinstance(point, float)
                              else (point["valid_ndcg10"], point["seconds"]))
            ctx.curve.append({"examples": ctx.examples_seen, "seconds": seconds,
                              "valid_ndcg10": value})
        ctx.report_stop(info["stop_reason"])
        return saved

    @torch.no_grad()
    def score(self, users: UserBatch) -> torch.Tensor:
        assert self.model is not None and self.internal_ids is not None, "fit() first"
        max_len = self.config.max_len
        seqs = np.zeros((len(users), max_len), dtype=np.int64)  # 0 = RecBole's padding id
        lengths = np.ones(len(users), dtype=np.int64)  # an empty history = one padding item
        for row, hist in enumerate(users.histories):
            tail = self.internal_ids[hist[-max_len:]]
            seqs[row, :len(tail)] = tail
            lengths[row] = max(len(tail), 1)
        from recbole.data.interaction import Interaction

        batch = Interaction({"item_id_list": torch.as_tensor(seqs),
                             "item_length": torch.as_tensor(lengths)})
        device = next(self.model.parameters()).device
        scores = self.model.full_sort_predict(batch.to(device)).cpu()
        return scores[:, torch.as_tensor(self.internal_ids)]

    def diagnostics(self) -> dict[str, Any]:
        return {k: self.info[k] for k in ("epochs", "best_valid_ndcg10", "fit_seconds",
                                          "samples_per_epoch", "deviation") if k in self.info}


def run_recbole(workdir: Path, job: dict[str, Any], show_progress: bool = False) -> None:
    """Run ``job`` in a fresh interpreter inside ``workdir``; raise with the log tail on failure."""
    workdir.mkdir(parents=True, exist_ok=True)
    atomic_write_text(workdir / "job.json", json.dumps(job))
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(
        [str(REPO_ROOT), os.environ.get("PYTHONPATH", "")])}
    with open(workdir / "subprocess.log", "w") as log:
        proc = subprocess.run([sys.executable, "-m", "baselines.recbole_peers", str(workdir)],
                              cwd=workdir, env=env, stdout=log,
                              stderr=None if show_progress else subprocess.STDOUT)
    if proc.returncode:
        tail = (workdir / "subprocess.log").read_text()[-3000:]
        raise BenchmarkError(f"RecBole {job['model']} failed (log in {workdir}):\n{tail}")


@register("recbole_sasrec")
class RecBoleSASRec(RecBolePeer):
    model_name = "SASRec"


@register("recbole_gru4rec")
class RecBoleGRU4Rec(RecBolePeer):
    model_name = "GRU4Rec"


@register("recbole_bert4rec")
class RecBoleBERT4Rec(RecBolePeer):
    model_name = "BERT4Rec"


# --------------------------------------------------------------------------- subprocess side


def _subprocess_main(workdir: Path) -> None:
    """Inside the RecBole subprocess: build the data, check the split, train, save."""
    import time

    recbole_compat.install()
    from recbole.config import Config
    from recbole.data import create_dataset, data_preparation
    from recbole.utils import get_model, get_trainer, init_logger, init_seed

    job = json.loads((workdir / "job.json").read_text())
    torch.set_num_threads(job.get("threads") or torch.get_num_threads())
    config = Config(model=job["model"], dataset="peer", config_dict=job["settings"])
    init_seed(config["seed"], config["reproducibility"])
    init_logger(config)
    dataset = create_dataset(config)
    train_data, valid_data, test_data = data_preparation(config, dataset)
    to_ours = dataset.field2id_token["item_id"]  # internal id -> our item index (as text)
    to_user = dataset.field2id_token["user_id"]

    def targets(data: Any) -> dict[int, int]:
        """user -> held-out target item (our indices) of a RecBole evaluation split."""
        inter = data.dataset.inter_feat
        return {int(to_user[u]): int(to_ours[i]) for u, i in
                zip(inter["user_id"].tolist(), inter["item_id"].tolist())}

    if job["mode"] == "split":  # used by the tests: RecBole's own leave-one-out targets
        out = {"valid": targets(valid_data)}
        if test_data is not None and len(test_data.dataset):
            out["test"] = targets(test_data)
        atomic_write_text(workdir / "split.json", json.dumps(out))
        return

    # RecBole's validation target must be the last TRAINING item of each user, nothing else
    # (a user needs >= 3 training items: RecBole keeps a user's only sample for training).
    rows = (workdir / "data" / "peer" / "peer.inter").read_text().splitlines()[1:]
    sequences: dict[int, list[int]] = {}
    for row in rows:
        u, item, _ = row.split("\t")
        sequences.setdefault(int(u), []).append(int(item))
    expected = {u: seq[-1] for u, seq in sequences.items() if len(seq) >= 3}
    if targets(valid_data) != expected:
        raise AssertionError("RecBole's held-out items differ from the last training items")

    model = get_model(config["model"])(config, train_data.dataset).to(config["device"])
    trainer = get_trainer(config["MODEL_TYPE"], config["model"])(config, model)
    curve: list[dict[str, float]] = []
    validate_epoch = trainer._valid_epoch

    def recorded(*args: Any, **kwargs: Any) -> Any:
        score, result = validate_epoch(*args, **kwargs)
        curve.append({"seconds": round(time.perf_counter() - start, 3),
                      "valid_ndcg10": float(score)})
        return score, result

    trainer._valid_epoch = recorded
    start = time.perf_counter()
    trainer.fit(train_data, valid_data, saved=True, show_progress=config["show_progress"])
    fit_seconds = time.perf_counter() - start
    checkpoint = recbole_compat.load_checkpoint(trainer.saved_model_file)
    model.load_state_dict(checkpoint["state_dict"])
    model.load_other_parameter(checkpoint.get("other_parameter"))
    epochs = len(trainer.train_loss_dict)
    internal = np.zeros(len(to_ours) - 1, dtype=np.int64)
    for internal_id, token in enumerate(to_ours):
        if internal_id:  # 0 is [PAD]
            internal[int(token)] = internal_id
    info = {"stop_reason": "early_stop" if epochs < config["epochs"] else "epoch_cap",
            "epochs": epochs, "curve": curve,
            "best_valid_ndcg10": max((p["valid_ndcg10"] for p in curve), default=None),
            "fit_seconds": fit_seconds, "samples_per_epoch": len(train_data.dataset),
            "deviation": "RecBole validates on the last training item (held out of its "
                         "training); our validation target never reaches it"}
    import io

    buffer = io.BytesIO()
    torch.save({"model": model.cpu(), "internal_ids": internal, "info": info}, buffer)
    atomic_write_bytes(workdir / "result.pt", buffer.getvalue())


if __name__ == "__main__":
    _subprocess_main(Path(sys.argv[1]))
