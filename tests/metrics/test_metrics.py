"""MACs, params, latency and accuracy against hand calculations."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from torch import nn

from autoprune.metrics import count_cost, count_macs, evaluate_accuracy, layer_costs, measure_latency, paired_mean_se


class Tiny(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(3, 8, 3, stride=1, padding=1)  # 8x8 out
        self.bn = nn.BatchNorm2d(8)
        self.conv2 = nn.Conv2d(8, 16, 3, stride=2, padding=1)  # 4x4 out
        self.dw = nn.Conv2d(16, 16, 3, padding=1, groups=16)  # depthwise, 4x4 out
        self.fc = nn.Linear(16 * 4 * 4, 10)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.dw(self.conv2(torch.relu(self.bn(self.conv1(x)))))
        return self.fc(x.flatten(1))


def test_macs_match_hand_calculation() -> None:
    # MACs = output positions * (in_channels / groups) * k*k * out_channels
    conv1 = 8 * 8 * 3 * 3 * 3 * 8
    conv2 = 4 * 4 * 8 * 3 * 3 * 16
    dw = 4 * 4 * 1 * 3 * 3 * 16
    fc = 256 * 10
    model = Tiny()
    assert count_macs(model, (5, 3, 8, 8)) == conv1 + conv2 + dw + fc  # batch size is ignored
    costs = layer_costs(model, (1, 3, 8, 8))
    assert list(costs) == ["conv1", "conv2", "dw", "fc"]
    assert costs["conv2"].macs == conv2 and costs["conv2"].out_positions == 16
    params = sum(p.numel() for p in model.parameters())
    assert count_cost(model, (1, 3, 8, 8)).params == params


def test_effective_macs_count_only_nonzero_weights() -> None:
    model = Tiny()
    before = count_cost(model, (1, 3, 8, 8))
    assert before.effective_macs == before.macs  # random init: no zero weights
    with torch.no_grad():
        model.conv1.weight[:4].zero_()  # half of conv1's filters
    cost = count_cost(model, (1, 3, 8, 8))
    assert cost.macs == before.macs
    assert cost.macs - cost.effective_macs == 8 * 8 * 3 * 3 * 3 * 4
    assert cost.nonzero_params == before.nonzero_params - 4 * 27


def test_shared_module_called_twice_is_counted_twice() -> None:
    class Twice(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.fc = nn.Linear(4, 4)

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            return self.fc(self.fc(x))

    assert count_macs(Twice(), (1, 4)) == 2 * 16


def test_latency_records_conditions() -> None:
    before = torch.get_num_threads()
    threads = 2 if before == 1 else 1  # differs from the current setting, so restoring it is observable
    lat = measure_latency(Tiny(), (1, 3, 8, 8), batch_size=4, warmup=1, repeats=5, threads=threads)
    assert lat.batch_size == 4 and lat.threads == threads and lat.rounds == 5
    assert 0 < lat.p10_ms <= lat.median_ms <= lat.p90_ms
    assert torch.get_num_threads() == before  # restored
    with pytest.raises(ValueError):
        measure_latency(Tiny(), (1, 3, 8, 8), batch_size=0)


def test_accuracy_top1_top5_against_known_predictions() -> None:
    class Fixed(nn.Module):
        def forward(self, x: torch.Tensor) -> torch.Tensor:
            return x  # inputs are the logits

    logits = torch.tensor([[9.0, 1, 2, 3, 4, 5], [0.0, 9, 8, 7, 6, 5], [1.0, 2, 3, 4, 5, 6]])
    labels = torch.tensor([0, 2, 0])  # hit; top-2 only; rank 6 -> miss in top-5
    acc = evaluate_accuracy(Fixed(), [(logits, labels)])
    assert acc.top1 == pytest.approx(1 / 3)
    assert acc.top5 == pytest.approx(2 / 3)
    assert acc.samples == 3
    partial = evaluate_accuracy(Fixed(), [(logits, labels), (logits[:1], labels[:1])], max_batches=1)
    assert partial.samples == 3


def test_per_sample_hits_and_their_paired_difference_against_hand_values() -> None:
    class Fixed(nn.Module):
        def forward(self, x: torch.Tensor) -> torch.Tensor:
            return x

    logits = torch.tensor([[9.0, 1], [1.0, 9], [9.0, 1], [1.0, 9]])
    a = evaluate_accuracy(Fixed(), [(logits[:2], torch.tensor([0, 1])), (logits[2:], torch.tensor([1, 0]))],
                          per_sample=True)
    assert a.correct is not None and a.correct.tolist() == [1, 1, 0, 0]  # in loader order, across batches
    assert evaluate_accuracy(Fixed(), [(logits, torch.tensor([0, 1, 1, 0]))]).correct is None  # only when asked
    b = np.array([1, 0, 0, 1])
    # differences 0, 1, 0, -1: mean 0, sample SD sqrt(2/3), SE sqrt(2/3) / 2
    assert paired_mean_se(a.correct, b) == pytest.approx((0.0, (2 / 3) ** 0.5 / 2))
    assert paired_mean_se(np.array([1, 1, 0]), np.array([0, 1, 0])) == pytest.approx((1 / 3, (1 / 3) ** 0.5 / 3 ** 0.5))
    with pytest.raises(ValueError, match="cannot be paired"):
        paired_mean_se(a.correct, b[:3])
