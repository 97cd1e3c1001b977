"""Simulated devices for a demo box: a POS, a handheld and a cold-room sensor, as real MQTT clients.

`main(demo_json_path, duration=None, wait_for_box=True)` is what `storebox simulate` runs;
`run_simulators(demo_json, duration=..., stop_event=...)` runs them in-process (tests, benchmarks).
"""

from tools.sim.runner import SimOptions, SimStats, main, run_simulators

__all__ = ["SimOptions", "SimStats", "main", "run_simulators"]
