"""The shared training loop: schedule, parameter groups, stopping rules, best model, resume."""

from __future__ import annotations

import functools
import math

import numpy as np
import pytest
import torch

from zhtext.errors import ZhtextError
from zhtext.neural.trainer import (
    TrainConfig,
    checkpoint_path,
    lr_factor,
    param_groups,
    Trainer,
    seed_everything,
)

N_BATCHES = 10
X = torch.randn(40, 5, generator=torch.Generator().manual_seed(0))
Y = X @ torch.arange(5.0)


class Regressor(torch.nn.Module):
    """A model with dropout (so the RNG matters) and a LayerNorm (so grouping has norms to skip)."""

    def __init__(self) -> None:
        super().__init__()
        self.norm = torch.nn.LayerNorm(5)
        self.hidden = torch.nn.Linear(5, 8)
        self.drop = torch.nn.Dropout(0.3)
        self.out = torch.nn.Linear(8, 1)

    def forward(self, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        pred = self.out(self.drop(torch.relu(self.hidden(self.norm(x))))).squeeze(-1)
        return ((pred - y) ** 2).mean()


@pytest.fixture(scope="module", autouse=True)
def one_thread(request):
    """A toy model trains fastest on one thread (two busy cores make torch's pool spin)."""
    request.addfinalizer(functools.partial(torch.set_num_threads, torch.get_num_threads()))
    torch.set_num_threads(1)


def batches_factory(interrupt_at: tuple[int, int] | None = None, calls: list | None = None):
    """Batches of 4 rows in an order fixed by the epoch; optionally Ctrl-C at (epoch, batch)."""

    def batches(epoch: int):
        order = np.random.default_rng([7, epoch]).permutation(len(X))
        for i in range(N_BATCHES):
            if interrupt_at == (epoch, i):
                raise KeyboardInterrupt
            if calls is not None:
                calls.append((epoch, i))
            rows = order[i * 4 : (i + 1) * 4]
            yield X[rows], Y[rows]

    return batches


def run(out_dir, interrupt_at=None, evaluate=None, on_best=None, metric="f1",
        lower_is_better=False, **config):
    seed_everything(3)
    model = Regressor()
    settings = {"epochs": 3, "seed": 3, "progress": False, "output": out_dir, **config}
    cfg = TrainConfig(**settings)
    try:
        history = Trainer(model, cfg, batches_factory(interrupt_at), N_BATCHES,
                          groups=param_groups(model, 0.01), evaluate=evaluate, on_best=on_best,
                          metric=metric, lower_is_better=lower_is_better).fit()
    except KeyboardInterrupt:
        history = None
    return model, history


def weights(model: torch.nn.Module) -> dict[str, torch.Tensor]:
    return {k: v.clone() for k, v in model.state_dict().items()}


def test_lr_factor_warms_up_then_decays_linearly():
    assert lr_factor(0.0, 0.1) == 0.0
    assert lr_factor(0.05, 0.1) == pytest.approx(0.5)
    assert lr_factor(0.1, 0.1) == pytest.approx(1.0)
    assert lr_factor(0.55, 0.1) == pytest.approx(0.5)
    assert lr_factor(1.0, 0.1) == 0.0
    assert lr_factor(1.5, 0.1) == 0.0  # clamped past the end
    assert lr_factor(0.25, 0.0) == pytest.approx(0.75)


def test_param_groups_split_head_and_decay():
    model = Regressor()
    groups = param_groups(model, 1e-3, weight_decay=0.1, head=["out"], head_lr=0.5)
    names = {id(p): n for n, p in model.named_parameters()}
    by_name = {names[id(p)]: g for g in groups for p in g["params"]}
    assert set(by_name) == set(names.values())  # every parameter exactly once
    assert by_name["hidden.weight"]["lr"] == 1e-3 and by_name["hidden.weight"]["weight_decay"] == 0.1
    assert by_name["hidden.bias"]["weight_decay"] == 0.0
    assert by_name["norm.weight"]["weight_decay"] == 0.0
    assert by_name["out.weight"]["lr"] == 0.5 and by_name["out.weight"]["weight_decay"] == 0.0


@pytest.mark.parametrize("accum", [1, 3])
def test_resume_after_interruption_matches_uninterrupted_run(tmp_path, accum):
    straight, history = run(tmp_path / "a", grad_accum=accum)
    steps_per_epoch = math.ceil(N_BATCHES / accum)
    assert [h["step"] for h in history] == [steps_per_epoch * e for e in (1, 2, 3)]
    assert not checkpoint_path(tmp_path / "a").exists()  # removed once the schedule completes

    _, none = run(tmp_path / "b", interrupt_at=(1, 5), grad_accum=accum)
    assert none is None
    saved = torch.load(checkpoint_path(tmp_path / "b"), weights_only=False)
    assert saved["loop"]["epoch"] == 1 and 0 < saved["loop"]["step"] < 3 * steps_per_epoch
    resumed, history2 = run(tmp_path / "b", resume=True, grad_accum=accum)
    assert [h["step"] for h in history2] == [h["step"] for h in history]
    for key, value in weights(straight).items():
        assert torch.equal(value, resumed.state_dict()[key]), key


def test_ema_scores_and_saves_the_moving_average_of_the_weights(tmp_path):
    """The evaluation (and on_best, which saves) sees the average, recomputed here by hand from
    the raw weights after every step; training itself goes on from the raw weights."""
    decay = 0.9
    seen: list[dict[str, torch.Tensor]] = []  # the weights each evaluation sees
    raw: list[dict[str, torch.Tensor]] = []  # the raw weights after every optimizer step
    seed_everything(3)
    model = Regressor()

    def evaluate():
        seen.append(weights(model))
        return {"f1": 0.0}

    average = {k: v.clone() for k, v in model.named_parameters()}
    cfg = TrainConfig(epochs=2, seed=3, progress=False, output=tmp_path, ema=decay)
    trainer = Trainer(model, cfg, batches_factory(), N_BATCHES, groups=param_groups(model, 0.01),
                      evaluate=evaluate)
    step = trainer.optimizer.step

    def step_and_record(*args, **kwargs):
        out = step(*args, **kwargs)
        raw.append({k: v.detach().clone() for k, v in model.named_parameters()})
        return out

    trainer.optimizer.step = step_and_record
    history = trainer.fit()
    expected = []
    for t, now in enumerate(raw):
        d = min(decay, (1 + t) / (10 + t))
        average = {k: d * average[k] + (1 - d) * now[k] for k in average}
        if t + 1 in (h["step"] for h in history):
            expected.append(average)
    assert len(seen) == len(expected) == 2
    for got, want in zip(seen, expected):
        for k, v in want.items():
            torch.testing.assert_close(got[k], v, rtol=1e-6, atol=1e-7)
    for k, v in model.named_parameters():  # after the evaluation the raw weights are back
        assert torch.equal(v.detach(), raw[-1][k]), k
        assert not torch.allclose(v.detach(), expected[-1][k]), k


def test_resume_with_ema_matches_uninterrupted_run(tmp_path):
    """The average travels in the checkpoint: a resumed run scores the same averages."""
    probe = X[:8], Y[:8]

    def scores(out, interrupt_at=None, **config):
        seed_everything(3)
        model = Regressor()
        cfg = TrainConfig(epochs=3, seed=3, progress=False, output=out, **config)
        trainer = Trainer(model, cfg, batches_factory(interrupt_at), N_BATCHES,
                          groups=param_groups(model, 0.01),
                          evaluate=lambda: {"f1": -float(model(*probe))})
        return [h["f1"] for h in trainer.fit()]

    straight = scores(tmp_path / "a", ema=0.8)
    assert len(straight) == 3
    with pytest.raises(KeyboardInterrupt):
        scores(tmp_path / "b", interrupt_at=(1, 5), ema=0.8)
    assert scores(tmp_path / "b", resume=True, ema=0.8) == straight
    assert scores(tmp_path / "c") != straight  # the average is what was scored
    with pytest.raises(KeyboardInterrupt):
        scores(tmp_path / "d", interrupt_at=(1, 5))  # a checkpoint without an average
    with pytest.raises(ZhtextError, match="no moving average"):
        scores(tmp_path / "d", resume=True, ema=0.5)


def test_max_steps_and_time_budget_stop_early_and_keep_a_checkpoint(tmp_path):
    _, history = run(tmp_path / "steps", max_steps=4)
    assert history[-1]["step"] == 4
    with pytest.warns(UserWarning, match="time budget .* checkpoint .* is kept"):
        _, history = run(tmp_path / "time", max_seconds=0.0)  # out of time after the first step
    assert [h["step"] for h in history] == [1]
    assert checkpoint_path(tmp_path / "time").is_file()  # stopped early: resumable
    _, history = run(tmp_path / "time", resume=True, max_steps=6)
    assert history[-1]["step"] == 6


def test_best_model_callback_and_eval_every(tmp_path):
    scores = iter([0.5, 0.7, 0.6, 0.9, 0.8, 0.1, 0.2])
    best: list[dict] = []
    _, history = run(tmp_path, evaluate=lambda: {"f1": next(scores)}, on_best=best.append,
                     eval_every=4, epochs=2)
    # 10 steps per epoch: evaluations at steps 4, 8, 10 (epoch end), 12, 16, 20 (end)
    assert [h["step"] for h in history] == [4, 8, 10, 12, 16, 20]
    assert [b["step"] for b in best] == [4, 8, 12]
    assert [h["f1"] for h in history] == [0.5, 0.7, 0.6, 0.9, 0.8, 0.1]


def test_best_model_of_a_metric_to_minimise(tmp_path):
    scores = iter([50.0, 30.0, 40.0, 20.0, 25.0, 60.0])
    best: list[dict] = []
    run(tmp_path, evaluate=lambda: {"ppl": next(scores)}, on_best=best.append, eval_every=4,
        epochs=2, metric="ppl", lower_is_better=True)
    assert [b["ppl"] for b in best] == [50.0, 30.0, 20.0]


@pytest.mark.parametrize(("settings", "message"), [
    ({"grad_accum": 0}, "grad_accum must be >= 1"), ({"max_seconds": -1.0}, "max_seconds must be >= 0"),
    ({"warmup": 1.5}, "warmup must lie in"), ({"ema": 1.0}, "ema must lie in"), ({"epochs": -1, "eval_every": 0}, "epochs must be >= 0; eval"),
])
def test_bad_settings_are_one_clear_error(settings, message):
    with pytest.raises(ZhtextError, match=message):
        TrainConfig(**settings)


def test_a_learning_rate_must_be_positive():
    model = torch.nn.Linear(2, 2)
    with pytest.raises(ZhtextError, match="learning rate must be > 0"):
        param_groups(model, -1.0)
    with pytest.raises(ZhtextError, match="learning rate must be > 0"):
        param_groups(model, 1e-3, head=["weight"], head_lr=0.0)


def test_resume_refuses_a_checkpoint_for_other_settings(tmp_path):
    run(tmp_path, interrupt_at=(0, 3))
    model = Regressor()
    with pytest.raises(ZhtextError, match="other data or settings "
                       r"\(batches_per_epoch: 10 in it, 11 now\)"):
        Trainer(model, TrainConfig(output=tmp_path, resume=True, progress=False), batches_factory(),
                N_BATCHES + 1, groups=param_groups(model, 0.01)).fit()
    # A setting the checkpoint predates, and one it holds otherwise: both named, in order.
    with pytest.raises(ZhtextError, match=r"\(label_smoothing: none in it, 0.1 now; "
                       r"vocab: none in it, 'x' now\)"):
        Trainer(model, TrainConfig(output=tmp_path, resume=True, progress=False), batches_factory(),
                N_BATCHES, groups=param_groups(model, 0.01),
                extra_state={"vocab": "x", "label_smoothing": 0.1}).fit()


def test_wrong_batch_count_is_an_error(tmp_path):
    model = Regressor()
    with pytest.raises(ZhtextError, match="gave 10 batches"):
        Trainer(model, TrainConfig(output=tmp_path, progress=False), batches_factory(), 12,
                groups=param_groups(model, 0.01)).fit()


class FakeClock:
    """Stands in for the trainer's ``time`` module: the trainer reads the clock once as a run
    starts and once per optimizer step, and each reading is one second later, so a step takes a
    second."""

    def __init__(self) -> None:
        self.now = 0.0

    def perf_counter(self) -> float:
        self.now += 1.0
        return self.now


def timed_run(out_dir, **config):
    seed_everything(3)
    model = Regressor()
    cfg = TrainConfig(**{"epochs": 3, "seed": 3, "progress": False, "output": out_dir, **config})
    trainer = Trainer(model, cfg, batches_factory(), N_BATCHES, groups=param_groups(model, 0.01))
    return trainer, trainer.fit()


def test_max_seconds_is_a_total_across_resumes(tmp_path, monkeypatch):
    import zhtext.neural.trainer as trainer_module

    monkeypatch.setattr(trainer_module, "time", FakeClock())
    with pytest.warns(UserWarning, match=r"time budget \(--max-seconds 4\) at step 4 of 30; its "
                      r"checkpoint .*state.pt is kept: --resume with a larger --max-seconds"):
        _, history = timed_run(tmp_path, max_seconds=4.0)
    assert history[-1]["step"] == 4 and checkpoint_path(tmp_path).is_file()
    # Resumed under the same budget: nothing left to spend, said in one line.
    with pytest.raises(ZhtextError, match=r"time budget is spent: 4 s of --max-seconds 4 .* step 4"):
        timed_run(tmp_path, max_seconds=4.0, resume=True)
    # A larger budget: 3 more seconds, so 3 more steps (not 7), the schedule decaying over all 7.
    with pytest.warns(UserWarning, match="at step 7 of 30"):
        trainer, history = timed_run(tmp_path, max_seconds=7.0, resume=True)
    assert history[-1]["step"] == 7 and trainer.state.elapsed == 7.0
    # The learning rate of step 7 was set with 6 of the 7 seconds spent.
    assert history[-1]["lr"] == pytest.approx(0.01 * lr_factor(6 / 7, 0.1))
    assert checkpoint_path(tmp_path).is_file()


def test_the_checkpoint_goes_when_the_run_completes_unless_kept(tmp_path):
    run(tmp_path / "removed", max_steps=3)
    assert not (tmp_path / "removed" / "checkpoint").exists()
    run(tmp_path / "kept", max_steps=3, keep_checkpoint=True)
    saved = torch.load(checkpoint_path(tmp_path / "kept"), weights_only=False)
    assert saved["loop"]["step"] == 3
    # A kept checkpoint continues with a longer schedule.
    _, history = run(tmp_path / "kept", max_steps=5, resume=True)
    assert history[-1]["step"] == 5 and not checkpoint_path(tmp_path / "kept").exists()


def test_resume_without_a_checkpoint_is_an_error(tmp_path):
    model = Regressor()
    with pytest.raises(ZhtextError, match="nothing to resume: no .*state.pt"):
        Trainer(model, TrainConfig(output=tmp_path, resume=True, progress=False), batches_factory(),
                N_BATCHES, groups=param_groups(model, 0.01)).fit()


def test_a_diverging_loss_stops_with_one_line(tmp_path):
    class Diverging(Regressor):
        def forward(self, x, y):
            return super().forward(x, y) * float("nan")

    model = Diverging()
    with pytest.raises(ZhtextError, match="training diverged: the loss is nan at step 1"):
        Trainer(model, TrainConfig(output=tmp_path, progress=False), batches_factory(), N_BATCHES,
                groups=param_groups(model, 0.01)).fit()
