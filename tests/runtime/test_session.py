"""ONNX Runtime session options: threads that spin only when the cores they need are idle."""
import pytest

from tinyllm.errors import UserError
from tinyllm.runtime import session


def test_spinning_follows_the_environment_variable(monkeypatch):
    monkeypatch.setattr(session, "cores_busy", lambda: pytest.fail("must not sample"))
    monkeypatch.setenv("TINYLLM_ORT_SPIN", "1")
    assert session.allow_spinning(2) is True
    monkeypatch.setenv("TINYLLM_ORT_SPIN", "0")
    assert session.allow_spinning(2) is False
    monkeypatch.setenv("TINYLLM_ORT_SPIN", "yes")
    with pytest.raises(UserError, match="TINYLLM_ORT_SPIN"):
        session.allow_spinning(2)


@pytest.mark.parametrize("busy, threads, spins", [
    (0.0, 2, True),     # an idle machine: spinning is free speed
    (0.2, 2, True),     # a little background noise
    (1.0, 2, False),    # another job holds one of the two cores this session would use
    (1.0, 1, True),     # ... but one thread still has a core of its own
    (2.0, 1, False),    # both cores taken
    (None, 2, False),   # no /proc/stat: do not spin
])
def test_spinning_only_on_free_cores(monkeypatch, busy, threads, spins):
    monkeypatch.delenv("TINYLLM_ORT_SPIN", raising=False)
    monkeypatch.setattr(session.os, "cpu_count", lambda: 2)
    monkeypatch.setattr(session, "cores_busy", lambda: busy)
    assert session.allow_spinning(threads) is spins
    so = session.session_options(threads, spin=None)
    assert so.get_session_config_entry("session.intra_op.allow_spinning") == ("1" if spins else "0")


def test_busy_cores_are_read_from_the_cpu_counters(monkeypatch):
    samples = iter([(100, 1000), (150, 1100)])          # 50 of 100 jiffies busy, on 2 CPUs
    monkeypatch.setattr(session, "_cpu_times", lambda: next(samples))
    monkeypatch.setattr(session, "_spin_seen", None)
    monkeypatch.setattr(session.time, "sleep", lambda s: None)
    monkeypatch.setattr(session.os, "cpu_count", lambda: 2)
    assert session.cores_busy() == pytest.approx(1.0)
    assert session.cores_busy() == pytest.approx(1.0)    # reused: the counters are not read again
