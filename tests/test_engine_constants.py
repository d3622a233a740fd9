"""The numbers the engine and the Python side share have one source, the Rust
engine (exported by `_native`); an engine is configured by one object whose
defaults live in Python (`_launch.EngineSpec`); and a stopped engine says so
with its own exception class, which each API shows as the stdlib would."""

from __future__ import annotations

import importlib.metadata

import ferropool
import pytest
from ferropool import _native


def test_the_version_is_the_crates_and_the_packages():
    assert ferropool.__version__ == _native.__version__
    assert ferropool.__version__ == importlib.metadata.version("ferropool")


def test_statuses_modes_and_kinds_are_distinct_and_complete():
    statuses = [
        _native.OK,
        _native.RAISED,
        _native.RAISED_UNPICKLABLE,
        _native.ENCODING_ERROR,
        _native.WORKER_LOST,
        _native.POOL_BROKEN,
        _native.TIMED_OUT,
        _native.LOCAL_ERROR,
        _native.CANCELLED,
        _native.OK_OUT_OF_BAND,
        _native.OK_PACKED,
    ]
    assert sorted(statuses) == list(range(len(statuses)))
    assert [_native.APPLY, _native.MAP, _native.STARMAP] == [0, 1, 2]
    kinds = [getattr(_native, n) for n in dir(_native) if n.startswith("KIND_")]
    assert len(kinds) == len(set(kinds)) == 10
    assert all(k & _native.SHARED_PAYLOAD == 0 for k in kinds)


@pytest.mark.timeout(60)
def test_a_stopped_engine_raises_its_own_class_and_the_pool_shows_the_stdlibs():
    pool = ferropool.Pool(1)
    engine = pool._engine
    pool.terminate()
    with pytest.raises(_native.EngineStopped, match="Pool not running"):
        engine.new_job(b"", _native.APPLY, False)
    assert issubclass(_native.EngineStopped, ValueError)
    with pytest.raises(ValueError, match="Pool not running"):
        pool.apply(abs, (1,))


@pytest.mark.timeout(60)
def test_an_executor_shows_a_stop_as_its_runtime_error():
    ex = ferropool.ProcessPoolExecutor(1)
    ex.shutdown()
    with pytest.raises(RuntimeError, match="cannot schedule new futures after shutdown"):
        ex.submit(abs, 1)
    with pytest.raises(RuntimeError, match="cannot schedule new futures after shutdown"):
        ex.map(abs, [1])


def test_the_engine_takes_one_spec_object_with_the_defaults_in_python():
    from ferropool._launch import EngineSpec

    with pytest.raises(TypeError, match="no setting 'procesess'"):
        EngineSpec(1, procesess=2)
    with pytest.raises(ValueError, match="exactly one of spawn_argv, zygote_fd and fork_workers"):
        _native.Engine(EngineSpec(1, fork_workers=True, zygote_fd=0))
    with pytest.raises(ValueError, match="at least 1"):
        _native.Engine(EngineSpec(0, fork_workers=True))
    with pytest.raises(ValueError, match="task_timeout must be a positive number"):
        _native.Engine(EngineSpec(1, fork_workers=True, task_timeout=-1.0))
