"""runner/runtime/collection.py: the garbage collector paused for the start-up imports and frozen once (the
freeze before the program exits: tests/test_config.py). Each check runs in a fresh interpreter: freezing is
for the whole process."""

import subprocess
import sys
import textwrap


def run_python(code: str) -> str:
    shown = subprocess.run([sys.executable, "-c", textwrap.dedent(code)], capture_output=True, text=True, timeout=60)
    assert shown.returncode == 0, shown.stderr
    return shown.stdout.strip()


def test_the_collector_is_off_during_the_imports_and_on_after_with_them_frozen():
    shown = run_python(
        """
        import gc
        from runner.runtime.collection import paused_for_imports
        with paused_for_imports():
            during = gc.isenabled()
            import json, decimal  # stand-ins for a job's libraries
        print(during, gc.isenabled(), gc.get_freeze_count() > 0)
        """
    )
    assert shown == "False True True"


def test_an_error_in_the_block_still_turns_the_collector_back_on():
    shown = run_python(
        """
        import gc
        from runner.runtime.collection import paused_for_imports
        try:
            with paused_for_imports():
                raise ValueError("a data error before TensorFlow")
        except ValueError:
            pass
        print(gc.isenabled())
        """
    )
    assert shown == "True"


def test_a_nested_pause_leaves_the_outer_one_in_charge_and_freezing_happens_once():
    shown = run_python(
        """
        import gc
        from runner.runtime.collection import paused_for_imports
        with paused_for_imports():
            with paused_for_imports():
                pass
            inner_left_it_off = not gc.isenabled()
        frozen = gc.get_freeze_count()
        junk = [[] for _ in range(1000)]
        with paused_for_imports():
            pass
        print(inner_left_it_off, gc.get_freeze_count() == frozen)
        """
    )
    assert shown == "True True"
