"""``validate(cases=n)``: a seeded sample of the validation cases, the same at every call."""

from dataclasses import dataclass

import numpy as np
import torch

from benchmark import registry, runner
from benchmark.adapter import AdapterBase
from benchmark.settings import harness_settings


class Sampler(AdapterBase):
    """Calls validate() on every case, then twice on a sample; records whom it scored."""

    @dataclass
    class Config:
        cases: int = 7

    def fit(self, train, validate, ctx):
        self.n, self.seen = train.n_items, []
        for cases in (None, self.config.cases, self.config.cases):
            self.seen.append([])
            validate() if cases is None else validate(cases)
        ctx.report_stop("no_training")

    def score(self, users):
        self.seen[-1].extend(int(u) for u in users.users)
        return torch.zeros(len(users), self.n)


def test_a_sample_is_fixed_by_the_seed_and_recorded_in_the_curve(tiny_atomic, cache_dir,
                                                                 monkeypatch):
    monkeypatch.setattr(registry, "_CLASSES", dict(registry._CLASSES) | {"sampler": Sampler})
    req = runner.RunRequest(method="sampler", dataset=str(tiny_atomic), protocol="loo",
                            profile="smoke", cache_dir=cache_dir, show_progress=False)
    settings = harness_settings("smoke")
    data, split = runner.prepare(req, settings)
    adapter, ctx, _ = runner.fit_adapter(req, settings, data, split)
    every, first, second = (sorted(s) for s in adapter.seen)
    assert every == sorted(split.valid.users.tolist())
    assert first == second and len(first) == 7 and set(first) < set(every)
    assert "valid_cases" not in ctx.curve[0]
    assert [p["valid_cases"] for p in ctx.curve[1:]] == [7, 7]
    idx = runner.validation_sample(len(split.valid), 7, settings.split_seed)
    assert first == sorted(split.valid.users[idx].tolist())
    assert np.all(np.diff(idx) > 0)
