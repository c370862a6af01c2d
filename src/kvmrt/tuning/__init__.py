"""Real-time host tuning: plan, journal, apply, restore (SPEC 3).

- :mod:`.model`: the tuned VMs, the host snapshot the planner reads, and
  the actions: a :class:`~.model.Setting` changed from an old to a new value;
- :mod:`.settings`: the kinds of host setting, one class each (``KINDS``);
- :mod:`.plan`: pure functions from (snapshot, journal, tuned VMs) to actions;
- :mod:`.journal`: durable record of every old value before it is changed;
- :mod:`.apply`: executes actions through the host adapters, reads back.
"""
