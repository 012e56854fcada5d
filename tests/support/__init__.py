"""Test support shared by the suite and the benchmarks, one of each:

* ``clock``: ``T0``, ``FakeClock``;
* ``env``: ``child_env`` (no telemetry variables of the developer's), ``free_port``,
  ``recording_connects``;
* ``totals``: every count in one shape, ``{(kind, name): n}`` (drops apart), as an outbox,
  heartbeat payloads and the collector hold them;
* ``outboxes``: ``INSTANCE_ID``, ``Outbox`` (rows written straight in, what was written,
  the state after a run), ``query``;
* ``receiver``: a fake receiver on 127.0.0.1 (dedupes by id, scripted answers, can go down);
* ``collector``: the real collector on 127.0.0.1 (``Collector``), test credentials;
* ``faultproxy``: a seeded proxy in front of it (503, 429, reset, slow, lost after store);
* ``processes``: ``run_worker``, ``kill_worker_at``, ``run_python``, ``Proc`` (always a
  timeout, never left running);
* ``postgres``: a throwaway PostgreSQL cluster; ``ci``: what "under CI" means;
  ``other_user``: what a second user needs to run the ``outbox`` command.
"""
