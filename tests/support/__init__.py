"""Test support shared by the suite and the benchmarks: real parts set up the same way
everywhere (``postgres``: a throwaway PostgreSQL cluster; ``ci``: what "under CI" means;
``other_user``: what a second user needs to run the ``outbox`` command)."""
