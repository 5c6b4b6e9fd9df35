"""Which runs go to the heavy queue, and how the renderer knows something consumes it."""

from __future__ import annotations

from dramatiq.brokers.stub import StubBroker

from services.cli import build_parser
from services.renderer.lanes import CONSUMERS_TTL_S, ConsumerCount, is_heavy
from shared.messaging import QUEUE_RENDERER_HEAVY


def test_a_report_is_heavy_when_its_recent_renders_took_long_in_the_median():
    assert is_heavy([90.0, 70.0, 3.0], 60)
    assert not is_heavy([90.0, 3.0, 2.0], 60)  # one slow run (a busy database) is not enough
    assert is_heavy([60.0], 60)


def test_a_report_never_rendered_or_a_threshold_of_zero_is_never_heavy():
    assert not is_heavy([], 60)
    assert not is_heavy([3600.0, 3600.0], 0)


def test_consumer_count_asks_the_broker_again_only_after_a_while():
    broker = StubBroker()
    now = [0.0]
    count = ConsumerCount(broker, QUEUE_RENDERER_HEAVY, clock=lambda: now[0])
    assert count() == 0  # not declared: nobody consumes it
    broker.declare_queue(QUEUE_RENDERER_HEAVY)
    assert count() == 0  # the answer is kept for a while
    now[0] += CONSUMERS_TTL_S + 1
    assert count() == 1


def test_worker_process_counts_default_to_the_cpus_and_reject_nonsense(capsys):
    args = build_parser().parse_args(["worker", "renderer"])
    assert (args.processes, args.lane, args.heavy_processes) == (0, "all", 1)  # 0: one per CPU
    for bad in (["--processes", "-1"], ["--threads", "0"], ["--lane", "fast"]):
        try:
            build_parser().parse_args(["worker", "renderer", *bad])
        except SystemExit as exc:
            assert exc.code == 2
        else:
            raise AssertionError(bad)
