"""Pure pieces more than one domain uses (no I/O, no imports from any domain): they sit below
every domain so the bus and workflows can share them without knowing each other."""
