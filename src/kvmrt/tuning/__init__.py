"""Real-time host tuning: plan, journal, apply, restore (SPEC 3).

- :mod:`.model`: the tuned VMs and the host snapshot the planner reads;
- :mod:`.plan`: pure functions from (snapshot, journal, tuned VMs) to actions;
- :mod:`.journal`: durable record of every old value before it is changed;
- :mod:`.apply`: executes actions through the host adapters, reads back.
"""
