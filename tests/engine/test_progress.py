"""engine.progress: the console lines of long worker loops (a fake clock, no sleeping)."""
import io

from stilts_ds.engine.progress import Progress


class Clock:
    def __init__(self):
        self.now = 100.0

    def __call__(self):
        return self.now


def test_lines_are_throttled_and_say_rate_and_time_left():
    clock, out = Clock(), io.StringIO()
    p = Progress("finetune xnli", total=100, start=20, every_s=30, clock=clock, stream=out)
    clock.now += 10
    assert p.update(30, "loss xnli 0.700")  # the first line comes at once
    clock.now += 10
    assert not p.update(40)  # 10 s later: too soon
    clock.now += 25
    assert p.update(60)
    clock.now += 1
    assert p.update(100)  # the last step always prints
    lines = out.getvalue().splitlines()
    assert lines[0] == "[finetune xnli] step 30/100 (30%) | 1.00 steps/s | 10s elapsed, 1m10s left | loss xnli 0.700"
    assert lines[1].startswith("[finetune xnli] step 60/100 (60%) | 0.89 steps/s | 45s elapsed, 45s left")
    assert lines[2].startswith("[finetune xnli] step 100/100 (100%)") and "0s left" in lines[2]
    quiet = Progress("x", total=5, enabled=False, stream=out)
    assert not quiet.update(5)
